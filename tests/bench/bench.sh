#!/bin/sh
# bench.sh -- rpfs read performance as ratios against curl of the same SAS
# URL, measured in the same run.  Run by hand (not in CI):
#
#     tests/bench/bench.sh [WORKDIR]        (default /tmp/rpfs-bench)
#
# Env: RPFS_BIN (default build/rpfs), BIG_GIB (dense disk, default 8),
# RUNS (repetitions, default 3), RAND_READS (4 KiB reads per run of (c),
# curl's and fio's alike, default 30000), PHASES (default "a b c d e"),
# LINK_MIB (bytes read over the cloud-like link, default 2048),
# FIO_SECONDS (the most one fio run may take, default 120), RPFS_OPTS (extra
# arguments for every mount, with their -o: "-o parallel=4"), READ_AHEAD_KB (written to the mount's
# /sys/class/bdi/MAJ:MIN/read_ahead_kb after mounting, as root; the kernel
# sends FUSE reads of at most this size, 128 KiB by default).
#
# Job: the figures in docs/performance.md.  Setup: three disks (BIG_GIB
# dense random, 1 GiB dense random, 8 GiB with 256 MiB of data in 16
# extents) in one restore point of the emulator, whose SAS URLs point
# (--blob-base) at nginx on 127.0.0.1 serving the .vhd files over HTTPS
# with the emulator's certificate; page lists are proxied by nginx to the
# emulator.  A SAS for curl comes from BeginGetAccess called here, through
# Python (no token or SAS on a command line; curl reads the SAS from a
# 0600 config file).  Every rpfs measurement uses a fresh mount with
# linger_ms=0, so nothing is served from an earlier run's cache, and reads
# the file once with dd bs=1M.  rpfs CPU time comes from /proc/PID/stat,
# its peak RSS from VmHWM.
#
# Phases: (a) loopback sequential: rpfs vs one curl stream; (b) cloud-like
# link (tests/bench/linkproxy.c, compiled into WORKDIR at set-up: 20 ms
# per request, 100 MB/s per connection, between the SAS host:port and
# nginx) vs 1 and 8 parallel curl range streams; (c) fio random 4 KiB
# psync reads vs one keep-alive curl GET per read; (d) the sparse disk:
# cp --sparse=always vs a full read, time and bytes sent by nginx; (e)
# qemu-img convert of the 1 GiB disk (8 reads of 2 MiB in flight) against
# dd of it: time and bytes fetched.
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
W=${1:-/tmp/rpfs-bench}
RPFS=${RPFS_BIN:-$REPO/build/rpfs}
BIG_GIB=${BIG_GIB:-8}
RUNS=${RUNS:-3}
LINK_MIB=${LINK_MIB:-2048}
FIO_SECONDS=${FIO_SECONDS:-120}
RAND_READS=${RAND_READS:-30000}
RPFS_OPTS=${RPFS_OPTS:-}
PHASES=${PHASES:-a b c d e}
want() { case " $PHASES " in *" $1 "*) return 0 ;; esac; return 1; }
PY=/usr/bin/python3
TCK=$(getconf CLK_TCK)
case "$RPFS" in /*) ;; *) RPFS=$(pwd)/$RPFS ;; esac

mkdir -p "$W/img" "$W/state" "$W/nginx/tmp" "$W/mnt" "$W/out" "$W/secret"
# nginx workers (user nobody) read the images; secrets stay in a 0700 dir
umask 022
chmod 755 "$W" "$W/img"
chmod 700 "$W/secret"
# the cloud-like link of phase (b); C, so that it takes little CPU
cc -std=c11 -O2 -Wall -Wextra -Werror -pthread -o "$W/linkproxy" "$HERE/linkproxy.c"

log() { printf '%s\n' "$*" >&2; }
now() { date +%s.%N; }
free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# deterministic pseudo-random bytes, fast: prand SEED BYTES
prand() { head -c "$2" /dev/zero | openssl enc -aes-128-ctr -nosalt -pass "pass:$1" -pbkdf2 2>/dev/null; }

# ---- images ----------------------------------------------------------------
if [ ! -f "$W/img/big.img" ] || [ "$(stat -c %s "$W/img/big.img")" -ne $((BIG_GIB << 30)) ]; then
	log "building big.img ($BIG_GIB GiB)"
	prand big $((BIG_GIB << 30)) > "$W/img/big.img"
fi
if [ ! -f "$W/img/one.img" ]; then
	log "building one.img (1 GiB)"
	prand one $((1 << 30)) > "$W/img/one.img"
fi
if [ ! -f "$W/img/sparse8.img" ]; then
	log "building sparse8.img (8 GiB, 256 MiB data)"
	truncate -s 8G "$W/img/sparse8.img.tmp"
	i=0
	while [ $i -lt 16 ]; do
		prand "s$i" $((16 << 20)) | dd of="$W/img/sparse8.img.tmp" bs=1M seek=$((i * 512 + 37)) conv=notrunc status=none
		i=$((i + 1))
	done
	mv "$W/img/sparse8.img.tmp" "$W/img/sparse8.img"
fi
cat > "$W/scenario.json" <<JSON
{"resource_groups": [{"name": "rg-bench", "location": "westeurope",
  "vms": [{"name": "vmb", "disks": [
    {"name": "big", "image": "$W/img/big.img", "os": true},
    {"name": "one", "image": "$W/img/one.img", "lun": 0},
    {"name": "sparse8", "image": "$W/img/sparse8.img", "lun": 1}]}],
  "collections": [{"name": "c", "source_vm": "vmb", "restore_points": [{"name": "rp"}]}]}]}
JSON

# ---- servers -----------------------------------------------------------------
NPORT=$(free_port)
NPORT2=$(free_port)
EPID=""
NPID=""
PPID_=""
MPID=""
cleanup() {
	if [ -n "$MPID" ]; then
		fusermount3 -u "$W/mnt" 2>/dev/null || true
		wait "$MPID" 2>/dev/null || true
	fi
	for p in $PPID_ $EPID $NPID; do kill "$p" 2>/dev/null || true; done
	MPID=""; PPID_=""; EPID=""; NPID=""
	rm -rf "$W/secret"
}
trap cleanup EXIT
trap 'exit 1' INT TERM

rm -f "$W/emu.out" "$W/state/endpoint.json"
$PY "$REPO/tests/emulator/emulator.py" --state-dir "$W/state" --scenario "$W/scenario.json" \
	--images "$W/img" --blob-base "https://127.0.0.1:$NPORT" > "$W/emu.out" 2> "$W/emu.err" &
EPID=$!
i=0
until grep -q READY "$W/emu.out" 2>/dev/null; do
	i=$((i + 1)); [ $i -lt 1800 ] || { log "emulator did not start"; exit 1; }; sleep 0.1
done
eval "$($PY - "$W/state/endpoint.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1]))
print("URL=%s SUB=%s CA=%s EPORT=%s" % (e["url"], e["subscription"], e["ca"], e["port"]))
open(sys.argv[1].rsplit("/", 2)[0] + "/secret/token", "w").write(e["token"] + "\n")
PY
)"

nginx_conf() { # PORT
	cat > "$W/nginx/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $W/nginx/nginx.pid;
error_log $W/nginx/error.log;
events { worker_connections 256; }
http {
  log_format bytes '\$request_method \$status \$bytes_sent \$arg_comp \$connection \$connection_requests \$msec \$request_time';
  access_log $W/nginx/access.log bytes;
  sendfile on;
  keepalive_requests 100000;
  client_body_temp_path $W/nginx/tmp;
  proxy_temp_path $W/nginx/tmp;
  fastcgi_temp_path $W/nginx/tmp;
  uwsgi_temp_path $W/nginx/tmp;
  scgi_temp_path $W/nginx/tmp;
  server {
    listen 127.0.0.1:$1 ssl;
    ssl_certificate $W/state/server.pem;
    ssl_certificate_key $W/state/server.key;
    location ~ ^/blob/[^/]+/(?<f>[^/]+)\$ {
      if (\$arg_comp = "pagelist") { proxy_pass https://127.0.0.1:$EPORT; }
      alias $W/img/\$f;
      default_type application/octet-stream;
    }
  }
}
CONF
}
chmod 644 "$W"/img/*
nginx_conf "$NPORT"
nginx -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" &
NPID=$!
sleep 0.5

# A SAS for curl, through the ARM API (token and SAS stay in files).
grant() { # DISK -> writes $W/curl.cfg with url = SAS
	$PY - "$URL" "$W/secret/token" "$CA" "$SUB" "$1" "$W/secret/curl.cfg" <<'PY'
import json, ssl, sys, time, urllib.request
url, tokf, ca, sub, disk, out = sys.argv[1:]
tok = open(tokf).read().strip()
ctx = ssl.create_default_context(cafile=ca)
def call(u, data=None, method="GET"):
    r = urllib.request.Request(u, data=data, method=method, headers={
        "Authorization": "Bearer " + tok, "Content-Type": "application/json"})
    with urllib.request.urlopen(r, context=ctx) as resp:
        return resp.status, dict(resp.headers), resp.read()
rp = url + "/subscriptions/%s/resourceGroups/rg-bench/providers/Microsoft.Compute/restorePointCollections/c/restorePoints/rp" % sub
_, _, body = call(rp + "?api-version=2025-04-01")
sp = json.loads(body)["properties"]["sourceMetadata"]["storageProfile"]
drps = [sp["osDisk"]] + sp.get("dataDisks", [])
drp = [d for d in drps if d["name"] == disk][0]["diskRestorePoint"]["id"]
st, h, body = call(url + drp + "/beginGetAccess?api-version=2025-01-02",
                   json.dumps({"access": "Read", "durationInSeconds": 36000}).encode(), "POST")
loc = h.get("Location")
while True:
    time.sleep(0.5)
    st, h, body = call(loc)
    if st == 200 and body:
        break
sas = json.loads(body)["accessSAS"]
with open(out, "w") as f:
    f.write('url = "%s"\n' % sas)
PY
}

# ---- rpfs helpers -------------------------------------------------------------
mount_rpfs() { # extra options...
	$RPFS -f --subscription "$SUB" --endpoint "$URL" --cafile "$CA" \
		--token-file "$W/secret/token" -o linger_ms=0 $RPFS_OPTS "$@" "$W/mnt" 2>> "$W/rpfs.log" &
	MPID=$!
	mw=0
	until mountpoint -q "$W/mnt"; do
		mw=$((mw + 1)); [ $mw -lt 300 ] || { log "rpfs did not mount"; exit 1; }; sleep 0.1
	done
	if [ -n "${READ_AHEAD_KB:-}" ]; then
		echo "$READ_AHEAD_KB" > "/sys/class/bdi/$(mountpoint -d "$W/mnt")/read_ahead_kb" ||
			log "cannot set read_ahead_kb"
	fi
}
umount_rpfs() {
	fusermount3 -u "$W/mnt"
	wait "$MPID" 2>/dev/null || true
	MPID=""
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hwm_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
F() { printf '%s/mnt/rg-bench/c/rp/%s.vhd' "$W" "$1"; }
mbps() { awk -v b="$1" -v t="$2" 'BEGIN {printf "%.0f\n", b / t / 1e6}'; }

# rpfs_read DISK [dd args] -> "MB/s cpu_s_per_GiB hwm_MiB"
rpfs_read() { # DISK [dd operands]; MOUNT_OPTS: extra mount options
	d=$1; shift
	mount_rpfs ${MOUNT_OPTS:-}
	# Grant and page map outside the timing, as curl's SAS is: fd 3 keeps
	# the disk open across the timed read (with linger_ms=0 a close would
	# end the grant, and dd's open would pay BeginGetAccess again: 1-2 s
	# on the cloud-like link).
	exec 3< "$(F "$d")"
	head -c 1 <&3 > /dev/null
	c0=$(cpu_ticks "$MPID")
	t0=$(now)
	bytes=$(dd if="$(F "$d")" of=/dev/null bs=1M "$@" 2>&1 | awk '/bytes/ {print $1}')
	t1=$(now)
	c1=$(cpu_ticks "$MPID")
	hwm=$(hwm_kib "$MPID")
	exec 3<&-
	umount_rpfs
	awk -v b="$bytes" -v t="$(echo "$t1 - $t0" | bc)" -v c=$((c1 - c0)) -v k="$TCK" -v h="$hwm" \
		'BEGIN {printf "%.0f %.2f %.0f\n", b / t / 1e6, (c / k) / (b / 1073741824), h / 1024}'
}
curl_one() { # [range] -> "MB/s cpu_s_per_GiB"
	if [ $# -gt 0 ]; then r="-r $1"; else r=""; fi
	/usr/bin/time -f '%U %S' -o "$W/curl.time" curl -s --cacert "$CA" -K "$W/secret/curl.cfg" $r \
		-o /dev/null -w '%{size_download} %{time_total}\n' > "$W/curl.out"
	read -r sz tt < "$W/curl.out"
	read -r us ss < "$W/curl.time"
	awk -v b="$sz" -v t="$tt" -v u="$us" -v s="$ss" \
		'BEGIN {printf "%.0f %.2f\n", b / t / 1e6, (u + s) / (b / 1073741824)}'
}
curl_parallel() { # N TOTAL_BYTES -> MB/s
	n=$1; total=$2; part=$((total / n)); j=0 # j: only here
	pids=""
	t0=$(now)
	while [ $j -lt "$n" ]; do
		a=$((j * part)); b=$((a + part - 1))
		curl -s --cacert "$CA" -K "$W/secret/curl.cfg" -r "$a-$b" -o /dev/null &
		pids="$pids $!"
		j=$((j + 1))
	done
	for p in $pids; do wait "$p"; done
	t1=$(now)
	mbps "$total" "$(echo "$t1 - $t0" | bc)"
}
median() { sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

log "warming the page cache"
cat "$W/img/big.vhd" "$W/img/one.vhd" > /dev/null
: > "$W/rpfs.log"

# ---- (a) loopback -------------------------------------------------------------
grant big
if [ -n "${HOLD:-}" ]; then # keep servers and a mount for manual runs
	if [ "$HOLD" = link ]; then # ... behind the cloud-like link
		nginx_conf "$NPORT2"
		nginx -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" -s reload
		sleep 1
		"$W/linkproxy" "$NPORT" "$NPORT2" --rtt-ms 20 --mbps 100 > "$W/proxy.out" &
		PPID_=$!
		sleep 0.5
	fi
	mount_rpfs
	echo "HOLD: rpfs pid $MPID on $W/mnt; curl -K $W/secret/curl.cfg; kill $$ to end"
	while :; do sleep 3600 & wait $!; done
fi
if want a; then
echo "== (a) loopback, sequential, big.vhd ($BIG_GIB GiB): MB/s"
i=0; : > "$W/a.curl"; : > "$W/a.rpfs"; : > "$W/a.pc"
while [ $i -lt "$RUNS" ]; do
	curl_one >> "$W/a.curl"
	rpfs_read big >> "$W/a.rpfs"
	MOUNT_OPTS="-o page_cache" rpfs_read big >> "$W/a.pc"
	i=$((i + 1))
done
echo "curl 1 stream (MB/s cpu-s/GiB):"
sed 's/^/    /' "$W/a.curl"
echo "rpfs (MB/s cpu-s/GiB peak-RSS-MiB):"
sed 's/^/    /' "$W/a.rpfs"
echo "rpfs -o page_cache (MB/s cpu-s/GiB peak-RSS-MiB):"
sed 's/^/    /' "$W/a.pc"
C=$(awk '{print $1}' "$W/a.curl" | median); R=$(awk '{print $1}' "$W/a.rpfs" | median)
D=$(awk '{print $1}' "$W/a.pc" | median)
echo "ratio rpfs/curl (medians): $(awk -v r="$R" -v c="$C" 'BEGIN {printf "%.2f", r / c}')"
echo "ratio rpfs -o page_cache/curl (medians): $(awk -v r="$D" -v c="$C" 'BEGIN {printf "%.2f", r / c}')"
echo "peak RSS reading the 1 GiB disk (MB/s cpu-s/GiB RSS-MiB): $(rpfs_read one)"
fi

# ---- (b) cloud-like link ------------------------------------------------------
if want b; then
echo "== (b) cloud-like link (20 ms/request, 100 MB/s/connection), first $LINK_MIB MiB of big.vhd: MB/s"
nginx_conf "$NPORT2"
nginx -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" -s reload
sleep 1
"$W/linkproxy" "$NPORT" "$NPORT2" --rtt-ms 20 --mbps 100 > "$W/proxy.out" &
PPID_=$!
sleep 0.5
LB=$((LINK_MIB << 20))
i=0; : > "$W/b.c1"; : > "$W/b.c8"; : > "$W/b.rpfs"
while [ $i -lt "$RUNS" ]; do
	curl_one "0-$((LB - 1))" >> "$W/b.c1"
	curl_parallel 8 "$LB" >> "$W/b.c8"
	rpfs_read big count="$LINK_MIB" >> "$W/b.rpfs"
	i=$((i + 1))
done
echo "curl 1 stream   : $(awk '{print $1}' "$W/b.c1" | tr '\n' ' ')"
echo "curl 8 streams  : $(tr '\n' ' ' < "$W/b.c8")"
echo "rpfs (MB/s cpu-s/GiB peak-RSS-MiB):"
sed 's/^/    /' "$W/b.rpfs"
C8=$(median < "$W/b.c8"); R=$(awk '{print $1}' "$W/b.rpfs" | median)
echo "ratio rpfs/curl-8 (medians): $(awk -v r="$R" -v c="$C8" 'BEGIN {printf "%.2f", r / c}')"
kill "$PPID_"; PPID_=""
nginx_conf "$NPORT"
nginx -c "$W/nginx/nginx.conf" -e "$W/nginx/error.log" -s reload
sleep 1
fi

# ---- (c) random 4 KiB reads ---------------------------------------------------
if want c; then
echo "== (c) random 4 KiB reads of big.vhd: IOPS"
# one curl process, one keep-alive connection, RAND_READS ranged GETs
# ("next" resets options, so each block repeats them); fio makes as many
# reads, so that both samples span the same seconds of a noisy machine
$PY - "$W/secret/curl.cfg" "$W/secret/curl-rand.cfg" $((BIG_GIB << 30)) "$CA" "$RAND_READS" <<'PY'
import random, sys
src, dst, size, ca, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5])
url = open(src).read()
r = random.Random(1)
with open(dst, "w") as f:
    for i in range(n):
        off = r.randrange(0, size // 4096) * 4096
        if i:
            f.write("next\n")
        f.write(url + 'range = "%d-%d"\noutput = "/dev/null"\ncacert = "%s"\nsilent\n'
                % (off, off + 4095, ca))
PY
# GET bytes nginx sent since the log was emptied, per read
fetched() { awk -v n="$1" '$1 == "GET" && $4 != "pagelist" {s += $3} END {printf "%.0f", s / n}' "$W/nginx/access.log"; }
i=0; : > "$W/c.curl"; : > "$W/c.rpfs"
mount_rpfs
exec 3< "$(F big)" # the grant outside the timing (see rpfs_read)
head -c 1 <&3 > /dev/null
while [ $i -lt "$RUNS" ]; do
	t0=$(now)
	curl -K "$W/secret/curl-rand.cfg"
	t1=$(now)
	awk -v n="$RAND_READS" -v t="$(echo "$t1 - $t0" | bc)" 'BEGIN {printf "%.0f\n", n / t}' >> "$W/c.curl"
	: > "$W/nginx/access.log"
	fio --name=rand --filename="$(F big)" --readonly --rw=randread --bs=4k --ioengine=psync \
		--number_ios="$RAND_READS" --runtime="$FIO_SECONDS" --size=$((BIG_GIB << 30)) \
		--output-format=json > "$W/fio.json"
	$PY -c 'import json,sys; r=json.load(open(sys.argv[1]))["jobs"][0]["read"]; print("%.0f %d" % (r["iops"], r["total_ios"]))' \
		"$W/fio.json" > "$W/c.one"
	read -r iops ios < "$W/c.one"
	echo "$iops $(fetched "$ios")" >> "$W/c.rpfs"
	i=$((i + 1))
done
exec 3<&-
umount_rpfs
echo "curl, one keep-alive GET per read: $(tr '\n' ' ' < "$W/c.curl")"
echo "rpfs, fio psync 1 job (IOPS, bytes fetched per read):"
sed 's/^/    /' "$W/c.rpfs"
C=$(median < "$W/c.curl"); R=$(awk '{print $1}' "$W/c.rpfs" | median)
echo "ratio rpfs/curl (medians): $(awk -v r="$R" -v c="$C" 'BEGIN {printf "%.2f", r / c}')"
fi

# ---- (e) qemu-img convert ---------------------------------------------------
if want e; then
echo "== (e) qemu-img convert -O raw of one.vhd (1 GiB) to $W/out, against dd of it"
sent() { awk '$1 == "GET" && $4 != "pagelist" {s += $3} END {printf "%.2f", s / 1073741824}' "$W/nginx/access.log"; }
i=0
while [ $i -lt "$RUNS" ]; do
	mount_rpfs
	exec 3< "$(F one)" # the grant outside the timing (see rpfs_read)
	head -c 1 <&3 > /dev/null
	: > "$W/nginx/access.log"
	t0=$(now)
	dd if="$(F one)" of=/dev/null bs=1M status=none
	t1=$(now)
	echo "dd: $(echo "$t1 - $t0" | bc | cut -c1-5) s, $(sent) GiB fetched"
	rm -f "$W/out/one.raw"
	: > "$W/nginx/access.log"
	c0=$(cpu_ticks "$MPID")
	t0=$(now)
	qemu-img convert -f vpc -O raw "$(F one)" "$W/out/one.raw"
	t1=$(now)
	c1=$(cpu_ticks "$MPID")
	echo "qemu-img convert: $(echo "$t1 - $t0" | bc | cut -c1-5) s, $(sent) GiB fetched, rpfs CPU $(echo "($c1 - $c0) / $TCK" | bc -l | cut -c1-4) s"
	exec 3<&-
	umount_rpfs
	i=$((i + 1))
done
if cmp -s "$W/out/one.raw" "$W/img/one.img"; then echo "output identical: yes"; else echo "output identical: NO"; fi
rm -f "$W/out/one.raw"
fi

# ---- (d) sparse ---------------------------------------------------------------
if want d; then
echo "== (d) sparse 8 GiB disk with 256 MiB data"
sent() { awk '$1 == "GET" && $4 != "pagelist" {s += $3} END {printf "%.0f", s / 1048576}' "$W/nginx/access.log"; }
rm -f "$W/out/sparse.vhd"
mount_rpfs
: > "$W/nginx/access.log"
t0=$(now)
cp --sparse=always "$(F sparse8)" "$W/out/sparse.vhd"
t1=$(now)
umount_rpfs
echo "cp --sparse=always: $(echo "$t1 - $t0" | bc | cut -c1-6) s, $(sent) MiB sent, du $(du -m "$W/out/sparse.vhd" | cut -f1) MiB"
mount_rpfs -o pagelist=0
: > "$W/nginx/access.log"
t0=$(now)
dd if="$(F sparse8)" of=/dev/null bs=1M status=none
t1=$(now)
umount_rpfs
echo "full read (pagelist=0): $(echo "$t1 - $t0" | bc | cut -c1-6) s, $(sent) MiB sent"
if cmp -s "$W/out/sparse.vhd" "$W/img/sparse8.vhd"; then echo "copy identical: yes"; else echo "copy identical: NO"; fi
rm -f "$W/out/sparse.vhd"
fi
