#!/usr/bin/env python3
"""Crash durability (make soak): 30 kill -9 at random moments while clients register
and send messages to an offline friend (history on, synchronous = full: sends are
committed in groups by one writer).

After every crash: each acknowledged registration (200) and stored message (202) is in
the database with the seq it was acknowledged with, nothing is duplicated, the
conversation's seqs are 1..n with no gap, PRAGMA integrity_check is ok, and the restarted
server answers /im/health within 2 s. Loopback only; bounded in rounds and time.
Standard library only; the WebSocket client is imdclient.py, beside this file.
"""

import json
import os
import random
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
    proc = subprocess.Popen([BIN, "--config", conf], stderr=subprocess.DEVNULL)
    return proc




def main():
    work = tempfile.mkdtemp(prefix="imd-crash-")
    port = free_port()
    db = os.path.join(work, "imd.sqlite3")
    conf = os.path.join(work, "imd.conf")
    web = os.path.join(os.path.dirname(__file__), "..", "..", "www")
    with open(conf, "w") as f:
        f.write(f"""[server]\nlisten = "127.0.0.1:{port}"\nweb_root = "{web}"\n[tls]\nlisten = ""\n
[store]\npath = "{db}"\nsynchronous = "full"\n[password]\nargon2_m_kib = 64\nargon2_t = 1\n
[history]\nenabled = true\n[rate_limit]\nregister_per_min = 0\nquery_per_min = 0\n
login_fail_per_min = 0\nsend_per_s = 0\nheartbeat_per_min = 0\n""")

    proc = start(conf)
    assert wait_healthy(port, 10) is not None, "imd did not start"
    for acct in ("sender", "sink"):
        post(port, "/im/register", {"account": acct, "password": "pw", "mail": "m"})
    a = login(port, "sender", "pw")
    b = login(port, "sink", "pw")
    auth_a = {"id": a.id, "token": a.token}
    auth_b = {"id": b.id, "token": b.token}
    assert post(port, "/im/friends/request", {**auth_a, "to": auth_b["id"]})["code"] == 200
    assert post(port, "/im/friends/add", {**auth_b, "from": auth_a["id"], "name": "s"})["code"] == 200
    sink_id = auth_b["id"]
    a.close()
    b.close()

    registered, stored = set(), {}
    worst_restart = 0.0
    for rnd in range(ROUNDS):
        if rnd:
            proc = start(conf)
            took = wait_healthy(port, 5)
            assert took is not None and took <= 2.0, f"round {rnd}: not serving within 2 s ({took})"
            worst_restart = max(worst_restart, took)
        stop = threading.Event()

        def registrar():
            i = 0
            while not stop.is_set():
                acct = f"r{rnd}x{i}"
                try:
                    if post(port, "/im/register", {"account": acct, "password": "pw", "mail": "m"})["code"] == 200:
                        registered.add(acct)
                except OSError:
                    return
                i += 1

        def sender():
            try:
                ws = login(port, "sender", "pw")
                i = 0
                while not stop.is_set():
                    did = f"{rnd}-{i}"
                    ws.send({"id": did, "toFriend": sink_id, "payload": f"m{did}", "cid": did})
                    reply = ws.recv()
                    while reply.get("id") != did:
                        reply = ws.recv()
                    if reply["code"] == 202:
                        stored[did] = reply["seq"]
                    i += 1
            except (OSError, ConnectionError, ValueError):
                return

        threads = [threading.Thread(target=registrar), threading.Thread(target=sender)]
        for t in threads:
            t.start()
        time.sleep(random.uniform(0.2, 1.5))
        proc.kill()
        proc.wait()
        stop.set()
        for t in threads:
            t.join(10)

        con = sqlite3.connect(db)
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok", f"round {rnd}: integrity"
        accounts = {r[0] for r in con.execute("SELECT account FROM users")}
        missing = registered - accounts
        assert not missing, f"round {rnd}: acknowledged registrations lost: {sorted(missing)[:5]}"
        rows = con.execute("SELECT dialogue_id, seq FROM history WHERE to_id = ? ORDER BY seq",
                           (sink_id,)).fetchall()
        kept = dict(rows)
        assert len(rows) == len(kept), f"round {rnd}: duplicated messages"
        assert [r[1] for r in rows] == list(range(1, len(rows) + 1)), f"round {rnd}: seq gap"
        lost = [d for d, seq in stored.items() if kept.get(d) != seq]
        assert not lost, f"round {rnd}: acknowledged messages lost or renumbered: {sorted(lost)[:5]}"
        con.close()
        print(f"round {rnd + 1}/{ROUNDS}: {len(registered)} registrations, {len(stored)} stored messages, all there")

    print(f"crash: {ROUNDS} kill -9, {len(registered)} acknowledged registrations and {len(stored)} "
          f"stored messages all kept, no duplicates, integrity ok, slowest restart {worst_restart:.2f} s")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"crash: FAILED: {e}", file=sys.stderr)
        sys.exit(1)
