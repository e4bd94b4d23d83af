#!/usr/bin/python3
"""Measures sequential download throughput of a 1 GiB page blob served by
Azurite (the emulator's azurite mode) and, for comparison, by the emulator's
own blob endpoint: the figures quoted in README.md.

Job: one curl stream per run (`curl -s --cacert CA -o /dev/null`, SAS fed on
stdin), three runs per server and blob, page cache warm. Two blobs: a dense
random image (every byte stored in Azurite's extent files) and the default
sparse image (1 GiB, 4 MiB of data: Azurite makes up the zeros).
Usage: bench_azurite.py [WORKDIR] [SIZE_MIB]   (defaults: /tmp/rpfs-az-bench, 1024)
"""

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from harness import Emulator  # noqa: E402


def grant(emu, rg, coll, rp, disk):
    import urllib.request
    import ssl
    ctx = ssl.create_default_context(cafile=emu.ca)
    h = {"Authorization": "Bearer " + emu.token, "Content-Type": "application/json"}
    p = "%s/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/restorePointCollections/%s/restorePoints/%s" % (
        emu.url, emu.subscription, rg, coll, rp)
    with urllib.request.urlopen(urllib.request.Request(p + "?api-version=2025-04-01", headers=h), context=ctx) as r:
        sp = json.load(r)["properties"]["sourceMetadata"]["storageProfile"]
    drp = next(d["diskRestorePoint"]["id"] for d in [sp["osDisk"]] + sp["dataDisks"] if d["name"] == disk)
    req = urllib.request.Request(emu.url + drp + "/beginGetAccess?api-version=2025-01-02", method="POST", headers=h,
                                 data=json.dumps({"access": "Read", "durationInSeconds": 3600}).encode())
    with urllib.request.urlopen(req, context=ctx) as r:
        loc = r.headers["Location"]
    for _ in range(100):
        with urllib.request.urlopen(urllib.request.Request(loc, headers=h), context=ctx) as r:
            if r.status == 200:
                return json.load(r)["accessSAS"]
        time.sleep(0.1)
    raise RuntimeError("grant did not finish")


def run_curl(ca, sas):
    res = subprocess.run(["curl", "-s", "--cacert", ca, "-o", "/dev/null", "-w", "%{size_download} %{speed_download}",
                          "-K", "-"], input=('url = "%s"\n' % sas).encode(), stdout=subprocess.PIPE, check=True)
    size, speed = res.stdout.split()
    return int(size), float(speed) / 1e6


def main():
    work = sys.argv[1] if len(sys.argv) > 1 else "/tmp/rpfs-az-bench"
    mib = int(sys.argv[2]) if len(sys.argv) > 2 else 1024
    img_dir = os.path.join(work, "img")
    os.makedirs(img_dir, exist_ok=True)
    big = os.path.join(img_dir, "big.img")
    if not os.path.exists(big) or os.path.getsize(big) != mib << 20:
        subprocess.run("head -c %d /dev/urandom > %s" % (mib << 20, big), shell=True, check=True)
    images = os.environ.get("RPFS_IMAGE_CACHE") or os.path.join(os.path.dirname(os.path.dirname(HERE)), "build", "images")
    scen = {"resource_groups": [{"name": "rg-bench", "location": "westeurope", "vms": [
        {"name": "vmb", "disks": [{"name": "big", "image": big, "os": True},
                                  {"name": "sparse", "image": os.path.join(images, "sparse.img"), "lun": 0}]}],
        "collections": [{"name": "c", "source_vm": "vmb", "restore_points": [{"name": "rp"}]}]}]}
    with open(os.path.join(work, "scenario.json"), "w") as f:
        json.dump(scen, f)
    subprocess.run("cat %s > /dev/null" % big, shell=True, check=True)
    results = {}
    for backend in ("azurite", "emulator"):
        state = os.path.join(work, "state-" + backend)
        subprocess.run(["rm", "-rf", state], check=True)
        t = time.monotonic()
        emu = Emulator.start(state, scenario=os.path.join(work, "scenario.json"), images=images,
                             blob_backend=backend, timeout=120)
        print("%s: started (with upload) in %.1f s" % (backend, time.monotonic() - t), flush=True)
        try:
            for disk in ("big", "sparse"):
                sas = grant(emu, "rg-bench", "c", "rp", disk)
                run_curl(emu.ca, sas)  # warm-up
                speeds = []
                for _ in range(3):
                    size, mbs = run_curl(emu.ca, sas)
                    speeds.append(mbs)
                results[(backend, disk)] = speeds
                print("%s %s: %d bytes, MB/s %s" % (backend, disk, size, ", ".join("%.0f" % s for s in speeds)),
                      flush=True)
        finally:
            emu.stop()


if __name__ == "__main__":
    main()
