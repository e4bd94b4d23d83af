"""The command line as a user meets it: --help, --version, bad options and
missing settings fail fast with a clear message and a non-zero status, and
the fstab ways of mounting (-o lists, mount.fuse3, mount.fuse.rpfs) work.

Runs rpfs as a plain program (no mount) where it must refuse, and through
the rpfs fixture (tests/conftest.py) where it must mount.
"""

import os
import pathlib
import subprocess

import pytest

from build_paths import project_version, rpfs_bin

REPO = pathlib.Path(__file__).resolve().parent.parent
HELPER = REPO / "tools" / "mount.fuse.rpfs"
MOUNT_FUSE3 = "/sbin/mount.fuse3"

# Every option that common.md and the man page promise.
OPTIONS = ["subscription", "resource-group", "endpoint", "cafile",
           "token-file", "auth", "ro", "allow_delete", "cache_timeout",
           "sas_duration", "linger_ms", "chunk_size", "readahead",
           "parallel", "near_us", "pagelist", "log_level"]



def clean_env():
    """The environment without any Azure setting that could stand in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_")}
    for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT"):
        env.pop(k, None)
    return env


def run(*args, env=None, timeout=15):
    """Runs rpfs ARGS to completion; it must not hang."""
    return subprocess.run([rpfs_bin(), *map(str, args)],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True,
                          env=env if env is not None else clean_env(),
                          timeout=timeout)


def assert_refused(res, *words):
    """Non-zero exit, nothing on a mountpoint, and a message on stderr
    that names the problem (each of words, case-insensitive)."""
    assert res.returncode != 0, res
    err = res.stderr.lower()
    assert err.strip(), "refused without saying why"
    for w in words:
        assert w.lower() in err, "stderr does not mention %r:\n%s" % (
            w, res.stderr)


# ------------------------------------------------------------ --help etc.


def test_help_lists_every_option_and_exits_zero():
    res = run("--help")
    assert res.returncode == 0, res.stderr
    text = res.stdout + res.stderr
    assert "usage" in text.lower()
    assert "MOUNTPOINT" in text or "mountpoint" in text
    missing = [o for o in OPTIONS if o not in text]
    assert not missing, "--help does not mention %s" % missing


def test_version_prints_the_project_version():
    res = run("--version")
    assert res.returncode == 0, res.stderr
    text = res.stdout + res.stderr
    assert "rpfs" in text
    assert project_version() in text


# ------------------------------------------------------------ refusals


def test_missing_subscription_is_a_clear_error(tmp_path):
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    res = run("-f", "--endpoint=https://127.0.0.1:1", "--token-file=/dev/null",
              mnt)
    assert_refused(res, "subscription")
    assert not os.path.ismount(mnt)


def test_no_arguments_fails_and_points_to_help():
    res = run()
    assert res.returncode != 0
    text = (res.stdout + res.stderr).lower()
    assert "usage" in text or "--help" in text, text


def test_missing_mountpoint_is_a_clear_error():
    res = run("--subscription=00000000-0000-0000-0000-000000000001")
    assert_refused(res, "mountpoint")


def test_mountpoint_that_does_not_exist_is_refused(tmp_path):
    res = run("-f", "--subscription=00000000-0000-0000-0000-000000000001",
              "--endpoint=https://127.0.0.1:1", tmp_path / "nowhere")
    assert res.returncode != 0
    assert "nowhere" in res.stderr or "no such file" in res.stderr.lower()


def test_unknown_long_option_is_refused(tmp_path):
    res = run("-f", "--subscription=x", "--no-such-option", tmp_path)
    assert_refused(res, "no-such-option")


def test_unknown_o_option_is_refused(tmp_path):
    res = run("-f", "-o", "subscription=x,frobnicate=3", tmp_path)
    assert_refused(res, "frobnicate")


def test_unknown_auth_kind_is_refused(tmp_path):
    res = run("-f", "--subscription=x", "--auth=magic", tmp_path)
    assert_refused(res, "auth")


@pytest.mark.parametrize("opt", [
    "parallel=abc", "parallel=0", "chunk_size=-5", "readahead=lots",
    "cache_timeout=-1", "sas_duration=nan", "linger_ms=1e99",
    "pagelist=2", "log_level=loud", "near_us=-1", "near_us=0.5",
])
def test_bad_tuning_value_is_refused(tmp_path, opt):
    res = run("-f", "--subscription=x", "-o", opt, tmp_path)
    assert_refused(res, opt.split("=")[0])


def test_endpoint_that_is_not_https_is_refused(tmp_path):
    # TLS is always verified; a plain-http endpoint would send the token
    # in the clear.
    res = run("-f", "--subscription=x", "--endpoint=http://127.0.0.1:1",
              "--token-file=/dev/null", tmp_path)
    assert_refused(res, "endpoint")


def test_refusals_print_no_secret(tmp_path):
    tok = tmp_path / "token"
    tok.write_text("eyJTOPSECRETTOKENVALUE\n")
    tok.chmod(0o600)
    res = run("-f", "--subscription=x", "--token-file=%s" % tok,
              "--bogus", tmp_path)
    assert res.returncode != 0
    assert "TOPSECRET" not in res.stdout + res.stderr


# ------------------------------------------------------------ mounting


def test_subscription_from_environment(rpfs, emulator):
    m = rpfs(subscription=None,
             env={"AZURE_SUBSCRIPTION_ID": emulator.subscription})
    assert "rg-prod" in os.listdir(m.path)


def test_fstab_style_o_options_mount(rpfs):
    m = rpfs(style="o")
    assert {"rg-prod", "rg-dr", "rg-other"} <= set(os.listdir(m.path))


def test_o_option_with_tuning_values_mounts(rpfs):
    m = rpfs("-o", "ro,cache_timeout=1,parallel=4,chunk_size=1048576,"
             "readahead=8388608,linger_ms=100,log_level=debug", style="o")
    assert "rg-prod" in os.listdir(m.path)


def test_resource_group_option_mounts_one_group(rpfs):
    m = rpfs(resource_group="rg-prod")
    assert "coll1" in os.listdir(m.path)


def test_mount_fuse3_with_fuse_type_and_netdev(rpfs):
    # fstab: rpfs /mnt fuse subscription=...,_netdev,nofail 0 0
    # mount(8) runs /sbin/mount.fuse3 rpfs /mnt -o ..., which drops
    # _netdev and nofail and runs "rpfs /mnt -o ..." (daemonised).
    m = rpfs("_netdev", "nofail", helper=MOUNT_FUSE3, source="rpfs")
    assert "rg-prod" in os.listdir(m.path)
    assert (m.path / "rg-prod" / "coll1").is_dir()


def test_mount_helper_takes_subscription_as_source(rpfs, emulator):
    # fstab: SUBSCRIPTION-ID /mnt fuse.rpfs endpoint=...,_netdev 0 0
    assert HELPER.is_file(), "tools/mount.fuse.rpfs is missing"
    m = rpfs("_netdev", helper=HELPER, source=emulator.subscription,
             subscription=None)
    assert "rg-prod" in os.listdir(m.path)


def test_unmount_ends_the_process_cleanly(rpfs):
    m = rpfs()
    assert os.listdir(m.path)
    assert m.unmount() == 0
    assert not os.path.ismount(m.path)
