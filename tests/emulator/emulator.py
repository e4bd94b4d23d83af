#!/usr/bin/python3
"""Local emulator of the Azure side of rpfs: Resource Manager (restore point
collections, restore points, disk restore points with SAS grants, disks,
resource groups, VMs, long-running operations), Entra ID / managed-identity
token endpoints and the Storage page-blob endpoint behind the SAS URLs, all on
one loopback HTTPS server, plus an unauthenticated control API under /_emu for
fault injection, configuration, statistics and state dumps.

Trade-offs:
- Standard library only (ThreadingHTTPServer + ssl). One global lock guards the
  model; blob bodies are streamed outside it with os.preadv into a per-thread
  4 MiB buffer, and holes are sent from a shared zero buffer, so throughput is
  bounded by Python's TLS writes rather than by per-byte work.
- Time-driven state is evaluated lazily: a restore point is "Creating" until
  created + lro_seconds, replication percent is a function of the clock, and
  deletions are finalised by a sweep at the start of each request. No timers.
- Disk restore points do not copy data: every disk restore point of a disk
  serves the disk's image file as it is when read, followed by a generated
  fixed-VHD footer.
- Real Azure's surprises (odd id casing, 7-digit timestamps, unknown fields,
  tiny pages) are on by default and can be switched off through /_emu/config.
- In --blob-base mode SAS URLs point at another server (e.g. nginx serving
  IMAGES/<stem>.vhd); that server does not check signatures, expiry or
  revocation, so only the emulator's own blob endpoint enforces them.
- In --azurite mode SAS URLs are service SAS URLs (sv 2018-03-28, the
  2015-04-05 string-to-sign, HMAC with the storage account key) for page
  blobs in Microsoft's Azurite; the harness (azurite.py) uploads the blobs.
  Azurite checks signature and expiry itself, but a service SAS without a
  stored access policy cannot be revoked: endGetAccess only updates the
  emulator's model, the URL keeps working until its `se`.
"""

import argparse
import base64
import datetime
import hashlib
import hmac
import http.server
import json
import math
import os
import random
import secrets
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
GIB = 1 << 30
CHUNK = 4 << 20
ZEROS = bytes(CHUNK)
DISK_AUDIENCE = "https://disk.azure.com/"
ARM_AUDIENCE = "https://management.azure.com/"
COMPUTE_MIN = "2022-03-01"
DISKRP_MIN = "2022-07-02"
RESOURCES_MIN = "2021-04-01"
SAS_VERSION = "2018-03-28"
# Azurite's well-known development account (published by Microsoft; not a secret).
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
AZURITE_CONTAINER = "rpfs-disks"


def azurite_blob_name(img):
    """Name of an image's page blob in Azurite (the harness uploads under it)."""
    return img.stem + ".vhd"


def service_sas_sig(key_b64, sp, st, se, canonical, sv=SAS_VERSION):
    """Signature of a blob service SAS, string-to-sign of versions 2015-04-05 to
    2018-03-28: sp, st, se, canonicalized resource (/blob/ACCOUNT/CONTAINER/BLOB),
    si, sip, spr, sv, rscc, rscd, rsce, rscl, rsct, joined by newlines."""
    msg = "\n".join([sp, st, se, canonical, "", "", "", sv, "", "", "", "", ""]).encode()
    return base64.b64encode(hmac.new(base64.b64decode(key_b64), msg, hashlib.sha256).digest()).decode()

DEFAULT_CONFIG = {
    "sas_lifetime": 3600,
    "token_lifetime": 3600,
    "page_size": 2,
    "lro_seconds": 2.0,
    "replication_seconds": 6.0,
    "grant_seconds": 0.5,
    "odd_casing": True,
    "odd_timestamps": True,
    "extra_fields": True,
    "pagelist": True,
    "retry_after": 1,
    "max_grants_per_family": 5,
}


def now():
    return time.time()


def iso(ts, odd=False):
    d = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    if odd:
        return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%07d" % int((ts % 1) * 10_000_000) + "+00:00"
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%06dZ" % d.microsecond


def iso_sas(ts):
    return datetime.datetime.fromtimestamp(int(ts), datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_sas_time(s):
    return datetime.datetime.strptime(s, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=datetime.timezone.utc).timestamp()


# ---------------------------------------------------------------- VHD footer

def chs(size):
    total = min(size // 512, 65535 * 16 * 255)
    if total >= 65535 * 16 * 63:
        spt, heads = 255, 16
        cth = total // spt
    else:
        spt = 17
        cth = total // spt
        heads = max((cth + 1023) // 1024, 4)
        if cth >= heads * 1024 or heads > 16:
            spt, heads = 31, 16
            cth = total // spt
        if cth >= heads * 1024:
            spt, heads = 63, 16
            cth = total // spt
    return cth // heads, heads, spt


def vhd_footer(size, name, mtime):
    cyl, heads, spt = chs(size)
    ts = max(0, int(mtime) - 946684800)
    uid = uuid.uuid5(uuid.NAMESPACE_URL, "rpfs-emulator:" + name).bytes
    f = bytearray(512)
    struct.pack_into(">8sIIQI4sI4sQQHBBII16sB", f, 0,
                     b"conectix", 2, 0x00010000, 0xFFFFFFFFFFFFFFFF, ts,
                     b"win ", 0x000A0000, b"Wi2k", size, size, cyl, heads, spt, 2, 0, uid, 0)
    struct.pack_into(">I", f, 64, (~sum(f)) & 0xFFFFFFFF)
    return bytes(f)


class Image:
    """A disk image file exposed as a page blob: bytes + 512-byte VHD footer."""

    def __init__(self, path):
        self.path = os.path.abspath(path)
        st = os.stat(self.path)
        self.size = st.st_size
        self.stem = os.path.splitext(os.path.basename(self.path))[0]
        self.footer = vhd_footer(self.size, self.stem, st.st_mtime)
        self.blob_len = self.size + 512
        self.etag = '"0x8D%014X"' % (int(st.st_mtime * 1000) & 0xFFFFFFFFFFFFFF)
        self.last_modified = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(st.st_mtime))
        self.fd = os.open(self.path, os.O_RDONLY)

    def data_ranges(self, start, end):
        """Data ranges [a, b) of the image (not footer) within [start, end), 512-aligned."""
        out = []
        pos = start
        end = min(end, self.size)
        try:
            while pos < end:
                try:
                    d = os.lseek(self.fd, pos, os.SEEK_DATA)
                except OSError:
                    break
                if d >= end:
                    break
                h = os.lseek(self.fd, d, os.SEEK_HOLE)
                a = max(start, d) // 512 * 512
                b = min(end, -(-min(h, self.size) // 512) * 512)
                if out and a <= out[-1][1]:
                    out[-1][1] = max(out[-1][1], b)
                else:
                    out.append([a, b])
                pos = h
        except OSError:
            return [[start, end]] if start < end else []
        return out

    def write_vhd(self, dest):
        if os.path.exists(dest) and os.path.getsize(dest) == self.blob_len:
            return
        tmp = dest + ".tmp"
        subprocess.run(["cp", "--sparse=always", self.path, tmp], check=True)
        with open(tmp, "r+b") as f:
            f.seek(self.size)
            f.write(self.footer)
        os.replace(tmp, dest)


# ---------------------------------------------------------------- errors

class ApiError(Exception):
    def __init__(self, status, code, message, headers=None):
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def not_found(kind, name):
    return ApiError(404, "ResourceNotFound", "The Resource '%s/%s' was not found." % (kind, name))


# ---------------------------------------------------------------- model

class Emulator:
    def __init__(self, args):
        self.lock = threading.RLock()
        self.state_dir = os.path.abspath(args.state_dir)
        os.makedirs(self.state_dir, exist_ok=True)
        self.images_dir = os.path.abspath(args.images or os.path.join(self.state_dir, "images"))
        scen_path = args.scenario or os.path.join(HERE, "scenarios", "default.json")
        with open(scen_path) as f:
            self.scenario = json.load(f)
        self.config = dict(DEFAULT_CONFIG)
        self.config.update(self.scenario.get("config", {}))
        self.sub = self.scenario.get("subscription", "00000000-0000-0000-0000-000000000001")
        self.tenant = self.scenario.get("tenant", "00000000-0000-0000-0000-0000000000aa")
        self.client_id = self.scenario.get("client_id", "00000000-0000-0000-0000-0000000000cc")
        self.client_secret = self.scenario.get("client_secret", "emulator-secret")
        self.identity_header = self.scenario.get("identity_header") or secrets.token_hex(16)
        self.sas_key = secrets.token_bytes(32)
        self.blob_base = args.blob_base.rstrip("/") if args.blob_base else None
        self.azurite = args.azurite.rstrip("/") if getattr(args, "azurite", None) else None
        self.azurite_account = getattr(args, "azurite_account", None) or AZURITE_ACCOUNT
        self.azurite_key = os.environ.get("RPFS_AZURITE_KEY") or AZURITE_KEY
        self.tokens = {}
        self.faults = []
        self.faults_injected = 0
        self.stats_requests = {}
        self.stats_bytes = {}
        self.gets_in_flight = 0
        self.gets_in_flight_max = 0
        self.rgs = {}
        self.vms = {}
        self.disks = {}
        self.collections = {}
        self.grants = {}
        self.grant_by_container = {}
        self.ops = {}
        self.images = {}
        self.url = None
        self.ensure_images()
        self.load_scenario()

    # ---- set-up

    def ensure_images(self):
        need = ["os.img", "data.img", "sparse.img", "small.img"]
        if not all(os.path.exists(os.path.join(self.images_dir, n)) for n in need) or \
                not os.path.exists(os.path.join(self.images_dir, "manifest.json")):
            subprocess.run([os.path.join(HERE, "build_images.sh"), self.images_dir], check=True,
                           stdout=sys.stderr)

    def image(self, ref):
        path = ref if os.path.isabs(ref) else os.path.join(self.images_dir, ref)
        path = os.path.abspath(path)
        if path not in self.images:
            self.images[path] = Image(path)
        return self.images[path]

    def arm_id(self, rg, *parts):
        return "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/%s" % (self.sub, rg, "/".join(parts))

    def load_scenario(self):
        t0 = now() - 86400
        for g in self.scenario.get("resource_groups", []):
            rgl = g["name"].lower()
            self.rgs[rgl] = {"name": g["name"], "location": g.get("location", "westeurope"), "tags": g.get("tags", {})}
            for v in g.get("vms", []):
                loc = v.get("location", self.rgs[rgl]["location"])
                vm = {"name": v["name"], "rg": g["name"], "location": loc, "fail": bool(v.get("fail_restore_points")),
                      "vm_id": str(uuid.uuid5(uuid.NAMESPACE_URL, "vm:" + g["name"] + "/" + v["name"])),
                      "os_type": v.get("os_type", "Linux"), "vm_size": v.get("vm_size", "Standard_D2s_v3"),
                      "disks": []}
                lun = 0
                for d in v.get("disks", []):
                    img = self.image(d["image"])
                    disk = {"name": d["name"], "rg": g["name"], "location": loc, "image": img.path, "size": img.size,
                            "os": bool(d.get("os")), "lun": None if d.get("os") else d.get("lun", lun),
                            "aad": d.get("data_access_auth_mode") == "AzureActiveDirectory",
                            "id": self.arm_id(g["name"], "disks", d["name"]), "created": t0,
                            "lro": 0, "source": None, "vm": v["name"], "family": str(uuid.uuid4()),
                            "unique_id": str(uuid.uuid4()), "sku": d.get("sku", "Premium_LRS")}
                    if not d.get("os"):
                        lun = disk["lun"] + 1
                    vm["disks"].append(disk)
                    self.disks[(rgl, d["name"].lower())] = disk
                self.vms[(rgl, v["name"].lower())] = vm
        for g in self.scenario.get("resource_groups", []):
            for c in g.get("collections", []):
                src = c.get("source")
                if not src:
                    src = self.vm_id(self.vms[(g["name"].lower(), c["source_vm"].lower())])
                coll = self.new_collection(g["name"], c["name"], c.get("location"), src, c.get("tags", {}), t0)
                for i, r in enumerate(c.get("restore_points", [])):
                    exclude = [self.disks[(g["name"].lower(), n.lower())]["id"] for n in r.get("exclude_disks", [])]
                    self.new_restore_point(coll, r["name"], {"properties": {}}, exclude, None, t0 + 60 * i, lro=0)

    def vm_id(self, vm):
        return self.arm_id(vm["rg"], "virtualMachines", vm["name"])

    # ---- ids and rendering helpers

    def cfg(self, k):
        return self.config[k]

    def ts(self, t):
        return iso(t, self.cfg("odd_timestamps"))

    def show_coll_id(self, coll):
        if self.cfg("odd_casing"):
            return "/subscriptions/%s/resourceGroups/%s/providers/Microsoft.Compute/restorePointCollections/%s" % (
                self.sub, coll["rg"].upper(), coll["name"])
        return coll["id"]

    def show_rp_id(self, rp):
        if self.cfg("odd_casing"):
            return "/subscriptions/%s/resourcegroups/%s/providers/Microsoft.Compute/restorepointcollections/%s/restorePoints/%s" % (
                self.sub, rp["coll"]["rg"], rp["coll"]["name"], rp["name"])
        return rp["id"]

    def show_drp_id(self, drp):
        if self.cfg("odd_casing"):
            rp = drp["rp"]
            return "/subscriptions/%s/resourceGroups/%s/providers/microsoft.compute/restorePointCollections/%s/restorePoints/%s/diskRestorePoints/%s" % (
                self.sub, rp["coll"]["rg"], rp["coll"]["name"], rp["name"], drp["name"])
        return drp["id"]

    def show_vm_ref(self, ref):
        if self.cfg("odd_casing"):
            return ref.replace("/resourceGroups/", "/resourcegroups/")
        return ref

    # ---- collections / restore points

    def new_collection(self, rg, name, location, source_id, tags, created):
        parts = source_id.strip("/").split("/")
        low = [p.lower() for p in parts]
        src_loc = None
        kind = None
        if len(parts) == 8 and low[0] == "subscriptions" and low[2] == "resourcegroups" and low[6] == "virtualmachines":
            vm = self.vms.get((low[3], low[7]))
            if vm is None or low[1] != self.sub.lower():
                raise ApiError(404, "NotFound", "Source virtual machine '%s' not found." % source_id)
            src_loc, kind = vm["location"], "vm"
        elif len(parts) == 8 and low[0] == "subscriptions" and low[6] == "restorepointcollections":
            sc = self.collections.get((low[3], low[7]))
            if sc is None:
                raise ApiError(404, "NotFound", "Source restore point collection '%s' not found." % source_id)
            src_loc, kind = sc["location"], "collection"
        else:
            raise ApiError(400, "InvalidParameter", "properties.source.id '%s' is not a virtual machine or restore point collection id." % source_id)
        coll = {"name": name, "rg": self.rgs[rg.lower()]["name"], "location": location or src_loc, "tags": dict(tags or {}),
                "source_id": source_id, "source_location": src_loc, "source_kind": kind,
                "uid": str(uuid.uuid4()), "created": created, "rps": {}, "deleting_at": None}
        coll["id"] = self.arm_id(coll["rg"], "restorePointCollections", name)
        coll["cross"] = kind == "collection" or coll["location"].lower() != src_loc.lower()
        self.collections[(rg.lower(), name.lower())] = coll
        return coll

    def source_vm_of(self, coll):
        c = coll
        for _ in range(10):
            low = c["source_id"].strip("/").lower().split("/")
            if c["source_kind"] == "vm":
                return self.vms.get((low[3], low[7]))
            c = self.collections.get((low[3], low[7]))
            if c is None:
                return None
        return None

    def new_restore_point(self, coll, name, body, exclude_ids, source_rp, created, lro=None):
        rp = {"name": name, "coll": coll, "created": created, "lro": self.cfg("lro_seconds") if lro is None else lro,
              "body": body, "exclude": list(exclude_ids), "source_rp": source_rp, "drps": [], "deleting_at": None,
              "op": None, "consistency": (body.get("properties") or {}).get("consistencyMode") or "CrashConsistent"}
        rp["id"] = coll["id"] + "/restorePoints/" + name
        rp["cross"] = coll["cross"]
        if source_rp is not None:
            rp["fail"] = False
            rp["vm"] = source_rp["vm"]
            for sd in source_rp["drps"]:
                rp["drps"].append(self.new_drp(rp, sd["disk"], sd))
        else:
            vm = self.source_vm_of(coll)
            rp["vm"] = vm
            rp["fail"] = vm["fail"]
            excl = {e.lower() for e in exclude_ids}
            for disk in vm["disks"]:
                if disk["id"].lower() not in excl:
                    rp["drps"].append(self.new_drp(rp, disk, None))
        coll["rps"][name.lower()] = rp
        return rp

    def new_drp(self, rp, disk, source_drp):
        name = "%s_%s" % (disk["name"], uuid.uuid4())
        return {"name": name, "id": rp["id"] + "/diskRestorePoints/" + name, "rp": rp, "disk": disk,
                "source_drp": source_drp, "family": disk["id"].lower(), "created": rp["created"]}

    def rp_state(self, rp, t=None):
        t = t or now()
        if rp["deleting_at"] is not None:
            return "Deleting"
        if t < rp["created"] + rp["lro"]:
            return "Creating"
        return "Failed" if rp["fail"] else "Succeeded"

    def rp_percent(self, rp, t=None):
        t = t or now()
        st = self.rp_state(rp, t)
        if st in ("Failed", "Creating") and not rp["cross"]:
            return 0
        if st == "Failed":
            return 0
        if not rp["cross"]:
            return 100
        rs = self.cfg("replication_seconds")
        if rp["lro"] == 0 or rs <= 0:
            return 100
        return max(0, min(100, int((t - rp["created"]) * 100 / rs)))

    def rp_usable(self, rp):
        st = self.rp_state(rp)
        if st != "Succeeded":
            return "the restore point is in provisioning state %s" % st
        pct = self.rp_percent(rp)
        if pct < 100:
            return "the disk restore point is still being replicated (%d%% complete)" % pct
        return None

    # ---- renderers

    def extra(self, props):
        if self.cfg("extra_fields"):
            props["emulatorFutureProperty"] = {"kind": "unknown", "values": [1, "two", None]}
        return props

    def render_collection(self, coll, expand=False):
        props = {"source": {"id": self.show_vm_ref(coll["source_id"]), "location": coll["source_location"]},
                 "restorePointCollectionId": coll["uid"],
                 "provisioningState": "Deleting" if coll["deleting_at"] is not None else "Succeeded"}
        if expand:
            props["restorePoints"] = [self.render_rp(rp) for rp in coll["rps"].values()]
        body = {"name": coll["name"], "id": self.show_coll_id(coll), "type": "Microsoft.Compute/restorePointCollections",
                "location": coll["location"], "tags": coll["tags"], "properties": self.extra(props)}
        return body

    def render_disk_ref(self, drp):
        d = drp["disk"]
        ref = {"name": d["name"], "caching": "ReadWrite" if d["os"] else "None",
               "diskSizeGB": int(math.ceil(d["size"] / GIB)),
               "managedDisk": {"id": self.show_vm_ref(d["id"]), "storageAccountType": d["sku"]},
               "diskRestorePoint": {"id": self.show_drp_id(drp)},
               "writeAcceleratorEnabled": False}
        if drp["source_drp"] is not None:
            ref["diskRestorePoint"]["sourceDiskRestorePoint"] = {"id": self.show_drp_id(drp["source_drp"])}
        if d["os"]:
            ref["osType"] = self.os_type(drp)
        else:
            ref["lun"] = d["lun"]
        return ref

    def os_type(self, drp):
        vm = drp["rp"]["vm"]
        return vm["os_type"] if vm else "Linux"

    def render_rp(self, rp, instance_view=False):
        t = now()
        vm = rp["vm"]
        osd = [self.render_disk_ref(d) for d in rp["drps"] if d["disk"]["os"]]
        dd = [self.render_disk_ref(d) for d in rp["drps"] if not d["disk"]["os"]]
        storage = {"dataDisks": dd, "diskControllerType": "SCSI"}
        if osd:
            storage["osDisk"] = osd[0]
        meta = {"vmId": vm["vm_id"] if vm else "", "hardwareProfile": {"vmSize": vm["vm_size"] if vm else ""},
                "storageProfile": storage,
                "osProfile": {"computerName": vm["name"] if vm else "", "adminUsername": "azureuser",
                              "linuxConfiguration": {"disablePasswordAuthentication": True}, "secrets": [],
                              "allowExtensionOperations": True, "requireGuestProvisionSignal": True},
                "diagnosticsProfile": {"bootDiagnostics": {"enabled": True}},
                "hyperVGeneration": "V2", "location": vm["location"] if vm else ""}
        props = {"excludeDisks": [{"id": self.show_vm_ref(e)} for e in rp["exclude"]],
                 "sourceMetadata": meta, "provisioningState": self.rp_state(rp, t),
                 "consistencyMode": rp["consistency"], "timeCreated": self.ts(rp["created"])}
        if rp["source_rp"] is not None:
            props["sourceRestorePoint"] = {"id": self.show_rp_id(rp["source_rp"])}
        if instance_view:
            pct = self.rp_percent(rp, t)
            st = self.rp_state(rp, t)
            if st == "Failed":
                code, level, disp = "ReplicationState/failed", "Error", "Failed"
            elif pct >= 100:
                code, level, disp = "ReplicationState/succeeded", "Info", "Succeeded"
            else:
                code, level, disp = "ReplicationState/replicating", "Info", "Replicating"
            status = {"code": code, "level": level, "displayStatus": disp}
            access = "Available" if st == "Succeeded" and pct >= 100 else "Pending"
            props["instanceView"] = {
                "diskRestorePoints": [{"id": self.show_drp_id(d), "replicationStatus": {"status": dict(status), "completionPercent": pct},
                                       "snapshotAccessState": access} for d in rp["drps"]],
                "statuses": [dict(status)]}
        return {"name": rp["name"], "id": self.show_rp_id(rp), "type": "Microsoft.Compute/restorePointCollections/restorePoints",
                "properties": self.extra(props)}

    def render_drp(self, drp):
        rp = drp["rp"]
        d = drp["disk"]
        props = {"timeCreated": self.ts(drp["created"]),
                 "sourceResourceId": self.show_drp_id(drp["source_drp"]) if drp["source_drp"] else self.show_vm_ref(d["id"]),
                 "osType": self.os_type(drp) if d["os"] else None, "hyperVGeneration": "V2",
                 "familyId": d["family"], "sourceUniqueId": d["unique_id"],
                 "encryption": {"type": "EncryptionAtRestWithPlatformKey"},
                 "supportsHibernation": False, "networkAccessPolicy": "AllowAll", "publicNetworkAccess": "Enabled",
                 "supportedCapabilities": {"acceleratedNetwork": True, "architecture": "x64"}}
        if props["osType"] is None:
            del props["osType"]
        if rp["cross"]:
            pct = self.rp_percent(rp)
            props["replicationState"] = "Succeeded" if pct >= 100 else ("Failed" if self.rp_state(rp) == "Failed" else "Replicating")
            props["completionPercent"] = pct
            props["sourceResourceLocation"] = rp["vm"]["location"] if rp["vm"] else ""
        g = self.active_grant(drp)
        if g:
            props["accessState"] = "ActiveSAS"
        return {"name": drp["name"], "id": self.show_drp_id(drp),
                "type": "Microsoft.Compute/restorePointCollections/restorePoints/diskRestorePoints",
                "properties": self.extra(props)}

    def render_disk(self, disk):
        st = "Succeeded" if now() >= disk["created"] + disk["lro"] else "Updating"
        props = {"diskSizeGB": int(math.ceil(disk["size"] / GIB)), "diskSizeBytes": disk["size"],
                 "provisioningState": st, "timeCreated": self.ts(disk["created"]),
                 "diskState": "Attached" if disk.get("vm") else "Unattached", "uniqueId": disk["unique_id"],
                 "creationData": {"createOption": "Restore", "sourceResourceId": disk["source"]} if disk["source"] else {"createOption": "Empty"},
                 "encryption": {"type": "EncryptionAtRestWithPlatformKey"}, "networkAccessPolicy": "AllowAll"}
        if disk["aad"]:
            props["dataAccessAuthMode"] = "AzureActiveDirectory"
        if disk["os"]:
            props["osType"] = "Linux"
        return {"name": disk["name"], "id": self.show_vm_ref(disk["id"]), "type": "Microsoft.Compute/disks",
                "location": disk["location"], "sku": {"name": disk["sku"], "tier": "Premium"}, "properties": props}

    def render_vm(self, vm):
        osd = [d for d in vm["disks"] if d["os"]]
        dds = [d for d in vm["disks"] if not d["os"]]

        def ref(d):
            r = {"name": d["name"], "createOption": "Attach" if not d["os"] else "FromImage",
                 "caching": "ReadWrite" if d["os"] else "None", "diskSizeGB": int(math.ceil(d["size"] / GIB)),
                 "managedDisk": {"id": self.show_vm_ref(d["id"]), "storageAccountType": d["sku"]}}
            if d["os"]:
                r["osType"] = vm["os_type"]
            else:
                r["lun"] = d["lun"]
            return r
        storage = {"dataDisks": [ref(d) for d in dds]}
        if osd:
            storage["osDisk"] = ref(osd[0])
        return {"name": vm["name"], "id": self.vm_id(vm), "type": "Microsoft.Compute/virtualMachines",
                "location": vm["location"],
                "properties": self.extra({"vmId": vm["vm_id"], "hardwareProfile": {"vmSize": vm["vm_size"]},
                                          "storageProfile": storage, "provisioningState": "Succeeded"})}

    def render_rg(self, rg):
        return {"id": "/subscriptions/%s/resourceGroups/%s" % (self.sub, rg["name"]), "name": rg["name"],
                "type": "Microsoft.Resources/resourceGroups", "location": rg["location"], "tags": rg["tags"],
                "properties": {"provisioningState": "Succeeded"}}

    # ---- grants

    def active_grant(self, drp):
        g = self.grants.get(drp["id"].lower())
        if g and not g["revoked"] and g["expiry"] > now():
            return g
        return None

    def active_grant_count(self, family=None):
        t = now()
        return sum(1 for g in self.grants.values()
                   if not g["revoked"] and g["expiry"] > t and (family is None or g["family"] == family))

    def sas_url(self, g):
        if self.azurite:
            return self.azurite_sas_url(g)
        path = "/blob/%s/%s" % (g["container"], g["blob"])
        st = iso_sas(g["start"])
        se = iso_sas(g["expiry"])
        sig = self.sign("r", st, se, path)
        q = urllib.parse.urlencode([("sv", SAS_VERSION), ("sr", "b"), ("sp", "r"), ("st", st), ("se", se), ("sig", sig)])
        return "%s%s?%s" % (self.blob_base or self.url, path, q)

    def azurite_sas_url(self, g):
        # Same blob for every grant of an image: Azurite cannot revoke, so a
        # per-grant copy would buy nothing but upload time.
        acct = self.azurite_account
        st, se = iso_sas(g["start"]), iso_sas(g["expiry"])
        sig = service_sas_sig(self.azurite_key, "r", st, se, "/blob/%s/%s/%s" % (acct, AZURITE_CONTAINER, g["az_blob"]))
        q = urllib.parse.urlencode([("sv", SAS_VERSION), ("sr", "b"), ("sp", "r"), ("st", st), ("se", se), ("sig", sig)])
        return "%s/%s/%s/%s?%s" % (self.azurite, acct, AZURITE_CONTAINER, g["az_blob"], q)

    def sign(self, sp, st, se, path):
        msg = "\n".join([sp, st, se, path, SAS_VERSION, "b"]).encode()
        return base64.b64encode(hmac.new(self.sas_key, msg, hashlib.sha256).digest()).decode()

    def grant(self, drp, duration):
        duration = max(1, min(int(duration), int(self.cfg("sas_lifetime"))))
        g = self.active_grant(drp)
        t = now()
        if g:
            g["expiry"] = max(g["expiry"], math.ceil(t + duration))
            return g
        if self.active_grant_count(drp["family"]) >= self.cfg("max_grants_per_family"):
            raise ApiError(409, "OperationNotAllowed",
                           "The maximum number of active SAS URIs (%d) for the snapshot family of disk '%s' has been reached."
                           % (self.cfg("max_grants_per_family"), drp["disk"]["name"]))
        img = self.image(drp["disk"]["image"])
        g = {"container": secrets.token_hex(8), "blob": img.stem + ".vhd", "image": img.path, "start": t - 300,
             "expiry": math.ceil(t + duration), "revoked": False, "family": drp["family"], "drp": drp["id"],
             "aad": drp["disk"]["aad"], "az_blob": azurite_blob_name(img)}
        self.grants[drp["id"].lower()] = g
        self.grant_by_container[g["container"]] = g
        return g

    def revoke(self, drp):
        g = self.grants.pop(drp["id"].lower(), None)
        if g:
            g["revoked"] = True

    # ---- operations

    def new_op(self, kind, location, api_version, done_at, fail_error=None, output=None, result=None):
        op = {"id": str(uuid.uuid4()), "kind": kind, "start": now(), "done_at": done_at, "error": fail_error,
              "output": output, "result": result, "location": location.replace(" ", "").lower(), "api_version": api_version}
        self.ops[op["id"]] = op
        return op

    def op_urls(self, op, base):
        u = "%s/subscriptions/%s/providers/Microsoft.Compute/locations/%s/operations/%s" % (base, self.sub, op["location"], op["id"])
        return u + "?api-version=" + op["api_version"], u + "?monitor=true&api-version=" + op["api_version"]

    def lro_headers(self, op, base):
        a, loc = self.op_urls(op, base)
        return {"Azure-AsyncOperation": a, "Location": loc, "Retry-After": str(int(self.cfg("retry_after")))}

    def sweep(self):
        t = now()
        for key, coll in list(self.collections.items()):
            if coll["deleting_at"] is not None and t >= coll["deleting_at"]:
                del self.collections[key]
                continue
            for k, rp in list(coll["rps"].items()):
                if rp["deleting_at"] is not None and t >= rp["deleting_at"]:
                    del coll["rps"][k]
        for k, g in list(self.grants.items()):
            if g["expiry"] <= t:
                self.grants.pop(k)
                self.grant_by_container.pop(g["container"], None)
        for k, g in list(self.grant_by_container.items()):
            if g["revoked"] and g["expiry"] <= t:
                del self.grant_by_container[k]

    def dump_state(self):
        t = now()
        out = {"subscription": self.sub, "tenant": self.tenant, "config": self.config, "images_dir": self.images_dir,
               "resource_groups": [], "disks": [], "grants": [], "operations": []}
        for rgl, rg in sorted(self.rgs.items()):
            g = dict(self.render_rg(rg))
            g["vms"] = [self.render_vm(v) for (r, _), v in sorted(self.vms.items()) if r == rgl]
            g["collections"] = []
            for (r, _), c in sorted(self.collections.items()):
                if r != rgl:
                    continue
                cj = self.render_collection(c)
                cj["restorePoints"] = []
                for rp in c["rps"].values():
                    rj = self.render_rp(rp, True)
                    rj["diskRestorePoints"] = [dict(self.render_drp(d), image=d["disk"]["image"]) for d in rp["drps"]]
                    cj["restorePoints"].append(rj)
                g["collections"].append(cj)
            out["resource_groups"].append(g)
        for d in self.disks.values():
            out["disks"].append({"name": d["name"], "resourceGroup": d["rg"], "id": d["id"], "image": d["image"],
                                 "sizeBytes": d["size"], "blobLength": d["size"] + 512, "os": d["os"],
                                 "dataAccessAuthMode": "AzureActiveDirectory" if d["aad"] else None,
                                 "vm": d.get("vm"), "source": d["source"]})
        for g in self.grants.values():
            out["grants"].append({"diskRestorePoint": g["drp"], "container": g["container"], "blob": g["blob"],
                                  "expiry": iso_sas(g["expiry"]), "active": not g["revoked"] and g["expiry"] > t})
        for op in self.ops.values():
            out["operations"].append({"id": op["id"], "kind": op["kind"],
                                      "status": self.op_status(op)})
        return out

    def op_status(self, op):
        if now() < op["done_at"]:
            return "InProgress"
        return "Failed" if op["error"] else "Succeeded"


# ---------------------------------------------------------------- HTTP layer

class Fault:
    def __init__(self, rule):
        self.rule = rule
        self.target = rule.get("target", "any")
        self.method = (rule.get("method") or "").upper()
        self.path_contains = (rule.get("path_contains") or "").lower()
        self.action = rule.get("action", "status")
        self.count = int(rule.get("count", 1))
        self.skip = int(rule.get("skip", 0))
        self.prob = float(rule.get("probability", 1.0))

    def matches(self, target, method, pathq):
        if self.count == 0:
            return False
        if self.target != "any" and self.target != target:
            return False
        if self.method and self.method != method:
            return False
        if self.path_contains and self.path_contains not in pathq.lower():
            return False
        if self.skip > 0:
            self.skip -= 1
            return False
        if self.prob < 1.0 and random.random() >= self.prob:
            return False
        if self.count > 0:
            self.count -= 1
        return True


class ResetConnection(Exception):
    pass


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "rpfs-emulator"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = 300

    def setup(self):
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
        self.request = self.server.ssl_ctx.wrap_socket(self.request, server_side=True)
        super().setup()

    def log_message(self, fmt, *args):
        self.server.log("%s %s" % (self.address_string(), fmt % args))

    def log_request(self, code="-", size="-"):
        self.server.log('"%s" %s' % (self.requestline, code))

    def do_GET(self):
        self.dispatch()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_GET

    # ---- plumbing

    def dispatch(self):
        emu = self.server.emu
        self.emu = emu
        self.op = None
        self.fault = None
        self.req_id = str(uuid.uuid4())
        self._counted = False
        ln = int(self.headers.get("Content-Length") or 0)
        self.raw_body = self.rfile.read(ln) if ln else b""
        u = urllib.parse.urlsplit(self.path)
        self.url_path = urllib.parse.unquote(u.path)
        self.query_str = u.query
        self.query = {k.lower(): v for k, v in urllib.parse.parse_qsl(u.query, keep_blank_values=True)}
        self.query_raw = dict(urllib.parse.parse_qsl(u.query, keep_blank_values=True))
        self.segs = [s for s in self.url_path.split("/") if s]
        self.lsegs = [s.lower() for s in self.segs]
        host = self.headers.get("Host") or "127.0.0.1:%d" % self.server.server_address[1]
        self.base = "https://" + host
        try:
            if self.lsegs[:1] == ["_emu"]:
                return self.control()
            target, op = self.classify()
            self.op = op
            with emu.lock:
                if op:
                    emu.stats_requests[op] = emu.stats_requests.get(op, 0) + 1
                if op == "blob_get":
                    # blob GETs in flight (from arrival, injected delays
                    # included), and the most since the last reset
                    emu.gets_in_flight += 1
                    emu.gets_in_flight_max = max(emu.gets_in_flight_max, emu.gets_in_flight)
                emu.sweep()
                for f in emu.faults:
                    if f.matches(target, self.command, self.url_path + ("?" + self.query_str if self.query_str else "")):
                        self.fault = f
                        emu.faults_injected += 1
                        break
            self.target = target
            if self.fault:
                r = self.fault.rule
                if self.fault.action in ("delay",):
                    time.sleep(float(r.get("seconds", 1)))
                elif self.fault.action == "status":
                    hdrs = {}
                    if r.get("retry_after") is not None:
                        hdrs["Retry-After"] = str(r["retry_after"])
                    raise ApiError(int(r.get("status", 503)), r.get("code") or "ServerBusy",
                                   r.get("message") or "Injected fault.", hdrs)
                elif self.fault.action == "malformed":
                    return self.send(200, {"Content-Type": "application/json; charset=utf-8"}, b'{"value": [{"id": "/subscri')
            if target == "blob":
                return self.blob()
            if target == "token":
                return self.token()
            self.arm()
        except ResetConnection:
            self.close_connection = True
        except ApiError as e:
            self.send_error_body(e)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            self.close_connection = True
        except Exception as e:
            traceback.print_exc(file=sys.stderr)
            self.send_error_body(ApiError(500, "InternalServerError", "Emulator error: %r" % e))
        finally:
            if self.op == "blob_get":
                with emu.lock:
                    emu.gets_in_flight -= 1

    def classify(self):
        s, m = self.lsegs, self.command
        if s[:1] == ["blob"]:
            if self.query.get("comp") == "pagelist":
                return "blob", "blob_pagelist"
            return "blob", "blob_head" if m == "HEAD" else "blob_get"
        if (len(s) == 4 and s[1:] == ["oauth2", "v2.0", "token"]) or (len(s) == 3 and s[1:] == ["oauth2", "token"]) \
                or s == ["msi", "token"] or s == ["metadata", "identity", "oauth2", "token"]:
            return "token", "token"
        if len(s) == 8 and s[0] == "subscriptions" and s[2:4] == ["providers", "microsoft.compute"] and s[4] == "locations" and s[6] == "operations":
            return "lro", "operation_get"
        return "arm", self.arm_op()

    def arm_op(self):
        s, m = self.lsegs, self.command
        if len(s) == 3 and s[2] == "resourcegroups":
            return "resourcegroups_list"
        if len(s) == 5 and s[2:] == ["providers", "microsoft.compute", "restorepointcollections"]:
            return "collection_list"
        if len(s) < 7 or s[2] != "resourcegroups" or s[4:6] != ["providers", "microsoft.compute"]:
            return None
        r = s[6:]
        if r[0] == "virtualmachines":
            return "vm_get"
        if r[0] == "disks" and len(r) == 2:
            return {"PUT": "disk_put"}.get(m, "disk_get")
        if r[0] != "restorepointcollections":
            return None
        if len(r) == 1:
            return "collection_list"
        if len(r) == 2:
            return {"PUT": "collection_put", "PATCH": "collection_patch", "DELETE": "collection_delete"}.get(m, "collection_get")
        if len(r) == 4:
            return {"PUT": "rp_put", "DELETE": "rp_delete"}.get(m, "rp_get")
        if len(r) == 5:
            return "drp_list"
        if len(r) == 6:
            return "drp_get"
        if len(r) == 7:
            return {"begingetaccess": "begin_get_access", "endgetaccess": "end_get_access"}.get(r[6])
        return None

    def common_headers(self, h):
        h.setdefault("x-ms-request-id", self.req_id)
        if getattr(self, "target", None) != "blob":
            h.setdefault("x-ms-correlation-request-id", self.headers.get("x-ms-correlation-request-id") or self.req_id)
            h.setdefault("x-ms-routing-request-id", "WESTEUROPE:%s:%s" % (time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()), self.req_id))
        else:
            h.setdefault("x-ms-version", SAS_VERSION)
        h.setdefault("Date", self.date_time_string())
        return h

    def send(self, status, headers, body=b"", length=None, stream=None):
        """Sends a response; body bytes or stream=callable(write) with length."""
        headers = self.common_headers(dict(headers))
        if length is None:
            length = len(body)
        f = self.fault
        reset_after = None
        bps = None
        if f is not None and f.action == "reset":
            reset_after = int(f.rule.get("after_bytes", 0))
        elif f is not None and f.action == "slow":
            bps = max(1, int(f.rule.get("bytes_per_second", 65536)))
        self.send_response(status)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD":
            return
        sent = [0]
        t0 = time.monotonic()

        def write(buf):
            mv = memoryview(buf)
            if reset_after is not None:
                room = reset_after - sent[0]
                if room < len(mv):
                    if room > 0:
                        self.wfile.write(mv[:room])
                        sent[0] += room
                    self.count_bytes(sent[0])
                    self.abort()
            if bps is not None:
                step = max(1, min(len(mv), bps // 10))
                for i in range(0, len(mv), step):
                    self.wfile.write(mv[i:i + step])
                    sent[0] += len(mv[i:i + step])
                    ahead = sent[0] / bps - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)
                return
            self.wfile.write(mv)
            sent[0] += len(mv)

        try:
            if stream is not None:
                stream(write)
            elif body:
                write(body)
            if reset_after is not None:
                self.count_bytes(sent[0])
                self.abort()
        finally:
            self.count_bytes(sent[0])

    def count_bytes(self, n):
        if self.op and n and not getattr(self, "_counted", False):
            self._counted = True
            with self.emu.lock:
                self.emu.stats_bytes[self.op] = self.emu.stats_bytes.get(self.op, 0) + n

    def abort(self):
        try:
            self.wfile.flush()
        except Exception:
            pass
        try:
            raw = self.request
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raw.close()
        except Exception:
            pass
        raise ResetConnection()

    def send_json(self, status, obj, headers=None):
        h = {"Content-Type": "application/json; charset=utf-8"}
        if self.target == "arm" or self.target == "lro":
            h["x-ms-ratelimit-remaining-subscription-%s" % ("reads" if self.command == "GET" else "writes")] = "11999"
        h.update(headers or {})
        body = b"" if obj is None else json.dumps(obj).encode()
        self.send(status, h, body)

    def send_error_body(self, e):
        target = getattr(self, "target", "arm")
        if target == "blob":
            body = ('<?xml version="1.0" encoding="utf-8"?><Error><Code>%s</Code><Message>%s\nRequestId:%s\nTime:%s</Message></Error>'
                    % (e.code, xml_escape(e.message), self.req_id, iso(now()))).encode()
            h = {"Content-Type": "application/xml", "x-ms-error-code": e.code}
            h.update(e.headers)
            self.send(e.status, h, body)
        elif target == "token" and e.status in (400, 401) and e.code.islower():
            h = {"Content-Type": "application/json; charset=utf-8"}
            h.update(e.headers)
            self.send(e.status, h, json.dumps({"error": e.code, "error_description": e.message, "error_codes": [7000215],
                                               "timestamp": iso(now()), "trace_id": self.req_id,
                                               "correlation_id": self.req_id}).encode())
        else:
            h = {"Content-Type": "application/json; charset=utf-8", "x-ms-failure-cause": "gateway" if e.status == 401 else "service"}
            h.update(e.headers)
            self.send(e.status, h, json.dumps({"error": {"code": e.code, "message": e.message}}).encode())

    def json_body(self):
        if not self.raw_body:
            return {}
        try:
            b = json.loads(self.raw_body)
        except ValueError:
            raise ApiError(400, "InvalidRequestContent", "The request content was invalid and could not be deserialized.")
        if not isinstance(b, dict):
            raise ApiError(400, "InvalidRequestContent", "The request content must be a JSON object.")
        return b

    # ---- control API

    def control(self):
        emu = self.emu
        self.target = "control"
        s, m = self.lsegs[1:], self.command
        with emu.lock:
            if s == ["faults"] and m == "POST":
                rules = self.json_body().get("rules", [])
                emu.faults.extend(Fault(r) for r in rules)
                return self.send_json(200, {"rules": len(emu.faults)})
            if s == ["faults"] and m == "DELETE":
                emu.faults.clear()
                return self.send_json(200, {"rules": 0})
            if s == ["faults"] and m == "GET":
                return self.send_json(200, {"rules": [dict(f.rule, remaining=f.count) for f in emu.faults]})
            if s == ["stats"] and m == "GET":
                emu.sweep()
                return self.send_json(200, {"requests": emu.stats_requests, "bytes": emu.stats_bytes,
                                            "faults_injected": emu.faults_injected,
                                            "active_grants": emu.active_grant_count(),
                                            "gets_in_flight_max": emu.gets_in_flight_max})
            if s == ["stats", "reset"] and m == "POST":
                emu.stats_requests.clear()
                emu.stats_bytes.clear()
                emu.faults_injected = 0
                emu.gets_in_flight_max = emu.gets_in_flight
                return self.send_json(200, {})
            if s == ["config"] and m == "POST":
                b = self.json_body()
                bad = [k for k in b if k not in emu.config]
                if bad:
                    raise ApiError(400, "UnknownConfig", "unknown config keys: %s" % bad)
                emu.config.update(b)
                return self.send_json(200, emu.config)
            if s == ["config"] and m == "GET":
                return self.send_json(200, emu.config)
            if s == ["tokens", "expire"] and m == "POST":
                t = now() - 1
                for tok in emu.tokens.values():
                    tok["expiry"] = min(tok["expiry"], t)
                return self.send_json(200, {"expired": len(emu.tokens)})
            if s == ["tokens", "new"] and m == "POST":
                b = self.json_body()
                tok = self.server.issue_token(b.get("resource", ARM_AUDIENCE), float(b.get("lifetime", 86400)))
                return self.send_json(200, {"token": tok, "expires_on": int(emu.tokens[tok]["expiry"])})
            if s == ["state"] and m == "GET":
                emu.sweep()
                return self.send_json(200, emu.dump_state())
        raise ApiError(404, "NotFound", "unknown control endpoint")

    # ---- tokens

    def token(self):
        emu = self.emu
        s = self.lsegs
        if s in (["msi", "token"], ["metadata", "identity", "oauth2", "token"]):
            if s[0] == "msi":
                if self.headers.get("X-IDENTITY-HEADER") != emu.identity_header:
                    raise ApiError(401, "invalid_request", "X-IDENTITY-HEADER is missing or wrong.")
            elif (self.headers.get("Metadata") or "").lower() != "true":
                raise ApiError(400, "invalid_request", "Required metadata header not specified")
            if not self.query.get("api-version"):
                raise ApiError(400, "invalid_request", "api-version is required")
            resource = self.query.get("resource")
            if not resource:
                raise ApiError(400, "invalid_request", "resource is required")
            with emu.lock:
                life = float(emu.cfg("token_lifetime"))
                tok = self.server.issue_token(resource, life)
                exp = int(emu.tokens[tok]["expiry"])
            out = {"access_token": tok, "expires_on": str(exp), "resource": resource, "token_type": "Bearer",
                   "client_id": emu.client_id}
            if s[0] == "metadata":
                out.update({"expires_in": str(int(life)), "not_before": str(int(now()) - 300)})
            return self.send_json(200, out)
        if self.command != "POST":
            raise ApiError(405, "invalid_request", "Use POST.")
        if self.segs[0].lower() not in (emu.tenant.lower(), "organizations"):
            raise ApiError(400, "invalid_request", "AADSTS90002: Tenant '%s' not found." % self.segs[0])
        form = dict(urllib.parse.parse_qsl(self.raw_body.decode("utf-8", "replace")))
        if form.get("grant_type") != "client_credentials":
            raise ApiError(400, "unsupported_grant_type", "AADSTS70003: grant_type must be client_credentials.")
        if form.get("client_id") != emu.client_id:
            raise ApiError(400, "unauthorized_client", "AADSTS700016: Application '%s' was not found." % form.get("client_id"))
        if "client_assertion" in form:
            if not jwt_has_x5t(form["client_assertion"]):
                raise ApiError(401, "invalid_client", "AADSTS50027: Invalid JWT token.")
        elif form.get("client_secret") != emu.client_secret:
            raise ApiError(401, "invalid_client", "AADSTS7000215: Invalid client secret provided.")
        v2 = s[2] == "v2.0"
        if v2:
            scope = form.get("scope", "")
            resource = scope.split()[0].rsplit("/.default", 1)[0] + "/" if scope else ARM_AUDIENCE
            resource = resource.replace("//", "/").replace(":/", "://")
        else:
            resource = form.get("resource") or ARM_AUDIENCE
        with emu.lock:
            life = float(emu.cfg("token_lifetime"))
            tok = self.server.issue_token(resource, life)
            exp = int(emu.tokens[tok]["expiry"])
        if v2:
            out = {"token_type": "Bearer", "expires_in": int(life), "ext_expires_in": int(life), "access_token": tok}
        else:
            out = {"token_type": "Bearer", "expires_in": str(int(life)), "ext_expires_in": str(int(life)),
                   "expires_on": str(exp), "not_before": str(int(now()) - 300), "resource": resource, "access_token": tok}
        return self.send_json(200, out)

    def check_bearer(self, audience):
        auth = self.headers.get("Authorization") or ""
        emu = self.emu
        if not auth.lower().startswith("bearer "):
            return "AuthenticationFailed", "Authentication failed. The 'Authorization' header is missing."
        tok = emu.tokens.get(auth[7:].strip())
        if tok is None:
            return "InvalidAuthenticationToken", "The access token is invalid."
        if tok["expiry"] <= now():
            return "InvalidAuthenticationTokenExpired", "The access token expiry UTC time '%s' is earlier than current UTC time '%s'." % (
                iso(tok["expiry"]), iso(now()))
        if tok["disk"] != (audience == "disk"):
            return "InvalidAuthenticationTokenAudience", "The access token has been obtained for wrong audience or resource."
        return None

    # ---- blob

    def blob(self):
        emu = self.emu
        if self.command not in ("GET", "HEAD"):
            raise ApiError(405, "UnsupportedHttpVerb", "The resource doesn't support specified Http Verb.")
        if len(self.segs) != 3:
            raise ApiError(404, "BlobNotFound", "The specified blob does not exist.")
        container, blobname = self.segs[1], self.segs[2]
        q = self.query_raw
        path = "/blob/%s/%s" % (container, blobname)
        with emu.lock:
            g = emu.grant_by_container.get(container)
            err = None
            try:
                sig_ok = hmac.compare_digest(emu.sign(q.get("sp", ""), q.get("st", ""), q.get("se", ""), path), q.get("sig", ""))
            except Exception:
                sig_ok = False
            if not sig_ok or q.get("sv") != SAS_VERSION or q.get("sr") != "b":
                err = "Signature did not match."
            elif "r" not in q.get("sp", ""):
                err = "This request is not authorized to perform this operation using this permission."
            else:
                try:
                    if parse_sas_time(q["se"]) <= now():
                        err = "Signed expiry time [%s] must be after signed start time and current time." % q["se"]
                except (KeyError, ValueError):
                    err = "Signed expiry time is invalid."
            if err is None and (g is None or g["revoked"] or g["blob"] != blobname):
                err = "The access grant for this SAS has been revoked or does not exist."
            if err:
                raise ApiError(403, "AuthenticationFailed",
                               "Server failed to authenticate the request. Make sure the value of Authorization header is formed correctly including the signature. " + err)
            if g["aad"]:
                bad = self.check_bearer("disk")
                if bad:
                    raise ApiError(401, "InvalidAuthenticationInfo", "Server failed to authenticate the request. Please refer to the information in the www-authenticate header. " + bad[1],
                                   {"WWW-Authenticate": "Bearer authorization_uri=https://login.microsoftonline.com/%s/oauth2/authorize, resource_id=%s" % (emu.tenant, DISK_AUDIENCE)})
            img = emu.image(g["image"])
        hdrs = {"x-ms-blob-type": "PageBlob", "Accept-Ranges": "bytes", "ETag": img.etag, "Last-Modified": img.last_modified,
                "x-ms-server-encrypted": "true", "x-ms-lease-status": "unlocked", "x-ms-lease-state": "available"}
        rng = self.headers.get("x-ms-range") or self.headers.get("Range")
        total = img.blob_len
        span = None
        if rng:
            span = parse_range(rng, total)
        if self.op == "blob_pagelist":
            return self.pagelist(img, span, hdrs)
        if span is None:
            hdrs["Content-Type"] = "application/octet-stream"
            hdrs["x-ms-blob-sequence-number"] = "0"
            return self.send(200, hdrs, length=total, stream=lambda w: stream_image(img, 0, total, w))
        a, b = span
        if a >= total:
            raise ApiError(416, "InvalidRange", "The range specified is invalid for the current size of the resource.",
                           {"Content-Range": "bytes */%d" % total})
        b = min(b, total - 1)
        hdrs["Content-Type"] = "application/octet-stream"
        hdrs["Content-Range"] = "bytes %d-%d/%d" % (a, b, total)
        hdrs["x-ms-blob-content-length"] = str(total)
        return self.send(206, hdrs, length=b - a + 1, stream=lambda w: stream_image(img, a, b + 1, w))

    def pagelist(self, img, span, hdrs):
        if not self.emu.cfg("pagelist"):
            raise ApiError(400, "InvalidQueryParameterValue", "Value for one of the query parameters specified in the request URI is invalid. comp=pagelist is not supported for this blob.")
        total = img.blob_len
        a, b = (0, total - 1) if span is None else (span[0], min(span[1], total - 1))
        if span is not None and a >= total:
            raise ApiError(416, "InvalidRange", "The range specified is invalid for the current size of the resource.")
        if a % 512 or (b + 1) % 512:
            raise ApiError(416, "InvalidPageRange", "The page range specified is invalid: must be 512-byte aligned.")
        ranges = img.data_ranges(a, b + 1)
        fa, fb = img.size, total
        if fa <= b and fb > a:
            fa2, fb2 = max(a, fa), min(b + 1, fb)
            if ranges and ranges[-1][1] >= fa2:
                ranges[-1][1] = fb2
            else:
                ranges.append([fa2, fb2])
        parts = ['<?xml version="1.0" encoding="utf-8"?>\n<PageList>']
        for x, y in ranges:
            parts.append("<PageRange><Start>%d</Start><End>%d</End></PageRange>" % (x, y - 1))
        parts.append("</PageList>")
        hdrs["Content-Type"] = "application/xml"
        hdrs["x-ms-blob-content-length"] = str(total)
        self.send(200, hdrs, "".join(parts).encode())

    # ---- ARM

    def api_version(self, family):
        v = self.query.get("api-version")
        if not v:
            raise ApiError(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
        core = v.split("-preview")[0]
        lo = {"compute": COMPUTE_MIN, "diskrp": DISKRP_MIN, "resources": RESOURCES_MIN}[family]
        ok = len(core) == 10 and core >= lo
        if ok and family == "compute" and core.endswith("-02"):
            ok = False
        if ok and family == "diskrp" and not core.endswith("-02"):
            ok = False
        if not ok:
            kind = {"compute": "restorePointCollections", "diskrp": "diskRestorePoints", "resources": "resourceGroups"}[family]
            raise ApiError(400, "NoRegisteredProviderFound",
                           "No registered resource provider found for location and API version '%s' for type '%s'." % (v, kind))
        return v

    def arm(self):
        emu = self.emu
        s = self.lsegs
        if len(s) < 2 or s[0] != "subscriptions":
            raise ApiError(404, "NotFound", "The requested resource %s was not found." % self.url_path)
        target_family = "compute"
        if self.op in ("resourcegroups_list",) or (len(s) == 4 and s[2] == "resourcegroups"):
            target_family = "resources"
        elif self.op in ("drp_get", "drp_list", "begin_get_access", "end_get_access", "disk_put", "disk_get"):
            target_family = "diskrp"
        elif self.op == "operation_get":
            target_family = None
        if self.op == "operation_get":
            if not self.query.get("api-version"):
                raise ApiError(400, "MissingApiVersionParameter", "The api-version query parameter (?api-version=) is required for all requests.")
            self.apiv = self.query["api-version"]
        else:
            self.apiv = self.api_version(target_family)
        with emu.lock:
            bad = self.check_bearer("arm")
        if bad:
            raise ApiError(401, bad[0], bad[1], {"WWW-Authenticate": 'Bearer authorization_uri="https://login.windows.net/%s", error="invalid_token", error_description="%s"' % (emu.tenant, bad[1])})
        if s[1] != emu.sub.lower():
            raise ApiError(404, "SubscriptionNotFound", "The subscription '%s' could not be found." % self.segs[1])
        with emu.lock:
            emu.sweep()
            return self.arm_locked()

    def page(self, items, render):
        size = max(1, int(self.emu.cfg("page_size")))
        try:
            start = int(self.query.get("$skiptoken") or 0)
        except ValueError:
            raise ApiError(400, "InvalidSkipToken", "The $skiptoken is invalid.")
        chunk = items[start:start + size]
        out = {"value": [render(x) for x in chunk]}
        if start + size < len(items):
            q = [(k, v) for k, v in self.query_raw.items() if k.lower() != "$skiptoken"]
            q.append(("$skiptoken", str(start + size)))
            out["nextLink"] = self.base + self.url_path + "?" + urllib.parse.urlencode(q)
        return self.send_json(200, out)

    def get_rg(self, name):
        rg = self.emu.rgs.get(name.lower())
        if rg is None:
            raise ApiError(404, "ResourceGroupNotFound", "Resource group '%s' could not be found." % name)
        return rg

    def get_coll(self, rg, name):
        c = self.emu.collections.get((rg.lower(), name.lower()))
        if c is None:
            raise ApiError(404, "ResourceNotFound", "The Resource 'Microsoft.Compute/restorePointCollections/%s' under resource group '%s' was not found." % (name, rg))
        return c

    def get_rp(self, coll, name):
        rp = coll["rps"].get(name.lower())
        if rp is None:
            raise ApiError(404, "NotFound", "The Restore Point '%s' was not found in collection '%s'." % (name, coll["name"]))
        return rp

    def get_drp(self, rp, name):
        for d in rp["drps"]:
            if d["name"].lower() == name.lower():
                return d
        raise ApiError(404, "NotFound", "Disk restore point '%s' was not found." % name)

    def arm_locked(self):
        emu = self.emu
        s, segs, m, op = self.lsegs, self.segs, self.command, self.op
        if op == "operation_get":
            return self.operation_get()
        if op == "resourcegroups_list":
            return self.page(sorted(emu.rgs.values(), key=lambda r: r["name"].lower()), emu.render_rg)
        if len(s) == 4 and s[2] == "resourcegroups" and m == "GET":
            return self.send_json(200, emu.render_rg(self.get_rg(segs[3])))
        if op == "collection_list" and len(s) == 5:
            return self.page(sorted(emu.collections.values(), key=lambda c: (c["rg"].lower(), c["name"].lower())), emu.render_collection)
        if op is None:
            raise ApiError(404, "NotFound", "No HTTP resource was found that matches the request URI '%s'." % self.url_path)
        rgname = segs[3]
        rg = self.get_rg(rgname)
        r, rs = segs[6:], s[6:]
        if op == "vm_get":
            if len(rs) != 2 or m != "GET":
                raise ApiError(404, "NotFound", "Unsupported virtual machine operation.")
            vm = emu.vms.get((rg["name"].lower(), rs[1]))
            if vm is None:
                raise ApiError(404, "ResourceNotFound", "The Resource 'Microsoft.Compute/virtualMachines/%s' under resource group '%s' was not found." % (r[1], rgname))
            return self.send_json(200, emu.render_vm(vm))
        if op in ("disk_get", "disk_put"):
            return self.disk(rg, r[1])
        if op == "collection_list":
            items = sorted((c for (g, _), c in emu.collections.items() if g == rg["name"].lower()), key=lambda c: c["name"].lower())
            return self.page(items, emu.render_collection)
        if op.startswith("collection_"):
            return self.collection(rg, r[1])
        coll = self.get_coll(rg["name"], r[1])
        if op.startswith("rp_"):
            return self.restore_point(coll, r[3])
        rp = self.get_rp(coll, r[3])
        if op == "drp_list":
            if m != "GET":
                raise ApiError(405, "MethodNotAllowed", "Method not allowed.")
            return self.page(list(rp["drps"]), emu.render_drp)
        drp = self.get_drp(rp, r[5])
        if op == "drp_get":
            if m != "GET":
                raise ApiError(405, "MethodNotAllowed", "Method not allowed.")
            return self.send_json(200, emu.render_drp(drp))
        if m != "POST":
            raise ApiError(405, "MethodNotAllowed", "Method not allowed.")
        loc = coll["location"]
        if op == "begin_get_access":
            b = self.json_body()
            if (b.get("access") or "").lower() != "read":
                raise ApiError(400, "InvalidParameter", "Only 'Read' access is supported for disk restore points.")
            try:
                dur = int(b.get("durationInSeconds"))
            except (TypeError, ValueError):
                raise ApiError(400, "InvalidParameter", "durationInSeconds is required.")
            if dur <= 0:
                raise ApiError(400, "InvalidParameter", "durationInSeconds must be positive.")
            why = emu.rp_usable(rp)
            if why:
                raise ApiError(409, "OperationNotAllowed", "Cannot grant access to disk restore point '%s': %s." % (drp["name"], why))
            g = emu.grant(drp, dur)
            sas = emu.sas_url(g)
            opr = emu.new_op("grant", loc, self.apiv, now() + emu.cfg("grant_seconds"), output={"accessSAS": sas},
                             result=("json", {"accessSAS": sas}))
            return self.send(202, dict(emu.lro_headers(opr, self.base), **{"Content-Type": "application/json"}))
        if op == "end_get_access":
            emu.revoke(drp)
            opr = emu.new_op("revoke", loc, self.apiv, now() + emu.cfg("grant_seconds"))
            return self.send(202, emu.lro_headers(opr, self.base))
        raise ApiError(404, "NotFound", "Unknown operation.")

    def collection(self, rg, name):
        emu, m = self.emu, self.command
        key = (rg["name"].lower(), name.lower())
        coll = emu.collections.get(key)
        if m == "GET":
            if coll is None:
                self.get_coll(rg["name"], name)
            expand = (self.query.get("$expand") or "").lower() == "restorepoints"
            return self.send_json(200, emu.render_collection(coll, expand))
        if m == "PUT":
            b = self.json_body()
            props = b.get("properties") or {}
            src = (props.get("source") or {}).get("id")
            loc = b.get("location")
            if coll is not None:
                if coll["deleting_at"] is not None:
                    raise ApiError(409, "OperationNotAllowed", "The restore point collection is being deleted.")
                if loc and loc.replace(" ", "").lower() != coll["location"].replace(" ", "").lower():
                    raise ApiError(409, "PropertyChangeNotAllowed", "Changing property 'location' is not allowed.")
                if src and src.rstrip("/").lower() != coll["source_id"].rstrip("/").lower():
                    raise ApiError(409, "PropertyChangeNotAllowed", "Changing property 'source.id' is not allowed.")
                if "tags" in b:
                    coll["tags"] = dict(b.get("tags") or {})
                return self.send_json(200, emu.render_collection(coll))
            if not loc:
                raise ApiError(400, "LocationRequired", "The location property is required for this definition.")
            if not src:
                raise ApiError(400, "InvalidParameter", "Required parameter 'properties.source.id' is missing (null).")
            if not valid_name(name):
                raise ApiError(400, "InvalidParameter", "The resource name '%s' is invalid." % name)
            coll = emu.new_collection(rg["name"], name, loc, src, b.get("tags") or {}, now())
            return self.send_json(201, emu.render_collection(coll))
        if coll is None:
            if m == "DELETE":
                return self.send(204, {})
            self.get_coll(rg["name"], name)
        if m == "PATCH":
            b = self.json_body()
            if "tags" in b:
                coll["tags"] = dict(b.get("tags") or {})
            return self.send_json(200, emu.render_collection(coll))
        if m == "DELETE":
            for rp in coll["rps"].values():
                for d in rp["drps"]:
                    if emu.active_grant(d):
                        raise ApiError(409, "DiskRestorePointUsedByCustomer",
                                       "Disk restore point '%s' of restore point '%s' has an active SAS. Revoke access before deleting." % (d["name"], rp["name"]))
            coll["deleting_at"] = now() + emu.cfg("lro_seconds")
            for rp in coll["rps"].values():
                rp["deleting_at"] = coll["deleting_at"]
            opr = emu.new_op("collection_delete", coll["location"], self.apiv, coll["deleting_at"])
            return self.send(202, emu.lro_headers(opr, self.base))
        raise ApiError(405, "MethodNotAllowed", "Method not allowed.")

    def restore_point(self, coll, name):
        emu, m = self.emu, self.command
        rp = coll["rps"].get(name.lower())
        if m == "GET":
            if rp is None:
                self.get_rp(coll, name)
            iv = (self.query.get("$expand") or "").lower() == "instanceview"
            return self.send_json(200, emu.render_rp(rp, iv))
        if m == "PUT":
            b = self.json_body()
            if "location" in b and b["location"]:
                raise ApiError(400, "InvalidParameter", "Restore points are proxy resources; 'location' must not be specified.")
            canon = json.dumps(b.get("properties") or {}, sort_keys=True)
            if rp is not None:
                if rp["deleting_at"] is None and canon == json.dumps(rp["body"].get("properties") or {}, sort_keys=True):
                    return self.send_json(201, emu.render_rp(rp), emu.lro_headers(rp["op"], self.base) if rp["op"] else None)
                raise ApiError(409, "OperationNotAllowed", "Restore point '%s' already exists; updating a restore point is not allowed." % name)
            if coll["deleting_at"] is not None:
                raise ApiError(409, "OperationNotAllowed", "The restore point collection is being deleted.")
            if not valid_name(name):
                raise ApiError(400, "InvalidParameter", "The resource name '%s' is invalid." % name)
            props = b.get("properties") or {}
            src_rp = None
            srp_id = (props.get("sourceRestorePoint") or {}).get("id")
            if coll["source_kind"] == "collection":
                if not srp_id:
                    raise ApiError(400, "InvalidParameter", "properties.sourceRestorePoint.id is required for a restore point in a copy collection.")
                p = srp_id.strip("/").split("/")
                lp = [x.lower() for x in p]
                if len(p) != 10 or lp[6] != "restorepointcollections" or lp[8] != "restorepoints":
                    raise ApiError(400, "InvalidParameter", "properties.sourceRestorePoint.id '%s' is not a restore point id." % srp_id)
                sc = emu.collections.get((lp[3], lp[7]))
                src_rp = sc["rps"].get(lp[9]) if sc else None
                if src_rp is None or sc["id"].lower() != coll["source_id"].rstrip("/").lower():
                    raise ApiError(404, "NotFound", "Source restore point '%s' was not found in the source collection." % srp_id)
                if emu.rp_state(src_rp) != "Succeeded":
                    raise ApiError(409, "OperationNotAllowed", "Source restore point '%s' is not in Succeeded state." % srp_id)
            elif srp_id:
                raise ApiError(400, "InvalidParameter", "sourceRestorePoint is only allowed in a collection whose source is another collection.")
            vm = emu.source_vm_of(coll)
            exclude = []
            for e in props.get("excludeDisks") or []:
                did = (e or {}).get("id") or ""
                if vm is None or not any(d["id"].lower() == did.rstrip("/").lower() for d in vm["disks"]):
                    raise ApiError(400, "InvalidParameter", "Excluded disk '%s' is not attached to the source virtual machine." % did)
                exclude.append(next(d["id"] for d in vm["disks"] if d["id"].lower() == did.rstrip("/").lower()))
            rp = emu.new_restore_point(coll, name, b, exclude, src_rp, now())
            err = None
            if rp["fail"]:
                err = {"code": "VMRestorePointInternalError", "message": "Restore point creation failed for virtual machine '%s' (scenario fail_restore_points)." % rp["vm"]["name"]}
            rp["op"] = emu.new_op("rp_create", coll["location"], self.apiv, rp["created"] + rp["lro"], fail_error=err,
                                  result=("rp", rp))
            return self.send_json(201, emu.render_rp(rp), emu.lro_headers(rp["op"], self.base))
        if rp is None:
            if m == "DELETE":
                return self.send(204, {})
            self.get_rp(coll, name)
        if m == "DELETE":
            for d in rp["drps"]:
                if emu.active_grant(d):
                    raise ApiError(409, "DiskRestorePointUsedByCustomer",
                                   "Disk restore point '%s' has an active SAS. Revoke access before deleting the restore point." % d["name"])
            if rp["deleting_at"] is None:
                rp["deleting_at"] = now() + emu.cfg("lro_seconds")
            opr = emu.new_op("rp_delete", coll["location"], self.apiv, rp["deleting_at"])
            return self.send(202, emu.lro_headers(opr, self.base))
        raise ApiError(405, "MethodNotAllowed", "Method not allowed.")

    def disk(self, rg, name):
        emu, m = self.emu, self.command
        key = (rg["name"].lower(), name.lower())
        disk = emu.disks.get(key)
        if m == "GET":
            if disk is None:
                raise ApiError(404, "ResourceNotFound", "The Resource 'Microsoft.Compute/disks/%s' under resource group '%s' was not found." % (name, rg["name"]))
            return self.send_json(200, emu.render_disk(disk))
        if m != "PUT":
            raise ApiError(405, "MethodNotAllowed", "Method not allowed.")
        b = self.json_body()
        cd = (b.get("properties") or {}).get("creationData") or {}
        if disk is not None:
            raise ApiError(409, "OperationNotAllowed", "Disk '%s' already exists; only restore into a new disk is supported by the emulator." % name)
        if not b.get("location"):
            raise ApiError(400, "LocationRequired", "The location property is required for this definition.")
        if (cd.get("createOption") or "").lower() != "restore":
            raise ApiError(400, "InvalidParameter", "The emulator only supports creationData.createOption 'Restore'.")
        src = (cd.get("sourceResourceId") or "").strip("/")
        p = src.split("/")
        lp = [x.lower() for x in p]
        drp = None
        if len(p) == 12 and lp[6] == "restorepointcollections" and lp[10] == "diskrestorepoints":
            c = emu.collections.get((lp[3], lp[7]))
            rp = c["rps"].get(lp[9]) if c else None
            if rp:
                drp = next((d for d in rp["drps"] if d["name"].lower() == lp[11]), None)
        if drp is None:
            raise ApiError(404, "NotFound", "Source disk restore point '%s' was not found." % cd.get("sourceResourceId"))
        why = emu.rp_usable(drp["rp"])
        if why:
            raise ApiError(409, "OperationNotAllowed", "Cannot restore from '%s': %s." % (drp["name"], why))
        if b["location"].replace(" ", "").lower() != drp["rp"]["coll"]["location"].replace(" ", "").lower():
            raise ApiError(400, "InvalidParameter", "The disk must be created in the region of the disk restore point (%s)." % drp["rp"]["coll"]["location"])
        src_disk = drp["disk"]
        disk = {"name": name, "rg": rg["name"], "location": b["location"], "image": src_disk["image"], "size": src_disk["size"],
                "os": src_disk["os"], "lun": None, "aad": False, "id": emu.arm_id(rg["name"], "disks", name),
                "created": now(), "lro": emu.cfg("lro_seconds"), "source": drp["id"], "vm": None, "family": str(uuid.uuid4()),
                "unique_id": str(uuid.uuid4()), "sku": ((b.get("sku") or {}).get("name") or "Standard_LRS")}
        emu.disks[key] = disk
        opr = emu.new_op("disk_create", disk["location"], self.apiv, disk["created"] + disk["lro"], result=("disk", disk))
        body = emu.render_disk(disk)
        return self.send_json(202, body, emu.lro_headers(opr, self.base))

    def operation_get(self):
        emu = self.emu
        opid = self.segs[7]
        opr = emu.ops.get(opid) or emu.ops.get(opid.lower())
        if opr is None:
            raise ApiError(404, "NotFound", "Operation '%s' was not found." % opid)
        st = emu.op_status(opr)
        ra = {"Retry-After": str(int(emu.cfg("retry_after")))}
        monitor = (self.query.get("monitor") or "").lower() == "true"
        if monitor:
            if st == "InProgress":
                _, loc = emu.op_urls(opr, self.base)
                return self.send(202, dict(ra, Location=loc))
            if st == "Failed":
                return self.send_json(200, {"error": opr["error"]})
            res = opr["result"]
            if res and res[0] == "json":
                return self.send_json(200, res[1])
            if res and res[0] == "rp":
                return self.send_json(200, emu.render_rp(res[1]))
            if res and res[0] == "disk":
                return self.send_json(200, emu.render_disk(res[1]))
            return self.send(204, {})
        body = {"startTime": emu.ts(opr["start"]), "status": st, "name": opr["id"]}
        if st != "InProgress":
            body["endTime"] = emu.ts(max(opr["start"], opr["done_at"]))
        if st == "Failed":
            body["error"] = opr["error"]
        if st == "Succeeded" and opr["output"]:
            body["properties"] = {"output": opr["output"]}
        return self.send_json(200, body, ra if st == "InProgress" else None)


def stream_image(img, a, b, write):
    """Writes blob bytes [a, b): image data via preadv, holes from ZEROS, then footer."""
    buf = bytearray(CHUNK)
    mv = memoryview(buf)
    pos = a
    fd = img.fd
    size = img.size
    hole_ok = True
    while pos < min(b, size):
        end = min(b, size)
        if hole_ok:
            try:
                d = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                d = size
            if d > pos:
                z = min(d, end) - pos
                while z > 0:
                    n = min(z, CHUNK)
                    write(memoryview(ZEROS)[:n])
                    z -= n
                    pos += n
                continue
            try:
                h = os.lseek(fd, pos, os.SEEK_HOLE)
            except OSError:
                h, hole_ok = size, False
        else:
            h = size
        stop = min(end, h)
        while pos < stop:
            n = os.preadv(fd, [mv[:min(CHUNK, stop - pos)]], pos)
            if n <= 0:
                raise IOError("short read from image")
            write(mv[:n])
            pos += n
    if b > size:
        fa = max(a, size) - size
        write(img.footer[fa:b - size])


def parse_range(value, total):
    v = value.strip()
    if not v.lower().startswith("bytes="):
        raise ApiError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format.")
    spec = v[6:].split(",")[0].strip()
    a, _, b = spec.partition("-")
    try:
        if a == "":
            n = int(b)
            return max(0, total - n), total - 1
        a = int(a)
        b = int(b) if b else total - 1 if total > 0 else 0
    except ValueError:
        raise ApiError(400, "InvalidHeaderValue", "The value for one of the HTTP headers is not in the correct format.")
    if b < a:
        raise ApiError(416, "InvalidRange", "The range specified is invalid for the current size of the resource.")
    return a, b


def valid_name(name):
    return 0 < len(name) <= 80 and all(c.isalnum() or c in "-_." for c in name) and not name.endswith(".")


def xml_escape(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def jwt_has_x5t(tok):
    parts = tok.split(".")
    if len(parts) != 3:
        return False
    try:
        h = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except Exception:
        return False
    return isinstance(h, dict) and ("x5t" in h or "x5t#S256" in h)


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024
    allow_reuse_address = True

    def __init__(self, addr, emu, ssl_ctx, logf):
        self.emu = emu
        self.ssl_ctx = ssl_ctx
        self.logf = logf
        self.log_lock = threading.Lock()
        super().__init__(addr, Handler)

    def log(self, line):
        with self.log_lock:
            self.logf.write("%s %s\n" % (time.strftime("%H:%M:%S"), line))

    def issue_token(self, resource, lifetime):
        tok = secrets.token_urlsafe(32)
        disk = resource.rstrip("/").lower().startswith("https://disk.azure.com")
        self.emu.tokens[tok] = {"expiry": now() + lifetime, "resource": resource, "disk": disk}
        return tok

    def handle_error(self, request, client_address):
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, ssl.SSLError, TimeoutError, OSError)):
            return
        traceback.print_exc(file=sys.stderr)


def make_certs(d):
    ca_key, ca, key, crt = (os.path.join(d, n) for n in ("ca.key", "ca.pem", "server.key", "server.pem"))
    if all(os.path.exists(p) for p in (ca_key, ca, key, crt)):
        return ca, crt, key
    run = lambda *a: subprocess.run(a, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca, "-days", "30",
        "-subj", "/CN=rpfs emulator CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    csr = os.path.join(d, "server.csr")
    ext = os.path.join(d, "server.ext")
    with open(ext, "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr, "-subj", "/CN=localhost")
    run("openssl", "x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out", crt,
        "-days", "30", "-extfile", ext)
    return ca, crt, key


def main():
    ap = argparse.ArgumentParser(description="rpfs local Azure emulator")
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--scenario")
    ap.add_argument("--images")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--blob-base")
    ap.add_argument("--azurite", metavar="URL",
                    help="SAS URLs point at page blobs in this Azurite blob service (https://127.0.0.1:PORT); "
                         "the account key comes from $RPFS_AZURITE_KEY, default the well-known development key")
    ap.add_argument("--azurite-account", default=AZURITE_ACCOUNT)
    args = ap.parse_args()
    if args.azurite and args.blob_base:
        ap.error("--azurite and --blob-base exclude each other")
    emu = Emulator(args)
    ca, crt, key = make_certs(emu.state_dir)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(crt, key)
    logf = open(os.path.join(emu.state_dir, "emulator.log"), "a", buffering=1)
    srv = Server(("127.0.0.1", args.port), emu, ctx, logf)
    port = srv.server_address[1]
    emu.url = "https://127.0.0.1:%d" % port
    if emu.azurite:
        names = {}
        for img in emu.images.values():
            other = names.setdefault(azurite_blob_name(img), img.path)
            if other != img.path:
                sys.exit("emulator: --azurite: images %s and %s would share blob %s; rename one"
                         % (other, img.path, azurite_blob_name(img)))
    if emu.blob_base:
        for img in list(emu.images.values()):
            img.write_vhd(os.path.join(emu.images_dir, img.stem + ".vhd"))
    tok = srv.issue_token(ARM_AUDIENCE, 86400)
    ep = {"url": emu.url, "port": port, "ca": ca, "token": tok, "subscription": emu.sub, "tenant": emu.tenant,
          "client_id": emu.client_id, "client_secret": emu.client_secret, "identity_header": emu.identity_header,
          "images": emu.images_dir, "state_dir": emu.state_dir, "blob_base": emu.blob_base or emu.url,
          "pid": os.getpid(), "blob_backend": "azurite" if emu.azurite else "emulator"}
    if emu.azurite:
        ep["blob_base"] = "%s/%s" % (emu.azurite, emu.azurite_account)
        ep["azurite"] = {"url": emu.azurite, "account": emu.azurite_account, "container": AZURITE_CONTAINER,
                         "blobs": {img.path: azurite_blob_name(img) for img in emu.images.values()}}
    path = os.path.join(emu.state_dir, "endpoint.json")
    with open(path + ".tmp", "w") as f:
        json.dump(ep, f, indent=2)
    os.replace(path + ".tmp", path)
    print("READY " + path, flush=True)
    try:
        srv.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
