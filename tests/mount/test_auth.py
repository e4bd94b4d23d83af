"""Credentials: every source a user of the Azure SDKs expects, against the
emulator's token endpoints, seen through the mount.

Each test mounts rpfs with one credential source, then reads a file whose
every read asks Resource Manager afresh (a restore point's `status`), so
the token really is used.  The token source must also show up in the
emulator's statistics, and no secret may appear in rpfs's log.
"""

import errno
import os
import stat
import subprocess

import pytest

from .util import write_token

STATUS = "rg-prod/coll1/rp1/status"


def read_status(m):
    return (m.path / STATUS).read_text()


def token_requests(emu):
    return emu.stats()["requests"].get("token", 0)


def assert_no_secret_in_log(m, *secrets):
    text = m.log_text()
    for s in secrets:
        assert s and s not in text, "a secret leaked into the rpfs log"


def sp_env(emu, **extra):
    env = {
        "AZURE_TENANT_ID": emu.tenant,
        "AZURE_CLIENT_ID": emu.client_id,
        "AZURE_CLIENT_SECRET": emu.client_secret,
        "AZURE_AUTHORITY_HOST": emu.url,
    }
    env.update(extra)
    return env


# ------------------------------------------------------------ token file


def test_mount_recovers_when_token_file_is_rotated_after_expiry(rpfs,
                                                               emulator):
    m = rpfs("-o", "log_level=debug")
    assert read_status(m) == "Succeeded\n"
    emulator.expire_tokens()
    new = emulator.new_token()
    write_token(m.token_file, new)
    # The next request gets a 401 or sees the new mtime; either way the
    # file is read again and the read succeeds.
    assert read_status(m) == "Succeeded\n"
    assert_no_secret_in_log(m, new)


def test_expired_token_without_a_new_one_is_eacces(rpfs, emulator):
    m = rpfs()
    assert read_status(m) == "Succeeded\n"
    emulator.expire_tokens()
    with pytest.raises(PermissionError) as ei:
        read_status(m)
    assert ei.value.errno == errno.EACCES
    assert "InvalidAuthenticationTokenExpired" in m.log_text()


def test_changed_token_file_is_used_without_waiting_for_a_401(rpfs,
                                                              emulator):
    m = rpfs("-o", "log_level=debug")
    assert read_status(m) == "Succeeded\n"
    emulator.expire_tokens()
    write_token(m.token_file, emulator.new_token())
    # The new mtime alone makes rpfs read the file: no 401 round trip.
    assert read_status(m) == "Succeeded\n"
    assert "rejected the token (401)" not in m.log_text()


# ------------------------------------------------------------ environment


def test_service_principal_secret_from_environment(rpfs, emulator):
    m = rpfs("-o", "log_level=debug", auth="env", env=sp_env(emulator))
    emulator.reset_stats()
    assert read_status(m) == "Succeeded\n"
    assert sorted(os.listdir(m.path / "rg-prod"))[:1] != []
    assert_no_secret_in_log(m, emulator.client_secret)


def test_service_principal_token_is_cached_not_fetched_per_request(
        rpfs, emulator):
    m = rpfs(auth="env", env=sp_env(emulator))
    read_status(m)
    before = token_requests(emulator)
    for _ in range(5):
        read_status(m)
    assert token_requests(emulator) == before


def test_service_principal_certificate_from_environment(rpfs, emulator,
                                                        tmp_path):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
         "-days", "2", "-subj", "/CN=rpfs-sp", "-keyout",
         str(tmp_path / "sp.key"), "-out", str(tmp_path / "sp.crt")],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pem = tmp_path / "sp.pem"
    pem.write_bytes((tmp_path / "sp.key").read_bytes() +
                    (tmp_path / "sp.crt").read_bytes())
    env = sp_env(emulator, AZURE_CLIENT_CERTIFICATE_PATH=str(pem))
    del env["AZURE_CLIENT_SECRET"]
    if "AZURE_CLIENT_SECRET" in os.environ:
        pytest.fail("test environment sets AZURE_CLIENT_SECRET")
    m = rpfs(auth="env", env=env)
    emulator.reset_stats()
    assert read_status(m) == "Succeeded\n"


def test_wrong_client_secret_is_eacces_with_entra_message(rpfs, emulator):
    env = sp_env(emulator, AZURE_CLIENT_SECRET="not-the-secret")
    m = rpfs(auth="env", env=env)
    with pytest.raises(PermissionError):
        read_status(m)
    assert "invalid_client" in m.log_text()
    assert_no_secret_in_log(m, "not-the-secret")


def test_auto_finds_environment_credentials(rpfs, emulator):
    m = rpfs(auth="auto", env=sp_env(emulator))
    assert read_status(m) == "Succeeded\n"
    assert token_requests(emulator) >= 1


# ------------------------------------------------------------ managed identity


def test_managed_identity_through_identity_endpoint(rpfs, emulator):
    env = {"IDENTITY_ENDPOINT": emulator.url + "/msi/token",
           "IDENTITY_HEADER": emulator.identity_header}
    m = rpfs("-o", "log_level=debug", auth="managed-identity", env=env)
    assert read_status(m) == "Succeeded\n"
    assert_no_secret_in_log(m, emulator.identity_header)


def test_managed_identity_wrong_identity_header_is_eacces(rpfs, emulator):
    env = {"IDENTITY_ENDPOINT": emulator.url + "/msi/token",
           "IDENTITY_HEADER": "wrong"}
    m = rpfs(auth="managed-identity", env=env)
    with pytest.raises(PermissionError):
        read_status(m)


def test_managed_identity_through_instance_metadata(rpfs, emulator):
    env = {"RPFS_IMDS_ENDPOINT": emulator.url}
    for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER"):
        if k in os.environ:
            pytest.fail("test environment sets %s" % k)
    m = rpfs(auth="managed-identity", env=env)
    emulator.reset_stats()
    assert read_status(m) == "Succeeded\n"


# ------------------------------------------------------------ Azure CLI


def fake_az(tmp_path, body):
    bindir = tmp_path / "fakebin"
    bindir.mkdir(exist_ok=True)
    az = bindir / "az"
    az.write_text("#!/bin/sh\n" + body)
    az.chmod(stat.S_IRWXU)
    return {"PATH": "%s:%s" % (bindir, os.environ.get("PATH", ""))}


def test_azure_cli_token(rpfs, emulator, tmp_path):
    tok = emulator.new_token()
    # The shape `az account get-access-token -o json` prints (CLI >= 2.54);
    # the script also records its arguments.
    env = fake_az(tmp_path,
                  'echo "$@" > "%s/args"\n'
                  "cat <<'EOF'\n"
                  '{"accessToken": "%s", "expiresOn": "2099-01-01 00:00:00'
                  '.000000", "expires_on": 4070908800, "subscription": "%s",'
                  ' "tenant": "%s", "tokenType": "Bearer"}\nEOF\n'
                  % (tmp_path, tok, emulator.subscription, emulator.tenant))
    m = rpfs("-o", "log_level=debug", auth="cli", env=env)
    assert read_status(m) == "Succeeded\n"
    args = (tmp_path / "args").read_text().split()
    assert args[:2] == ["account", "get-access-token"]
    assert "--resource" in args and "https://management.azure.com/" in args
    assert_no_secret_in_log(m, tok)


def test_azure_cli_not_logged_in_is_eacces(rpfs, emulator, tmp_path):
    env = fake_az(tmp_path, "echo 'ERROR: Please run az login' >&2\nexit 1\n")
    m = rpfs(auth="cli", env=env)
    with pytest.raises(PermissionError):
        read_status(m)
    assert "az login" in m.log_text()
