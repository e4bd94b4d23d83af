"""The .deb that cpack builds installs and works on a fresh Debian 12.

Without a VM: debootstrap a minimal bookworm root from the Debian mirror
this machine's apt uses, install the package there with apt-get (which
must find every dependency on the mirror: the Depends line is right), and
mount through util-linux mount(8) and the packaged /sbin/mount.fuse.rpfs
helper, once from the command line with "none" as the source and once
from an /etc/fstab line, against the emulator on the host (a chroot shares
the host's network namespace, so 127.0.0.1 is the same).

The debootstrapped root is cached as a tarball beside the disk images
($RPFS_IMAGE_CACHE or <repo>/build/images): debootstrap runs once per
checkout, apt-get update and the install on every run.

Needs root, debootstrap (tests/lib/install-deps.sh) and the mirror;
without one of them the test fails, it never skips.

Mounts made here live in the host's mount namespace under the root; the
fresh_debian fixture undoes every one of them and ends every process
running in the root, even when a test failed half-way, and deletes the
root only when nothing is mounted in it any more.
"""

import hashlib
import os
import pathlib
import re
import shutil
import signal
import subprocess
import time

import pytest

from build_paths import build_deb, image_cache, project_version

REPO = pathlib.Path(__file__).resolve().parent.parent
SUITE = "bookworm"
SBIN_PATH = os.environ.get("PATH", "") + ":/usr/sbin:/sbin"
# What a root login on the fresh system has: nothing of this test's
# environment (sanitizer settings, Azure variables) leaks in.
CHROOT_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
                      "/sbin:/bin",
              "HOME": "/root", "LC_ALL": "C.UTF-8",
              "DEBIAN_FRONTEND": "noninteractive"}
# Device nodes bind-mounted one by one: a stray rm -r of the root can
# then never reach the host's /dev.
DEVICES = ("null", "zero", "random", "urandom", "fuse")
MNT = "/mnt/rp"
RP_STATUS = MNT + "/rg-prod/coll1/rp1/status"

pytestmark = pytest.mark.slow


def tool(name):
    path = shutil.which(name, path=SBIN_PATH)
    if not path:
        pytest.fail("%s is missing: tests/lib/install-deps.sh installs it"
                    % name, pytrace=False)
    return path


def run(cmd, timeout, **kw):
    """Runs cmd; a non-zero exit fails the test with its output."""
    res = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, timeout=timeout, **kw)
    if res.returncode != 0:
        pytest.fail("$ %s\nexit %d:\n%s" % (" ".join(map(str, cmd)),
                                           res.returncode,
                                           res.stdout[-6000:]),
                    pytrace=False)
    return res.stdout


# ---------------------------------------------------------------- mirror


def debian_sources():
    """(uri, suite, components) of the bookworm suites this machine's apt
    uses, as apt itself reads sources.list and sources.list.d."""
    out = subprocess.run(
        ["apt-get", "indextargets", "--format",
         "$(REPO_URI) $(RELEASE) $(COMPONENT)", "Identifier: Packages"],
        stdout=subprocess.PIPE, text=True, timeout=60).stdout
    suites = {}
    for line in out.splitlines():
        uri, suite, component = line.split()
        if suite == SUITE or suite.startswith(SUITE + "-"):
            comps = suites.setdefault((uri, suite), [])
            if component not in comps:  # once per architecture
                comps.append(component)
    if not any(suite == SUITE for _uri, suite in suites):
        pytest.fail("this machine's apt has no %s suite to debootstrap "
                    "from:\n%s" % (SUITE, out), pytrace=False)
    return [(uri, suite, " ".join(comps))
            for (uri, suite), comps in suites.items()]


def debian_mirror(sources):
    return next(uri for uri, suite, _c in sources if suite == SUITE)


def sources_list(sources):
    return "".join("deb %s %s %s\n" % s for s in sources)


# ---------------------------------------------------------------- the root


def make_fresh_root(mirror, root):
    """Fills root with a fresh minbase bookworm: from the cached tarball,
    else by debootstrap from mirror, caching the result."""
    key = hashlib.sha256(mirror.encode()).hexdigest()[:12]
    tarball = image_cache() / ("debian-%s-minbase-%s.tar" % (SUITE, key))
    if tarball.is_file():
        run(["tar", "-C", str(root), "--numeric-owner", "-xpf",
             str(tarball)], timeout=300)
        return
    run([tool("debootstrap"), "--variant=minbase", SUITE, str(root),
         mirror], timeout=900)
    # The downloaded .debs are installed; keep the cache small.
    for deb in (root / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    tarball.parent.mkdir(parents=True, exist_ok=True)
    partial = tarball.with_name(tarball.name + ".%d" % os.getpid())
    run(["tar", "-C", str(root), "--numeric-owner", "-cf", str(partial),
         "."], timeout=300)
    os.replace(partial, tarball)  # another run never sees half a tarball


def mount_system_dirs(root):
    """/proc, /sys and the device nodes rpfs, apt and mount(8) use."""
    run(["mount", "-t", "proc", "proc", str(root / "proc")], timeout=30)
    run(["mount", "-t", "sysfs", "sysfs", str(root / "sys")], timeout=30)
    for dev in DEVICES:
        node = root / "dev" / dev
        if not node.exists():
            node.touch()  # a bind mount needs a file to cover
        run(["mount", "--bind", "/dev/" + dev, str(node)], timeout=30)


def mounts_under(root):
    """(target, fstype, minor, options) of the mounts at or below root,
    most recent first, from the host's /proc/self/mountinfo."""
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            target = re.sub(r"\\([0-7]{3})",
                            lambda m: chr(int(m.group(1), 8)), fields[4])
            if target == str(root) or target.startswith(str(root) + "/"):
                fstype = fields[fields.index("-") + 1]
                minor = int(fields[2].split(":")[1])
                found.append((target, fstype, minor, fields[5].split(",")))
    return found[::-1]


def processes_in(root):
    """Pids of the processes whose root directory is root."""
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink("/proc/%s/root" % d) == str(root):
                    pids.append(int(d))
            except OSError:
                pass
    return pids


def wait_for_no_process_in(root, timeout):
    """Waits until no process runs in root; returns those still running."""
    deadline = time.monotonic() + timeout
    while processes_in(root) and time.monotonic() < deadline:
        time.sleep(0.1)
    return processes_in(root)


def stop_rpfs(root):
    """Unmounts the FUSE mounts in root (lazily after aborting the
    connection if need be: a hung rpfs must not hang teardown), then ends
    the processes in root.  Returns what went wrong."""
    for target, fstype, minor, _opts in mounts_under(root):
        if not fstype.startswith("fuse"):
            continue
        if subprocess.run(["fusermount3", "-u", target],
                          timeout=30).returncode == 0:
            continue
        abort = "/sys/fs/fuse/connections/%d/abort" % minor
        if os.path.exists(abort):
            with open(abort, "w") as f:
                f.write("1")
        subprocess.run(["fusermount3", "-u", "-z", target], timeout=30)
    left = wait_for_no_process_in(root, 5)
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in processes_in(root):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        if not wait_for_no_process_in(root, 3):
            break
    return ["still running in the root after unmount (killed): %s" % left
            ] if left else []


def tear_down(root):
    """Undoes every mount in root and ends its processes; returns what
    went wrong, nothing when all is clean."""
    problems = stop_rpfs(root)
    for target, _fstype, _minor, _opts in mounts_under(root):
        if subprocess.run(["umount", target], timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", target], timeout=30)
    still = mounts_under(root)
    if still:
        problems.append("still mounted: %s" % [m[0] for m in still])
    return problems


class FreshDebian:
    """A fresh Debian root with rpfs installed."""

    def __init__(self, root):
        self.root = root

    def run(self, *cmd, timeout=60):
        """Runs cmd chrooted into the root; returns its output."""
        return run([tool("chroot"), str(self.root), *cmd], timeout=timeout,
                   env=CHROOT_ENV)

    def path(self, path):
        """The host's path of path in the root."""
        return self.root / path.lstrip("/")

    def write(self, path, text, mode=0o644):
        host = self.path(path)
        host.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(host, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as f:
            f.write(text)


@pytest.fixture(scope="module")
def fresh_debian(tmp_path_factory):
    """A fresh Debian 12 with the .deb installed by apt-get."""
    if os.geteuid() != 0:
        pytest.fail("installing into a chroot and mounting need root",
                    pytrace=False)
    sources = debian_sources()
    work = tmp_path_factory.mktemp("fresh-debian")
    deb, out = build_deb(work / "deb")
    if not deb:
        pytest.fail("cpack made no .deb:\n" + out[-6000:], pytrace=False)
    root = (work / "root").resolve()
    root.mkdir()
    try:
        make_fresh_root(debian_mirror(sources), root)
        mount_system_dirs(root)
        (root / "etc/apt/sources.list").write_text(sources_list(sources))
        shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
        shutil.copy(deb, root / "tmp" / deb.name)
        debian = FreshDebian(root)
        debian.run("apt-get", "update", "-q", timeout=300)
        # Depends alone, as a minimal install (or a server's apt
        # configuration) gets them: recommends are not installed.
        debian.run("apt-get", "install", "-y", "-q",
                   "--no-install-recommends", "/tmp/" + deb.name,
                   timeout=600)
        yield debian
    finally:
        problems = tear_down(root)
        if problems:
            pytest.fail("fresh Debian root %s left dirty, not deleted:\n%s"
                        % (root, "\n".join(problems)), pytrace=False)
        shutil.rmtree(root)


# ---------------------------------------------------------------- mounts


@pytest.fixture
def credentials(fresh_debian, emulator):
    """The emulator's CA and a token as files in the root; returns the
    -o options that name them."""
    fresh_debian.write("/etc/rpfs/ca.pem",
                       pathlib.Path(emulator.ca).read_text())
    fresh_debian.write("/etc/rpfs/token", emulator.token + "\n", 0o600)
    return ("endpoint=%s,cafile=/etc/rpfs/ca.pem,"
            "token_file=/etc/rpfs/token" % emulator.url)


@pytest.fixture
def mountpoint(fresh_debian):
    """MNT in the root (its host path); whatever a test leaves mounted
    there is unmounted, and rpfs still running fails the test."""
    fresh_debian.path(MNT).mkdir(parents=True, exist_ok=True)
    yield fresh_debian.path(MNT)
    problems = stop_rpfs(fresh_debian.root)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)


def mount_options(path):
    """(fstype, options) of the mount at path, as the host sees it."""
    for target, fstype, _minor, opts in mounts_under(path):
        if target == str(path):
            return fstype, opts
    return None, []


def assert_rpfs_serves_the_emulator(debian, mnt):
    assert mount_options(mnt)[0] == "fuse.rpfs"
    assert "rg-prod" in debian.run("ls", MNT).split()
    assert debian.run("cat", RP_STATUS).strip() == "Succeeded"


def unmount_and_check_rpfs_exits(debian, mnt):
    debian.run("fusermount3", "-u", MNT)
    assert not os.path.ismount(mnt)
    left = wait_for_no_process_in(debian.root, 10)
    assert not left, "rpfs still running after fusermount3 -u: %s" % left


# ---------------------------------------------------------------- tests


def test_deb_installs_with_its_dependencies_on_fresh_debian_12(
        fresh_debian):
    out = fresh_debian.run("rpfs", "--version")
    assert "rpfs version %s" % project_version() in out
    status = fresh_debian.run("dpkg-query", "-W", "-f=${Status}\n",
                              "rpfs", "fuse3", "ca-certificates")
    assert status.splitlines() == ["install ok installed"] * 3
    # The system CAs that verify Azure's certificates came with it.
    assert fresh_debian.path("/etc/ssl/certs/ca-certificates.crt").is_file()
    # mount(8) finds the helper in /sbin: the package's file.
    owner = fresh_debian.run("dpkg-query", "-S", "/usr/sbin/mount.fuse.rpfs")
    assert owner.startswith("rpfs:")
    assert fresh_debian.path("/sbin/mount.fuse.rpfs").is_file()


def test_mount_t_fuse_rpfs_with_none_source_on_fresh_debian_12(
        fresh_debian, emulator, credentials, mountpoint):
    # mount(8) -> /sbin/mount.fuse.rpfs none /mnt/rp -o ... -> mount.fuse3
    # -> rpfs /mnt/rp -o ..., daemonised.
    fresh_debian.run("mount", "-t", "fuse.rpfs", "none", MNT, "-o",
                     "subscription=%s,%s" % (emulator.subscription,
                                             credentials))
    assert_rpfs_serves_the_emulator(fresh_debian, mountpoint)
    unmount_and_check_rpfs_exits(fresh_debian, mountpoint)


def test_fstab_line_mounts_on_fresh_debian_12(fresh_debian, emulator,
                                              credentials, mountpoint):
    # The form docs/fstab.example recommends: the subscription as the
    # source, which only the mount.fuse.rpfs helper understands.
    line = "%s  %s  fuse.rpfs  %s,ro,_netdev,nofail  0  0\n" % (
        emulator.subscription, MNT, credentials)
    fresh_debian.write("/etc/fstab", line)
    fresh_debian.run("mount", MNT)
    assert_rpfs_serves_the_emulator(fresh_debian, mountpoint)
    # The options of the fstab line reached the mount.
    assert "ro" in mount_options(mountpoint)[1]
    unmount_and_check_rpfs_exits(fresh_debian, mountpoint)
