#!/usr/bin/python3
"""tests/campaign/valgrind_session.py -- a short mount session under
valgrind memcheck (run by hand; docs/reliability.md records the result).

Starts the emulator, mounts RPFS_BIN (default build-hard/rpfs, a
RelWithDebInfo build) under `valgrind --leak-check=full`, runs a user's
session -- ls -lR, cat of every small file, getfattr, whole-disk dd of
the three disks, cmp, reads through injected 503s, resets, a 403, a
malformed answer and a 401, a collection and a restore point created,
tags written -- unmounts, and prints valgrind's summary.  Exit status 1
when valgrind reports an error or a definite/indirect leak, or rpfs does
not exit cleanly.

    /usr/bin/python3 tests/campaign/valgrind_session.py
"""
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "emulator"))
from harness import Emulator  # noqa: E402

RPFS = os.environ.get("RPFS_BIN", os.path.join(ROOT, "build-hard", "rpfs"))
IMAGES = os.environ.get("RPFS_IMAGE_CACHE",
                        os.path.join(ROOT, "build", "images"))


def sh(cmd):
    r = subprocess.run(cmd, shell=True, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, text=True, timeout=900)
    print("$", cmd[:90], "->", r.returncode, r.stderr[-200:].strip())
    return r.returncode


def session(emu, mnt):
    rp = mnt + "/rg-prod/coll1/rp1/"
    for _ in range(3):
        sh("ls -lR %s >/dev/null" % mnt)
    sh("find %s -type f ! -name '*.vhd' -exec cat {} + >/dev/null" % mnt)
    sh("getfattr -R -d -m - %s >/dev/null" % mnt)
    sh("dd if=%svm1-os.vhd of=/dev/null bs=1M" % rp)
    sh("dd if=%svm1-sparse.vhd of=/dev/null bs=4M" % rp)
    sh("cmp %svm1-data.vhd %svm1-data.vhd" % (rp, rp))
    emu.faults([
        {"target": "blob", "method": "GET", "action": "status",
         "status": 503, "count": 2},
        {"target": "blob", "method": "GET", "action": "reset",
         "after_bytes": 1000, "count": 2},
        {"target": "blob", "method": "GET", "action": "status",
         "status": 403, "count": 1, "skip": 4}])
    sh("dd if=%svm1-data.vhd of=/dev/null bs=1M" % rp)
    emu.faults([
        {"target": "arm", "path_contains": "restorepoints/rp1",
         "action": "malformed", "count": 1},
        {"target": "arm", "path_contains": "restorepoints/rp1",
         "action": "status", "status": 401, "count": 1}])
    sh("cat %sstatus; cat %sstatus; cat %sprogress" % (rp, rp, rp))
    coll = mnt + "/rg-prod/coll-vg"
    sh("mkdir %s && echo vm1 > %s/source && mkdir %s/rp-vg && "
       "cat %s/rp-vg/status" % (coll, coll, coll, coll))
    sh("echo a=b > %s/rg-prod/coll1/tags; cat %s/rg-prod/coll1/tags"
       % (mnt, mnt))
    time.sleep(3)


def main():
    tmp = tempfile.mkdtemp(prefix="rpfs-vg-")
    emu = Emulator.start(tmp + "/emu", images=IMAGES)
    tok = tmp + "/tok"
    fd = os.open(tok, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, (emu.token + "\n").encode())
    os.close(fd)
    mnt = tmp + "/mnt"
    os.mkdir(mnt)
    vglog = tmp + "/valgrind.log"
    cmd = ["valgrind", "--leak-check=full",
           "--show-leak-kinds=definite,indirect,possible",
           "--errors-for-leak-kinds=definite,indirect",
           "--error-exitcode=99", "--num-callers=30",
           "--log-file=" + vglog, RPFS, "-f",
           "--subscription=" + emu.subscription, "--endpoint=" + emu.url,
           "--cafile=" + emu.ca, "--token-file=" + tok,
           "-o", "cache_timeout=1", "-o", "linger_ms=200",
           "-o", "log_level=info", mnt]
    t0 = time.time()
    with open(tmp + "/rpfs.log", "wb") as log:
        p = subprocess.Popen(cmd, stdout=log, stderr=log)
    try:
        while not os.path.ismount(mnt):
            if p.poll() is not None:
                sys.exit("rpfs died: " + open(tmp + "/rpfs.log").read())
            time.sleep(0.2)
        print("mounted after %.1fs" % (time.time() - t0))
        session(emu, mnt)
    finally:
        subprocess.run(["fusermount3", "-u", mnt])
        rc = p.wait(timeout=300)
        emu.stop()
    print("rpfs exit %d, session %.0fs" % (rc, time.time() - t0))
    text = open(vglog).read()
    print(text[text.find("HEAP SUMMARY"):])
    print("valgrind log:", vglog, " rpfs log:", tmp + "/rpfs.log")
    errors = re.search(r"ERROR SUMMARY: (\d+)", text)
    lost = re.findall(r"(definitely|indirectly) lost: ([\d,]+) bytes", text)
    bad = (rc != 0 or not errors or int(errors.group(1)) != 0
           or any(int(n.replace(",", "")) for _, n in lost))
    print("valgrind session:", "FAILED" if bad else "clean")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
