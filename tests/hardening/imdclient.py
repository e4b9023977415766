"""A minimal imd client for the hardening scripts (crash.py, slow-clients.py): sockets
from any loopback source, plain or TLS, one-shot HTTP requests, and just enough
WebSocket for text frames. Python's standard library only."""

import base64
import json
import os
import socket
import ssl
import struct
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


TLS_CTX = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
TLS_CTX.check_hostname = False
TLS_CTX.verify_mode = ssl.CERT_NONE  # imd's own self-signed test certificate


def dial(port, tls=False, source=None, starve=False, timeout=5.0):
    return dial_at(port, tls, source, starve, timeout)[0]


def dial_at(port, tls=False, source=None, starve=False, timeout=5.0):
    """A connected socket and when its TCP connect returned; `starve` advertises a small
    window and MSS, like a slow peer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if starve:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 1000)
    if source:
        s.bind((source, 0))
    s.settimeout(timeout)
    s.connect(("127.0.0.1", port))
    connected = time.monotonic()
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if tls:
        s = TLS_CTX.wrap_socket(s, server_hostname="localhost")
    return s, connected


def http(port, method, target, body=None, tls=False):
    """One request on a new connection (Connection: close); (status, JSON body)."""
    s = dial(port, tls)
    try:
        data = json.dumps(body).encode() if body is not None else b""
        s.sendall(f"{method} {target} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n".encode() + data)
        buf = b""
        while True:
            try:
                chunk = s.recv(65536)
            except ssl.SSLEOFError:
                chunk = b""
            if not chunk:
                break
            buf += chunk
    finally:
        s.close()
    head, _, rest = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 "):
        raise ConnectionError(f"no response to {method} {target.split('?')[0]}")
    status = int(head[9:12])
    return status, (json.loads(rest) if rest.startswith(b"{") else rest)


def api(port, method, target, body=None, tls=False):
    status, reply = http(port, method, target, body, tls)
    if status != 200 or reply.get("code") != 200:
        raise RuntimeError(f"{target.split('?')[0]}: {status} {reply}")
    return reply


def wait_healthy(port, limit):
    """Seconds until /im/health answered 200, or None when it did not within `limit`."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        try:
            if http(port, "GET", "/im/health")[0] == 200:
                return time.monotonic() - t0
        except OSError:
            pass
        time.sleep(0.02)
    return None


def mask(data, key):
    n = len(data)
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(k, "little")).to_bytes(n, "little")


class Ws:
    """Just enough WebSocket for text frames, plain or TLS, from any source address."""

    def __init__(self, port, tls=False, source=None, starve=False):
        self.s = dial(port, tls, source, starve)
        key = base64.b64encode(os.urandom(16)).decode()
        self.s.sendall(f"GET /im/login HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n".encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.s.recv(4096)
            if not chunk:
                raise ConnectionError("closed during upgrade")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(head[:40])

    def send(self, obj):
        data = json.dumps(obj).encode()
        key = os.urandom(4)
        n = len(data)
        if n < 126:
            header = bytes([0x81, 0x80 | n])
        elif n < 65536:
            header = bytes([0x81, 0x80 | 126]) + struct.pack(">H", n)
        else:
            header = bytes([0x81, 0x80 | 127]) + struct.pack(">Q", n)
        self.s.sendall(header + key + mask(data, key))

    def _need(self, n):
        while len(self.buf) < n:
            chunk = self.s.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk

    def recv(self):
        while True:
            self._need(2)
            op, n = self.buf[0] & 0x0F, self.buf[1] & 0x7F
            off = 2
            if n == 126:
                self._need(4)
                n, off = struct.unpack(">H", self.buf[2:4])[0], 4
            elif n == 127:
                self._need(10)
                n, off = struct.unpack(">Q", self.buf[2:10])[0], 10
            self._need(off + n)
            payload, self.buf = self.buf[off:off + n], self.buf[off + n:]
            if op == 1:
                return json.loads(payload)
            if op == 8:
                raise ConnectionError("closed by server")

    def wait(self, pred):
        while True:
            m = self.recv()
            if pred(m):
                return m

    def close(self):
        self.s.close()


def login(port, account, password, tls=False, source=None, starve=False):
    ws = Ws(port, tls, source, starve)
    ws.send({"account": account, "password": password})
    reply = ws.recv()
    if reply.get("code") != 200:
        raise RuntimeError(f"login {account}: {reply}")
    ws.id, ws.token = reply["profile"]["id"], reply["token"]
    return ws


def auth(ws):
    return f"id={ws.id}&token={ws.token}"
