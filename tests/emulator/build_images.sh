#!/bin/sh
# Builds the emulator's disk images into OUTDIR, only those that are absent.
#
# Job: give the emulator real disk contents (ext4 filesystems, a partitioned
# OS disk, a sparse disk with known data extents) without root and without
# mounting anything: mkfs.ext4 -d populates file systems from a directory,
# sfdisk writes the MBR into a plain file, dd places the file system at the
# partition offset.  Trade-off: contents are fixed and small; random bytes come
# from a seeded generator (openssl enc over zeros) so the images are the same
# on every machine, which keeps manifest.json stable across rebuilds.
# A lock (flock OUTDIR/.lock) lets several emulators share one cache dir.
# Env: RPFS_SPARSE_SIZE_MIB (default 1024) sets sparse.img's size.
set -eu

OUT=${1:?usage: build_images.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
SPARSE_MIB=${RPFS_SPARSE_SIZE_MIB:-1024}
export PATH="$PATH:/usr/sbin:/sbin"

exec 9>"$OUT/.lock"
flock 9

if [ -f "$OUT/manifest.json" ] && [ -f "$OUT/os.img" ] && [ -f "$OUT/data.img" ] \
   && [ -f "$OUT/sparse.img" ] && [ -f "$OUT/small.img" ]; then
    exit 0
fi

TMP=$(mktemp -d "$OUT/.build.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# Deterministic pseudo-random bytes: prand SEED BYTES
prand() {
    head -c "$2" /dev/zero | openssl enc -aes-128-ctr -nosalt -pass "pass:$1" -pbkdf2 2>/dev/null
}

# os.img: 64 MiB, MBR, one Linux partition at 1 MiB holding ext4.
mkdir -p "$TMP/osroot/etc" "$TMP/osroot/home/azureuser" "$TMP/osroot/var/log"
printf 'vm1\n' > "$TMP/osroot/etc/hostname"
printf 'NAME="rpfs test image"\nID=rpfs\n' > "$TMP/osroot/etc/os-release"
printf 'hello from vm1\n' > "$TMP/osroot/home/azureuser/hello.txt"
prand oslog 200000 | base64 > "$TMP/osroot/var/log/syslog"
truncate -s 63M "$TMP/ospart.img"
mkfs.ext4 -q -F -L vm1-root -U 11111111-2222-3333-4444-555555555555 -E root_owner=0:0 -d "$TMP/osroot" "$TMP/ospart.img"
truncate -s 64M "$TMP/os.img"
printf 'label: dos\nlabel-id: 0x52504653\nstart=2048, type=83, bootable\n' | sfdisk -q "$TMP/os.img" >/dev/null
dd if="$TMP/ospart.img" of="$TMP/os.img" bs=1M seek=1 conv=notrunc,sparse status=none

# data.img: 32 MiB whole-disk ext4.
mkdir -p "$TMP/dataroot/data"
printf 'This is the data disk of vm1.\n' > "$TMP/dataroot/data/readme.txt"
prand datablob 3145728 > "$TMP/dataroot/data/blob.bin"
truncate -s 32M "$TMP/data.img"
mkfs.ext4 -q -F -L vm1-data -U 66666666-7777-8888-9999-000000000000 -E root_owner=0:0 -d "$TMP/dataroot" "$TMP/data.img"

# small.img: 48 MiB whole-disk ext4 with some data (not a whole GiB on purpose).
mkdir -p "$TMP/smallroot"
printf 'vm2 small disk\n' > "$TMP/smallroot/small.txt"
prand small 1048576 > "$TMP/smallroot/random.bin"
truncate -s 48M "$TMP/small.img"
mkfs.ext4 -q -F -L vm2-disk -U aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee -E root_owner=0:0 -d "$TMP/smallroot" "$TMP/small.img"

# sparse.img: mostly holes with a few random extents at known offsets.
truncate -s "${SPARSE_MIB}M" "$TMP/sparse.img"
EXTENTS=""
for spec in "0 1024" "$((SPARSE_MIB / 8)) 64" "$((SPARSE_MIB / 2)) 2048" "$((SPARSE_MIB * 3 / 4)) 4" "$((SPARSE_MIB - 1)) 1024"; do
    set -- $spec
    off_kib=$(( $1 * 1024 ))
    len_kib=$2
    prand "sparse$off_kib" $((len_kib * 1024)) | dd of="$TMP/sparse.img" bs=1K seek="$off_kib" conv=notrunc status=none
    EXTENTS="$EXTENTS $((off_kib * 1024)):$((len_kib * 1024))"
done

/usr/bin/python3 - "$TMP" "$EXTENTS" <<'PY'
import hashlib, json, os, sys
tmp, extents = sys.argv[1], sys.argv[2].split()
def sha(path=None, data=None):
    h = hashlib.sha256()
    if data is not None:
        h.update(data)
    else:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()
def files(root):
    out = []
    for d, _, names in os.walk(root):
        for n in sorted(names):
            p = os.path.join(d, n)
            out.append({"path": "/" + os.path.relpath(p, root), "size": os.path.getsize(p), "sha256": sha(p)})
    return sorted(out, key=lambda e: e["path"])
ext = []
with open(os.path.join(tmp, "sparse.img"), "rb") as f:
    for e in extents:
        off, ln = map(int, e.split(":"))
        f.seek(off)
        ext.append({"offset": off, "length": ln, "sha256": sha(data=f.read(ln))})
m = {"images": {
    "os.img": {"size": os.path.getsize(os.path.join(tmp, "os.img")), "partition_table": "dos",
               "fs": "ext4", "fs_label": "vm1-root", "partition_offset": 1048576,
               "files": files(os.path.join(tmp, "osroot"))},
    "data.img": {"size": os.path.getsize(os.path.join(tmp, "data.img")), "fs": "ext4", "fs_label": "vm1-data",
                 "partition_offset": 0, "files": files(os.path.join(tmp, "dataroot"))},
    "small.img": {"size": os.path.getsize(os.path.join(tmp, "small.img")), "fs": "ext4", "fs_label": "vm2-disk",
                  "partition_offset": 0, "files": files(os.path.join(tmp, "smallroot"))},
    "sparse.img": {"size": os.path.getsize(os.path.join(tmp, "sparse.img")), "fs": None, "extents": ext},
}}
for name, info in m["images"].items():
    info["sha256"] = sha(os.path.join(tmp, name))
with open(os.path.join(tmp, "manifest.json"), "w") as f:
    json.dump(m, f, indent=2)
PY

for f in os.img data.img small.img sparse.img; do
    [ -f "$OUT/$f" ] || mv "$TMP/$f" "$OUT/$f"
done
mv "$TMP/manifest.json" "$OUT/manifest.json"
