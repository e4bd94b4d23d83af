"""Fidelity tests for the Azure emulator: Microsoft's own Python SDK drives the
restore point life cycle against it, and small direct checks cover the control
API, SAS enforcement, ranges, page lists and the VHD footer.

Trade-off: one emulator per module (fast, shared images) with short LRO and
replication times; tests that change config restore it themselves.
"""

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "emulator"))
from harness import Emulator  # noqa: E402

from azure.core.credentials import AccessToken  # noqa: E402
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError  # noqa: E402
from azure.mgmt.compute import ComputeManagementClient  # noqa: E402


class StaticCredential:
    """Returns the emulator's current management token (tests may rotate it)."""

    def __init__(self, emu):
        self.emu = emu

    def get_token(self, *scopes, **kw):
        return AccessToken(self.emu.token, int(time.time()) + 60)


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    images = os.environ.get("RPFS_IMAGE_CACHE") or os.path.join(repo, "build", "images")
    e = Emulator.start(tmp_path_factory.mktemp("emu"), images=images)
    e.config(lro_seconds=0.5, replication_seconds=1.5, retry_after=0)
    yield e
    e.stop()


@pytest.fixture(scope="module")
def client(emu):
    return ComputeManagementClient(StaticCredential(emu), emu.subscription, base_url=emu.url,
                                   connection_verify=emu.ca, polling_interval=0)


def http(emu, url, headers=None, method="GET", body=None):
    ctx = ssl.create_default_context(cafile=emu.ca)
    req = urllib.request.Request(url, headers=headers or {}, method=method, data=body)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def arm(emu, path, method="GET", body=None, api="2025-04-01"):
    sep = "&" if "?" in path else "?"
    data = json.dumps(body).encode() if body is not None else None
    h = {"Authorization": "Bearer " + emu.token, "Content-Type": "application/json"}
    return http(emu, emu.url + path + sep + "api-version=" + api, h, method, data)


def rg_path(emu, rg):
    return "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute" % (emu.subscription, rg)


def grant(emu, drp_id, seconds=600):
    st, h, _ = arm(emu, drp_id + "/beginGetAccess", "POST", {"access": "Read", "durationInSeconds": seconds}, "2025-01-02")
    assert st == 202, st
    for _ in range(100):
        st, _, body = http(emu, h["Location"], {"Authorization": "Bearer " + emu.token})
        if st == 200:
            return json.loads(body)["accessSAS"]
        time.sleep(0.1)
    raise AssertionError("grant did not finish")


def revoke(emu, drp_id):
    st, _, _ = arm(emu, drp_id + "/endGetAccess", "POST", None, "2025-01-02")
    assert st == 202


def rp1_drp(emu, disk):
    st, _, body = arm(emu, rg_path(emu, "rg-prod") + "/restorePointCollections/coll1/restorePoints/rp1")
    assert st == 200
    sp = json.loads(body)["properties"]["sourceMetadata"]["storageProfile"]
    for d in [sp["osDisk"]] + sp["dataDisks"]:
        if d["name"] == disk:
            return d["diskRestorePoint"]["id"]
    raise KeyError(disk)


def test_sdk_lifecycle(emu, client):
    from azure.storage.blob import BlobClient
    vm = client.virtual_machines.get("rg-prod", "vm1")
    coll = client.restore_point_collections.create_or_update(
        "rg-prod", "sdk-coll", {"location": vm.location, "source": {"id": vm.id}})
    assert coll.name == "sdk-coll"
    rp = client.restore_points.begin_create("rg-prod", "sdk-coll", "sdk-rp", {}).result()
    assert rp.provisioning_state == "Succeeded"
    rp = client.restore_points.get("rg-prod", "sdk-coll", "sdk-rp", expand="instanceView")
    assert len(rp.instance_view.disk_restore_points) == 3
    assert all(d.replication_status.completion_percent == 100 for d in rp.instance_view.disk_restore_points)
    drps = list(client.disk_restore_point.list_by_restore_point("rg-prod", "sdk-coll", "sdk-rp"))
    assert len(drps) == 3
    data = next(d for d in drps if d.name.startswith("vm1-data_"))
    access = client.disk_restore_point.begin_grant_access(
        "rg-prod", "sdk-coll", "sdk-rp", data.name, {"access": "Read", "duration_in_seconds": 600}).result()
    assert access.access_sas
    blob = BlobClient.from_blob_url(access.access_sas, connection_verify=emu.ca)
    got = blob.download_blob(max_concurrency=2).readall()
    want = emu.blob_bytes("vm1-data")
    assert len(got) == len(want) == 32 * 1024 * 1024 + 512
    assert got == want
    with pytest.raises(HttpResponseError):
        client.restore_points.begin_delete("rg-prod", "sdk-coll", "sdk-rp").result()
    client.disk_restore_point.begin_revoke_access("rg-prod", "sdk-coll", "sdk-rp", data.name).result()
    st, _, _ = http(emu, access.access_sas)
    assert st == 403
    client.restore_points.begin_delete("rg-prod", "sdk-coll", "sdk-rp").result()
    with pytest.raises(ResourceNotFoundError):
        client.restore_points.get("rg-prod", "sdk-coll", "sdk-rp")
    client.restore_point_collections.begin_delete("rg-prod", "sdk-coll").result()
    with pytest.raises(ResourceNotFoundError):
        client.restore_point_collections.get("rg-prod", "sdk-coll")
    names = [c.name for c in client.restore_point_collections.list_all()]
    assert "sdk-coll" not in names and "coll1" in names


def test_sdk_failed_restore_point(emu, client):
    vm = client.virtual_machines.get("rg-other", "vmfail")
    client.restore_point_collections.create_or_update("rg-other", "fail-coll", {"location": vm.location, "source": {"id": vm.id}})
    with pytest.raises(HttpResponseError):
        client.restore_points.begin_create("rg-other", "fail-coll", "rp", {}).result()
    assert client.restore_points.get("rg-other", "fail-coll", "rp").provisioning_state == "Failed"


def test_cross_region_copy_replicates(emu, client):
    src = client.restore_point_collections.get("rg-prod", "coll1")
    client.restore_point_collections.create_or_update("rg-dr", "copy1", {"location": "eastus", "source": {"id": src.id}})
    rp1 = client.restore_points.get("rg-prod", "coll1", "rp1")
    client.restore_points.begin_create("rg-dr", "copy1", "rp1", {"source_restore_point": {"id": rp1.id}}).result()
    iv = client.restore_points.get("rg-dr", "copy1", "rp1", expand="instanceView").instance_view
    pct = iv.disk_restore_points[0].replication_status.completion_percent
    drp = iv.disk_restore_points[0].id
    if pct < 100:
        st, _, body = arm(emu, drp + "/beginGetAccess", "POST", {"access": "Read", "durationInSeconds": 60}, "2025-01-02")
        assert st == 409 and json.loads(body)["error"]["code"] == "OperationNotAllowed"
    time.sleep(1.6)
    iv = client.restore_points.get("rg-dr", "copy1", "rp1", expand="instanceView").instance_view
    assert all(d.replication_status.completion_percent == 100 for d in iv.disk_restore_points)


def test_paging_and_auth(emu, client):
    assert len(client.restore_point_collections.get("rg-prod", "coll-many", expand="restorePoints").restore_points) == 3
    st, _, body = arm(emu, "/subscriptions/%s/resourcegroups" % emu.subscription, api="2021-04-01")
    page = json.loads(body)
    assert st == 200 and len(page["value"]) == 2 and "$skiptoken" in urllib.parse.unquote(page["nextLink"])
    st, _, body = http(emu, emu.url + "/subscriptions/%s/resourcegroups" % emu.subscription, {"Authorization": "Bearer " + emu.token})
    assert st == 400 and json.loads(body)["error"]["code"] == "MissingApiVersionParameter"
    st, _, body = http(emu, emu.url + "/subscriptions/%s/resourcegroups?api-version=2021-04-01" % emu.subscription)
    assert st == 401 and json.loads(body)["error"]["code"] == "AuthenticationFailed"


def test_fault_429_then_clear_and_stats(emu):
    emu.clear_faults()
    emu.reset_stats()
    emu.faults([{"target": "arm", "path_contains": "virtualMachines/vm1", "action": "status", "status": 429,
                 "code": "TooManyRequests", "retry_after": 3}])
    st, h, body = arm(emu, rg_path(emu, "rg-prod") + "/virtualMachines/vm1")
    assert st == 429 and h["Retry-After"] == "3" and json.loads(body)["error"]["code"] == "TooManyRequests"
    st, _, _ = arm(emu, rg_path(emu, "rg-prod") + "/virtualMachines/vm1")
    assert st == 200
    s = emu.stats()
    assert s["requests"]["vm_get"] == 2 and s["faults_injected"] == 1 and s["bytes"]["vm_get"] > 0
    emu.faults([{"target": "arm", "action": "status", "status": 503, "count": -1}])
    assert arm(emu, rg_path(emu, "rg-prod") + "/virtualMachines/vm1")[0] == 503
    emu.clear_faults()
    assert arm(emu, rg_path(emu, "rg-prod") + "/virtualMachines/vm1")[0] == 200


def test_reset_fault_on_blob(emu):
    drp = rp1_drp(emu, "vm1-os")
    sas = grant(emu, drp)
    try:
        emu.faults([{"target": "blob", "action": "reset", "after_bytes": 1000}])
        with pytest.raises(Exception):
            http(emu, sas, {"x-ms-range": "bytes=0-1048575"})
        st, _, body = http(emu, sas, {"x-ms-range": "bytes=0-1048575"})
        assert st == 206 and len(body) == 1048576
    finally:
        emu.clear_faults()
        revoke(emu, drp)


def test_ranges_and_expiry(emu):
    drp = rp1_drp(emu, "vm1-data")
    sas = grant(emu, drp)
    total = 32 * 1024 * 1024 + 512
    want = emu.blob_bytes("vm1-data")
    st, h, body = http(emu, sas, {"Range": "bytes=100-199"})
    assert st == 206 and body == want[100:200] and h["Content-Range"] == "bytes 100-199/%d" % total
    st, h, body = http(emu, sas, {"Range": "bytes=0-9", "x-ms-range": "bytes=%d-" % (total - 600)})
    assert st == 206 and body == want[-600:] and body[-512:-504] == b"conectix"
    st, h, _ = http(emu, sas, {"x-ms-range": "bytes=%d-%d" % (total, total + 10)})
    assert st == 416 and h["x-ms-error-code"] == "InvalidRange"
    st, h, _ = http(emu, sas, method="HEAD")
    assert st == 200 and int(h["Content-Length"]) == total and h["x-ms-blob-type"] == "PageBlob"
    bad = sas.replace("sig=", "sig=A")
    assert http(emu, bad, {"Range": "bytes=0-0"})[0] == 403
    revoke(emu, drp)
    emu.config(sas_lifetime=2)
    try:
        sas = grant(emu, drp)
        assert http(emu, sas, {"Range": "bytes=0-0"})[0] == 206
        time.sleep(3.1)
        st, h, body = http(emu, sas, {"Range": "bytes=0-0"})
        assert st == 403 and h["x-ms-error-code"] == "AuthenticationFailed" and b"<Code>AuthenticationFailed" in body
    finally:
        emu.config(sas_lifetime=3600)


def test_pagelist_matches_holes(emu):
    manifest = json.load(open(os.path.join(emu.images, "manifest.json")))["images"]["sparse.img"]
    drp = rp1_drp(emu, "vm1-sparse")
    sas = grant(emu, drp)
    try:
        st, h, body = http(emu, sas + "&comp=pagelist")
        assert st == 200 and int(h["x-ms-blob-content-length"]) == manifest["size"] + 512
        import xml.etree.ElementTree as ET
        ranges = [(int(r.find("Start").text), int(r.find("End").text)) for r in ET.fromstring(body).findall("PageRange")]
        for e in manifest["extents"]:
            assert any(a <= e["offset"] and e["offset"] + e["length"] - 1 <= b for a, b in ranges), e
        assert ranges[-1][1] == manifest["size"] + 511
        assert all(a % 512 == 0 and (b + 1) % 512 == 0 for a, b in ranges)
        data = sum(b - a + 1 for a, b in ranges)
        assert data < manifest["size"] // 10
        st, _, body = http(emu, sas + "&comp=pagelist", {"x-ms-range": "bytes=0-4095"})
        assert st == 200 and b"<Start>0</Start><End>4095</End>" in body
        emu.config(pagelist=False)
        assert http(emu, sas + "&comp=pagelist")[0] == 400
    finally:
        emu.config(pagelist=True)
        revoke(emu, drp)


def test_qemu_img_reads_footer(emu, tmp_path):
    drp = rp1_drp(emu, "vm1-os")
    sas = grant(emu, drp)
    try:
        out = tmp_path / "os.vhd"
        st, _, body = http(emu, sas)
        assert st == 200
        out.write_bytes(body)
        info = json.loads(subprocess.check_output(["qemu-img", "info", "-f", "vpc", "--output=json", str(out)]))
        assert info["virtual-size"] == 64 * 1024 * 1024
    finally:
        revoke(emu, drp)


def test_token_endpoints(emu):
    form = ("grant_type=client_credentials&client_id=%s&client_secret=%s&scope=https%%3A%%2F%%2Fmanagement.azure.com%%2F.default"
            % (emu.client_id, emu.client_secret)).encode()
    st, _, body = http(emu, emu.url + "/%s/oauth2/v2.0/token" % emu.tenant, {"Content-Type": "application/x-www-form-urlencoded"}, "POST", form)
    tok = json.loads(body)
    assert st == 200 and tok["token_type"] == "Bearer" and isinstance(tok["expires_in"], int)
    st, _, _ = http(emu, emu.url + "/subscriptions/%s/resourcegroups?api-version=2021-04-01" % emu.subscription,
                    {"Authorization": "Bearer " + tok["access_token"]})
    assert st == 200
    st, _, body = http(emu, emu.url + "/%s/oauth2/v2.0/token" % emu.tenant, {}, "POST", form.replace(emu.client_secret.encode(), b"nope"))
    assert st == 401 and json.loads(body)["error"] == "invalid_client"
    st, _, body = http(emu, emu.url + "/msi/token?resource=https://management.azure.com/&api-version=2019-08-01",
                       {"X-IDENTITY-HEADER": emu.identity_header})
    assert st == 200 and json.loads(body)["expires_on"].isdigit()
    emu.expire_tokens()
    st, _, body = arm(emu, rg_path(emu, "rg-prod") + "/virtualMachines/vm1")
    assert st == 401 and json.loads(body)["error"]["code"] == "InvalidAuthenticationTokenExpired"
    old = emu.token
    emu.new_token()
    assert emu.token != old and arm(emu, rg_path(emu, "rg-prod") + "/virtualMachines/vm1")[0] == 200


def test_aad_disk_needs_disk_token(emu):
    rp = rg_path(emu, "rg-other") + "/restorePointCollections/coll-aad/restorePoints/rp1"
    sp = json.loads(arm(emu, rp)[2])["properties"]["sourceMetadata"]["storageProfile"]
    drp = sp["osDisk"]["diskRestorePoint"]["id"]
    sas = grant(emu, drp)
    try:
        st, h, _ = http(emu, sas, {"Range": "bytes=0-511"})
        assert st == 401 and "resource_id=https://disk.azure.com/" in h["WWW-Authenticate"]
        dt = emu.new_token("https://disk.azure.com/")
        st, _, body = http(emu, sas, {"Range": "bytes=0-511", "Authorization": "Bearer " + dt, "x-ms-version": "2021-08-06"})
        assert st == 206 and len(body) == 512
    finally:
        revoke(emu, drp)


def test_grant_limit_and_delete_conflict(emu, client):
    vm = client.virtual_machines.get("rg-prod", "vm1")
    client.restore_point_collections.create_or_update("rg-prod", "lim", {"location": vm.location, "source": {"id": vm.id}})
    for i in range(3):
        client.restore_points.begin_create("rg-prod", "lim", "r%d" % i, {}).result()
    drps = []
    for coll, rp in [("coll1", "rp1"), ("coll-many", "rp-a"), ("coll-many", "rp-b"), ("coll-many", "rp-c"),
                     ("lim", "r0"), ("lim", "r1"), ("lim", "r2")]:
        body = json.loads(arm(emu, rg_path(emu, "rg-prod") + "/restorePointCollections/%s/restorePoints/%s" % (coll, rp))[2])
        drps += [d["diskRestorePoint"]["id"] for d in body["properties"]["sourceMetadata"]["storageProfile"]["dataDisks"]
                 if d["name"] == "vm1-data"]
    assert len(drps) == 7
    try:
        for d in drps[:5]:
            grant(emu, d)
        assert grant(emu, drps[0])
        st, _, body = arm(emu, drps[5] + "/beginGetAccess", "POST", {"access": "Read", "durationInSeconds": 60}, "2025-01-02")
        assert st == 409
        assert emu.stats()["active_grants"] == 5
        st, _, body = arm(emu, rg_path(emu, "rg-prod") + "/restorePointCollections/lim/restorePoints/r0", "DELETE")
        assert st == 409 and json.loads(body)["error"]["code"] == "DiskRestorePointUsedByCustomer"
    finally:
        for d in drps[:5]:
            revoke(emu, d)
    st, _, _ = arm(emu, rg_path(emu, "rg-prod") + "/restorePointCollections/lim/restorePoints/r0", "PUT", {"properties": {}})
    assert st == 201
    st, _, _ = arm(emu, rg_path(emu, "rg-prod") + "/restorePointCollections/lim/restorePoints/r0", "PUT",
                   {"properties": {"consistencyMode": "CrashConsistent"}})
    assert st == 409
    client.restore_point_collections.begin_delete("rg-prod", "lim").result()
    st, _, _ = arm(emu, rg_path(emu, "rg-prod") + "/restorePointCollections/lim", "DELETE")
    assert st == 204
