#!/usr/bin/env python3
"""Pipelining clients that never read (make soak).

CONNS unauthenticated connections (default 100) each pipeline REQUESTS static GETs
(default 380) of a 32 KiB file and never read a byte. Before back-pressure, imd
answered all of them into its own buffers, up to the 4 MiB output cap per connection:
7 MB of RSS became 394 MB. Now it answers a chunk ahead per connection and waits for
the reader.

The sockets advertise a 4 KiB receive window (as a slow peer across the Internet
would). Loopback still lets the kernel's send buffer grow to tcp_wmem's maximum (4 MB)
per socket; that memory is the kernel's, not imd's, and is not what is checked.

Checks: imd's RSS stays within RSS_MARGIN_MB of its warm baseline while the flood
stands; `imd_output_pending_bytes` in /im/metrics stays under a chunk and an answer
per connection; /im/health answers meanwhile; once the clients hang up, the gauge
returns to 0. Loopback only; bounded in count and time (about 10 s). Standard library
only.
"""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from imdclient import dial, free_port, http, wait_healthy

BIN = os.environ.get("IMD_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "target", "release", "imd"))

CONNS = int(os.environ.get("CONNS", "100"))
REQUESTS = int(os.environ.get("REQUESTS", "380"))
FILE_BYTES = 32 * 1024
RSS_MARGIN_MB = 48
# What the server may hold per connection: a 64 KiB chunk and one answer.
PER_CONN = 64 * 1024 + FILE_BYTES + 1024


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def pending_output(port):
    status, body = http(port, "GET", "/im/metrics")
    if status != 200:
        raise RuntimeError(f"/im/metrics: {status}")
    for line in body.decode().splitlines():
        if line.startswith("imd_output_pending_bytes "):
            return int(line.split()[1])
    raise RuntimeError("no imd_output_pending_bytes in /im/metrics")




def main():
    work = tempfile.mkdtemp(prefix="imd-pipeline-")
    web = os.path.join(work, "www")
    os.makedirs(web)
    with open(os.path.join(web, "big.txt"), "w") as f:
        f.write("b" * FILE_BYTES)
    plain = free_port()
    conf = os.path.join(work, "imd.conf")
    with open(conf, "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:{plain}"
web_root = "{web}"
[tls]
listen = ""
[store]
path = "{work}/imd.sqlite3"
synchronous = "normal"
""")
    log = open(os.path.join(work, "imd.log"), "w")
    proc = subprocess.Popen([BIN, "--config", conf], stderr=log)
    failures = []
    socks = []
    try:
        assert wait_healthy(plain, 10) is not None, "imd did not start"
        target = "/im/www/v1/big.txt"
        for _ in range(3):
            http(plain, "GET", target)
        time.sleep(0.5)
        base = rss_kb(proc.pid)
        print(f"pipeline-flood: imd warm at {base / 1024:.1f} MB RSS")
        burst = f"GET {target} HTTP/1.1\r\nHost: a\r\n\r\n".encode() * REQUESTS
        for _ in range(CONNS):
            s = dial(plain, starve=True)
            s.sendall(burst)
            socks.append(s)
        # Let the server do all it will do for clients that never read.
        peak, last, t0 = base, -1, time.monotonic()
        while time.monotonic() - t0 < 8:
            time.sleep(0.5)
            peak = max(peak, rss_kb(proc.pid))
            now = pending_output(plain)
            if now == last:
                break
            last = now
        pending = pending_output(plain)
        rss = rss_kb(proc.pid)
        peak = max(peak, rss)
        print(f"  {CONNS} connections x {REQUESTS} pipelined GETs of {FILE_BYTES // 1024} KiB, never read: "
              f"{pending / 1024:.0f} KiB output pending in imd, RSS {rss / 1024:.1f} MB "
              f"(peak {peak / 1024:.1f} MB, baseline {base / 1024:.1f} MB)")
        if peak - base > RSS_MARGIN_MB * 1024:
            failures.append(f"RSS grew by {(peak - base) / 1024:.1f} MB (margin {RSS_MARGIN_MB} MB)")
        if pending > CONNS * PER_CONN:
            failures.append(f"{pending} bytes pending, over {CONNS} x {PER_CONN}")
        if http(plain, "GET", "/im/health")[0] != 200:
            failures.append("/im/health failed during the flood")
        for s in socks:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
            s.close()
        socks = []
        t0 = time.monotonic()
        while pending_output(plain) != 0 and time.monotonic() - t0 < 5:
            time.sleep(0.2)
        left = pending_output(plain)
        print(f"  after the clients hung up: {left} bytes pending, RSS {rss_kb(proc.pid) / 1024:.1f} MB")
        if left != 0:
            failures.append(f"{left} bytes still pending after every flooding client left")
        if proc.poll() is not None:
            failures.append(f"imd exited with {proc.returncode}")
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        for f in failures:
            print(f"FAIL: {f}")
        sys.exit(1)
    print("pipeline-flood: ok")


if __name__ == "__main__":
    main()
