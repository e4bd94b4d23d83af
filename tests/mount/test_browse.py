"""Browsing a mount: what `ls`, `cat`, `stat` and `getfattr` show, how it
matches what Azure holds (emulator.state() and Microsoft's Python SDK), how
long answers are cached, and what a user gets when Resource Manager says
no, throttles, or talks nonsense.

Each test mounts rpfs against a fresh emulator (default scenario: rg-prod
with vm1, coll1/rp1 and coll-many; rg-dr empty; rg-other with vm2, vmfail,
vmaad and coll-aad), drives it with plain shell tools and os calls, and
checks errno values as carefully as data.  The emulator hands ids back in
odd casing and pages every list by 2, so both are exercised everywhere.
"""

import errno
import json
import os
import stat
import time

from .util import (arm_requests, cat, errno_of, ls, sdk, sh, state_coll,
                   state_group, wait_for)

FIXED_COLL = {"collection.json", "source", "location", "status", "tags",
              "exclude_disks"}
FIXED_RP = {"restorepoint.json", "status", "progress"}


# ---------------------------------------------------------------- helpers


def disk_entry(rp_name):
    """The directory entry of a restore point (clash scheme)."""
    return "@" + rp_name if rp_name in FIXED_COLL else rp_name


def disk_names(rp):
    """Disk names of a restore point in emulator.state(), from
    sourceMetadata like Azure does."""
    sp = rp["properties"]["sourceMetadata"]["storageProfile"]
    disks = [sp["osDisk"]] + list(sp.get("dataDisks", []))
    excluded = {d["id"].lower() for d in
                rp["properties"].get("excludeDisks", [])}
    return [d["name"] for d in disks
            if d["managedDisk"]["id"].lower() not in excluded]


# ---------------------------------------------------------------- the tree


def test_tree_matches_what_azure_holds(rpfs, emulator):
    m = rpfs()
    state = emulator.state()
    assert ls(m.path) == {g["name"] for g in state["resource_groups"]}
    for g in state["resource_groups"]:
        gdir = m.path / g["name"]
        assert ls(gdir) == {c["name"] for c in g["collections"]}
        for c in g["collections"]:
            cdir = gdir / c["name"]
            rps = {disk_entry(rp["name"]) for rp in c["restorePoints"]}
            assert ls(cdir) == FIXED_COLL | rps
            for rp in c["restorePoints"]:
                rdir = cdir / disk_entry(rp["name"])
                want = {n + ".vhd" for n in disk_names(rp)}
                assert ls(rdir) == FIXED_RP | want, rdir


def test_listings_longer_than_a_page_are_complete(rpfs, emulator):
    # Lists come back two per page; make every level span several pages.
    client = sdk(emulator)
    vm = client.virtual_machines.get("rg-prod", "vm1")
    for i in range(5):
        client.restore_point_collections.create_or_update(
            "rg-dr", "page%d" % i, {"location": "eastus",
                                    "source": {"id": vm.id}})
    emulator.config(page_size=2)
    m = rpfs()
    assert {"page%d" % i for i in range(5)} == ls(m.path / "rg-dr")
    assert ls(m.path / "rg-prod" / "coll-many") == \
        FIXED_COLL | {"rp-a", "rp-b", "rp-c"}
    stats = emulator.stats()["requests"]
    assert stats["collection_list"] >= 4  # 8 collections, 2 per page
    assert stats["resourcegroups_list"] >= 2


def test_ls_long_shows_modes_owner_and_sizes(rpfs, emulator):
    m = rpfs()
    coll = m.path / "rg-prod" / "coll1"
    uid, gid = os.getuid(), os.getgid()
    for p, mode in [(coll, 0o755), (coll / "rp1", 0o755),
                    (coll / "collection.json", 0o444),
                    (coll / "source", 0o444), (coll / "location", 0o444),
                    (coll / "status", 0o444), (coll / "tags", 0o644),
                    (coll / "exclude_disks", 0o644),
                    (coll / "rp1" / "status", 0o444),
                    (coll / "rp1" / "progress", 0o444),
                    (coll / "rp1" / "restorepoint.json", 0o444),
                    (coll / "rp1" / "vm1-os.vhd", 0o444)]:
        st = os.stat(p)
        assert stat.S_IMODE(st.st_mode) == mode, p
        assert (st.st_uid, st.st_gid) == (uid, gid), p
    assert stat.S_ISDIR(os.stat(coll / "rp1").st_mode)
    # The size of a metadata file is the size of what cat shows.
    for name in ("source", "location", "tags", "collection.json"):
        assert os.stat(coll / name).st_size == len(
            cat(coll / name).encode()), name
    # A restore point directory carries Azure's creation time.
    rp = state_coll(emulator, "rg-prod", "coll1")["restorePoints"][0]
    assert time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(
        os.stat(coll / "rp1").st_mtime)) == \
        rp["properties"]["timeCreated"][:19]


def test_metadata_files_say_what_azure_says(rpfs, emulator):
    m = rpfs()
    coll = m.path / "rg-prod" / "coll1"
    c = state_coll(emulator, "rg-prod", "coll1")
    assert cat(coll / "source") == c["properties"]["source"]["id"] + "\n"
    assert cat(coll / "location") == "westeurope\n"
    assert cat(coll / "status") == "Succeeded\n"
    assert cat(coll / "tags") == "env=prod\n"
    assert cat(coll / "exclude_disks") == ""
    doc = json.loads(cat(coll / "collection.json"))
    assert doc["id"].lower() == c["id"].lower()
    assert doc["properties"]["provisioningState"] == "Succeeded"
    rp = json.loads(cat(coll / "rp1" / "restorepoint.json"))
    assert rp["name"] == "rp1"
    assert len(rp["properties"]["instanceView"]["diskRestorePoints"]) == 3
    assert cat(coll / "rp1" / "status") == "Succeeded\n"
    assert cat(coll / "rp1" / "progress").splitlines() == [
        "vm1-os Succeeded 100", "vm1-data Succeeded 100",
        "vm1-sparse Succeeded 100"]


def test_extended_attributes_carry_azure_ids(rpfs, emulator):
    m = rpfs()
    c = state_coll(emulator, "rg-prod", "coll1")
    rp = c["restorePoints"][0]
    drp = {d["name"].split("_")[0]: d["id"] for d in rp["diskRestorePoints"]}

    def attr(path, name):
        return sh("getfattr", "--only-values", "-n", name,
                  path).stdout

    base = m.path / "rg-prod"
    assert attr(base, "user.azure.id").lower() == \
        state_group(emulator, "rg-prod")["id"].lower()
    assert attr(base, "user.azure.location") == "westeurope"
    assert attr(base / "coll1", "user.azure.id").lower() == c["id"].lower()
    assert attr(base / "coll1", "user.azure.provisioning_state") == \
        "Succeeded"
    assert attr(base / "coll1" / "rp1", "user.azure.id").lower() == \
        rp["id"].lower()
    assert attr(base / "coll1" / "rp1" / "vm1-data.vhd",
                "user.azure.id").lower() == drp["vm1-data"].lower()
    listed = sh("getfattr", "-d", base / "coll1" / "rp1").stdout
    assert "user.azure.id=" in listed
    assert "user.azure.provisioning_state=" in listed
    assert os.getxattr(m.path, "user.azure.id").decode() == \
        "/subscriptions/" + emulator.subscription
    # Files other than disks have none; nothing can be set.
    assert errno_of(os.getxattr, base / "coll1" / "tags",
                    "user.azure.id") == errno.ENODATA
    assert errno_of(os.setxattr, base / "coll1", "user.azure.id",
                    b"x") == errno.EPERM
    res = sh("setfattr", "-n", "user.note", "-v", "x", base / "coll1",
             check=False)
    assert res.returncode != 0


def test_disk_file_size_is_exact_once_opened(rpfs, emulator):
    m = rpfs()
    disk = m.path / "rg-other" / "coll-aad" / "rp1" / "vmaad-os.vhd"
    small = m.path / "rg-prod" / "coll1" / "rp1" / "vm1-data.vhd"
    # Azure says 1 GiB (diskSizeGB rounds up): the size before any open.
    assert os.stat(small).st_size == (1 << 30) + 512
    fd = os.open(small, os.O_RDONLY)
    try:
        exact = 32 * 1024 * 1024 + 512
        assert os.fstat(fd).st_size == exact
        assert os.stat(small).st_size == exact
        tail = os.pread(fd, 4096, exact - 512)
        assert tail[:8] == b"conectix" and len(tail) == 512
    finally:
        os.close(fd)
    assert os.stat(disk).st_size == (1 << 30) + 512  # never opened


# ---------------------------------------------------------------- clashes


def test_restore_point_named_like_a_fixed_file_stays_reachable(
        rpfs, emulator):
    emulator.config(lro_seconds=0.2)
    client = sdk(emulator)
    client.restore_points.begin_create("rg-prod", "coll1", "status",
                                       {}).result()
    client.restore_points.begin_create("rg-prod", "coll1", "tags",
                                       {}).result()
    vm = client.virtual_machines.get("rg-prod", "vm1")
    client.restore_point_collections.create_or_update(
        "rg-prod", "tags", {"location": vm.location,
                            "source": {"id": vm.id}})
    m = rpfs()
    coll = m.path / "rg-prod" / "coll1"
    assert ls(coll) == FIXED_COLL | {"rp1", "@status", "@tags"}
    # The fixed files keep their meaning...
    assert cat(coll / "status") == "Succeeded\n"
    assert cat(coll / "tags") == "env=prod\n"
    # ...and the restore points are there under the @ form.
    assert cat(coll / "@status" / "status") == "Succeeded\n"
    assert ls(coll / "@tags") == FIXED_RP | {"vm1-os.vhd", "vm1-data.vhd",
                                             "vm1-sparse.vhd"}
    assert sh("getfattr", "--only-values", "-n", "user.azure.id",
              coll / "@status").stdout.lower().endswith("/status")
    # Only fixed names have an @ form.
    assert errno_of(os.stat, coll / "@rp1") == errno.ENOENT
    # A collection called "tags" clashes with nothing.
    assert "tags" in ls(m.path / "rg-prod")
    assert cat(m.path / "rg-prod" / "tags" / "status") == "Succeeded\n"


# ---------------------------------------------------------------- caching


def test_repeated_ls_lR_within_the_timeout_sends_no_request(rpfs, emulator):
    m = rpfs("-o", "cache_timeout=60")
    state = emulator.state()
    ngroups = len(state["resource_groups"])
    colls = sum(len(g["collections"]) for g in state["resource_groups"])
    emulator.reset_stats()
    out = sh("ls", "-lR", m.path).stdout
    assert "vm1-sparse.vhd" in out
    pages = lambda n: max(1, -(-n // 2))  # noqa: E731 (2 per page)
    assert arm_requests(emulator) == {
        "resourcegroups_list": pages(ngroups),
        "collection_list": pages(colls),
        "collection_get": colls,
    }
    emulator.reset_stats()
    assert sh("ls", "-lR", m.path).stdout == out
    assert arm_requests(emulator) == {}


def test_status_and_progress_are_never_cached(rpfs, emulator):
    m = rpfs("-o", "cache_timeout=60")
    rp = m.path / "rg-prod" / "coll1" / "rp1"
    cat(rp / "status")
    emulator.reset_stats()
    for _ in range(3):
        assert cat(rp / "status") == "Succeeded\n"
        assert "vm1-os Succeeded 100" in cat(rp / "progress")
    assert arm_requests(emulator) == {"rp_get": 6}
    emulator.reset_stats()
    cat(m.path / "rg-prod" / "coll1" / "status")
    assert arm_requests(emulator) == {"collection_get": 1}


def test_restore_point_made_elsewhere_appears_after_the_cache_timeout(
        rpfs, emulator):
    emulator.config(lro_seconds=0.2)
    m = rpfs("-o", "cache_timeout=3")
    coll = m.path / "rg-prod" / "coll1"
    assert ls(coll) == FIXED_COLL | {"rp1"}
    t0 = time.monotonic()
    sdk(emulator).restore_points.begin_create("rg-prod", "coll1", "by-sdk",
                                              {}).result()
    seen = ls(coll)
    if time.monotonic() - t0 < 2.5:
        assert "by-sdk" not in seen  # still the cached listing
    wait_for(lambda: "by-sdk" in ls(coll), timeout=8,
             what="by-sdk to appear")
    assert cat(coll / "by-sdk" / "status") == "Succeeded\n"


def test_status_shows_creating_then_succeeded(rpfs, emulator):
    emulator.config(lro_seconds=3)
    m = rpfs("-o", "cache_timeout=1")
    sdk(emulator).restore_points.begin_create("rg-prod", "coll1", "slow", {})
    status = m.path / "rg-prod" / "coll1" / "slow" / "status"
    wait_for(lambda: os.path.exists(status), timeout=5, what="slow/")
    assert cat(status) == "Creating\n"
    wait_for(lambda: cat(status) == "Succeeded\n", timeout=10,
             what="Succeeded")
    # A script polls exactly like this:
    res = sh("sh", "-c", 'until [ "$(cat %s)" = Succeeded ]; do sleep 1; '
             'done; echo done' % status)
    assert res.stdout == "done\n"


# ---------------------------------------------------------------- errors


def test_absent_names_are_enoent(rpfs, emulator):
    m = rpfs()
    for p in ["nope", "rg-prod/nope", "rg-prod/coll1/nope",
              "rg-prod/coll1/rp1/nope.vhd", "rg-prod/coll1/rp1/notes.txt",
              "rg-prod/coll1/@rp1", "rg-prod/coll1/tags/x"]:
        e = errno_of(os.stat, m.path / p)
        assert e in (errno.ENOENT, errno.ENOTDIR), (p, e)
        assert e == errno.ENOENT or p.endswith("tags/x"), p
    res = sh("ls", m.path / "rg-prod" / "gone", check=False)
    assert res.returncode != 0 and "No such file" in res.stderr


def test_forbidden_collection_is_eacces_and_logged(rpfs, emulator):
    m = rpfs()
    emulator.faults([{"target": "arm", "method": "GET",
                      "path_contains": "restorePointCollections/coll1?",
                      "action": "status", "status": 403,
                      "code": "AuthorizationFailed",
                      "message": "no read on coll1", "count": -1}])
    assert errno_of(os.listdir, m.path / "rg-prod" / "coll1") == \
        errno.EACCES
    res = sh("ls", m.path / "rg-prod" / "coll1", check=False)
    assert res.returncode != 0 and "Permission denied" in res.stderr
    assert "AuthorizationFailed" in m.log_text()
    # The rest of the tree is still there.
    assert "rp-a" in ls(m.path / "rg-prod" / "coll-many")


def test_throttled_listing_is_retried_transparently(rpfs, emulator):
    m = rpfs()
    emulator.reset_stats()
    emulator.faults([{"target": "arm", "path_contains":
                      "providers/Microsoft.Compute/restorePointCollections",
                      "action": "status", "status": 429,
                      "code": "TooManyRequests", "retry_after": 1,
                      "count": 2}])
    assert ls(m.path / "rg-prod") == {"coll1", "coll-many"}
    assert emulator.stats()["faults_injected"] == 2


def test_malformed_answer_is_eio(rpfs, emulator):
    m = rpfs()
    emulator.faults([{"target": "arm", "path_contains": "coll-many",
                      "action": "malformed", "count": -1}])
    assert errno_of(os.listdir, m.path / "rg-prod" / "coll-many") == \
        errno.EIO
    assert "coll1" in ls(m.path / "rg-prod")


def test_collection_deleted_elsewhere_disappears(rpfs, emulator):
    emulator.config(lro_seconds=0.2)
    client = sdk(emulator)
    vm = client.virtual_machines.get("rg-prod", "vm1")
    client.restore_point_collections.create_or_update(
        "rg-prod", "doomed", {"location": vm.location,
                              "source": {"id": vm.id}})
    m = rpfs("-o", "cache_timeout=1")
    assert "doomed" in ls(m.path / "rg-prod")
    assert cat(m.path / "rg-prod" / "doomed" / "status") == "Succeeded\n"
    client.restore_point_collections.begin_delete("rg-prod",
                                                  "doomed").result()
    time.sleep(1.2)
    assert "doomed" not in ls(m.path / "rg-prod")
    assert errno_of(os.stat, m.path / "rg-prod" / "doomed") == errno.ENOENT
    # A stale handle on it fails the same way.
    assert errno_of(os.listdir, m.path / "rg-prod" / "doomed") == \
        errno.ENOENT


# ---------------------------------------------------------------- mounts


def test_resource_group_mount_shows_only_that_group(rpfs, emulator):
    m = rpfs(resource_group="rg-prod")
    assert ls(m.path) == {"coll1", "coll-many"}
    assert cat(m.path / "coll1" / "rp1" / "status") == "Succeeded\n"
    assert os.getxattr(m.path, "user.azure.id").decode().lower() == \
        ("/subscriptions/%s/resourcegroups/rg-prod"
         % emulator.subscription)
    assert errno_of(os.stat, m.path / "rg-prod") == errno.ENOENT


def test_unmount_with_fusermount_is_clean(rpfs, emulator):
    m = rpfs()
    assert ls(m.path)
    res = sh("fusermount3", "-u", m.path)
    assert res.returncode == 0
    assert m.proc.wait(timeout=10) == 0
    assert not os.path.ismount(m.path)


def _mount_options(path):
    with open("/proc/self/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[1] == str(path):
                return set(fields[3].split(","))
    return set()


def test_mount_is_private_unless_allow_other(rpfs, emulator):
    m = rpfs()
    opts = _mount_options(m.path)
    assert "allow_other" not in opts and "default_permissions" not in opts
    m2 = rpfs("-o", "allow_other")
    opts = _mount_options(m2.path)
    # Shared with other users: the kernel then enforces the modes.
    assert {"allow_other", "default_permissions"} <= opts
    assert ls(m2.path / "rg-prod") == {"coll1", "coll-many"}


def test_read_only_mount_is_read_only_for_the_kernel_too(rpfs, emulator):
    m = rpfs("-o", "ro")
    assert "ro" in _mount_options(m.path)
    assert os.statvfs(m.path).f_flag & os.ST_RDONLY
    assert cat(m.path / "rg-prod" / "coll1" / "status") == "Succeeded\n"
