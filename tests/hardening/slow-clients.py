#!/usr/bin/env python3
"""Slow and abusive clients at scale (make soak).

1,000 abusive sockets from 8 source addresses (127.0.0.2-9, bound before connect) while
60 legitimate clients register, log in over WebSocket (half over TLS), befriend each
other and chat:

- trickle: a request head one byte every 300 ms, plain and TLS (head_timeout_s);
- silent: connect and say nothing, plain (keepalive_timeout_s) and TLS without a
  ClientHello (handshake_timeout_s);
- WebSocket sessions, plain and TLS, that log in and never read again while a friend
  floods them with 32 KiB messages (output_cap_bytes, else idle_timeout_s plus the
  reactor's 2 s close grace);
- pipelined keep-alive requests whose responses are never read, plain and TLS
  (keepalive_timeout_s), and a close-delimited response larger than the kernel takes,
  never read (a server must not hold it longer than keepalive_timeout_s either).

The never-reading sockets advertise a 4 KiB receive buffer and a 1,000-byte MSS (as a
real client across the Internet would, instead of loopback's 64 KiB segments), so the
server's kernel buffers absorb little and its own output buffer fills.

Checks: every legitimate operation succeeds and their p99 is under 500 ms; imd releases
every abusive socket within its timeout plus SLACK_S (and, for those only a timer
closes, not before it); the per-IP cap holds exactly `connections_per_ip` per address
at scale, and its counters came back to zero after the 1,000 closes; imd's descriptors
come back to the warm baseline (within FD_MARGIN) and its RSS to within RSS_MARGIN_KB of
it within 5 s. When imd let go of a socket is read from the kernel (/proc/net/tcp), so
it does not depend on the abusive client reading anything. When RSS stays high and gdb
is installed, glibc's own account (malloc_stats) and the RSS after malloc_trim(0) are
printed, to tell memory still in use from freed memory the allocator keeps.

SLOW_ROUNDS=N repeats the abuse N times on the same server (default 1). Loopback only;
bounded in count and time (about 35 s a round). Standard library only.
"""

import os
import random
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from imdclient import api, auth, dial, dial_at, free_port, http, login, wait_healthy

BIN = os.environ.get("IMD_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "target", "release", "imd"))

SOURCES = [f"127.0.0.{i}" for i in range(2, 10)]
PAIRS = 30  # 60 legitimate clients
FLOODERS = 4
# Abusive sockets by kind; 1,000 in all.
COUNTS = {
    "trickle": 250,
    "trickle_tls": 50,
    "silent": 200,
    "silent_tls": 200,
    "ws_flooded": 60,
    "ws_flooded_tls": 40,
    "unread_keepalive": 100,
    "unread_keepalive_tls": 50,
    "unread_close": 50,
}
# Far enough apart that a socket closed by the wrong timer misses its limit.
HEAD_TIMEOUT = 2.0
KEEPALIVE_TIMEOUT = 5.0
HANDSHAKE_TIMEOUT = 2.0
WS_PING = 1.0
WS_IDLE = 4.0
CLOSE_GRACE = 2.0  # reactor/src/conn.rs: a WebSocket close handshake gets this long
OUTPUT_CAP = 256 * 1024
PER_IP_CAP = 200
CAP_EXTRA = 20
TRICKLE_EVERY = 0.3
SLACK_S = 1.5  # monitor period, timer wake-up, and a shared 2-core machine at load 8
# The client starts its clock before its connect, so before imd's timer; but imd reads
# its clock once per turn of its event loop, so a busy turn sets deadlines a little early.
EARLY_S = 0.05
P99_LIMIT_MS = 500.0
FD_MARGIN = 3
# What imd may keep after the abuse: the connection slab, timer heap and maps keep their
# high-water capacity (well under 1 MB for 2,000 connections) and SQLite's page caches
# grow with the accounts the run adds (2 MB per connection at most). Anything more is
# memory imd did not give back.
RSS_MARGIN_KB = 10 * 1024
BIG_FILE = 200 * 1024  # larger than the kernel absorbs for a 1,000-byte-MSS peer, below the cap
KEEPALIVE_FILE = 40 * 1024  # four of them stay under the cap
PHASE_LIMIT = 40.0

# A timeout per kind: (seconds, what it is).
BOUNDS = {
    "trickle": (HEAD_TIMEOUT, "head_timeout_s"),
    "trickle_tls": (HEAD_TIMEOUT, "head_timeout_s"),
    "silent": (KEEPALIVE_TIMEOUT, "keepalive_timeout_s"),
    "silent_tls": (HANDSHAKE_TIMEOUT, "handshake_timeout_s"),
    "ws_flooded": (WS_IDLE + CLOSE_GRACE, "output cap, else idle_timeout_s + close grace"),
    "ws_flooded_tls": (WS_IDLE + CLOSE_GRACE, "output cap, else idle_timeout_s + close grace"),
    "unread_keepalive": (KEEPALIVE_TIMEOUT, "keepalive_timeout_s"),
    "unread_keepalive_tls": (KEEPALIVE_TIMEOUT, "keepalive_timeout_s"),
    "unread_close": (KEEPALIVE_TIMEOUT, "keepalive_timeout_s"),
}
# Kinds closed by a timer alone, never earlier.
TIMER_ONLY = {"trickle", "trickle_tls", "silent", "silent_tls", "unread_keepalive", "unread_keepalive_tls",
              "unread_close"}


def rss_parts(pid):
    """RSS in MB of the main heap, of other anonymous memory (thread arenas, mmapped
    buffers, stacks) and of files (the binary, libraries, SQLite's shared memory)."""
    parts = {"heap": 0, "anon": 0, "file": 0}
    name = ""
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            first = line.split(None, 1)[0]
            if first == "Rss:":
                kind = "heap" if name == "[heap]" else "anon" if not name or name.startswith("[") else "file"
                parts[kind] += int(line.split()[1])
            elif not first.endswith(":"):
                fields = line.split(None, 5)
                name = fields[5].strip() if len(fields) > 5 else ""
    return " + ".join(f"{k} {v / 1024:.1f}" for k, v in parts.items()) + " MB"


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def addr_hex(ip, port):
    return "".join(f"{int(b):02X}" for b in reversed(ip.split("."))) + f":{port:04X}"


class Monitor(threading.Thread):
    """Tells when the server let go of each watched connection, from the kernel's view,
    so the abusive client need not read anything: while imd holds a connection, its
    server-side socket is in /proc/net/tcp with an inode; once imd has closed it, the
    row is gone or orphaned (inode 0, e.g. FIN_WAIT1 behind a window never reopened)."""

    def __init__(self, ports):
        super().__init__(daemon=True)
        self.locals = {addr_hex("127.0.0.1", p) for p in ports}
        self.lock = threading.Lock()
        self.watch = {}  # client "IP:PORT" in /proc/net/tcp's hex -> record
        self.stop = threading.Event()

    def add(self, rec):
        with self.lock:
            self.watch[rec["key"]] = rec

    def run(self):
        while not self.stop.is_set():
            self.poll()
            self.stop.wait(0.05)

    def poll(self):
        with self.lock:
            recs = [r for r in self.watch.values() if r["released"] is None]
        held = set()
        with open("/proc/net/tcp") as f:
            next(f)
            for line in f:
                p = line.split(None, 10)
                if p[1] in self.locals and p[9] != "0":
                    held.add(p[2])
        now = time.monotonic()  # a row missing from the read was gone by now
        for r in recs:
            if r["key"] in held:
                r["seen"] = True
            elif r["seen"] or r["accepted"]:
                r["released"] = now

    def pending(self):
        with self.lock:
            return [r for r in self.watch.values() if r["released"] is None]


def record(mon, kind, sock, t0, t1, accepted=False):
    """Watches an abusive socket. `t0`: before its connect (the server's timer cannot
    start earlier); `t1`: when its timer can have started at the latest, as far as the
    client knows (connected, or logged in); `accepted`: the client knows imd took it."""
    ip, port = sock.getsockname()[:2]
    rec = {"kind": kind, "key": addr_hex(ip, port), "source": ip, "sock": sock, "t0": t0, "t1": t1,
           "seen": False, "accepted": accepted, "released": None}
    mon.add(rec)
    return rec


class Latencies:
    def __init__(self):
        self.lock = threading.Lock()
        self.ms = {}
        self.failures = []

    def op(self, name, fn):
        t = time.monotonic()
        try:
            out = fn()
        except Exception as e:  # any failure of a legitimate operation is counted
            with self.lock:
                self.failures.append(f"{name}: {type(e).__name__}: {e}")
            e.counted = True
            raise
        with self.lock:
            self.ms.setdefault(name, []).append((time.monotonic() - t) * 1000)
        return out

    def add(self, name, ms):
        with self.lock:
            self.ms.setdefault(name, []).append(ms)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] if xs else 0.0


def legit_pair(name, i, plain, tls_port, lat, stop, delay):
    """Two users: register, log in (B over TLS on odd pairs), befriend, chat, log off."""
    time.sleep(delay)
    pw = f"pw{name}"
    a_acct, b_acct = f"la{name}", f"lb{name}"
    b_tls = i % 2 == 1
    b_port = tls_port if b_tls else plain
    try:
        for acct in (a_acct, b_acct):
            lat.op("register", lambda acct=acct: api(plain, "POST", "/im/register",
                                                      {"account": acct, "password": pw, "mail": "m", "name": acct}))
        a = lat.op("login", lambda: login(plain, a_acct, pw))
        b = lat.op("login", lambda: login(b_port, b_acct, pw, tls=b_tls))
        lat.op("friend_request", lambda: api(plain, "GET", f"/im/friends/request?{auth(a)}&to={b.id}&note=hi"))
        lat.op("push_520", lambda: b.wait(lambda m: m.get("code") == 520))
        lat.op("friend_add", lambda: api(b_port, "GET", f"/im/friends/add?{auth(b)}&from={a.id}&name=pal", tls=b_tls))
        lat.op("push_303", lambda: a.wait(lambda m: m.get("code") == 303))
        n = 0
        while not stop.is_set():
            n += 1
            for (src, dst) in ((a, b), (b, a)):
                did = str(n)
                t = time.monotonic()
                src.send({"id": did, "toFriend": dst.id, "payload": f"hello {n} " + "x" * 80})
                ack = src.wait(lambda m: m.get("id") == did and "code" in m)
                lat.add("send_ack", (time.monotonic() - t) * 1000)
                if ack["code"] != 200:
                    raise RuntimeError(f"send: {ack}")
                dst.wait(lambda m: m.get("from") == src.id and m.get("id") == did)
                lat.add("receive", (time.monotonic() - t) * 1000)
            if n % 10 == 0:
                lat.op("heartbeat", lambda: (a.send({"type": "heartbeat"}),
                                             a.wait(lambda m: m.get("type") == "heartbeat")))
            time.sleep(0.05)
        lat.op("logoff", lambda: api(plain, "GET", f"/im/logoff?{auth(a)}"))
        lat.op("logoff", lambda: api(b_port, "GET", f"/im/logoff?{auth(b)}", tls=b_tls))
        a.close()
        b.close()
    except Exception as e:
        if not getattr(e, "counted", False):
            with lat.lock:
                lat.failures.append(f"pair {name}: {type(e).__name__}: {e}")


def flooder(k, plain, tls_port, mon, victims, stop, stats):
    """Logs in its victims from the abusive addresses (they never read after the login
    reply), then floods them with 32 KiB messages until the server has cut them all."""
    try:
        flood(k, plain, tls_port, mon, victims, stop, stats)
    except Exception as e:  # the harness failed, not the server: still a failed run
        stats["error"] = f"flooder {k}: {type(e).__name__}: {e}"


def flood(k, plain, tls_port, mon, victims, stop, stats):
    fl = login(plain, f"flooder{k}", "pw")
    mine = []
    for v in victims:
        t0 = time.monotonic()  # the login is the last frame this client sends
        ws = login(tls_port if v["tls"] else plain, v["account"], "pw", tls=v["tls"], source=v["source"], starve=True)
        kind = "ws_flooded_tls" if v["tls"] else "ws_flooded"
        mine.append((v, ws, record(mon, kind, ws.s, t0, time.monotonic(), accepted=True)))
    payload = "f" * (32 * 1024)
    by_id = {v["id"]: i for i, (v, _, _) in enumerate(mine)}
    gone = set()  # victims whose session ended: a 508 reply, or push 300

    def take(m):
        if m.get("code") == 300 and m.get("id") in by_id:
            gone.add(by_id[m["id"]])
            return False
        if "code" not in m or not str(m.get("id", "")).startswith("fl-"):
            return False
        stats[m["code"]] = stats.get(m["code"], 0) + 1
        if m["code"] == 508:
            gone.add(int(m["id"].split("-")[1]))
        return True

    sent = inflight = 0
    end = time.monotonic() + PHASE_LIMIT
    while not stop.is_set() and time.monotonic() < end:
        live = [i for i in range(len(mine)) if i not in gone and mine[i][2]["released"] is None]
        if not live:
            break
        for i in live:
            fl.send({"id": f"fl-{i}-{sent}", "toFriend": mine[i][0]["id"], "payload": payload})
            sent += 1
            inflight += 1
            while inflight > 8:
                inflight -= take(fl.recv())
    while inflight > 0:
        inflight -= take(fl.recv())
    stats["sent"] = stats.get("sent", 0) + sent
    fl.close()


def write_config(work, plain, tls_port):
    web = os.path.join(work, "www")
    os.makedirs(web)
    with open(os.path.join(web, "big.txt"), "w") as f:
        f.write("b" * BIG_FILE)
    with open(os.path.join(web, "ka.txt"), "w") as f:
        f.write("k" * KEEPALIVE_FILE)
    conf = os.path.join(work, "imd.conf")
    with open(conf, "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:{plain}"
web_root = "{web}"
max_connections = 5000
[tls]
listen = "127.0.0.1:{tls_port}"
self_signed = true
handshake_timeout_s = {HANDSHAKE_TIMEOUT}
[limits]
head_timeout_s = {HEAD_TIMEOUT}
keepalive_timeout_s = {KEEPALIVE_TIMEOUT}
output_cap_bytes = {OUTPUT_CAP}
connections_per_ip = {PER_IP_CAP}
[websocket]
ping_interval_s = {WS_PING}
idle_timeout_s = {WS_IDLE}
[store]
path = "{work}/imd.sqlite3"
synchronous = "normal"
[history]
enabled = false
[password]
argon2_m_kib = 64
argon2_t = 1
[rate_limit]
register_per_min = 0
query_per_min = 0
login_fail_per_min = 0
send_per_s = 0
heartbeat_per_min = 0
""")
    return conf




def allocator_report(pid, log_path):
    """glibc's totals (from malloc_stats, which writes to imd's log) and the RSS once
    malloc_trim(0) has given free memory back; needs gdb, else None."""
    if not shutil.which("gdb"):
        return None
    with open(log_path) as f:
        before = len(f.read())
    try:
        subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "call (void)malloc_stats()",
                        "-ex", "call (int)malloc_trim(0)"], capture_output=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    with open(log_path) as f:
        stats = f.read()[before:]
    total = stats.split("Total (incl. mmap):")[-1].split()
    try:
        system, in_use = int(total[3]), int(total[8])
    except (IndexError, ValueError):
        return None
    return (f"glibc holds {system / 2**20:.1f} MB of which {in_use / 2**20:.1f} MB in use; "
            f"RSS after malloc_trim(0): {rss_kb(pid) / 1024:.1f} MB")


def settle(pid, base_fds, base_rss, limit):
    """Waits until descriptors and RSS are back near the baseline; the last sample."""
    t0 = time.monotonic()
    while True:
        fds, rss = fd_count(pid), rss_kb(pid)
        ok = abs(fds - base_fds) <= FD_MARGIN and rss - base_rss <= RSS_MARGIN_KB
        if ok or time.monotonic() - t0 > limit:
            return fds, rss, time.monotonic() - t0, ok
        time.sleep(0.1)


def open_abusers(plain, tls_port, mon, socks):
    """The abusive sockets that need no account. Each one's clock starts before its
    connect, so the server cannot have started its timer earlier."""
    n = 0
    trickles = []
    head = b"GET /im/health HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 1000
    for kind in ("trickle", "silent", "silent_tls", "trickle_tls", "unread_keepalive",
                 "unread_keepalive_tls", "unread_close"):
        tls = kind in ("trickle_tls", "unread_keepalive_tls")
        port = tls_port if kind in ("silent_tls", "trickle_tls", "unread_keepalive_tls") else plain
        for _ in range(COUNTS[kind]):
            t0 = time.monotonic()
            s, t1 = dial_at(port, tls=tls, source=SOURCES[n % len(SOURCES)], starve=kind.startswith("unread"))
            n += 1
            socks.append(s)
            if kind.startswith("trickle"):
                s.send(head[:1])
                trickles.append([s, 1, record(mon, kind, s, t0, t1)])
                continue
            if kind.startswith("unread_keepalive"):
                s.sendall(b"GET /im/www/v1/ka.txt HTTP/1.1\r\nHost: localhost\r\n\r\n" * 4)
            elif kind == "unread_close":
                s.sendall(b"GET /im/www/v1/big.txt HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            record(mon, kind, s, t0, t1)
    return trickles, head


def trickle(trickles, head, stop):
    while not stop.is_set():
        for t in trickles:
            s, i, rec = t
            if rec["released"] is not None or i >= len(head):
                continue
            try:
                s.send(head[i:i + 1])
                t[1] = i + 1
            except OSError:
                t[1] = len(head)
        stop.wait(TRICKLE_EVERY)


def cap_check(plain):
    """From every abusive address, PER_IP_CAP + CAP_EXTRA silent connections, opened
    within a second: exactly CAP_EXTRA per address must be closed at once (so the
    counters forgot every earlier close), the other PER_IP_CAP only by the keep-alive
    timeout; a client from another address is served meanwhile. A socket closed within
    a second of its connect counts as refused, which does not depend on how fast this
    script opens them."""
    socks = []
    t0 = time.monotonic()
    for ip in SOURCES:
        for i in range(PER_IP_CAP + CAP_EXTRA):
            if i % 50 == 49:
                time.sleep(0.02)  # imd listens with a backlog of 128: spare it a SYN drop
            s = dial(plain, source=ip)
            socks.append((ip, s, time.monotonic()))
    opened = time.monotonic() - t0
    served = http(plain, "GET", "/im/health")[0]
    p = select.poll()
    by_fd = {}
    for ip, s, t in socks:
        p.register(s, select.POLLIN | select.POLLRDHUP)
        by_fd[s.fileno()] = (ip, t)
    refused = {ip: 0 for ip in SOURCES}
    held = {ip: [] for ip in SOURCES}
    deadline = time.monotonic() + KEEPALIVE_TIMEOUT + 5
    while by_fd and time.monotonic() < deadline:
        for fd, _ in p.poll(20):
            now = time.monotonic()
            ip, t = by_fd.pop(fd)
            p.unregister(fd)
            if now - t < 1.0:
                refused[ip] += 1
            else:
                held[ip].append(now - t)
    for ip, s, t in socks:
        s.close()
    return refused, held, len(by_fd), served, opened


def abuse_round(rnd, pid, plain, tls_port, victims):
    """1,000 abusive sockets and 60 legitimate clients at once; what each did."""
    mon = Monitor((plain, tls_port))
    mon.start()
    lat = Latencies()
    stop_legit, stop_abuse = threading.Event(), threading.Event()
    pairs = [threading.Thread(target=legit_pair, args=(f"{rnd}x{i}", i, plain, tls_port, lat, stop_legit,
                                                       random.uniform(0, 3)))
             for i in range(PAIRS)]
    for t in pairs:
        t.start()
    per_flooder = [{} for _ in range(FLOODERS)]
    floods = [threading.Thread(target=flooder, args=(k, plain, tls_port, mon,
                                                     [v for v in victims if v["flooder"] == k],
                                                     stop_abuse, per_flooder[k]))
              for k in range(FLOODERS)]
    for t in floods:
        t.start()
    socks = []
    t_abuse = time.monotonic()
    trickles, head = open_abusers(plain, tls_port, mon, socks)
    opened_s = time.monotonic() - t_abuse
    tr = threading.Thread(target=trickle, args=(trickles, head, stop_abuse))
    tr.start()
    peak_fds, peak_rss = fd_count(pid), rss_kb(pid)
    # Every bound has passed, with its slack, for the last socket opened (victims log
    # in beside the opening, so they are covered too); the legitimate clients chat
    # through all of it.
    deadline = time.monotonic() + max(b for b, _ in BOUNDS.values()) + SLACK_S + 1.0
    while time.monotonic() < deadline:
        peak_fds, peak_rss = max(peak_fds, fd_count(pid)), max(peak_rss, rss_kb(pid))
        if len(mon.watch) >= sum(COUNTS.values()) and not mon.pending():
            break
        time.sleep(0.2)
    drained_s = time.monotonic() - t_abuse
    stop_legit.set()
    stop_abuse.set()
    for t in pairs + floods + [tr]:
        t.join(20)
    mon.stop.set()
    mon.join()
    mon.poll()
    for rec in mon.watch.values():
        p = select.poll()
        p.register(rec["sock"], select.POLLRDHUP)
        rec["client_saw_close"] = bool(p.poll(0))
    for s in socks:
        s.close()
    flood = {}
    errors = []
    for st in per_flooder:
        if "error" in st:
            errors.append(st.pop("error"))
        for key, v in st.items():
            flood[key] = flood.get(key, 0) + v
    return {"recs": list(mon.watch.values()), "lat": lat, "flood": flood, "errors": errors,
            "opened_s": opened_s, "drained_s": drained_s, "peak_fds": peak_fds, "peak_rss": peak_rss}


def judge_round(r, failures, log_path):
    recs = r["recs"]
    failures.extend(r["errors"])
    if len(recs) != sum(COUNTS.values()):
        failures.append(f"{len(recs)} abusive sockets watched, not {sum(COUNTS.values())}")
    print(f"  {len(recs)} abusive sockets from {len(SOURCES)} addresses opened in {r['opened_s']:.1f} s; "
          f"seconds until imd released them: first (from before its connect), worst (from its connect or login):")
    by_kind = {}
    for rec in recs:
        by_kind.setdefault(rec["kind"], []).append(rec)
    for kind in COUNTS:
        rs = by_kind.get(kind, [])
        bound, what = BOUNDS[kind]
        never = [x for x in rs if not x["seen"] and not x["accepted"]]
        held = [x for x in rs if x["released"] is None and x not in never]
        done = [x for x in rs if x["released"] is not None]
        first = min((x["released"] - x["t0"] for x in done), default=float("nan"))
        worst = max((x["released"] - x["t1"] for x in done), default=float("nan"))
        print(f"    {kind:21} {len(rs):4}  first {first:5.2f}  worst {worst:5.2f}  limit {bound:.1f} + {SLACK_S:.1f}"
              f"  {what}{'  STILL HELD: ' + str(len(held)) if held else ''}")
        if never:
            saw = sum(x["client_saw_close"] for x in never)
            failures.append(f"{kind}: {len(never)} never seen held by imd (their clients saw {saw} closed)")
        if held:
            failures.append(f"{kind}: {len(held)} of {len(rs)} still held by the server "
                            f"{r['drained_s']:.1f} s after the abuse began")
        if done and worst > bound + SLACK_S:
            failures.append(f"{kind}: released after {worst:.2f} s, limit {bound + SLACK_S:.2f} s")
        if done and kind in TIMER_ONLY and first < bound - EARLY_S:
            failures.append(f"{kind}: released after {first:.2f} s, before its {bound:.1f} s timeout")
    with open(log_path) as f:
        slow_readers = f.read().count("does not read its output")
    fl = r["flood"]
    replies = ", ".join(f"{k}: {v}" for k, v in sorted((k, v) for k, v in fl.items() if k != "sent"))
    print(f"    flood: {fl.get('sent', 0)} messages of 32 KiB (replies {replies}); "
          f"{slow_readers} connections cut at the {OUTPUT_CAP // 1024} KiB output cap so far")

    lat = r["lat"]
    all_ms = [x for xs in lat.ms.values() for x in xs]
    p99 = pct(all_ms, 99)
    print(f"  legitimate: {2 * PAIRS} clients, {len(all_ms)} operations, {len(lat.failures)} failed; "
          f"p50 {pct(all_ms, 50):.1f} ms, p99 {p99:.1f} ms, max {max(all_ms, default=0):.1f} ms")
    for name, xs in sorted(lat.ms.items()):
        print(f"    {name:15} {len(xs):6}  p50 {pct(xs, 50):6.1f}  p99 {pct(xs, 99):6.1f}  max {max(xs):6.1f} ms")
    failures.extend(f"legitimate: {f}" for f in lat.failures[:10])
    if p99 >= P99_LIMIT_MS:
        failures.append(f"legitimate p99 {p99:.1f} ms >= {P99_LIMIT_MS:.0f} ms")
    if len(lat.ms.get("login", [])) != 2 * PAIRS:
        failures.append(f"{len(lat.ms.get('login', []))} legitimate logins of {2 * PAIRS}")
    return p99


def setup_flood_accounts(plain, tls_port):
    """Victims and their flooders, befriended once; the victims are logged out."""
    victims = []
    for k in range(FLOODERS):
        api(plain, "POST", "/im/register", {"account": f"flooder{k}", "password": "pw", "mail": "m"})
    flooders = [login(plain, f"flooder{k}", "pw") for k in range(FLOODERS)]
    for j in range(COUNTS["ws_flooded"] + COUNTS["ws_flooded_tls"]):
        acct = f"victim{j}"
        api(plain, "POST", "/im/register", {"account": acct, "password": "pw", "mail": "m"})
        tls = j >= COUNTS["ws_flooded"]
        v = login(tls_port if tls else plain, acct, "pw", tls=tls)
        fl = flooders[j % FLOODERS]
        api(plain, "GET", f"/im/friends/request?{auth(fl)}&to={v.id}&note=flood")
        api(plain, "GET", f"/im/friends/add?{auth(v)}&from={fl.id}&name=f")
        victims.append({"account": acct, "id": v.id, "tls": tls, "source": SOURCES[j % len(SOURCES)],
                        "flooder": j % FLOODERS})
        api(plain, "GET", f"/im/logoff?{auth(v)}")
        v.close()
    for fl in flooders:
        fl.close()
    return victims


def main():
    rounds = int(os.environ.get("SLOW_ROUNDS", "1"))
    work = tempfile.mkdtemp(prefix="imd-slow-")
    plain, tls_port = free_port(), free_port()
    conf = write_config(work, plain, tls_port)
    log_path = os.path.join(work, "imd.log")
    log = open(log_path, "w")
    proc = subprocess.Popen([BIN, "--config", conf], stderr=log)
    failures = []
    t_start = time.monotonic()
    try:
        assert wait_healthy(plain, 10) is not None, "imd did not start"
        pid = proc.pid
        # Warm: the flood's accounts, both listeners, every route and file used below.
        victims = setup_flood_accounts(plain, tls_port)
        for port, tls in ((plain, False), (tls_port, True)):
            http(port, "GET", "/im/www/v1/ka.txt", tls=tls)
            http(port, "GET", "/im/www/v1/big.txt", tls=tls)
        time.sleep(1.0)
        base_fds, base_rss = fd_count(pid), rss_kb(pid)
        print(f"slow-clients: imd warm with {base_fds} descriptors and {base_rss / 1024:.1f} MB RSS "
              f"({rss_parts(pid)}) after {time.monotonic() - t_start:.1f} s")
        p99s = []
        for rnd in range(rounds):
            r = abuse_round(rnd, pid, plain, tls_port, victims)
            print(f"round {rnd + 1}/{rounds}:")
            p99s.append(judge_round(r, failures, log_path))
            fds, rss, took, _ = settle(pid, base_fds, base_rss, 5.0)
            print(f"  server: {r['peak_fds']} descriptors and {r['peak_rss'] / 1024:.1f} MB RSS at the peak, "
                  f"{fds} and {rss / 1024:.1f} MB {took:.1f} s after the round")

        refused, held, left, served, opened = cap_check(plain)
        counts = {len(v) for v in held.values()}
        print(f"  per-IP cap {PER_IP_CAP}: {PER_IP_CAP + CAP_EXTRA} connections from each of {len(SOURCES)} addresses "
              f"opened in {opened:.2f} s: refused at once {sorted(set(refused.values()))} per address, "
              f"held {sorted(counts)} per address until the keep-alive timeout "
              f"({min(min(v) for v in held.values() if v):.2f}-{max(max(v) for v in held.values() if v):.2f} s); "
              f"/im/health from 127.0.0.1 meanwhile: {served}")
        for ip in SOURCES:
            if len(held[ip]) != PER_IP_CAP or refused[ip] != CAP_EXTRA:
                failures.append(f"per-IP cap from {ip}: held {len(held[ip])}, refused {refused[ip]}, "
                                f"want {PER_IP_CAP} and {CAP_EXTRA}")
        if left:
            failures.append(f"per-IP cap: {left} connections still open {KEEPALIVE_TIMEOUT + 5:.0f} s later")
        if served != 200:
            failures.append(f"/im/health while every abusive address was at its cap: {served}")

        fds, rss, took, ok = settle(pid, base_fds, base_rss, 5.0)
        print(f"  server at the end: {fds} descriptors (baseline {base_fds}, margin {FD_MARGIN}), "
              f"{rss / 1024:.1f} MB RSS ({rss_parts(pid)}; baseline {base_rss / 1024:.1f} MB, "
              f"margin {RSS_MARGIN_KB // 1024} MB), settled in {took:.1f} s")
        if not ok:
            failures.append(f"not back to the baseline within 5 s: {fds} descriptors (baseline {base_fds}), "
                            f"RSS {rss / 1024:.1f} MB (baseline {base_rss / 1024:.1f} MB)")
            report = allocator_report(pid, log_path)
            if report:
                print(f"  {report}")
        if proc.poll() is not None:
            failures.append(f"imd exited with {proc.returncode}")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    total = time.monotonic() - t_start
    if failures:
        for f in failures:
            print(f"slow-clients: FAILED: {f}", file=sys.stderr)
        print(f"slow-clients: imd's log is in {log_path}", file=sys.stderr)
        sys.exit(1)
    shutil.rmtree(work, ignore_errors=True)
    print(f"slow-clients: ok in {total:.0f} s: every abusive socket released within its timeout + {SLACK_S:.1f} s, "
          f"legitimate p99 {max(p99s):.1f} ms, back to the baseline")


if __name__ == "__main__":
    main()
