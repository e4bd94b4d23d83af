"""Helpers of the hardening tests (test_security, test_faults,
test_campaign): what the disks must hold, copying a disk file the way a
user does and hashing it, process memory, and the secrets of a session.

Job: one definition of "exact bytes" -- the sha256 of the blob the
emulator serves (image bytes + 512-byte VHD footer), computed from the
image file without loading a 1 GiB disk into memory -- so every test
compares copies with the same truth.
"""

import contextlib
import hashlib
import os
import re
import ssl
import stat
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request


COLL = "rg-prod/coll1"
RP = COLL + "/rp1"
CHUNK = 1 << 20

_blob_sha_cache = {}


def blob_sha256(emu, disk):
    """sha256 and length of the blob of disk (image + VHD footer)."""
    img = emu.image_path(disk)
    st = os.stat(img)
    key = (str(img), st.st_size, st.st_mtime_ns)
    if key not in _blob_sha_cache:
        h = hashlib.sha256()
        with open(img, "rb") as f:
            while True:
                b = f.read(4 * CHUNK)
                if not b:
                    break
                h.update(b)
        footer = emu.blob_bytes(disk, start=st.st_size, length=512)
        assert len(footer) == 512 and footer[:8] == b"conectix"
        h.update(footer)
        _blob_sha_cache[key] = (h.hexdigest(), st.st_size + 512)
    return _blob_sha_cache[key]


def copy_hash(path, bs=CHUNK):
    """Read path to the end with reads of bs bytes, as dd/cp do.

    Returns (sha256 hex, bytes read); an OSError of any read propagates.
    """
    h = hashlib.sha256()
    n = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            b = os.read(fd, bs)
            if not b:
                break
            h.update(b)
            n += len(b)
    finally:
        os.close(fd)
    return h.hexdigest(), n


def dd(path, timeout, bs="1M"):
    """dd if=path of=/dev/null; returns (returncode, stderr, seconds)."""
    t0 = time.monotonic()
    res = subprocess.run(["dd", "if=%s" % path, "of=/dev/null", "bs=" + bs],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, timeout=timeout)
    return res.returncode, res.stderr, time.monotonic() - t0


def rss_kb(pid):
    """VmRSS of pid in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for pid %d" % pid)


@contextlib.contextmanager
def world_searchable(path):
    """Give every directory from path up to / the search bit for others
    (pytest's temporary directories are 0700), restoring it afterwards,
    so that a test about another uid tests FUSE, not the path to it."""
    changed = []
    p = os.path.abspath(str(path))
    try:
        while True:
            mode = stat.S_IMODE(os.stat(p).st_mode)
            if not mode & stat.S_IXOTH:
                os.chmod(p, mode | stat.S_IXOTH)
                changed.append((p, mode))
            if p == "/":
                break
            p = os.path.dirname(p)
        yield
    finally:
        for p, mode in changed:
            os.chmod(p, mode)


# ------------------------------------------------------------ secrets

SIG_RE = re.compile(r"[?&]sig=([^&\s\"']+)")
TOKENISH_RE = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")


def sas_signatures(emu):
    """Every SAS signature the emulator saw in a blob request (from its
    request log), URL-encoded and decoded."""
    sigs = set()
    with open(os.path.join(emu.state_dir, "emulator.log"),
              errors="replace") as f:
        for line in f:
            if "/blob/" not in line:
                continue
            for s in SIG_RE.findall(line):
                sigs.add(s)
                sigs.add(urllib.parse.unquote(s))
    return sigs


def live_tokens(emu, texts, limit=300):
    """Strings in texts shaped like the emulator's tokens that Resource
    Manager accepts: each one is a bearer token that leaked."""
    ctx = ssl.create_default_context(cafile=emu.ca)
    seen = set()
    live = []
    for t in texts:
        for cand in TOKENISH_RE.findall(t):
            if cand in seen or len(seen) >= limit:
                continue
            seen.add(cand)
            req = urllib.request.Request(
                "%s/subscriptions/%s/resourcegroups?api-version=2021-04-01"
                % (emu.url, emu.subscription),
                headers={"Authorization": "Bearer " + cand})
            try:
                with urllib.request.urlopen(req, context=ctx, timeout=10):
                    live.append(cand)
            except urllib.error.HTTPError:
                pass
    return live
