"""Shared pytest fixtures: disk images, the Azure emulator, and rpfs mounts.

Job: one place that starts things and always cleans them up, so a test
reads like a user's session (the libfuse test-suite model).

  images_dir      session: the emulator's disk images, built once into
                  $RPFS_IMAGE_CACHE or <repo>/build/images (a cache that
                  survives runs; build_images.sh only builds what is absent).
  emulator        function: an Emulator with the default scenario, stopped at
                  teardown.
  start_emulator  function: factory for extra emulators or other scenarios,
                  start_emulator(scenario=None, blob_backend="emulator")
                  -> Emulator, all stopped at teardown.
  emulator_any    function, parametrised: the default scenario with blobs
                  served by the emulator, then by Azurite.
  rpfs            function: factory that mounts rpfs against an emulator:
                    m = rpfs(*extra_args, auth="token-file",
                             resource_group=None, env=None,
                             expect_fail=False, emu=None,
                             subscription=<emulator's>|None|"ID",
                             style="long"|"o", helper=None, source="rpfs")
                  The Mount has .path .proc .token_file .log_path .cmd
                  .returncode, .log_text(), .unmount(), .check_exit.

Invariants:
  - A failure to build images, start the emulator or start rpfs fails the
    test; nothing here ever skips.
  - Teardown unmounts (fusermount3 -u, then lazily), waits for rpfs to exit
    and kills it if it does not, even when the test failed half-way.
  - Teardown then fails the test if the rpfs log holds a sanitizer report
    (ASan, LSan, UBSan), or if rpfs exited non-zero after a clean unmount
    (set m.check_exit = False in a test that expects otherwise).
  - With RPFS_FAIL_ON_SKIP=1 (tests/run sets it) a skipped test is reported
    as a failure: a suite that silently skips proves nothing.

Env: RPFS_BIN (default <repo>/build/rpfs), RPFS_IMAGE_CACHE,
RPFS_TIMEOUT_SCALE (multiplies the mount/exit waits, e.g. 3 under ASan).
"""

import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parent.parent
TESTS = REPO / "tests"
# The harness is imported as the top-level module "harness", as
# test_emulator_sdk.py does, so that both share one module object (and
# "emulator" never resolves to tests/emulator/emulator.py by accident).
if str(TESTS / "emulator") not in sys.path:
    sys.path.insert(0, str(TESTS / "emulator"))

TIMEOUT_SCALE = float(os.environ.get("RPFS_TIMEOUT_SCALE", "1"))
MOUNT_TIMEOUT = 10.0 * TIMEOUT_SCALE
EXIT_TIMEOUT = 5.0 * TIMEOUT_SCALE

# Lines that a sanitizer prints when it finds a bug.  Any of them in an
# rpfs log fails the test that produced it.
SANITIZER_RE = re.compile(
    r"ERROR: (AddressSanitizer|LeakSanitizer|ThreadSanitizer)"
    r"|runtime error: |SUMMARY: UndefinedBehaviorSanitizer")


from build_paths import image_cache, rpfs_bin  # noqa: E402


def _emulator_class():
    # Imported late so that tests that need no emulator (test_cli.py) run
    # even while the harness is broken; an import error here fails the test.
    from harness import Emulator
    return Emulator


# ---------------------------------------------------------------- skips


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if os.environ.get("RPFS_FAIL_ON_SKIP") != "1":
        return
    if rep.skipped and not hasattr(rep, "wasxfail"):
        reason = rep.longrepr[2] if isinstance(rep.longrepr, tuple) \
            else str(rep.longrepr)
        rep.outcome = "failed"
        rep.longrepr = ("skipped, and tests/run counts a skip as a "
                        "failure: " + reason)


# ---------------------------------------------------------------- images


@pytest.fixture(scope="session")
def images_dir():
    """Directory holding the emulator's disk images and manifest.json."""
    out = image_cache()
    script = TESTS / "emulator" / "build_images.sh"
    res = subprocess.run(["sh", str(script), str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=600)
    if res.returncode != 0:
        pytest.fail("build_images.sh failed (exit %d):\n%s" %
                    (res.returncode, res.stdout), pytrace=False)
    if not (out / "manifest.json").is_file():
        pytest.fail("build_images.sh left no manifest.json in %s" % out,
                    pytrace=False)
    return out


# ---------------------------------------------------------------- emulator


@pytest.fixture
def start_emulator(tmp_path, images_dir):
    """Factory: start_emulator(scenario=None, blob_backend="emulator")
    -> a started Emulator ("azurite": SAS URLs point into Azurite)."""
    Emulator = _emulator_class()
    started = []

    def start(scenario=None, blob_backend="emulator"):
        d = tmp_path / ("emu" if not started else "emu%d" % len(started))
        emu = Emulator.start(d, scenario=scenario, images=images_dir,
                             blob_backend=blob_backend)
        started.append(emu)
        return emu

    yield start
    errors = []
    for emu in reversed(started):
        try:
            emu.stop()
        except Exception as e:  # keep stopping the others
            errors.append(repr(e))
    if errors:
        pytest.fail("emulator stop failed: " + "; ".join(errors))


@pytest.fixture
def emulator(request, start_emulator):
    """The default scenario (rg-prod/vm1, coll1/rp1, rg-dr, rg-other).
    In a test that also uses emulator_any, it is that emulator."""
    if "emulator_any" in request.fixturenames:
        return request.getfixturevalue("emulator_any")
    return start_emulator()


@pytest.fixture(params=["emulator", "azurite"])
def emulator_any(request, start_emulator):
    """The default scenario, once with blobs served by the emulator itself
    and once by Azurite (SAS URLs into Microsoft's storage emulator; the
    emulator's blob faults, stats and revocation do not apply there).
    rpfs mounts against it by default."""
    return start_emulator(blob_backend=request.param)


# ---------------------------------------------------------------- mounts


class Mount:
    """One running rpfs process and its mountpoint."""

    def __init__(self, path, proc, cmd, log_path, token_file, expect_fail):
        self.path = path
        self.proc = proc
        self.cmd = cmd
        self.log_path = log_path
        self.token_file = token_file
        self.expect_fail = expect_fail
        self.check_exit = not expect_fail
        self.killed = False
        self.start_failed = False  # already reported by the factory

    @property
    def returncode(self):
        return self.proc.poll()

    def log_text(self):
        """rpfs's stderr, then any sanitizer report files of a daemon."""
        parts = []
        for p in [self.log_path] + sorted(
                self.log_path.parent.glob(self.log_path.name + ".san.*")):
            try:
                parts.append(p.read_text(errors="replace"))
            except FileNotFoundError:
                pass
        return "".join(parts)

    def is_mounted(self):
        return os.path.ismount(self.path)

    def _fusermount(self, *flags):
        return subprocess.run(["fusermount3", *flags, str(self.path)],
                              stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True,
                              timeout=30)

    def unmount(self):
        """Unmount, wait for rpfs to exit, kill it if it hangs.

        Returns rpfs's exit status (negative: killed by that signal).
        Safe to call twice.
        """
        if self.is_mounted():
            deadline = time.monotonic() + EXIT_TIMEOUT
            while True:
                res = self._fusermount("-u")
                if res.returncode == 0 or not self.is_mounted():
                    break
                if time.monotonic() > deadline:
                    self._fusermount("-u", "-z")  # busy: detach lazily
                    break
                time.sleep(0.1)
        try:
            return self.proc.wait(timeout=EXIT_TIMEOUT)
        except subprocess.TimeoutExpired:
            pass
        self.killed = True
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        if self.is_mounted():
            self._fusermount("-u", "-z")
        return rc

    def problems(self):
        """Why this mount's run was unhealthy, or None."""
        text = self.log_text()
        if SANITIZER_RE.search(text):
            return "sanitizer report in the rpfs log"
        if self.start_failed:
            return None
        if self.killed:
            return "rpfs did not exit within %.0fs of unmount" % EXIT_TIMEOUT
        rc = self.proc.poll()
        if self.check_exit and rc not in (0, None):
            return "rpfs exited with status %d" % rc
        return None


def _write_token(path, token):
    # 0600 from the start: the token never sits in a readable file.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        # A trailing newline, as `az account get-access-token -o tsv`
        # writes it: rpfs must cope.
        f.write(token + "\n")


# Default for the subscription kwarg: the emulator's.
FROM_EMULATOR = object()


def _find_daemon(mnt):
    """Pid of a daemonised rpfs serving mnt (found by its argv), or None."""
    want = os.fsencode(str(mnt))
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/cmdline" % d, "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == b"rpfs" and want in argv:
            return int(d)
    return None


class _DaemonProc:
    """Popen-like view of a daemonised rpfs (we only know its pid)."""

    def __init__(self, pid):
        self.pid = pid
        self.returncode = None

    def _alive(self):
        try:
            with open("/proc/%d/stat" % self.pid) as f:
                return f.read().split(") ")[1][0] != "Z"
        except (OSError, IndexError):
            return False

    def poll(self):
        if self.returncode is None and not self._alive():
            self.returncode = 0  # unknown: not our child
        return self.returncode

    def wait(self, timeout=None):
        deadline = time.monotonic() + (timeout or 1e9)
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired("rpfs", timeout)
            time.sleep(0.05)
        return self.returncode

    def send_signal(self, sig):
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            pass

    def kill(self):
        self.send_signal(signal.SIGKILL)


@pytest.fixture
def rpfs(request, tmp_path, emulator):
    """Factory that mounts rpfs; see the module comment.

    Beyond the common kwargs:
      subscription=None     omit --subscription (a string: use that one)
      style="o"             pass the standard options as one -o list,
                            the way fstab does
      helper=PATH           run PATH SOURCE MNT -o OPTS (mount.fuse3 or a
                            mount.fuse.rpfs helper) instead of rpfs itself;
                            rpfs then daemonises; source="rpfs" by default
    """
    mounts = []

    def start(*extra_args, auth="token-file", resource_group=None,
              env=None, expect_fail=False, emu=None,
              subscription=FROM_EMULATOR, style="long", helper=None,
              source="rpfs"):
        emu = emu or emulator
        n = len(mounts)
        suffix = "" if n == 0 else str(n + 1)
        mnt = tmp_path / ("mnt" + suffix)
        mnt.mkdir()
        log_path = tmp_path / ("rpfs%s.log" % suffix)

        opts = []  # (name, value) of the standard options
        if subscription is FROM_EMULATOR:
            subscription = emu.subscription
        if subscription is not None:
            opts.append(("subscription", subscription))
        opts += [("endpoint", emu.url), ("cafile", str(emu.ca))]
        token_file = None
        if auth == "token-file":
            token_file = tmp_path / ("token" + suffix)
            _write_token(token_file, emu.token)
            opts.append(("token_file", str(token_file)))
        else:
            opts.append(("auth", auth))
        if resource_group:
            opts.append(("resource_group", resource_group))

        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        if helper:
            # mount.fuse3 runs "rpfs MNT -o OPTS" through /bin/sh and PATH.
            full_env["PATH"] = (os.path.dirname(os.path.abspath(rpfs_bin()))
                                + os.pathsep + full_env.get("PATH", ""))
            # A daemon's stderr is /dev/null: sanitizer reports go to
            # files beside the log instead (see Mount.log_text).
            for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
                full_env[var] = (full_env.get(var, "") + ":log_path=" +
                                 str(log_path) + ".san").lstrip(":")
            olist = ["%s=%s" % kv for kv in opts] + [str(a) for a in
                                                    extra_args]
            cmd = [str(helper), source, str(mnt), "-o", ",".join(olist)]
        elif style == "o":
            cmd = [rpfs_bin(), "-f", "-o",
                   ",".join("%s=%s" % kv for kv in opts)]
            cmd += [str(a) for a in extra_args] + [str(mnt)]
        else:
            cmd = [rpfs_bin(), "-f"]
            cmd += ["--%s=%s" % (k.replace("_", "-"), v) for k, v in opts]
            cmd += [str(a) for a in extra_args] + [str(mnt)]

        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log, env=full_env)
        m = Mount(mnt, proc, cmd, log_path, token_file, expect_fail)
        mounts.append(m)

        deadline = time.monotonic() + MOUNT_TIMEOUT
        while time.monotonic() < deadline:
            if m.is_mounted():
                if helper:
                    pid = _find_daemon(mnt)
                    proc.wait(timeout=EXIT_TIMEOUT)
                    if pid is None:
                        pytest.fail("mounted, but no rpfs process serves %s"
                                    % mnt, pytrace=False)
                    m.helper_proc, m.proc = proc, _DaemonProc(pid)
                    m.check_exit = False  # not our child: status unknown
                if expect_fail:
                    m.unmount()
                    pytest.fail("rpfs mounted but was expected to fail:\n"
                                + m.log_text(), pytrace=False)
                return m
            rc = proc.poll()
            if rc is not None and not (helper and rc == 0):
                if expect_fail:
                    return m
                m.start_failed = True
                pytest.fail("rpfs exited with status %d before mounting:\n"
                            "$ %s\n%s" % (rc, " ".join(cmd), m.log_text()),
                            pytrace=False)
            time.sleep(0.05)
        m.unmount()
        m.start_failed = True
        pytest.fail("rpfs did not %s within %.0fs:\n$ %s\n%s" %
                    ("exit" if expect_fail else "mount", MOUNT_TIMEOUT,
                     " ".join(cmd), m.log_text()), pytrace=False)

    yield start

    problems = []
    for m in reversed(mounts):
        try:
            m.unmount()
        except Exception as e:
            problems.append("%s: unmount raised %r" % (m.path, e))
            continue
        why = m.problems()
        if why:
            problems.append("%s: %s\n%s" % (m.path, why, m.log_text()))
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)
