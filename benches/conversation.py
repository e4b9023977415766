#!/usr/bin/env python3
"""A session for wrk (make bench): two friends, logged in, N messages of 64 B between
them (history on: /im/messages has a conversation to read; 0 for a token alone). Writes
"id=…&token=…&with=…" to OUT once they are stored, then keeps both sessions open (a
token lives with its session; a heartbeat every 30 s keeps them past the idle timeout)
until killed, or 10 minutes at most.

usage: conversation.py HTTP_PORT OUT N"""

import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "hardening"))
from imdclient import api, login  # noqa: E402


def main():
    port, out, messages = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    tag = f"conv{os.getpid()}"
    for side in "ab":
        api(port, "POST", "/im/register", {"account": f"{tag}{side}", "password": "pw", "mail": "m"})
    a, b = login(port, f"{tag}a", "pw"), login(port, f"{tag}b", "pw")
    api(port, "POST", "/im/friends/request", {"id": a.id, "token": a.token, "to": b.id})
    api(port, "POST", "/im/friends/add", {"id": b.id, "token": b.token, "from": a.id, "name": "a"})
    for i in range(messages):
        me, peer = (a, b) if i % 2 == 0 else (b, a)
        did = f"m{i}"
        me.send({"id": did, "toFriend": peer.id, "payload": f"{i:02d}".ljust(64, "x"), "cid": did})
        reply = me.wait(lambda m: m.get("id") == did)
        if reply.get("code") not in (200, 202) or "seq" not in reply:
            raise RuntimeError(f"message {i}: {reply} (is history on?)")
    with open(out + ".tmp", "w") as f:
        f.write(f"id={a.id}&token={a.token}&with={b.id}")
    os.replace(out + ".tmp", out)
    for _ in range(20):
        time.sleep(30)
        for me in (a, b):
            me.send({"type": "heartbeat"})


if __name__ == "__main__":
    main()
