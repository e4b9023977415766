#!/usr/bin/env python3
"""Crash durability (make soak): 30 kill -9 at random moments while clients register and
chat (history on, synchronous = full: sends are committed in groups by one writer).

Alice writes to Sink, who is never online (202, kept for later), and to Carol, who is
online (200, delivered live); Carol writes back, so the Alice–Carol conversation
numbers both directions together. A send left unanswered by a kill is sent again after
the restart with the same cid, as docs/protocol.md §10.2 tells a client to.

After every crash, in the database: PRAGMA integrity_check is ok; every acknowledged
registration is there; every acknowledged message (200 or 202) is there exactly once
with the seq, receiver and payload it was acknowledged with; every conversation's seqs
are 1..n with no gap and its counter is n; and every message a receiver was sent (live
or at login) is there with the seq and cid it was seen with: no receiver ever saw a seq
the store lost. On the wire: no session saw a seq twice, or out of order. The restarted
server answers /im/health within 2 s. Loopback only; bounded in rounds and time.
Standard library only; the WebSocket client is imdclient.py, beside this file.
"""

import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from imdclient import free_port, login, wait_healthy

ROUNDS = int(os.environ.get("CRASH_ROUNDS", "30"))
BIN = os.environ.get("IMD_BIN", os.path.join(os.path.dirname(__file__), "..", "..", "target", "release", "imd"))


def post(port, path, body):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.loads(r.read())


def start(conf):
    return subprocess.Popen([BIN, "--config", conf], stderr=subprocess.DEVNULL)


class Ledger:
    """What the clients were told, shared by their threads (the GIL keeps each update
    whole)."""

    def __init__(self):
        self.registered = set()
        # (sender, cid) → (seq, receiver, payload, code) of its acknowledgement.
        self.acked = {}
        # (sender, cid) → the send left unanswered by a kill: (did, receiver, payload).
        self.unanswered = {}
        # (sender, receiver, seq) → cid, for every message a receiver was sent.
        self.seen = {}
        self.resent = 0
        self.problems = []


def chat(port, ledger, me, account, peers, stop):
    """One session of `account` until `stop`: resend what a kill left unanswered, then
    send to `peers` in turn, recording acks and every message received on the way."""
    try:
        ws = login(port, account, "pw")
    except (OSError, ConnectionError, RuntimeError, ValueError):
        return
    last = {}  # peer → last seq this session saw from them

    def received(m):
        peer, seq = m["from"], m["seq"]
        if seq <= last.get(peer, 0):
            ledger.problems.append(f"{account}'s session saw seq {seq} from {peer[:8]} after {last.get(peer)}")
        last[peer] = seq
        ledger.seen[(peer, me, seq)] = m.get("cid")

    def send(did, to, payload):
        ledger.unanswered[(me, did)] = (did, to, payload)
        ws.send({"id": did, "toFriend": to, "payload": payload, "cid": did})
        while True:
            m = ws.recv()
            if "from" in m and "seq" in m:
                received(m)
            elif m.get("id") == did:
                break
        if m.get("code") in (200, 202) and "seq" in m:
            ledger.acked[(me, did)] = (m["seq"], to, payload, m["code"])
            del ledger.unanswered[(me, did)]
        else:
            ledger.problems.append(f"{account}: send {did} answered {m}")

    try:
        for key in [k for k in ledger.unanswered if k[0] == me]:
            send(*ledger.unanswered[key])
            ledger.resent += 1
        i = 0
        while not stop.is_set():
            did = f"{account[0]}{stop.round}-{i}"
            send(did, peers[i % len(peers)], f"{did}:" + "x" * 40)
            i += 1
    except (OSError, ConnectionError, ValueError):
        return


def check(db, ledger, rnd):
    """The database after a kill, against what the clients were told."""
    con = sqlite3.connect(db)
    try:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f"round {rnd}: integrity"
        accounts = {r[0] for r in con.execute("SELECT account FROM users")}
        missing = ledger.registered - accounts
        assert not missing, f"round {rnd}: acknowledged registrations lost: {sorted(missing)[:5]}"
        rows = con.execute("SELECT a, b, seq, from_id, to_id, cid, payload FROM history ORDER BY a, b, seq").fetchall()
        by_pair, by_cid = {}, {}
        for a, b, seq, sender, receiver, cid, payload in rows:
            by_pair.setdefault((a, b), []).append(seq)
            by_cid.setdefault((sender, cid), []).append((seq, receiver, payload))
        counters = dict(((a, b), last) for a, b, last in con.execute("SELECT a, b, last_seq FROM conversations"))
        for pair, seqs in by_pair.items():
            assert seqs == list(range(1, len(seqs) + 1)), f"round {rnd}: seqs of a conversation not 1..n: {seqs[:3]}…{seqs[-3:]}"
            assert counters.get(pair) == len(seqs), f"round {rnd}: counter {counters.get(pair)} for {len(seqs)} messages"
        payloads = {}
        for _, _, _, sender, _, _, payload in rows:
            payloads[(sender, payload)] = payloads.get((sender, payload), 0) + 1
        twice = [k for k, v in by_cid.items() if len(v) > 1] + [k for k, n in payloads.items() if n > 1]
        assert not twice, f"round {rnd}: messages stored twice: {twice[:5]}"
        wrong = [(k, v[:3], by_cid.get(k)) for k, v in ledger.acked.items() if by_cid.get(k) != [v[:3]]]
        assert not wrong, f"round {rnd}: acknowledged messages lost or changed: {wrong[:3]}"
        stored = {}
        for (sender, cid), [(seq, receiver, _)] in by_cid.items():
            stored[(sender, receiver, seq)] = cid
        lost = [(k, cid) for k, cid in ledger.seen.items() if stored.get(k) != cid]
        assert not lost, f"round {rnd}: receivers saw messages the store does not have: {lost[:3]}"
        assert not ledger.problems, f"round {rnd}: {ledger.problems[:3]}"
        return len(rows)
    finally:
        con.close()


def main():
    work = tempfile.mkdtemp(prefix="imd-crash-")
    try:
        run(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(work):
    port = free_port()
    db = os.path.join(work, "imd.sqlite3")
    conf = os.path.join(work, "imd.conf")
    web = os.path.join(os.path.dirname(__file__), "..", "..", "www")
    with open(conf, "w") as f:
        f.write(f"""[server]\nlisten = "127.0.0.1:{port}"\nweb_root = "{web}"\n[tls]\nlisten = ""\n
[store]\npath = "{db}"\nsynchronous = "full"\n[password]\nargon2_m_kib = 64\nargon2_t = 1\n
[history]\nenabled = true\n[rate_limit]\nregister_per_min = 0\nquery_per_min = 0\n
login_fail_per_min = 0\nsend_per_s = 0\nheartbeat_per_min = 0\n""")

    # The daemon of the current round: whatever fails, the last one does not outlive us.
    daemon = [start(conf)]
    try:
        rounds(port, conf, db, daemon)
    finally:
        daemon[0].kill()
        daemon[0].wait()


def rounds(port, conf, db, daemon):
    assert wait_healthy(port, 10) is not None, "imd did not start"
    ids = {}
    for acct in ("alice", "sink", "carol"):
        post(port, "/im/register", {"account": acct, "password": "pw", "mail": "m"})
        ws = login(port, acct, "pw")
        ids[acct] = {"id": ws.id, "token": ws.token, "ws": ws}
    for friend in ("sink", "carol"):
        assert post(port, "/im/friends/request", {"id": ids["alice"]["id"], "token": ids["alice"]["token"],
                                                  "to": ids[friend]["id"]})["code"] == 200
        assert post(port, "/im/friends/add", {"id": ids[friend]["id"], "token": ids[friend]["token"],
                                              "from": ids["alice"]["id"], "name": "a"})["code"] == 200
    for v in ids.values():
        v["ws"].close()
    alice, sink, carol = ids["alice"]["id"], ids["sink"]["id"], ids["carol"]["id"]

    ledger = Ledger()
    worst_restart = 0.0
    kept = 0
    for rnd in range(ROUNDS):
        if rnd:
            daemon[0] = start(conf)
            took = wait_healthy(port, 5)
            assert took is not None and took <= 2.0, f"round {rnd}: not serving within 2 s ({took})"
            worst_restart = max(worst_restart, took)
        stop = threading.Event()
        stop.round = rnd

        def registrar():
            i = 0
            while not stop.is_set():
                acct = f"r{rnd}x{i}"
                try:
                    if post(port, "/im/register", {"account": acct, "password": "pw", "mail": "m"})["code"] == 200:
                        ledger.registered.add(acct)
                except OSError:
                    return
                i += 1

        threads = [
            threading.Thread(target=registrar),
            threading.Thread(target=chat, args=(port, ledger, alice, "alice", [sink, carol], stop)),
            threading.Thread(target=chat, args=(port, ledger, carol, "carol", [alice], stop)),
        ]
        for t in threads:
            t.start()
        time.sleep(random.uniform(0.2, 1.5))
        daemon[0].kill()
        daemon[0].wait()
        stop.set()
        for t in threads:
            t.join(10)

        kept = check(db, ledger, rnd)
        codes = [v[3] for v in ledger.acked.values()]
        print(f"round {rnd + 1}/{ROUNDS}: {len(ledger.registered)} registrations, {kept} messages kept "
              f"({codes.count(200)} acked live, {codes.count(202)} stored, {ledger.resent} resent after a kill, "
              f"{len(ledger.seen)} seen by receivers), all there")

    codes = [v[3] for v in ledger.acked.values()]
    print(f"crash: {ROUNDS} kill -9, {len(ledger.registered)} acknowledged registrations and "
          f"{len(ledger.acked)} acknowledged messages ({codes.count(200)} live, {codes.count(202)} stored) all kept "
          f"once with their seq, {ledger.resent} resent after a kill and never duplicated, "
          f"{len(ledger.seen)} received messages all in the store, seqs dense, integrity ok, "
          f"slowest restart {worst_restart:.2f} s")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"crash: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
