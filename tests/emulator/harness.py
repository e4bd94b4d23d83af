"""Test-side handle on the rpfs Azure emulator: starts emulator.py as a child
process, waits for its READY line, and wraps the /_emu control API.

Trade-offs: plain urllib with the emulator's CA (no third-party client), one
request per call, JSON in and out. The process is killed by pid on stop();
its stderr goes to STATE_DIR/emulator.stderr so a failing test can show it.
Images default to STATE_DIR/images; set RPFS_EMU_IMAGES or RPFS_IMAGE_CACHE
(or pass images=) to
share one built image cache between emulators.

blob_backend="azurite" puts the SAS URLs' blobs in Microsoft's Azurite
(azurite.py): certificates first (so Azurite can use the emulator's server
certificate), then Azurite, then the emulator with --azurite URL, then the
upload of every scenario image; stop() ends both processes.
"""

import importlib.util
import json
import os
import select
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))


def _load(modname, filename):
    # By path, so this works whether the harness was imported as `harness`
    # or as `emulator.harness`.
    mod = sys.modules.get(modname)
    if mod is None:
        spec = importlib.util.spec_from_file_location(modname, os.path.join(HERE, filename))
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        sys.modules[modname] = mod
    return mod


def _emulator_module():
    return _load("rpfs_emulator_server", "emulator.py")


def _azurite_module():
    return _load("rpfs_emulator_azurite", "azurite.py")


class EmulatorError(RuntimeError):
    pass


class Emulator:
    def __init__(self, proc, state_dir, endpoint, azurite=None):
        self.proc = proc
        self.azurite = azurite  # azurite.Azurite or None
        self.blob_backend = endpoint.get("blob_backend", "emulator")
        self.blob_base = endpoint.get("blob_base")
        self.state_dir = state_dir
        self.endpoint = endpoint
        for k in ("url", "port", "ca", "token", "subscription", "tenant", "client_id", "client_secret",
                  "identity_header", "images"):
            setattr(self, k, endpoint[k])
        self._ctx = ssl.create_default_context(cafile=self.ca)

    @classmethod
    def start(cls, tmpdir, scenario=None, images=None, port=0, blob_base=None, timeout=20.0,
              blob_backend="emulator", extra_args=()):
        if blob_backend not in ("emulator", "azurite"):
            raise ValueError("blob_backend must be 'emulator' or 'azurite', not %r" % (blob_backend,))
        state_dir = os.path.abspath(str(tmpdir))
        os.makedirs(state_dir, exist_ok=True)
        if blob_backend == "azurite":
            return cls._start_azurite(state_dir, scenario, images, port, blob_base, timeout)
        images = images or os.environ.get("RPFS_EMU_IMAGES") or os.environ.get("RPFS_IMAGE_CACHE")
        cmd = [sys.executable if sys.executable else "/usr/bin/python3", os.path.join(HERE, "emulator.py"),
               "--state-dir", state_dir, "--port", str(port)]
        if scenario:
            cmd += ["--scenario", str(scenario)]
        if images:
            cmd += ["--images", str(images)]
        if blob_base:
            cmd += ["--blob-base", blob_base]
        cmd += list(extra_args)
        err = open(os.path.join(state_dir, "emulator.stderr"), "ab")
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL)
        err.close()
        deadline = time.monotonic() + timeout
        line = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([proc.stdout], [], [], 0.2)
            if r:
                line = proc.stdout.readline()
                if line.startswith(b"READY "):
                    break
                if not line and proc.poll() is not None:
                    break
            elif proc.poll() is not None:
                break
        if not line.startswith(b"READY "):
            proc.kill()
            proc.wait()
            tail = open(os.path.join(state_dir, "emulator.stderr"), "rb").read()[-4000:].decode("utf-8", "replace")
            raise EmulatorError("emulator did not become ready within %.0fs:\n%s" % (timeout, tail))
        with open(line[6:].decode().strip()) as f:
            endpoint = json.load(f)
        return cls(proc, state_dir, endpoint)

    @classmethod
    def _start_azurite(cls, state_dir, scenario, images, port, blob_base, timeout):
        if blob_base:
            raise ValueError("blob_base and blob_backend='azurite' exclude each other")
        Azurite = _azurite_module().Azurite
        _emu = _emulator_module()
        _, crt, key = _emu.make_certs(state_dir)
        az = Azurite.start(os.path.join(state_dir, "azurite"), crt, key)
        emu = None
        try:
            emu = cls.start(state_dir, scenario, images, port, timeout=timeout,
                            extra_args=["--azurite", az.url])
            emu.azurite = az
            info = emu.endpoint["azurite"]
            imgs = [(_emu.Image(path), name) for path, name in sorted(info["blobs"].items())]
            try:
                az.upload_images(imgs, info["account"], _emu.AZURITE_KEY, info["container"], emu.ca)
            finally:
                for img, _ in imgs:
                    os.close(img.fd)
            return emu
        except BaseException:
            if emu is not None:
                emu.stop()
            az.stop()
            raise

    def _call(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"} if data is not None else {})
        # A connection reset under a loaded campaign is the loopback's,
        # not an answer: the control calls are idempotent, ask again.
        for attempt in range(3):
            try:
                with urllib.request.urlopen(req, context=self._ctx, timeout=30) as r:
                    raw = r.read()
                break
            except urllib.error.HTTPError as e:
                raise EmulatorError("%s %s -> %d %s" % (method, path, e.code, e.read()[:500]))
            except urllib.error.URLError as e:
                if attempt == 2 or not isinstance(e.reason, ConnectionResetError):
                    raise
                time.sleep(0.2)
        return json.loads(raw) if raw else None

    def faults(self, rules):
        if isinstance(rules, dict):
            rules = [rules]
        return self._call("POST", "/_emu/faults", {"rules": list(rules)})

    def clear_faults(self):
        return self._call("DELETE", "/_emu/faults")

    def config(self, **kw):
        return self._call("POST", "/_emu/config", kw)

    def stats(self):
        return self._call("GET", "/_emu/stats")

    def reset_stats(self):
        return self._call("POST", "/_emu/stats/reset", {})

    def state(self):
        return self._call("GET", "/_emu/state")

    def expire_tokens(self):
        return self._call("POST", "/_emu/tokens/expire", {})

    def new_token(self, resource=None):
        body = {"resource": resource} if resource else {}
        tok = self._call("POST", "/_emu/tokens/new", body)["token"]
        if not resource:
            self.token = tok
        return tok

    def image_path(self, disk_name):
        for d in self.state()["disks"]:
            if d["name"].lower() == disk_name.lower():
                return d["image"]
        raise KeyError(disk_name)

    def blob_bytes(self, disk_name, start=0, length=None):
        """The bytes a blob of this disk holds (image + VHD footer), for comparisons."""
        _emu = _emulator_module()
        img = _emu.Image(self.image_path(disk_name))
        try:
            end = img.blob_len if length is None else min(img.blob_len, start + length)
            out = bytearray()
            _emu.stream_image(img, start, end, out.extend)
            return bytes(out)
        finally:
            os.close(img.fd)

    def stop(self):
        """Stops the emulator and, in azurite mode, Azurite."""
        try:
            self._stop_emulator()
        finally:
            if self.azurite is not None:
                self.azurite.stop()

    def _stop_emulator(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout:
            self.proc.stdout.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
