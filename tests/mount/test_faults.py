"""Failures outside rpfs: the emulator (Azure) disappears under a reader,
rpfs itself is killed, Resource Manager answers nonsense.

The promise under test (SPEC 4, docs/reliability.md): a read returns the
exact bytes or an error -- and the error comes within a bounded time, the
mount stays usable, and the service coming back is enough for reads to
work again.
"""

import errno
import os
import signal
import subprocess
import sys
import time

import pytest

from .hardening_util import RP, blob_sha256, copy_hash
from .util import wait_for, write_token

# The retry budget of one request (net/http.h: max_retry_total_ms 60 s)
# plus one stalled attempt and the re-grant that follows a failure; a
# read must fail well before this.
FAIL_BOUND_S = 90


def emulator_class():
    from harness import Emulator
    return Emulator


def restart_emulator(emu, images_dir):
    """Start a new emulator on emu's port and state directory (same CA and
    certificate, fresh state: new tokens, new SAS key).  The caller stops
    it."""
    Emulator = emulator_class()
    deadline = time.monotonic() + 30
    while True:
        try:
            return Emulator.start(emu.state_dir, images=images_dir,
                                  port=emu.port)
        except Exception:
            # The port may linger for a moment after a SIGKILL.
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def start_dd(path, bs="1M"):
    return subprocess.Popen(["dd", "if=%s" % path, "of=/dev/null",
                             "bs=" + bs], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


# sigkill: connections refused; sigstop: a hung service, connections
# accepted and never answered.  Either way one request budget, not more:
# the reader that waited for a failed fetch gets its error, and the
# kernel's synchronous re-read of what its read-ahead asked for fails at
# once (fs/readahead.h: the handle remembers a give-up for 5 s).
@pytest.mark.parametrize("how", ["sigkill", "sigstop"])
def test_dd_fails_with_eio_in_bounded_time_when_azure_vanishes_and_works_after(
        rpfs, emulator, images_dir, how):
    # No page map: all 64 MiB come over the network (holes too), and
    # slow bodies, so the copy is surely still running when the service
    # dies (8 ranges in flight at 512 KiB/s each: about 16 s).
    m = rpfs("-o", "log_level=info", "-o", "pagelist=0")
    disk = m.path / RP / "vm1-os.vhd"
    emulator.faults({"target": "blob", "method": "GET", "action": "slow",
                     "bytes_per_second": 512 << 10, "count": -1})
    proc = start_dd(disk)
    wait_for(lambda: emulator.stats()["bytes"].get("blob_get", 0) > 4 << 20,
             30, "the copy to be under way")
    t0 = time.monotonic()
    if how == "sigkill":
        emulator.proc.kill()
    else:
        # A hung service: connections open, nothing answered.
        emulator.proc.send_signal(signal.SIGSTOP)
    try:
        _, err = proc.communicate(timeout=FAIL_BOUND_S + 30)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        err = "(still blocked, killed) " + err
    took = time.monotonic() - t0
    sys.stderr.write("dd ended %.1fs after the emulator %s: %s\n"
                     % (took, "died" if how == "sigkill" else "hung",
                        err.strip().splitlines()[0] if err.strip() else ""))
    alive = m.proc.poll() is None and os.path.ismount(m.path)
    emulator.proc.kill()
    emulator.proc.wait()

    # Whatever happened, the service comes back (so that rpfs can also end
    # its grants at unmount), and the mount must work again.
    emu2 = restart_emulator(emulator, images_dir)
    try:
        # New service, new tokens: the refresher writes the new one.
        write_token(m.token_file, emu2.token)
        sha, n = copy_hash(disk)
        assert (sha, n) == blob_sha256(emu2, "vm1-os")
        assert (m.path / RP / "status").read_text() == "Succeeded\n"
        assert m.unmount() == 0
    finally:
        m.unmount()
        emu2.stop()

    assert took < FAIL_BOUND_S, "dd took %.0fs to end: %s" % (took, err)
    assert proc.returncode != 0, "dd succeeded without Azure"
    assert "Input/output error" in err, err
    # The mount stayed alive: the kernel had not given up on it.
    assert alive


def test_listing_fails_in_bounded_time_while_azure_is_down(rpfs, emulator,
                                                          images_dir):
    m = rpfs("-o", "cache_timeout=0")
    assert "coll1" in os.listdir(m.path / "rg-prod")
    emulator.proc.kill()
    emulator.proc.wait()
    t0 = time.monotonic()
    with pytest.raises(OSError) as ei:
        (m.path / RP / "status").read_text()
    took = time.monotonic() - t0
    assert ei.value.errno in (errno.EIO, errno.EAGAIN, errno.EHOSTUNREACH,
                              errno.ETIMEDOUT, errno.ECONNREFUSED)
    assert took < FAIL_BOUND_S
    emu2 = restart_emulator(emulator, images_dir)
    try:
        write_token(m.token_file, emu2.token)
        assert (m.path / RP / "status").read_text() == "Succeeded\n"
        assert m.unmount() == 0
    finally:
        m.unmount()
        emu2.stop()


def test_fusermount_recovers_the_mountpoint_after_rpfs_is_killed(rpfs,
                                                                 emulator):
    m = rpfs()
    disk = m.path / RP / "vm1-os.vhd"
    f = open(disk, "rb")
    assert len(f.read(1 << 20)) == 1 << 20
    m.proc.kill()
    m.proc.wait()
    m.check_exit = False  # killed on purpose
    # The kernel answers ENOTCONN, it does not hang.
    with pytest.raises(OSError) as ei:
        os.listdir(m.path)
    assert ei.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as ei:
        f.read(4096)
    assert ei.value.errno in (errno.ENOTCONN, errno.EIO)
    try:
        f.close()  # the flush reaches no daemon: ENOTCONN
    except OSError as e:
        assert e.errno == errno.ENOTCONN
    res = subprocess.run(["fusermount3", "-u", str(m.path)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stdout
    assert not os.path.ismount(m.path)
    assert os.listdir(m.path) == []
    # The same mountpoint takes a new mount at once.
    log = open(str(m.log_path) + ".again", "wb")
    proc = subprocess.Popen(m.cmd, stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: os.path.ismount(m.path), 10,
                 "a new mount on the recovered mountpoint")
        assert (m.path / RP / "status").read_text() == "Succeeded\n"
    finally:
        subprocess.run(["fusermount3", "-u", str(m.path)], timeout=30)
        rc = proc.wait(timeout=15)
    assert rc == 0


def test_unmount_while_azure_is_down_exits_within_seconds(rpfs, emulator):
    # Two disks granted and kept (long linger), then Azure goes away: the
    # unmount tries EndGetAccess with a short budget, leaves the other
    # grant to expire, and rpfs exits -- not a minute of retries per disk.
    m = rpfs("-o", "linger_ms=600000", "-o", "log_level=info")
    for name in ("vm1-os", "vm1-data"):
        with open(m.path / RP / (name + ".vhd"), "rb") as f:
            assert len(f.read(4096)) == 4096
    assert emulator.stats()["active_grants"] == 2
    emulator.proc.kill()
    emulator.proc.wait()
    res = subprocess.run(["fusermount3", "-u", str(m.path)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=30)
    assert res.returncode == 0, res.stdout
    t0 = time.monotonic()
    rc = m.proc.wait(timeout=60)
    took = time.monotonic() - t0
    sys.stderr.write("rpfs exited %.1fs after the unmount\n" % took)
    assert rc == 0
    assert took < 20, took
    log = m.log_text()
    assert "EndGetAccess failed" in log
    assert "Azure unreachable at unmount" in log


# The ARM reads a user can trigger, each given a truncated JSON answer.
ARM_READS = [
    ("groups", "resourcegroups", lambda p: os.listdir(p)),
    ("collections", "restorePointCollections?",
     lambda p: os.listdir(p / "rg-prod")),
    ("collection", "restorePointCollections/coll1?",
     lambda p: (p / "rg-prod/coll1/collection.json").read_text()),
    ("restore point", "restorePoints/rp1?",
     lambda p: (p / RP / "status").read_text()),
    ("progress", "restorePoints/rp1?",
     lambda p: (p / RP / "progress").read_text()),
    ("grant", "beginGetAccess",
     lambda p: open(p / RP / "vm1-data.vhd", "rb").close()),
    ("grant status", "/operations/",
     lambda p: open(p / RP / "vm1-data.vhd", "rb").close()),
]


@pytest.mark.parametrize("name,path,op", ARM_READS,
                         ids=[r[0] for r in ARM_READS])
def test_malformed_json_on_every_arm_read_is_eio_and_mount_lives(
        rpfs, emulator, name, path, op):
    m = rpfs("-o", "cache_timeout=0")
    emulator.reset_stats()
    emulator.faults({"target": "any", "path_contains": path,
                     "action": "malformed", "count": -1})
    with pytest.raises(OSError) as ei:
        op(m.path)
    assert ei.value.errno == errno.EIO, ei.value
    assert emulator.stats()["faults_injected"] >= 1
    log = m.log_text()
    assert "malformed" in log.lower() or "invalid" in log.lower(), log
    emulator.clear_faults()
    # Alive, and the same read now works.
    op(m.path)
    assert (m.path / RP / "status").read_text() == "Succeeded\n"
