"""Helpers every mount test uses: running tools as a user does, reading
the emulator's state, waiting for a condition, Microsoft's SDK pointed at
the emulator, and replacing a token file as a refresher would.

One definition each, so that a fix to how the tests wait or run a tool
reaches every test file.
"""

import os
import subprocess
import time

from azure.core.credentials import AccessToken
from azure.mgmt.compute import ComputeManagementClient


class EmulatorCredential:
    """The azure-core credential protocol, answered with the emulator's
    token."""

    def __init__(self, emu):
        self.emu = emu

    def get_token(self, *scopes, **kw):
        return AccessToken(self.emu.token, int(time.time()) + 600)


def sdk(emu):
    """Microsoft's compute client, pointed at the emulator."""
    return ComputeManagementClient(EmulatorCredential(emu), emu.subscription,
                                   base_url=emu.url,
                                   connection_verify=str(emu.ca),
                                   polling_interval=0)


def sh(*cmd, check=True):
    """Run a tool the way a user would; with check, it must succeed."""
    res = subprocess.run(list(map(str, cmd)), stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=60)
    if check:
        assert res.returncode == 0, "%s failed: %s" % (cmd, res.stderr)
    return res


def shell(script):
    """A line of bash, as a user types it; returns the result (bash, not
    dash: dash reports every write error as "I/O error")."""
    return subprocess.run(["bash", "-c", script], stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True, timeout=60)


def ls(path):
    return set(sh("ls", "-A", path).stdout.split())


def cat(path):
    return sh("cat", path).stdout


def write(path, text, flags=os.O_WRONLY | os.O_TRUNC):
    """open/write/close; raises OSError with the errno of whichever
    failed (close reports what flush applied)."""
    fd = os.open(path, flags)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def errno_of(fn, *args):
    """The errno fn(*args) fails with (0 when it succeeds)."""
    try:
        fn(*args)
    except OSError as e:
        return e.errno
    return 0


def wait_for(pred, timeout=20.0, what="condition", step=0.2):
    """pred()'s first true value; fails the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError("timed out after %.0fs waiting for %s"
                                 % (timeout, what))
        time.sleep(step)


def write_token(path, token):
    """Replace a token file atomically, as a token refresher would."""
    tmp = str(path) + ".new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)


def arm_requests(emu):
    """Resource Manager requests by operation, those that happened
    (tokens and blob reads aside)."""
    return {k: v for k, v in emu.stats()["requests"].items()
            if v and k != "token" and not k.startswith("blob_")}


def state_group(emu, rg):
    """A resource group in emulator.state(), or None."""
    return next((g for g in emu.state()["resource_groups"]
                 if g["name"].lower() == rg.lower()), None)


def state_coll(emu, rg, name):
    """A collection in emulator.state(), or None."""
    g = state_group(emu, rg)
    return g and next((c for c in g["collections"]
                       if c["name"].lower() == name.lower()), None)
