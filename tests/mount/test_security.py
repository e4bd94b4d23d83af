"""Secrets never leak, and only the right users get in.

A whole user session -- ls -lR, cat of every small file, getfattr of every
node, a disk read through its SAS, a SAS revoked and re-granted, a token
refused and re-read -- runs with debug logging for each credential source;
then the rpfs log, the process's command line, every file content, every
extended attribute and every listing are searched for the bearer token,
the client secret, the managed identity header and every SAS signature the
emulator saw.  Any string shaped like a token is also tried against
Resource Manager: a live one found in that text is a leak too.

Access: without allow_other another uid cannot even stat the mount; with
allow_other (and the default_permissions rpfs adds) the kernel enforces
the documented modes: nobody lists and reads, but cannot write tags or
mkdir.  Every node has the mode docs/tree.md documents.
"""

import errno
import os
import re
import stat
import subprocess

import pytest

from .hardening_util import (COLL, RP, live_tokens, sas_signatures,
                             world_searchable)

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def as_nobody(*cmd, input=None):
    return subprocess.run(NOBODY + list(cmd), input=input,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, timeout=60)


def session(m, emu):
    """What a user does; returns every text the mount showed."""
    texts = []
    ls = subprocess.run(["ls", "-lRa", str(m.path)], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True, timeout=120)
    assert ls.returncode == 0, ls.stdout
    texts.append(ls.stdout)
    n_files = 0
    for root, dirs, files in os.walk(m.path):
        for name in files:
            if name.endswith(".vhd"):
                continue
            with open(os.path.join(root, name), "rb") as f:
                texts.append(f.read().decode("utf-8", "replace"))
            n_files += 1
    assert n_files >= 20, "the walk saw only %d files" % n_files
    fa = subprocess.run(["getfattr", "-R", "-d", "-m", "-", "--absolute-names",
                         str(m.path)], stdout=subprocess.PIPE,
                        stderr=subprocess.STDOUT, text=True, timeout=120)
    assert fa.returncode == 0, fa.stdout
    assert "user.azure.id=" in fa.stdout
    texts.append(fa.stdout)
    # Disk files' attributes after they were opened (size and state known).
    disk = m.path / RP / "vm1-data.vhd"
    # The first SAS is refused (403) at its first use: rpfs must get a
    # new one, and log that without showing either.
    emu.faults({"target": "blob", "action": "status", "status": 403,
                "code": "AuthenticationFailed", "count": 1})
    with open(disk, "rb") as f:
        assert len(f.read(1 << 20)) == 1 << 20
        for a in os.listxattr(disk):
            texts.append("%s=%r" % (a, os.getxattr(disk, a)))
        f.seek(16 << 20)
        assert len(f.read(1 << 20)) == 1 << 20
    # A token refused once (401): rpfs drops it and reads the file again.
    emu.faults({"target": "arm", "path_contains": "restorepoints/rp1",
                "action": "status", "status": 401,
                "code": "InvalidAuthenticationToken", "count": 1})
    assert (m.path / RP / "status").read_text() == "Succeeded\n"
    texts.append((m.path / RP / "progress").read_text())
    return texts


def assert_no_leak(m, emu, texts, known):
    with open("/proc/%d/cmdline" % m.proc.pid, "rb") as f:
        cmdline = f.read().replace(b"\0", b" ").decode("utf-8", "replace")
    log = m.log_text()
    everything = [("rpfs log", log), ("command line", cmdline)] + \
        [("mount content", t) for t in texts]
    sigs = sas_signatures(emu)
    assert sigs, "the session made no SAS request: the test proves nothing"
    secrets = [(k, v) for k, v in known if v] + \
        [("SAS signature", s) for s in sigs if len(s) >= 8]
    for where, text in everything:
        for what, value in secrets:
            assert value not in text, "%s found in the %s" % (what, where)
        m_sig = re.search(r"sig=(?!REDACTED)[^&\s\"']", text)
        assert not m_sig, "an unredacted sig= in the %s: %r" % (
            where, text[max(0, m_sig.start() - 40):m_sig.end() + 10])
    live = live_tokens(emu, [t for _, t in everything])
    assert not live, "a live bearer token appears in the log or the mount"


AUTHS = ["token-file", "env-secret", "managed-identity"]


@pytest.mark.parametrize("how", AUTHS)
def test_no_secret_in_log_cmdline_files_or_xattrs(rpfs, emulator, how):
    known = [("the emulator's management token", emulator.token)]
    if how == "token-file":
        m = rpfs("-d", "-o", "log_level=debug")
    elif how == "env-secret":
        env = {"AZURE_TENANT_ID": emulator.tenant,
               "AZURE_CLIENT_ID": emulator.client_id,
               "AZURE_CLIENT_SECRET": emulator.client_secret,
               "AZURE_AUTHORITY_HOST": emulator.url}
        m = rpfs("-o", "log_level=debug", auth="env", env=env)
        known.append(("the client secret", emulator.client_secret))
    else:
        env = {"IDENTITY_ENDPOINT": emulator.url + "/msi/token",
               "IDENTITY_HEADER": emulator.identity_header}
        m = rpfs("-o", "log_level=debug", auth="managed-identity", env=env)
        known.append(("the identity header", emulator.identity_header))
    emulator.reset_stats()
    texts = session(m, emulator)
    stats = emulator.stats()
    assert stats["faults_injected"] == 2
    # The refused SAS was replaced by a second grant.
    assert stats["requests"].get("begin_get_access", 0) >= 2
    if how != "token-file":
        assert stats["requests"].get("token", 0) >= 1
    # The log did record the session (debug level): it was searched.
    assert "beginGetAccess" in m.log_text()
    assert_no_leak(m, emulator, texts, known)


def test_token_in_a_new_token_file_never_reaches_the_log(rpfs, emulator):
    m = rpfs("-o", "log_level=debug")
    assert (m.path / RP / "status").read_text() == "Succeeded\n"
    emulator.expire_tokens()
    new = emulator.new_token()
    tmp = str(m.token_file) + ".new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(new + "\n")
    os.replace(tmp, m.token_file)
    assert (m.path / RP / "status").read_text() == "Succeeded\n"
    log = m.log_text()
    assert new not in log and emulator.token not in log


# ------------------------------------------------------------ access


def test_other_users_cannot_enter_the_mount_without_allow_other(rpfs,
                                                                 emulator):
    m = rpfs()
    with world_searchable(m.path):
        assert os.listdir(m.path)  # the owner can
        res = as_nobody("ls", str(m.path))
        assert res.returncode != 0
        assert "Permission denied" in res.stderr
        res = as_nobody("cat", str(m.path / RP / "status"))
        assert res.returncode != 0
        assert "Permission denied" in res.stderr
        # The same path without the mount is reachable for nobody: the
        # refusal above is FUSE's, not the path's.
        res = as_nobody("stat", "-c", "%a", str(m.path.parent))
        assert res.returncode == 0, res.stderr


def test_allow_other_lets_others_read_but_the_modes_hold(rpfs, emulator):
    m = rpfs("-o", "allow_other")
    with world_searchable(m.path):
        res = as_nobody("ls", str(m.path / COLL))
        assert res.returncode == 0, res.stderr
        assert "tags" in res.stdout.split()
        res = as_nobody("cat", str(m.path / COLL / "status"))
        assert res.returncode == 0 and res.stdout == "Succeeded\n", res.stderr
        res = as_nobody("dd", "if=%s" % (m.path / RP / "vm1-os.vhd"),
                        "of=/dev/null", "bs=4096", "count=1")
        assert res.returncode == 0 and "4096 bytes" in res.stderr, res.stderr
        # tags is 0644 root's: nobody may not write it.
        res = as_nobody("sh", "-c", "echo a=b > '%s'" % (m.path / COLL /
                                                          "tags"))
        assert res.returncode != 0
        assert "Permission denied" in res.stderr
        res = as_nobody("mkdir", str(m.path / COLL / "rp-by-nobody"))
        assert res.returncode != 0
        assert "Permission denied" in res.stderr
        assert not (m.path / COLL / "rp-by-nobody").exists()
        # The owner still can write tags (and nothing above changed them).
        assert "env=prod" in (m.path / COLL / "tags").read_text()


def test_every_node_has_its_documented_mode(rpfs, emulator):
    m = rpfs()
    fixed_0444 = {"collection.json", "source", "location", "status",
                  "restorepoint.json", "progress"}
    fixed_0644 = {"tags", "exclude_disks"}
    seen = {"dir": 0, "disk": 0, "0444": 0, "0644": 0}
    uid, gid = os.getuid(), os.getgid()
    for root, dirs, files in os.walk(m.path):
        for d in dirs:
            st = os.lstat(os.path.join(root, d))
            assert stat.S_ISDIR(st.st_mode)
            assert stat.S_IMODE(st.st_mode) == 0o755, (root, d)
            assert (st.st_uid, st.st_gid) == (uid, gid)
            seen["dir"] += 1
        for name in files:
            p = os.path.join(root, name)
            st = os.lstat(p)
            assert stat.S_ISREG(st.st_mode), p
            assert (st.st_uid, st.st_gid) == (uid, gid)
            mode = stat.S_IMODE(st.st_mode)
            if name.endswith(".vhd"):
                assert mode == 0o444, p
                seen["disk"] += 1
            elif name in fixed_0644:
                assert mode == 0o644, p
                seen["0644"] += 1
            else:
                assert name in fixed_0444, "undocumented file %s" % p
                assert mode == 0o444, p
                seen["0444"] += 1
    assert seen["dir"] >= 8 and seen["disk"] >= 5
    assert seen["0444"] >= 10 and seen["0644"] >= 4
    st = os.stat(m.path)
    assert stat.S_IMODE(st.st_mode) == 0o755
    # A disk file stays read-only whatever the caller asks.
    with pytest.raises(OSError) as ei:
        os.open(m.path / RP / "vm1-os.vhd", os.O_WRONLY)
    assert ei.value.errno in (errno.EACCES, errno.EPERM, errno.EROFS)
