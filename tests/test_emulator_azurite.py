"""The emulator in azurite mode: disk restore point grants hand out service SAS
URLs for page blobs in Microsoft's Azurite, so the blob side that rpfs reads
is Microsoft's code, not ours. Each test checks what Azurite serves through
those URLs against the emulator's own image bytes (harness.blob_bytes),
with curl and with Microsoft's Python SDK.

Trade-off: one emulator + Azurite per module (about 3 s to start and upload);
tests that need a grant of their own use a disk restore point no other test
grants, because a second grant of the same one extends the first.
"""

import json
import os
import re
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "emulator"))
from harness import Emulator  # noqa: E402

MIB = 1 << 20
AUTH_CODES = ("AuthenticationFailed", "AuthorizationFailure")


@pytest.fixture(scope="module")
def emu(tmp_path_factory):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    images = os.environ.get("RPFS_IMAGE_CACHE") or os.path.join(repo, "build", "images")
    e = Emulator.start(tmp_path_factory.mktemp("emu-az"), images=images, blob_backend="azurite")
    e.config(grant_seconds=0.05, retry_after=0)
    yield e
    e.stop()


def http(emu, url, headers=None, method="GET", body=None):
    ctx = ssl.create_default_context(cafile=emu.ca)
    req = urllib.request.Request(url, headers=headers or {}, method=method, data=body)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def arm(emu, path, method="GET", body=None, api="2025-04-01"):
    sep = "&" if "?" in path else "?"
    data = json.dumps(body).encode() if body is not None else None
    h = {"Authorization": "Bearer " + emu.token, "Content-Type": "application/json"}
    return http(emu, emu.url + path + sep + "api-version=" + api, h, method, data)


def drp_id(emu, coll, rp, disk):
    path = "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/restorePointCollections/%s/restorePoints/%s" % (
        emu.subscription, "rg-prod", coll, rp)
    st, _, body = arm(emu, path)
    assert st == 200, body
    sp = json.loads(body)["properties"]["sourceMetadata"]["storageProfile"]
    return next(d["diskRestorePoint"]["id"] for d in [sp["osDisk"]] + sp["dataDisks"] if d["name"] == disk)


def grant(emu, drp, seconds=600):
    st, h, body = arm(emu, drp + "/beginGetAccess", "POST", {"access": "Read", "durationInSeconds": seconds}, "2025-01-02")
    assert st == 202, body
    for _ in range(200):
        st, _, body = http(emu, h["Location"], {"Authorization": "Bearer " + emu.token})
        if st == 200:
            return json.loads(body)["accessSAS"]
        time.sleep(0.02)
    raise AssertionError("grant did not finish")


def curl(emu, sas, *args):
    """curl SAS with ARGS; returns (status, body bytes). The SAS goes through
    a config file on stdin, not argv."""
    cfg = 'url = "%s"\n' % sas
    res = subprocess.run(["curl", "-sS", "--cacert", emu.ca, "-o", "-", "-w", "\n%{http_code}", "-K", "-", *args],
                         input=cfg.encode(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=60)
    assert res.returncode == 0, res.stderr
    body, _, code = res.stdout.rpartition(b"\n")
    return int(code), body


def test_grant_hands_out_service_sas_for_azurite(emu):
    sas = grant(emu, drp_id(emu, "coll1", "rp1", "vm1-os"), seconds=900)
    u = urllib.parse.urlsplit(sas)
    q = dict(urllib.parse.parse_qsl(u.query))
    assert "%s://%s" % (u.scheme, u.netloc) == emu.azurite.url != emu.url
    assert u.path == "/devstoreaccount1/rpfs-disks/os.vhd"
    assert (q["sv"], q["sr"], q["sp"]) == ("2018-03-28", "b", "r")
    se = time.mktime(time.strptime(q["se"], "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    assert abs(se - (time.time() + 900)) < 5
    st, h, _ = http(emu, sas, method="HEAD")
    assert st == 200
    assert h["x-ms-blob-type"] == "PageBlob"
    assert int(h["Content-Length"]) == 64 * MIB + 512


def test_curl_download_equals_image_and_vhd_footer(emu):
    sas = grant(emu, drp_id(emu, "coll1", "rp1", "vm1-data"))
    st, body = curl(emu, sas)
    want = emu.blob_bytes("vm1-data")
    assert st == 200
    assert len(body) == len(want) == 32 * MIB + 512
    assert body == want
    assert body[-512:-504] == b"conectix"


def test_sdk_download_equals_image_and_vhd_footer(emu):
    from azure.storage.blob import BlobClient
    sas = grant(emu, drp_id(emu, "coll1", "rp1", "vm1-os"))
    blob = BlobClient.from_blob_url(sas, connection_verify=emu.ca)
    props = blob.get_blob_properties()
    assert props.blob_type == "PageBlob" and props.size == 64 * MIB + 512
    assert blob.download_blob(max_concurrency=2).readall() == emu.blob_bytes("vm1-os")


@pytest.mark.parametrize("start,length", [
    (0, 4096),                       # the first bytes: MBR and a data extent
    (128 * MIB - 100, 300),          # across the start of the 64 KiB extent
    (300 * MIB, MIB),                # inside a hole: zeros Azurite never stored
    (1024 * MIB - 1000, 1000 + 512), # end of the last extent + the footer
    (1024 * MIB, 512),               # the footer alone
])
def test_ranged_reads_give_206_and_the_right_bytes(emu, start, length):
    sas = grant(emu, drp_id(emu, "coll1", "rp1", "vm1-sparse"))
    want = emu.blob_bytes("vm1-sparse", start, length)
    rng = "bytes=%d-%d" % (start, start + length - 1)
    st, h, body = http(emu, sas, {"x-ms-range": rng})
    assert st == 206
    assert h["Content-Range"] == "bytes %d-%d/%d" % (start, start + length - 1, 1024 * MIB + 512)
    assert body == want
    st, body = curl(emu, sas, "-H", "x-ms-range: " + rng)
    assert st == 206 and body == want
    st, body = curl(emu, sas, "-r", "%d-%d" % (start, start + length - 1))
    assert st == 206 and body == want


def test_get_page_ranges_lists_the_sparse_extents(emu):
    sas = grant(emu, drp_id(emu, "coll1", "rp1", "vm1-sparse"))
    st, _, body = http(emu, sas + "&comp=pagelist")
    assert st == 200, body
    got = [(int(r.find("Start").text), int(r.find("End").text) + 1)
           for r in ET.fromstring(body).iter("PageRange")]
    # Independent of the emulator's code: the extents build_images.sh wrote.
    with open(os.path.join(emu.images, "manifest.json")) as f:
        extents = json.load(f)["images"]["sparse.img"]["extents"]
    want = [(e["offset"], e["offset"] + e["length"]) for e in extents] + [(1024 * MIB, 1024 * MIB + 512)]
    merged = []
    for a, b in want:  # Azurite may report touching ranges as one
        if merged and a == merged[-1][1]:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
    assert got in (want, merged)
    assert sum(b - a for a, b in got) == 4 * MIB + 68 * 1024 + 512
    # A window, the way rpfs asks for the page list of one region.
    st, _, body = http(emu, sas + "&comp=pagelist", {"x-ms-range": "bytes=%d-%d" % (512 * MIB, 768 * MIB - 1)})
    assert st == 200
    got = [(int(r.find("Start").text), int(r.find("End").text) + 1) for r in ET.fromstring(body).iter("PageRange")]
    assert got == [(512 * MIB, 514 * MIB)]


def test_expired_sas_is_refused_with_403(emu):
    sas = grant(emu, drp_id(emu, "coll-many", "rp-a", "vm1-os"), seconds=2)
    st, _, body = http(emu, sas, {"x-ms-range": "bytes=0-511"})
    assert st == 206 and body == emu.blob_bytes("vm1-os", 0, 512)
    se = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(sas).query))["se"]
    expiry = time.mktime(time.strptime(se, "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
    time.sleep(max(0, expiry - time.time()) + 1.1)
    st, h, body = http(emu, sas, {"x-ms-range": "bytes=0-511"})
    assert st == 403
    # Azure says AuthenticationFailed, Azurite AuthorizationFailure: a client
    # must go by the status, not the code.
    assert h["x-ms-error-code"] in AUTH_CODES
    assert curl(emu, sas)[0] == 403


def test_tampered_signature_is_refused_with_403(emu):
    # Proves Azurite checks our signature: acceptance of the real one means
    # the emulator's service SAS HMAC is right.
    sas = grant(emu, drp_id(emu, "coll1", "rp1", "vm1-data"))
    bad = re.sub(r"sig=[^&]+", "sig=" + urllib.parse.quote("A" * 43 + "="), sas)
    st, h, _ = http(emu, bad, {"x-ms-range": "bytes=0-511"})
    assert st == 403 and h["x-ms-error-code"] in AUTH_CODES
    other = sas.replace("/rpfs-disks/data.vhd", "/rpfs-disks/os.vhd")
    assert http(emu, other, {"x-ms-range": "bytes=0-511"})[0] == 403


def test_end_get_access_cannot_revoke_an_azurite_sas(emu):
    # Documented limitation: a service SAS without a stored access policy
    # stays valid until its expiry; only the emulator's model forgets it.
    drp = drp_id(emu, "coll-many", "rp-b", "vm1-data")
    sas = grant(emu, drp, seconds=300)
    before = emu.stats()["active_grants"]
    st, _, _ = arm(emu, drp + "/endGetAccess", "POST", None, "2025-01-02")
    assert st == 202
    assert emu.stats()["active_grants"] == before - 1
    assert not any(g["active"] and g["diskRestorePoint"].lower() == drp.lower() for g in emu.state()["grants"])
    st, _, body = http(emu, sas, {"x-ms-range": "bytes=0-511"})
    assert st == 206 and body == emu.blob_bytes("vm1-data", 0, 512)


def test_stop_ends_azurite_and_the_emulator(tmp_path):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    images = os.environ.get("RPFS_IMAGE_CACHE") or os.path.join(repo, "build", "images")
    e = Emulator.start(tmp_path / "emu", images=images, blob_backend="azurite")
    port = int(e.azurite.url.rsplit(":", 1)[1])
    e.stop()
    assert e.proc.poll() is not None and e.azurite.proc.poll() is not None
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
