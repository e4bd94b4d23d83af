#!/usr/bin/python3
"""A cloud-like link on loopback: a TCP proxy that adds latency to every
request and caps the download rate of every connection.

    linkproxy.py LISTEN_PORT TARGET_PORT [--rtt-ms 20] [--mbps 100]

Job: let the benchmark compare rpfs with curl over a link that looks like
Azure Storage seen from a VM (tens of ms per request, ~100 MB/s per TCP
connection) without root, tc or a network namespace.  Both sides bind or
connect to 127.0.0.1 only.

How: TLS is not terminated; bytes are forwarded as they are.  Bytes from
the client (requests, TLS handshake messages) are held back for the whole
round-trip time before they go on, so every request, and every handshake
round trip, costs one RTT.  Bytes from the server are paced by a token
bucket per connection (MB = 10^6 bytes).  Trade-off: latency on the reply
direction is folded into the request direction, which is what a request/
response protocol sees anyway.  One thread per direction per connection;
the kernel does the copying, so a few hundred MB/s pass through fine.
Prints READY on stdout once listening.
"""

import argparse
import socket
import sys
import threading
import time
from collections import deque


def pump_delayed(src, dst, delay):
    """Client to server: forward each chunk `delay` seconds after it came."""
    q = deque()
    cv = threading.Condition()
    done = []

    def reader():
        try:
            while True:
                b = src.recv(65536)
                with cv:
                    q.append((time.monotonic() + delay, b))
                    cv.notify()
                if not b:
                    return
        except OSError:
            with cv:
                q.append((0, b""))
                cv.notify()

    threading.Thread(target=reader, daemon=True).start()
    try:
        while True:
            with cv:
                while not q:
                    cv.wait()
                due, b = q.popleft()
            wait = due - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if not b:
                break
            dst.sendall(b)
    except OSError:
        pass
    finally:
        done.append(1)
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def pump_paced(src, dst, rate):
    """Server to client: at most `rate` bytes per second."""
    buf = bytearray(256 * 1024)
    mv = memoryview(buf)
    t0 = time.monotonic()
    sent = 0
    try:
        while True:
            n = src.recv_into(buf)
            if n == 0:
                break
            dst.sendall(mv[:n])
            sent += n
            ahead = sent / rate - (time.monotonic() - t0)
            if ahead > 0:
                time.sleep(ahead)
            elif ahead < -0.05:
                # idle time is not credit: restart the bucket
                t0 = time.monotonic()
                sent = 0
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def serve(conn, target, delay, rate):
    try:
        up = socket.create_connection(("127.0.0.1", target))
    except OSError:
        conn.close()
        return
    for s in (conn, up):
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    t1 = threading.Thread(target=pump_delayed, args=(conn, up, delay),
                          daemon=True)
    t2 = threading.Thread(target=pump_paced, args=(up, conn, rate),
                          daemon=True)
    t1.start()
    t2.start()
    t1.join()
    t2.join()
    conn.close()
    up.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("listen", type=int)
    ap.add_argument("target", type=int)
    ap.add_argument("--rtt-ms", type=float, default=20.0)
    ap.add_argument("--mbps", type=float, default=100.0,
                    help="MB/s per connection (10^6 bytes)")
    a = ap.parse_args()
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.listen))
    ls.listen(128)
    print("READY", flush=True)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve,
                         args=(c, a.target, a.rtt_ms / 1000.0, a.mbps * 1e6),
                         daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
