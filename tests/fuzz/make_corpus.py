#!/usr/bin/python3
"""Writes the seed corpora of the fuzz targets into tests/fuzz/corpus/.

Job: give every libFuzzer target realistic starting inputs, so that it
explores the parsers from real shapes instead of from nothing:

  - the `responses.<code>.body` parts of the Azure REST examples in
    /work/shared/azure-spec (or $RPFS_AZURE_SPEC),
  - hand-made inputs (page-list XML, Storage error XML, token responses,
    header values, URLs, names, ids), including the awkward ones,
  - with --emulator, real answers of tests/emulator (odd casing, paging,
    instance views, LRO status and Location bodies, errors, tokens,
    page lists of the sparse disk) captured over HTTPS.

Each seed is written as <sha1 of its bytes> so re-running is idempotent.
Target input formats are described at the top of each fuzz_*.c.

    /usr/bin/python3 tests/fuzz/make_corpus.py [--emulator]
"""

import glob
import hashlib
import json
import os
import ssl
import struct
import sys
import tempfile
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(HERE, "corpus")
SPEC = os.environ.get("RPFS_AZURE_SPEC", "/work/shared/azure-spec")
SEP = b"\n@@@\n"  # fuzz_az_sas body separator

counts = {}


def seed(target, data):
    if isinstance(data, str):
        data = data.encode()
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()
    path = os.path.join(d, name)
    if not os.path.exists(path):
        with open(path, "wb") as f:
            f.write(data)
        counts[target] = counts.get(target, 0) + 1


def js(o):
    return json.dumps(o, indent=2).encode()


LIST_KIND = {"group": 0, "collection": 1, "drp": 2, "rp": 3}


def classify(body):
    """Which az parser a body belongs to (by its id), or None."""
    i = (body.get("id") or "").lower()
    if "/diskrestorepoints/" in i:
        return "drp"
    if "/restorepoints/" in i:
        return "rp"
    if "/restorepointcollections/" in i:
        return "collection"
    if "/virtualmachines/" in i:
        return "vm"
    if i.count("/") == 4 and "/resourcegroups/" in i:
        return "group"
    return None


def add_resource(body):
    raw = js(body)
    kind = classify(body)
    if kind == "collection":
        seed("fuzz_az_collection", raw)
    elif kind == "rp":
        seed("fuzz_az_restore_point", raw)
    elif kind == "vm":
        seed("fuzz_az_vm", raw)
    if kind in LIST_KIND:
        page = js({"value": [body]})
        seed("fuzz_az_list", bytes([LIST_KIND[kind]]) + page)
    if "value" in body and isinstance(body["value"], list):
        kinds = {classify(v) for v in body["value"] if isinstance(v, dict)}
        for k in kinds & set(LIST_KIND):
            seed("fuzz_az_list", bytes([LIST_KIND[k]]) + raw)
    if "accessSAS" in body:
        seed("fuzz_az_sas", raw)
        seed("fuzz_az_sas", b"{}" + SEP + b"{}" + SEP + raw)


def from_spec():
    files = glob.glob(os.path.join(SPEC, "**", "examples", "**", "*.json"),
                      recursive=True)
    for f in sorted(files):
        with open(f) as fh:
            ex = json.load(fh)
        for code, resp in (ex.get("responses") or {}).items():
            body = resp.get("body") if isinstance(resp, dict) else None
            if isinstance(body, dict):
                add_resource(body)


def hand_made():
    # ARM error bodies: status (2 bytes), header code length + code, body.
    def arm_err(status, hdr, body):
        h = hdr.encode()
        return struct.pack(">H", status) + bytes([len(h)]) + h + body

    for status, hdr, body in [
        (404, "ResourceNotFound", js({"error": {"code": "ResourceNotFound",
                                                "message": "The Resource 'x' was not found."}})),
        (409, "", js({"error": {"code": "OperationNotAllowed", "message":
                                "Replication is in progress", "details": [
                                    {"code": "Inner", "message": "m"}]}})),
        (401, "", js({"error": "invalid_client", "error_description":
                      "AADSTS7000215: Invalid client secret provided."})),
        (429, "TooManyRequests", b""),
        (503, "", b"<html>Service Unavailable</html>"),
        (400, "", js({"code": "BadRequest", "message": "flat shape"})),
        (500, "", b'{"error": {"code": 5, "message": null}}'),
    ]:
        seed("fuzz_arm_error", arm_err(status, hdr, body))
    for st in ["InProgress", "Succeeded", "Failed", "Canceled", "Cancelled"]:
        body = {"name": "op", "status": st,
                "startTime": "2026-01-02T03:04:05.1234567+00:00"}
        if st == "Failed":
            body["error"] = {"code": "VMRestorePointClientError",
                             "message": "Restore point failed"}
        if st == "Succeeded":
            body["properties"] = {"output": {"accessSAS": "https://x/b?sig=s"}}
        seed("fuzz_arm_error", arm_err(200, "", js(body)))

    # Page lists: byte 0 window, bytes 1-2 chunk size, then XML.
    pl = [
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><PageList><PageRange><Start>0</Start><End>1048575</End></PageRange><PageRange><Start>134217728</Start><End>134283263</End></PageRange><ClearRange><Start>1048576</Start><End>2047</End></ClearRange><NextMarker/></PageList>",
        "<PageList>\n  <PageRange>\n    <Start> 512 </Start>\n    <End>1023</End>\n  </PageRange>\n</PageList>\n",
        "<PageList><PageRange><Start>0</Start><End>511</End></PageRange><NextMarker>2!104!MDAwMDI0</NextMarker></PageList>",
        "<PageList></PageList>",
        "<PageList><PageRange><Start>1024</Start><End>2047</End></PageRange><PageRange><Start>0</Start><End>511</End></PageRange></PageList>",
        "<PageList><PageRange><Start>0</Start><End>9223372036854775807</End></PageRange></PageList>",
        "<!DOCTYPE PageList [<!ENTITY a \"aaaa\">]><PageList><PageRange><Start>&a;</Start></PageRange></PageList>",
        "<PageList><Unknown><PageRange/></Unknown><PageRange><Start>0</Start><End>511</End><Extra>1</Extra></PageRange></PageList>",
    ]
    for i, x in enumerate(pl):
        for win in (0x00, 0x93, 0xF1, 0x60):
            seed("fuzz_blob_pagelist", bytes([win, 0, 7 + i]) + x.encode())

    # Storage error XML: bytes 0-1 buffer sizes.
    for x in [
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to authenticate the request.\nRequestId:00000000-0000\nTime:2026-01-02T03:04:05.1234567Z</Message><AuthenticationErrorDetail>Signature did not match</AuthenticationErrorDetail></Error>",
        "<Error><Code>InvalidRange</Code><Message>The range specified is invalid for the current size of the resource.</Message></Error>",
        "<NotError><Code>x</Code></NotError>",
        "<Error><Code><Code>nested</Code></Code></Error>",
    ]:
        for sizes in ((96, 255), (1, 1), (0, 0), (5, 12)):
            seed("fuzz_blob_error", bytes(sizes) + x.encode())

    # Headers: byte 0 picks Content-Range / Retry-After / SAS expiry.
    for v in ["bytes 0-4194303/68157952", "bytes 0-0/*", "bytes  5-9/10\r\n",
              "bytes 9223372036854775806-9223372036854775806/9223372036854775807",
              "bytes 10-5/20", "bytes 0-9/10 ", "Bytes 1-2/3", "bytes=0-1/2"]:
        seed("fuzz_headers", b"\x00" + v.encode())
    for v in ["1", "0", " 120 ", "99999999999999999999", "Fri, 02 Jan 2026 03:04:35 GMT",
              "Thu, 01 Jan 1970 00:00:00 GMT", "-5", "1.5"]:
        seed("fuzz_headers", b"\x01" + v.encode())
    for v in ["https://127.0.0.1:8443/blob/c/vm1-os.vhd?sv=2018-03-28&sr=b&sp=r&st=2026-01-02T03%3A04%3A05Z&se=2026-01-02T04%3A04%3A05Z&sig=abc%3D",
              "https://md-x.blob.core.windows.net/abcd/abcd?sv=2018-03-28&sr=b&si=xyz&sig=Q%2Bw%3D",
              "https://x/?se=2026-01-02", "https://x/?se=2026-01-02T03:04Z#se=1",
              "https://x/?se=2026-13-45T99:99:99.1234567Z", "https://x/?se=%00",
              "https://x/?sese=1&se="]:
        seed("fuzz_headers", b"\x02" + v.encode())
        seed("fuzz_redact", b"\x80" + v.encode())

    # Token responses: byte 0 picks OAuth / CLI / JWT.
    jwt = ("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9."
           "eyJhdWQiOiJodHRwczovL21hbmFnZW1lbnQuYXp1cmUuY29tLyIsImV4cCI6MTc2NzMyNjY0NX0."
           "c2ln")
    for body in [
        {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": jwt},
        {"token_type": "Bearer", "expires_in": "3599", "expires_on": "1767326645",
         "not_before": "1767323045", "resource": "https://management.azure.com/", "access_token": "abc.def.ghi"},
        {"access_token": "tok", "expires_on": 1767326645.5, "resource": "https://disk.azure.com/",
         "token_type": "Bearer", "client_id": "c"},
        {"access_token": "has space", "expires_in": 1},
        {"access_token": "", "expires_in": 1},
        {"access_token": "t", "expires_in": 1e300},
        {"access_token": "t", "expires_in": 9223372036854775807},
        {"error": "invalid_client", "error_description": "bad secret"},
    ]:
        seed("fuzz_auth_token", b"\x00" + js(body))
    for body in [
        {"accessToken": jwt, "expiresOn": "2026-01-02 04:04:05.000000", "expires_on": 1767326645,
         "subscription": "s", "tenant": "t", "tokenType": "Bearer"},
        {"accessToken": "x", "expiresOn": "2026-01-02 04:04:05.000000"},
        {"accessToken": "x", "expiresOn": "-2147483648-1-1 0:0:0"},
    ]:
        seed("fuzz_auth_token", b"\x01" + js(body))
    for t in [jwt, "a.b.c", "a..c", "eyJleHAiOjF9", "x.eyJleHAiOiIxNzY3MzI2NjQ1In0=.y"]:
        seed("fuzz_auth_token", b"\x02" + t.encode())

    # URLs to redact: byte 0 is the output size / 4.
    for u in [
        "https://login.microsoftonline.com/t/oauth2/v2.0/token?client_secret=abcd1234&x=1",
        "https://user:passw0rd@host/path?a=b",
        "https://u:p@ss@host/path",
        "https://h/p?SIG=abcdefgh&Sig=ijklmnop&signature=qrstuvwx#frag",
        "https://h/p?code=0.AAAA&state=1&access_token=zzzzzzzz",
        "https://h/p#x?sig=abcdefgh",
        "https://h/p?a=1&&sig=&sig==abcdefgh&sig",
        "http://[::1]:80/p?skoid=1111-2222&sktid=3333-4444&ske=2026-01-01",
    ]:
        for size in (0x00, 0x08, 0x20, 0xFF):
            seed("fuzz_redact", bytes([size]) + u.encode())

    # Names: byte 0 picks names / ids / disk lists.
    for n in ["rp1", "status", "@status", "@rp1", "collection.json", "@", "",
              "a" * 80, "a" * 81, "-x", ".hidden", "x.", "_ok", "rp-2026.01.02",
              "\xc3\xa9t\xc3\xa9", "..", "tags", "@exclude_disks"]:
        seed("fuzz_names", b"\x00" + n.encode("latin-1"))
    for i in ["/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/RG-PROD/providers/Microsoft.Compute/restorePointCollections/coll1",
              "/subscriptions/s/resourcegroups/rg-prod/providers/microsoft.compute/restorepointcollections/coll1/restorePoints/rp1/diskRestorePoints/vm1-os_1234",
              "//resourceGroups//x", "/resourceGroups/", "resourceGroups/rg",
              "/a/b/c/", "2026-01-02T03:04:05.1234567+00:00", "2026-01-02T03:04:05Z",
              "9999-12-31T23:59:60.9-99:99", "0000-00-00T00:00:00"]:
        seed("fuzz_names", b"\x01" + i.encode())
    for d in ["vm1-os\t/x/diskRestorePoints/vm1-os_1\nvm1-data\t/x/diskRestorePoints/vm1-data_2",
              "disk\t/x/diskRestorePoints/a\nDISK\t/x/diskRestorePoints/b\na\t/x/diskRestorePoints/c",
              "\t/x/diskRestorePoints/a\n\t\nname/with/slash\t/x/y",
              "same\t/a\nsame\t/a"]:
        seed("fuzz_names", b"\x02" + d.encode())


def from_emulator():
    sys.path.insert(0, os.path.join(REPO, "tests", "emulator"))
    from harness import Emulator

    images = os.environ.get("RPFS_IMAGE_CACHE") or os.path.join(REPO, "build", "images")
    with tempfile.TemporaryDirectory() as tmp:
        emu = Emulator.start(tmp, images=images)
        try:
            _capture(emu)
        finally:
            emu.stop()


def _capture(emu):
    ctx = ssl.create_default_context(cafile=emu.ca)

    def call(method, url, body=None, headers=None, token=True):
        h = dict(headers or {})
        if token:
            h["Authorization"] = "Bearer " + emu.token
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        if not url.startswith("http"):
            url = emu.url + url
        req = urllib.request.Request(url, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=30) as r:
                return r.status, dict(r.headers), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    sub = "/subscriptions/" + emu.subscription
    cv, dv = "api-version=2025-04-01", "api-version=2025-01-02"
    p = sub + "/resourceGroups/rg-prod/providers/Microsoft.Compute"

    def arm_json(method, url, body=None):
        st, hd, raw = call(method, url, body)
        if raw[:1] == b"{":
            add_resource(json.loads(raw))
            if st >= 400:
                h = (hd.get("x-ms-error-code") or "").encode()[:255]
                seed("fuzz_arm_error", struct.pack(">H", st) + bytes([len(h)]) + h + raw)
        return st, hd, raw

    st, _, raw = arm_json("GET", sub + "/resourcegroups?api-version=2021-04-01")
    while True:
        page = json.loads(raw)
        if not page.get("nextLink"):
            break
        st, _, raw = arm_json("GET", page["nextLink"])
    arm_json("GET", p + "/restorePointCollections?" + cv)
    arm_json("GET", sub + "/providers/Microsoft.Compute/restorePointCollections?" + cv)
    arm_json("GET", p + "/restorePointCollections/coll1?" + cv)
    arm_json("GET", p + "/restorePointCollections/coll1?$expand=restorePoints&" + cv)
    arm_json("GET", p + "/restorePointCollections/coll-many?$expand=restorePoints&" + cv)
    _, _, raw = arm_json("GET", p + "/restorePointCollections/coll1/restorePoints/rp1?$expand=instanceView&" + cv)
    rp = json.loads(raw)
    arm_json("GET", p + "/restorePointCollections/coll1/restorePoints/rp1?" + cv)
    arm_json("GET", p + "/restorePointCollections/coll1/restorePoints/rp1/diskRestorePoints?" + dv)
    arm_json("GET", p + "/virtualMachines/vm1?api-version=2025-04-01")
    arm_json("GET", p + "/restorePointCollections/nope?" + cv)
    arm_json("GET", p + "/restorePointCollections/coll1")
    call("GET", p + "/restorePointCollections/coll1?" + cv, token=False)

    # A SAS grant: 202, then the Location and operation bodies.
    drp = rp["properties"]["instanceView"]["diskRestorePoints"][0]["id"]
    arm_json("GET", drp + "?" + dv)
    st, hd, raw = call("POST", drp + "/beginGetAccess?" + dv,
                       {"access": "Read", "durationInSeconds": 3600})
    import time
    time.sleep(1.0)
    op = hd.get("Azure-AsyncOperation")
    loc = hd.get("Location")
    st1, _, status_body = call("GET", op)
    st2, _, loc_body = call("GET", loc)
    seed("fuzz_arm_error", struct.pack(">H", 200) + b"\x00" + status_body)
    seed("fuzz_az_sas", loc_body + SEP + status_body + SEP + raw)
    seed("fuzz_az_sas", b"{}" + SEP + status_body)
    sas = json.loads(loc_body)["accessSAS"]
    seed("fuzz_redact", b"\xff" + sas.encode())
    seed("fuzz_redact", b"\x10" + sas.encode())
    seed("fuzz_headers", b"\x02" + sas.encode())

    # The blob: page lists (sparse disk), a range, an error.
    for d in rp["properties"]["instanceView"]["diskRestorePoints"]:
        if "sparse" not in d["id"].lower():
            continue
        call("POST", d["id"] + "/beginGetAccess?" + dv, {"access": "Read", "durationInSeconds": 3600})
        time.sleep(1.0)
        st, hd, raw = call("POST", d["id"] + "/beginGetAccess?" + dv,
                           {"access": "Read", "durationInSeconds": 3600})
        time.sleep(1.0)
        _, _, lb = call("GET", hd["Location"])
        s = json.loads(lb)["accessSAS"]
        _, _, xml = call("GET", s + "&comp=pagelist", token=False)
        seed("fuzz_blob_pagelist", b"\x00\x01\x00" + xml)
        seed("fuzz_blob_pagelist", b"\x00\x00\x11" + xml)
        _, _, xml = call("GET", s + "&comp=pagelist", token=False,
                         headers={"x-ms-range": "bytes=1048576-805306367"})
        seed("fuzz_blob_pagelist", b"\x00\x00\x40" + xml)
        _, hd, _ = call("GET", s, token=False, headers={"Range": "bytes=512-1023"})
        seed("fuzz_headers", b"\x00" + hd.get("Content-Range", "").encode())
        _, _, xml = call("GET", s.replace("sig=", "sig=x"), token=False)
        seed("fuzz_blob_error", b"\x60\xff" + xml)
        _, _, xml = call("GET", s, token=False, headers={"Range": "bytes=999999999999-"})
        seed("fuzz_blob_error", b"\x60\xff" + xml)

    # Token endpoints.
    form = ("grant_type=client_credentials&client_id=%s&client_secret=%s&scope="
            "https%%3A%%2F%%2Fmanagement.azure.com%%2F.default" % (emu.client_id, emu.client_secret))
    _, _, raw = call("POST", "/%s/oauth2/v2.0/token" % emu.tenant, form.encode(), token=False,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    seed("fuzz_auth_token", b"\x00" + raw)
    form1 = ("grant_type=client_credentials&client_id=%s&client_secret=%s&resource="
             "https%%3A%%2F%%2Fmanagement.azure.com%%2F" % (emu.client_id, emu.client_secret))
    _, _, raw = call("POST", "/%s/oauth2/token" % emu.tenant, form1.encode(), token=False,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    seed("fuzz_auth_token", b"\x00" + raw)
    _, _, raw = call("POST", "/%s/oauth2/v2.0/token" % emu.tenant, b"grant_type=client_credentials&client_id="
                     + emu.client_id.encode() + b"&client_secret=wrong", token=False,
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
    seed("fuzz_auth_token", b"\x00" + raw)
    seed("fuzz_arm_error", struct.pack(">H", 401) + b"\x00" + raw)
    _, _, raw = call("GET", "/msi/token?resource=https%3A%2F%2Fmanagement.azure.com%2F&api-version=2019-08-01",
                     token=False, headers={"X-IDENTITY-HEADER": emu.identity_header})
    seed("fuzz_auth_token", b"\x00" + raw)
    _, _, raw = call("GET", "/metadata/identity/oauth2/token?api-version=2018-02-01&resource="
                     "https%3A%2F%2Fmanagement.azure.com%2F", token=False, headers={"Metadata": "true"})
    seed("fuzz_auth_token", b"\x00" + raw)


def main():
    from_spec()
    hand_made()
    if "--emulator" in sys.argv[1:]:
        from_emulator()
    for t in sorted(counts):
        print("%-24s %3d new seeds" % (t, counts[t]))


if __name__ == "__main__":
    main()
