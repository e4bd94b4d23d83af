"""Creating and deleting through the mount (SPEC section 3): mkdir makes
collections and restore points, writes to source/location/tags/
exclude_disks change them, rmdir deletes with -o allow_delete, and every
refusal comes with the errno a user would guess and a log line.

Every result is cross-checked in the emulator's state and, where it reads
naturally, through Microsoft's Python SDK.
"""

import errno
import os

import pytest

from .util import (arm_requests, cat, errno_of, ls, sdk, sh, shell,
                   state_coll, wait_for, write)

FIXED_COLL = {"collection.json", "source", "location", "status", "tags",
              "exclude_disks"}
VM1_DISKS = {"vm1-os.vhd", "vm1-data.vhd", "vm1-sparse.vhd"}


# ---------------------------------------------------------------- helpers


def state_rp(emu, rg, coll, name):
    c = state_coll(emu, rg, coll)
    for rp in (c or {}).get("restorePoints", []):
        if rp["name"].lower() == name.lower():
            return rp
    return None


def writes(emu):
    """Requests that change something in Azure."""
    req = emu.stats()["requests"]
    return {k: v for k, v in req.items()
            if v and k in ("collection_put", "collection_patch",
                           "collection_delete", "rp_put", "rp_delete")}


def warm(m):
    """Let the cache learn the tree, as a user's first `ls -R` does."""
    sh("ls", "-R", m.path / "rg-prod")


@pytest.fixture
def fast(emulator):
    """Short long-running operations and replication."""
    emulator.config(lro_seconds=0.5, replication_seconds=4, retry_after=0)
    return emulator


# ---------------------------------------------------------------- flows


def test_same_region_collection_and_restore_point(rpfs, fast):
    m = rpfs()
    rg = m.path / "rg-prod"
    sh("mkdir", rg / "nightly")
    assert "nightly" in ls(rg)
    assert cat(rg / "nightly" / "status") == "Pending\n"
    assert ls(rg / "nightly") == FIXED_COLL - {"collection.json"}
    assert state_coll(fast, "rg-prod", "nightly") is None  # local only

    res = shell("echo vm1 > %s/nightly/source" % rg)
    assert res.returncode == 0, res.stderr
    assert cat(rg / "nightly" / "status") == "Succeeded\n"
    assert cat(rg / "nightly" / "location") == "westeurope\n"
    c = state_coll(fast, "rg-prod", "nightly")
    assert c["properties"]["source"]["id"].lower().endswith(
        "/virtualmachines/vm1")
    assert "collection.json" in ls(rg / "nightly")

    sh("mkdir", rg / "nightly" / "rp-1")
    assert cat(rg / "nightly" / "rp-1" / "status") in ("Creating\n",
                                                       "Succeeded\n")
    wait_for(lambda: cat(rg / "nightly" / "rp-1" / "status") ==
             "Succeeded\n", what="rp-1 to succeed")
    assert VM1_DISKS <= ls(rg / "nightly" / "rp-1")
    rp = sdk(fast).restore_points.get("rg-prod", "nightly", "rp-1")
    assert rp.provisioning_state == "Succeeded"
    assert "rp-1" in ls(rg / "nightly")


def test_cross_region_collection_reports_progress_to_100(rpfs, fast):
    m = rpfs()
    dr = m.path / "rg-dr"
    vm1 = sdk(fast).virtual_machines.get("rg-prod", "vm1").id
    sh("mkdir", dr / "to-east")
    write(dr / "to-east" / "location", "eastus\n")
    assert cat(dr / "to-east" / "location") == "eastus\n"
    write(dr / "to-east" / "source", vm1 + "\n")
    c = state_coll(fast, "rg-dr", "to-east")
    assert c["location"] == "eastus"
    assert c["properties"]["source"]["location"] == "westeurope"

    sh("mkdir", dr / "to-east" / "rp1")
    prog = dr / "to-east" / "rp1" / "progress"
    disk = dr / "to-east" / "rp1" / "vm1-data.vhd"
    wait_for(lambda: os.path.exists(disk), what="disk file")
    first = cat(prog).splitlines()
    assert len(first) == 3
    pcts = [int(line.split()[2]) for line in first]
    if max(pcts) < 100:
        # Not readable yet: EAGAIN, and the log says why.
        assert errno_of(os.open, disk, os.O_RDONLY) == errno.EAGAIN
        log = m.log_text()
        assert "vm1-data.vhd refused" in log
        assert "still Creating" in log or "%" in log
    wait_for(lambda: all(line.endswith(" 100")
                         for line in cat(prog).splitlines()),
             what="progress 100")
    fd = os.open(disk, os.O_RDONLY)
    os.close(fd)


def test_copy_between_regions(rpfs, fast):
    m = rpfs()
    client = sdk(fast)
    src = client.restore_point_collections.get("rg-prod", "coll1")
    dr = m.path / "rg-dr"
    sh("mkdir", dr / "copy1")
    write(dr / "copy1" / "location", "eastus")  # no newline: applied on close
    write(dr / "copy1" / "source", src.id + "\n")
    assert cat(dr / "copy1" / "source").strip().lower() == src.id.lower()

    sh("mkdir", dr / "copy1" / "rp1")
    rp = state_rp(fast, "rg-dr", "copy1", "rp1")
    src_rp = state_rp(fast, "rg-prod", "coll1", "rp1")
    assert rp["properties"]["sourceRestorePoint"]["id"].lower() == \
        src_rp["id"].lower()
    wait_for(lambda: all(line.endswith(" 100") for line in
                         cat(dr / "copy1" / "rp1" / "progress")
                         .splitlines()), what="copy to finish")
    # The source collection has no restore point of that name: ENOENT.
    assert errno_of(os.mkdir, dr / "copy1" / "rp-nope") == errno.ENOENT
    assert "rp-nope" in m.log_text()


def test_exclude_disks_applies_and_survives_a_remount(rpfs, fast):
    m = rpfs()
    coll = m.path / "rg-prod" / "coll1"
    res = shell("printf 'vm1-sparse\\nvm1-data\\n' > %s/exclude_disks"
                % coll)
    assert res.returncode == 0, res.stderr
    assert cat(coll / "exclude_disks") == "vm1-sparse\nvm1-data\n"
    # Stored as a collection tag, hidden from the tags file.
    c = state_coll(fast, "rg-prod", "coll1")
    assert c["tags"]["rpfs-exclude-disks"] == "vm1-sparse,vm1-data"
    assert c["tags"]["env"] == "prod"
    assert cat(coll / "tags") == "env=prod\n"

    sh("mkdir", coll / "lean")
    rp = state_rp(fast, "rg-prod", "coll1", "lean")
    excluded = {d["id"].lower().rsplit("/", 1)[1]
                for d in rp["properties"]["excludeDisks"]}
    assert excluded == {"vm1-sparse", "vm1-data"}
    wait_for(lambda: cat(coll / "lean" / "status") == "Succeeded\n",
             what="lean")
    assert ls(coll / "lean") == {"restorepoint.json", "status", "progress",
                                 "vm1-os.vhd"}

    m.unmount()
    m2 = rpfs()
    coll2 = m2.path / "rg-prod" / "coll1"
    assert cat(coll2 / "exclude_disks") == "vm1-sparse\nvm1-data\n"
    # Rewriting tags keeps the list; clearing the list keeps the tags.
    write(coll2 / "tags", "env=test\n")
    assert state_coll(fast, "rg-prod", "coll1")["tags"] == {
        "env": "test", "rpfs-exclude-disks": "vm1-sparse,vm1-data"}
    # A bare truncation is applied at release, an instant after close
    # returns (docs/tree.md); an empty line is applied by close.
    write(coll2 / "exclude_disks", "")
    wait_for(lambda: state_coll(fast, "rg-prod", "coll1")["tags"] ==
             {"env": "test"}, what="the exclude tag to go")
    write(coll2 / "exclude_disks", "vm1-data\n")
    write(coll2 / "exclude_disks", "\n")
    assert state_coll(fast, "rg-prod", "coll1")["tags"] == {"env": "test"}
    assert cat(coll2 / "exclude_disks") == ""


def test_exclude_disks_refuses_bad_and_unknown_disks(rpfs, fast):
    m = rpfs()
    coll = m.path / "rg-prod" / "coll1"
    res = shell("echo 'no such,disk' > %s/exclude_disks" % coll)
    assert res.returncode != 0 and "Invalid argument" in res.stderr
    assert "rpfs-exclude-disks" not in state_coll(fast, "rg-prod",
                                                  "coll1")["tags"]
    write(coll / "exclude_disks", "vm9-ghost\n")
    fast.reset_stats()
    assert errno_of(os.mkdir, coll / "rp-x") == errno.EINVAL
    assert "vm9-ghost" in m.log_text()
    assert "rp_put" not in writes(fast)
    assert state_rp(fast, "rg-prod", "coll1", "rp-x") is None


def test_pending_collection_keeps_tags_and_exclude_until_created(rpfs,
                                                                 fast):
    m = rpfs()
    new = m.path / "rg-prod" / "tagged"
    sh("mkdir", new)
    write(new / "tags", "owner=me\n")
    write(new / "exclude_disks", "vm1-sparse\n")
    assert cat(new / "tags") == "owner=me\n"
    write(new / "source", "vm1\n")
    assert state_coll(fast, "rg-prod", "tagged")["tags"] == {
        "owner": "me", "rpfs-exclude-disks": "vm1-sparse"}
    assert cat(new / "exclude_disks") == "vm1-sparse\n"


def test_tags_round_trip_and_malformed_line_changes_nothing(rpfs, fast):
    m = rpfs()
    coll = m.path / "rg-prod" / "coll1"
    res = shell("printf 'env=staging\\nowner=ops team\\n' > %s/tags" % coll)
    assert res.returncode == 0, res.stderr
    assert cat(coll / "tags") == "env=staging\nowner=ops team\n"
    got = sdk(fast).restore_point_collections.get("rg-prod", "coll1").tags
    assert got == {"env": "staging", "owner": "ops team"}

    fast.reset_stats()
    res = shell("printf 'env=x\\nthis line is wrong\\n' > %s/tags" % coll)
    assert res.returncode != 0
    assert "Invalid argument" in res.stderr
    assert "line 2" in m.log_text()
    assert errno_of(write, coll / "tags", "rpfs-exclude-disks=a\n") == \
        errno.EINVAL
    assert "collection_patch" not in writes(fast)
    assert cat(coll / "tags") == "env=staging\nowner=ops team\n"

    # Appending a line keeps the others.
    shell("echo team=blue >> %s/tags" % coll)
    assert state_coll(fast, "rg-prod", "coll1")["tags"] == {
        "env": "staging", "owner": "ops team", "team": "blue"}
    # An empty file removes them all: a bare truncation is applied at
    # release, an instant after the shell's close returns (docs/tree.md).
    assert shell(": > %s/tags" % coll).returncode == 0
    wait_for(lambda: state_coll(fast, "rg-prod", "coll1")["tags"] == {},
             what="the tags to go")
    assert cat(coll / "tags") == ""


# ---------------------------------------------------------------- delete


def test_delete_is_refused_without_allow_delete(rpfs, fast):
    m = rpfs()
    coll = m.path / "rg-prod" / "coll1"
    warm(m)
    fast.reset_stats()
    assert errno_of(os.rmdir, coll / "rp1") == errno.EPERM
    assert errno_of(os.rmdir, coll) == errno.EPERM
    res = sh("rmdir", coll / "rp1", check=False)
    assert res.returncode != 0 and "not permitted" in res.stderr
    assert "allow_delete" in m.log_text()
    assert arm_requests(fast) == {}
    assert state_rp(fast, "rg-prod", "coll1", "rp1") is not None
    # A pending collection is only forgotten: no Azure resource involved.
    sh("mkdir", m.path / "rg-prod" / "scratch")
    sh("rmdir", m.path / "rg-prod" / "scratch")
    assert "scratch" not in ls(m.path / "rg-prod")


def test_delete_with_allow_delete(rpfs, fast):
    client = sdk(fast)
    vm = client.virtual_machines.get("rg-prod", "vm1")
    client.restore_point_collections.create_or_update(
        "rg-prod", "old", {"location": vm.location, "source": {"id": vm.id}})
    client.restore_points.begin_create("rg-prod", "old", "rp-old",
                                       {}).result()
    m = rpfs("-o", "allow_delete")
    old = m.path / "rg-prod" / "old"
    assert errno_of(os.rmdir, old) == errno.ENOTEMPTY
    sh("rmdir", old / "rp-old")
    assert state_rp(fast, "rg-prod", "old", "rp-old") is None
    assert "rp-old" not in ls(old)
    sh("rmdir", old)
    assert state_coll(fast, "rg-prod", "old") is None
    assert "old" not in ls(m.path / "rg-prod")


def test_delete_of_restore_point_with_open_disk_is_ebusy(rpfs, fast):
    m = rpfs("-o", "allow_delete")
    rp = m.path / "rg-prod" / "coll1" / "rp1"
    fd = os.open(rp / "vm1-data.vhd", os.O_RDONLY)
    try:
        assert errno_of(os.rmdir, rp) == errno.EBUSY
    finally:
        os.close(fd)
    sh("rmdir", rp)
    assert state_rp(fast, "rg-prod", "coll1", "rp1") is None


# ---------------------------------------------------------------- refusals


def test_read_only_mount_refuses_every_change(rpfs, fast):
    m = rpfs("-o", "ro,allow_delete")
    rg = m.path / "rg-prod"
    warm(m)
    fast.reset_stats()
    assert errno_of(os.mkdir, rg / "newc") == errno.EROFS
    assert errno_of(os.mkdir, rg / "coll1" / "rp9") == errno.EROFS
    assert errno_of(os.rmdir, rg / "coll1" / "rp1") == errno.EROFS
    assert errno_of(write, rg / "coll1" / "tags", "a=b\n") == errno.EROFS
    assert errno_of(os.setxattr, rg / "coll1", "user.x", b"1") == \
        errno.EROFS
    res = shell("echo a=b > %s/coll1/tags" % rg)
    assert res.returncode != 0 and "Read-only" in res.stderr
    assert arm_requests(fast) == {}
    assert cat(rg / "coll1" / "tags") == "env=prod\n"


def test_names_azure_would_reject_fail_before_any_request(rpfs, fast):
    m = rpfs()
    rg = m.path / "rg-prod"
    warm(m)
    fast.reset_stats()
    for bad in ["has space", "ends.", "x" * 81, "semi;colon", ".hidden",
                "caf\u00e9"]:
        assert errno_of(os.mkdir, rg / bad) == errno.EINVAL, bad
        assert errno_of(os.mkdir, rg / "coll1" / bad) == errno.EINVAL, bad
    assert errno_of(os.mkdir, rg / "coll1" / "@rp") == errno.EINVAL
    assert arm_requests(fast) == {}
    # Writing nonsense to a pending collection's files is refused too.
    sh("mkdir", rg / "pend")
    assert errno_of(write, rg / "pend" / "source", "not a vm!\n") == \
        errno.EINVAL
    assert errno_of(write, rg / "pend" / "location", "West Europe\n") == \
        errno.EINVAL
    # Only mkdir's check that Azure has no such collection yet.
    assert arm_requests(fast) == {"collection_get": 1}
    assert cat(rg / "pend" / "status") == "Pending\n"


def test_fixed_files_and_groups_refuse_changes(rpfs, fast):
    m = rpfs()
    coll = m.path / "rg-prod" / "coll1"
    for f in ["collection.json", "status", "source", "location",
              "rp1/status", "rp1/progress", "rp1/restorepoint.json",
              "rp1/vm1-os.vhd"]:
        assert errno_of(write, coll / f, "x\n") == errno.EACCES, f
    assert errno_of(os.mkdir, m.path / "rg-new") == errno.EPERM
    assert errno_of(os.rmdir, m.path / "rg-dr") == errno.EPERM
    assert errno_of(os.unlink, coll / "tags") == errno.EPERM
    assert errno_of(os.rename, coll / "tags", coll / "tags2") == errno.EPERM
    assert errno_of(os.open, coll / "newfile",
                    os.O_WRONLY | os.O_CREAT) == errno.EPERM
    assert errno_of(os.mkdir, coll / "rp1" / "sub") == errno.EPERM
    assert errno_of(os.mkdir, coll) == errno.EEXIST
    assert errno_of(os.mkdir, coll / "rp1") == errno.EEXIST
    assert errno_of(os.mkdir, coll / "status") == errno.EEXIST
    res = shell("echo x > %s/status" % coll)
    assert res.returncode != 0 and "Permission denied" in res.stderr
    # A pending collection can not hold restore points yet.
    sh("mkdir", m.path / "rg-prod" / "pend")
    assert errno_of(os.mkdir, m.path / "rg-prod" / "pend" / "rp") == \
        errno.EPERM


def test_restore_point_named_like_a_fixed_file_is_made_with_at(rpfs, fast):
    m = rpfs()
    coll = m.path / "rg-prod" / "coll1"
    sh("mkdir", coll / "@status")
    assert state_rp(fast, "rg-prod", "coll1", "status") is not None
    assert "@status" in ls(coll)
    wait_for(lambda: cat(coll / "@status" / "status") == "Succeeded\n",
             what="@status")
    assert cat(coll / "status") == "Succeeded\n"  # the collection's
    # A collection may be called "tags": no clash at group level.
    sh("mkdir", m.path / "rg-prod" / "tags")
    write(m.path / "rg-prod" / "tags" / "source", "vm1\n")
    assert state_coll(fast, "rg-prod", "tags") is not None


# ---------------------------------------------------------------- Azure says no


@pytest.mark.parametrize("status,code,want", [
    (400, "BadRequest", errno.EINVAL),
    (403, "AuthorizationFailed", errno.EACCES),
    (404, "ResourceNotFound", errno.ENOENT),
    (409, "OperationNotAllowed", errno.EBUSY),
    (409, "ResourceExists", errno.EEXIST),
])
def test_azure_refusal_of_a_restore_point_maps_to_errno(rpfs, fast, status,
                                                        code, want):
    m = rpfs()
    fast.faults([{"target": "arm", "method": "PUT",
                  "path_contains": "restorePoints/refused",
                  "action": "status", "status": status, "code": code,
                  "message": "the emulator says no", "count": -1}])
    coll = m.path / "rg-prod" / "coll1"
    assert errno_of(os.mkdir, coll / "refused") == want
    log = m.log_text()
    assert code in log and "the emulator says no" in log
    assert "refused" not in ls(coll)


def test_azure_refusal_of_a_collection_reaches_the_writer(rpfs, fast):
    m = rpfs()
    rg = m.path / "rg-prod"
    sh("mkdir", rg / "c403")
    fast.faults([{"target": "arm", "method": "PUT",
                  "path_contains": "restorePointCollections/c403",
                  "action": "status", "status": 403,
                  "code": "AuthorizationFailed", "count": -1}])
    res = shell("echo vm1 > %s/c403/source" % rg)
    assert res.returncode != 0 and "Permission denied" in res.stderr
    assert cat(rg / "c403" / "status") == "Pending\n"  # still pending
    # A VM that does not exist: 404 from Azure, ENOENT for the writer.
    sh("mkdir", rg / "c404")
    assert errno_of(write, rg / "c404" / "source", "vm-nowhere\n") == \
        errno.ENOENT
    assert "vm-nowhere" in m.log_text()
    # A collection created elsewhere meanwhile: EEXIST, nothing changed.
    sh("mkdir", rg / "race")
    client = sdk(fast)
    vm = client.virtual_machines.get("rg-prod", "vm1")
    client.restore_point_collections.create_or_update(
        "rg-prod", "race", {"location": vm.location,
                            "source": {"id": vm.id}, "tags": {"k": "v"}})
    assert errno_of(write, rg / "race" / "source", "vm1\n") == errno.EEXIST
    assert state_coll(fast, "rg-prod", "race")["tags"] == {"k": "v"}


def test_throttled_create_is_retried_transparently(rpfs, fast):
    m = rpfs()
    fast.faults([{"target": "arm", "method": "PUT",
                  "path_contains": "restorePoints/busy",
                  "action": "status", "status": 429,
                  "code": "TooManyRequests", "retry_after": 1, "count": 2}])
    sh("mkdir", m.path / "rg-prod" / "coll1" / "busy")
    assert state_rp(fast, "rg-prod", "coll1", "busy") is not None
    assert fast.stats()["faults_injected"] == 2


def test_restore_point_that_fails_in_azure_reads_failed(rpfs, fast):
    m = rpfs()
    other = m.path / "rg-other"
    sh("mkdir", other / "flaky")
    write(other / "flaky" / "source", "vmfail\n")
    # Azure accepts the PUT; the failure comes later, as a status.
    sh("mkdir", other / "flaky" / "rp1")
    status = other / "flaky" / "rp1" / "status"
    wait_for(lambda: cat(status) == "Failed\n", what="Failed")
    assert sdk(fast).restore_points.get(
        "rg-other", "flaky", "rp1").provisioning_state == "Failed"
    # Its disks will never be readable: EIO, not "try again".
    for f in ls(other / "flaky" / "rp1"):
        if f.endswith(".vhd"):
            assert errno_of(os.open, other / "flaky" / "rp1" / f,
                            os.O_RDONLY) == errno.EIO
            assert "failed" in m.log_text()
