"""Restoring managed disks from a mounted restore point with rpfs-restore:
one disk file, a whole VM (a restore point directory), the names and SKU
the user asks for, and every way it can go wrong -- a missing target group,
a path that is not on an rpfs mount, a name that is taken, Azure refusing
one disk of several -- each with a clear message and exit status 1.

The tool runs against the emulator through a real rpfs mount (the rpfs
fixture); what it created is checked in the emulator's state and, as a
user would, with Microsoft's Python SDK.
"""

import os
import pathlib
import subprocess

import pytest

from .util import sdk

REPO = pathlib.Path(__file__).resolve().parents[2]
RP = ("rg-prod", "coll1", "rp1")
DISKS = ["vm1-data", "vm1-os", "vm1-sparse"]  # the files, sorted


def restore_bin():
    if os.environ.get("RPFS_RESTORE_BIN"):
        return os.environ["RPFS_RESTORE_BIN"]
    if os.environ.get("RPFS_BIN"):
        return str(pathlib.Path(os.environ["RPFS_BIN"]).parent /
                   "rpfs-restore")
    return str(REPO / "build" / "rpfs-restore")


def clean_env(**extra):
    """No Azure setting from the caller's environment may stand in."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AZURE_")}
    for k in ("IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT"):
        env.pop(k, None)
    env.update(extra)
    return env


def restore(m, emu, *args, env=None, timeout=120):
    """Runs rpfs-restore with the mount's endpoint and token."""
    cmd = [restore_bin(), "--endpoint", emu.url, "--cafile", str(emu.ca),
           "--token-file", str(m.token_file), *map(str, args)]
    return subprocess.run(cmd, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env or clean_env(),
                          timeout=timeout)


def rp_dir(m):
    return m.path.joinpath(*RP)


def drp_id(path):
    return os.getxattr(path, "user.azure.id").decode()


def state_disk(emu, disk_id):
    for d in emu.state()["disks"]:
        if d["id"].lower() == disk_id.lower():
            return d
    return None


def disk_puts(emu):
    return emu.stats()["requests"].get("disk_put", 0)


def disk_requests(emu):
    """Requests on managed disks: only rpfs-restore makes them (the mount's
    own lookups touch restore points, never disks)."""
    req = emu.stats()["requests"]
    return req.get("disk_get", 0) + req.get("disk_put", 0)


def assert_restored(emu, disk_id, rg, name, source_id):
    """The disk exists, was made from source_id, and Azure says it is
    ready (the tool must not return before that)."""
    assert disk_id.lower().endswith(
        ("/resourcegroups/%s/providers/microsoft.compute/disks/%s" %
         (rg, name)).lower()), disk_id
    st = state_disk(emu, disk_id)
    assert st is not None, "no disk %s in the emulator" % disk_id
    assert st["resourceGroup"].lower() == rg.lower()
    assert st["source"].lower() == source_id.lower()
    d = sdk(emu).disks.get(rg, name)
    assert d.provisioning_state == "Succeeded"
    assert d.creation_data.create_option == "Restore"
    assert d.creation_data.source_resource_id.lower() == source_id.lower()
    # The restore point's region (coll1 is in westeurope), not the
    # target group's (rg-dr is in eastus).
    assert d.location == "westeurope"
    return d


# ---------------------------------------------------------------- happy


def test_restore_one_disk_file_prints_the_new_disk_id(rpfs, emulator):
    emulator.config(lro_seconds=1.5)  # the tool must wait it out
    m = rpfs()
    src = rp_dir(m) / "vm1-os.vhd"
    res = restore(m, emulator, "--resource-group", "rg-dr", src)
    assert res.returncode == 0, res.stderr
    assert res.stderr == ""
    ids = res.stdout.splitlines()
    assert len(ids) == 1
    d = assert_restored(emulator, ids[0], "rg-dr", "vm1-os-restored",
                        drp_id(src))
    assert d.os_type == "Linux"
    assert disk_puts(emulator) == 1


def test_restore_point_dir_restores_every_disk_of_the_vm(rpfs, emulator):
    m = rpfs()
    rp = rp_dir(m)
    res = restore(m, emulator, "-g", "rg-dr", rp)
    assert res.returncode == 0, res.stderr
    ids = res.stdout.splitlines()
    assert len(ids) == len(DISKS)
    # One line per disk, in the order of the disk files.
    for disk, disk_id in zip(DISKS, ids):
        assert_restored(emulator, disk_id, "rg-dr", disk + "-restored",
                        drp_id(rp / (disk + ".vhd")))
    # The OS disk is the one that says so (docs/restore.md: attach it
    # with --attach-os-disk).
    os_types = {d: sdk(emulator).disks.get("rg-dr", d + "-restored").os_type
                for d in DISKS}
    assert os_types == {"vm1-data": None, "vm1-os": "Linux",
                        "vm1-sparse": None}


def test_name_and_sku_are_the_users_choice(rpfs, emulator):
    m = rpfs()
    src = rp_dir(m) / "vm1-data.vhd"
    res = restore(m, emulator, "-g", "rg-dr", "--name", "data-before-upgrade",
                  "--sku", "StandardSSD_LRS", src)
    assert res.returncode == 0, res.stderr
    d = assert_restored(emulator, res.stdout.strip(), "rg-dr",
                        "data-before-upgrade", drp_id(src))
    assert d.sku.name == "StandardSSD_LRS"


def test_suffix_names_every_disk_of_the_vm(rpfs, emulator):
    m = rpfs()
    res = restore(m, emulator, "-g", "rg-prod", "--suffix", "-2024", rp_dir(m))
    assert res.returncode == 0, res.stderr
    names = [i.rsplit("/", 1)[1] for i in res.stdout.splitlines()]
    assert names == [d + "-2024" for d in DISKS]


def test_subscription_comes_from_the_environment(rpfs, emulator):
    m = rpfs()
    # A wrong subscription in the environment is used (and fails) ...
    res = restore(m, emulator, "-g", "rg-dr", rp_dir(m) / "vm1-os.vhd",
                  env=clean_env(AZURE_SUBSCRIPTION_ID="11111111-2222-3333-"
                                "4444-555555555555"))
    assert res.returncode == 1
    assert res.stdout == ""
    assert "SubscriptionNotFound" in res.stderr
    assert disk_puts(emulator) == 0
    # ... and --subscription beats it.
    res = restore(m, emulator, "-g", "rg-dr", "--subscription",
                  emulator.subscription, rp_dir(m) / "vm1-os.vhd",
                  env=clean_env(AZURE_SUBSCRIPTION_ID="11111111-2222-3333-"
                                "4444-555555555555"))
    assert res.returncode == 0, res.stderr


def test_throttled_disk_creation_is_retried(rpfs, emulator):
    m = rpfs()
    emulator.faults({"target": "arm", "method": "PUT",
                     "path_contains": "/disks/", "action": "status",
                     "status": 429, "code": "TooManyRequests",
                     "retry_after": 1, "count": 2})
    res = restore(m, emulator, "-g", "rg-dr", rp_dir(m) / "vm1-os.vhd")
    assert res.returncode == 0, res.stderr
    assert emulator.stats()["faults_injected"] == 2
    assert_restored(emulator, res.stdout.strip(), "rg-dr",
                    "vm1-os-restored", drp_id(rp_dir(m) / "vm1-os.vhd"))


# ---------------------------------------------------------------- unhappy


def test_missing_target_group_is_a_clear_error(rpfs, emulator):
    m = rpfs()
    before = len(emulator.state()["disks"])
    res = restore(m, emulator, "-g", "rg-nowhere", rp_dir(m) / "vm1-os.vhd")
    assert res.returncode == 1
    assert res.stdout == ""
    assert "ResourceGroupNotFound" in res.stderr
    assert "rg-nowhere" in res.stderr
    assert "vm1-os.vhd" in res.stderr
    assert len(emulator.state()["disks"]) == before
    assert disk_puts(emulator) == 0


def test_path_outside_an_rpfs_mount_is_refused(rpfs, emulator, tmp_path):
    m = rpfs()
    fake = tmp_path / "vm1-os.vhd"
    fake.write_bytes(b"\0" * 1024)
    emulator.reset_stats()
    res = restore(m, emulator, "-g", "rg-dr", fake)
    assert res.returncode == 1
    assert res.stdout == ""
    assert str(fake) in res.stderr
    assert "not a disk file or restore point directory of an rpfs mount" \
        in res.stderr
    assert sum(emulator.stats()["requests"].values()) == 0


def test_missing_path_is_refused(rpfs, emulator):
    m = rpfs()
    res = restore(m, emulator, "-g", "rg-dr", rp_dir(m) / "no-such.vhd")
    assert res.returncode == 1
    assert "No such file or directory" in res.stderr


def test_collection_dir_is_refused_with_a_hint(rpfs, emulator):
    m = rpfs()
    res = restore(m, emulator, "-g", "rg-dr", m.path / "rg-prod" / "coll1")
    assert res.returncode == 1
    assert "restore point collection" in res.stderr
    assert disk_requests(emulator) == 0


def test_existing_disk_is_never_overwritten(rpfs, emulator):
    m = rpfs()
    src = rp_dir(m) / "vm1-os.vhd"
    first = restore(m, emulator, "-g", "rg-dr", src)
    assert first.returncode == 0, first.stderr
    again = restore(m, emulator, "-g", "rg-dr", src)
    assert again.returncode == 1
    assert again.stdout == ""
    assert "DiskAlreadyExists" in again.stderr
    assert "vm1-os-restored" in again.stderr
    assert disk_puts(emulator) == 1


def test_existing_source_disk_name_is_refused(rpfs, emulator):
    # --suffix "" would restore over the VM's own disk in its own group.
    m = rpfs()
    res = restore(m, emulator, "-g", "rg-prod", "--suffix", "",
                  rp_dir(m) / "vm1-os.vhd")
    assert res.returncode == 1
    assert "DiskAlreadyExists" in res.stderr
    assert disk_puts(emulator) == 0


def test_partial_failure_restores_what_it_can(rpfs, emulator, tmp_path):
    m = rpfs()
    rp = rp_dir(m)
    # vm1-data-restored exists already: that one disk must fail.
    first = restore(m, emulator, "-g", "rg-dr", rp / "vm1-data.vhd")
    assert first.returncode == 0, first.stderr
    outside = tmp_path / "stray.vhd"
    outside.write_bytes(b"x")
    res = restore(m, emulator, "-g", "rg-dr", rp, outside)
    assert res.returncode == 1
    names = [i.rsplit("/", 1)[1] for i in res.stdout.splitlines()]
    assert names == ["vm1-os-restored", "vm1-sparse-restored"]
    assert "vm1-data.vhd" in res.stderr and "DiskAlreadyExists" in res.stderr
    assert str(outside) in res.stderr
    for name in names:
        assert sdk(emulator).disks.get("rg-dr", name).provisioning_state \
            == "Succeeded"


def test_wrong_region_names_azures_error(rpfs, emulator):
    m = rpfs()
    res = restore(m, emulator, "-g", "rg-dr", "--location", "eastus",
                  rp_dir(m) / "vm1-os.vhd")
    assert res.returncode == 1
    assert "InvalidParameter" in res.stderr
    assert "westeurope" in res.stderr  # Azure's message says which region


def test_restore_point_still_creating_is_refused(rpfs, emulator):
    emulator.config(lro_seconds=30)
    m = rpfs()
    new_rp = m.path / "rg-prod" / "coll1" / "rp-now"
    new_rp.mkdir()
    assert (new_rp / "status").read_text() == "Creating\n"
    res = restore(m, emulator, "-g", "rg-dr", "--suffix", "-now", new_rp)
    assert res.returncode == 1
    assert res.stdout == ""
    assert "OperationNotAllowed" in res.stderr
    assert not [d for d in emulator.state()["disks"]
                if d["resourceGroup"] == "rg-dr"]


def test_name_option_with_several_disks_is_refused(rpfs, emulator):
    m = rpfs()
    res = restore(m, emulator, "-g", "rg-dr", "--name", "one", rp_dir(m))
    assert res.returncode == 1
    assert "--name" in res.stderr and "--suffix" in res.stderr
    assert disk_requests(emulator) == 0


def test_two_disks_with_one_target_name_are_refused(rpfs, emulator):
    m = rpfs()
    res = restore(m, emulator, "-g", "rg-dr", rp_dir(m),
                  rp_dir(m) / "vm1-os.vhd")
    assert res.returncode == 1
    assert "vm1-os-restored" in res.stderr
    assert disk_requests(emulator) == 0  # nothing is half done


@pytest.mark.parametrize("name", ["-dash-first", "dot-last.", "sp ace",
                                  "x" * 81])
def test_invalid_disk_name_is_refused_before_any_request(rpfs, emulator,
                                                          name):
    m = rpfs()
    res = restore(m, emulator, "-g", "rg-dr", "--name", name,
                  rp_dir(m) / "vm1-os.vhd")
    assert res.returncode == 1
    assert "not a valid disk name" in res.stderr
    assert disk_requests(emulator) == 0


def test_resource_group_is_required():
    res = subprocess.run([restore_bin(), "/nowhere.vhd"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=clean_env(), timeout=15)
    assert res.returncode == 1
    assert "--resource-group is required" in res.stderr


def test_help_and_version():
    res = subprocess.run([restore_bin(), "--help"], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, timeout=15)
    assert res.returncode == 0
    for opt in ("--resource-group", "--name", "--suffix", "--location",
                "--sku", "--subscription", "--endpoint", "--cafile",
                "--token-file", "--auth"):
        assert opt in res.stdout
    res = subprocess.run([restore_bin(), "--version"], stdout=subprocess.PIPE,
                         text=True, timeout=15)
    assert res.returncode == 0 and res.stdout.startswith("rpfs-restore ")


def test_token_is_never_on_the_command_line_or_in_errors(rpfs, emulator):
    m = rpfs()
    res = restore(m, emulator, "-v", "-v", "-g", "rg-nowhere",
                  rp_dir(m) / "vm1-os.vhd")
    assert res.returncode == 1
    assert emulator.token not in res.stderr
    assert emulator.token not in res.stdout
