"""Azurite, Microsoft's Azure Storage emulator, as the blob backend of the
rpfs emulator (harness `blob_backend="azurite"`, emulator `--azurite URL`).

Job: start Azurite's blob service on 127.0.0.1 (any free port, HTTPS with a
certificate of the emulator's CA, telemetry off, state under the emulator's
state dir), upload disk images into it as page blobs, stop it.

Trade-offs and invariants:
- Azurite comes from tests/emulator/node_modules (`npm ci --prefix
  tests/emulator`, pinned in package.json); nothing global. A missing install
  is an error that names the command, never a skip.
- `--disableTelemetry` is always passed: without it Azurite tries to reach
  an outside service, and this machine has only loopback.
- Uploads use Microsoft's Python SDK (azure.storage.blob) with the published
  development account key, so Azurite's own Shared Key check is exercised.
  Only the image's data extents (SEEK_DATA/SEEK_HOLE, 512-aligned, the same
  ranges the emulator's own page list reports) and the 512-byte VHD footer
  are written with Put Page: a sparse image stays sparse, and Get Page Ranges
  in Azurite lists what the emulator's own endpoint lists.
- The process is ours alone: stop() ends it by its pid (SIGTERM, then
  SIGKILL after 5 s).
"""

import concurrent.futures
import os
import re
import signal
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.join(HERE, "node_modules", ".bin", "azurite-blob")
INSTALL_CMD = "npm ci --prefix tests/emulator"
PUT_PAGE_MAX = 4 << 20  # Put Page's limit per call
READY_RE = re.compile(rb"successfully listens on (https://127\.0\.0\.1:\d+)")


class AzuriteError(RuntimeError):
    pass


class Azurite:
    def __init__(self, proc, url, location, log_path):
        self.proc = proc
        self.url = url
        self.location = location
        self.log_path = log_path

    @classmethod
    def start(cls, location, cert, key, timeout=30.0):
        """Starts azurite-blob with its data in LOCATION; returns when it listens."""
        if not os.access(BIN, os.X_OK):
            raise AzuriteError("Azurite is not installed (%s missing); run: %s" % (BIN, INSTALL_CMD))
        os.makedirs(location, exist_ok=True)
        log_path = os.path.join(location, "azurite.log")
        cmd = [BIN, "--blobHost", "127.0.0.1", "--blobPort", "0", "--cert", cert, "--key", key,
               "--location", location, "--disableTelemetry", "--skipApiVersionCheck", "--loose", "--silent"]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, cwd=location)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(log_path, "rb") as f:
                m = READY_RE.search(f.read())
            if m:
                return cls(proc, m.group(1).decode(), location, log_path)
            if proc.poll() is not None:
                break
            time.sleep(0.05)
        _end(proc)
        with open(log_path, "rb") as f:
            tail = f.read()[-4000:].decode("utf-8", "replace")
        raise AzuriteError("Azurite did not start listening within %.0fs:\n$ %s\n%s"
                           % (timeout, " ".join(cmd), tail))

    def container_client(self, account, key, container, ca):
        from azure.storage.blob import ContainerClient  # lazily: only this mode needs the SDK
        return ContainerClient("%s/%s" % (self.url, account), container,
                               credential={"account_name": account, "account_key": key},
                               connection_verify=ca)

    def upload_images(self, images, account, key, container, ca, workers=4):
        """Creates CONTAINER and one page blob per (Image, blob name) pair.

        Images are the emulator's Image objects (size, footer, fd, data_ranges)."""
        cc = self.container_client(account, key, container, ca)
        try:
            cc.create_container()
        except Exception as e:
            if getattr(e, "error_code", None) != "ContainerAlreadyExists":
                raise
        jobs = []
        for img, name in images:
            if img.size % 512:
                raise AzuriteError("%s: %d bytes is not a multiple of 512, so it cannot be a page blob"
                                   % (img.path, img.size))
            bc = cc.get_blob_client(name)
            bc.create_page_blob(size=img.blob_len)
            for a, b in img.data_ranges(0, img.size):
                for off in range(a, b, PUT_PAGE_MAX):
                    jobs.append((bc, img, off, min(b, off + PUT_PAGE_MAX) - off))
            jobs.append((bc, img, img.size, 512))

        def put(job):
            bc, img, off, n = job
            data = img.footer if off == img.size else os.pread(img.fd, n, off)
            if len(data) != n:
                raise AzuriteError("%s: short read at %d" % (img.path, off))
            bc.upload_page(data, offset=off, length=n)
            return n

        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            return sum(pool.map(put, jobs))

    def stop(self):
        _end(self.proc)


def _end(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
