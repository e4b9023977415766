#!/usr/bin/env python3
"""CPU per routed message (make bench): runs one imd-load chat against imd and divides
the daemon's CPU time (utime + stime of /proc/PID/stat) by the messages it answered
(imd_ws_replies_total, codes 200 and 202, from /im/metrics) over a window inside the
sending phase: provisioning (registrations, argon2, TLS handshakes) costs the daemon
more than a low rate of messages does, and is no part of the figure.

usage: cpu_per_message.py PID HTTP_PORT WINDOW_S imd-load chat ARGS…
Prints `CPU {json}` (us_per_msg, routed, cpu_s, seconds, and imd-load's summary).

With HTTP_PORT `-` (a server with no metrics: the echo baseline, driven by `imd-load
echo`), the messages are imd-load's `--rate` times the window: at 1,000 a second every
one is echoed."""

import json
import os
import subprocess
import sys
import threading
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # After the command name: state is field 3, utime 14 and stime 15 (proc(5)).
    return (int(fields[11]) + int(fields[12])) / TICK


def answered(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/im/metrics", timeout=5) as r:
        text = r.read().decode()
    total = 0
    for line in text.splitlines():
        if line.startswith(("imd_ws_replies_total{code=\"200\"}", "imd_ws_replies_total{code=\"202\"}")):
            total += int(line.rsplit(" ", 1)[1])
    return total


def start_steady(argv, answered, name):
    """Starts imd-load (`argv`) and returns it once it sends steadily. Login replies
    count as answers too, so it first waits for imd-load's "sessions ready"; sending has
    begun once `answered()` grows, and a second later the loop is steady. Exits naming
    `name` when imd-load never gets there."""
    load = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = threading.Event()

    def relay():
        for line in load.stderr:
            sys.stderr.write(line)
            if "sessions ready" in line:
                ready.set()

    threading.Thread(target=relay, daemon=True).start()
    limit = time.monotonic() + 120
    while not ready.wait(0.1):
        if load.poll() is not None or time.monotonic() > limit:
            sys.exit(f"{name}: imd-load's sessions never got ready")
    before = answered()
    while answered() < before + 50:
        if load.poll() is not None or time.monotonic() > limit:
            sys.exit(f"{name}: imd-load sent nothing")
        time.sleep(0.1)
    time.sleep(1)
    return load


def summary_of(load):
    """imd-load's SUMMARY, once it has ended."""
    out, _ = load.communicate(timeout=120)
    return next((json.loads(l[8:]) for l in out.splitlines() if l.startswith("SUMMARY ")), None)


def offered(argv):
    """Messages imd-load has offered by now at its `--rate`."""
    rate = float(argv[argv.index("--rate") + 1])
    return lambda: int(time.monotonic() * rate)


def main():
    pid, window = int(sys.argv[1]), float(sys.argv[3])
    count = offered(sys.argv[4:]) if sys.argv[2] == "-" else (lambda: answered(int(sys.argv[2])))
    load = start_steady(sys.argv[4:], count, "cpu_per_message")
    t1, c1, n1 = time.monotonic(), cpu_seconds(pid), count()
    time.sleep(window)
    t2, c2, n2 = time.monotonic(), cpu_seconds(pid), count()
    summary = summary_of(load)
    routed = n2 - n1
    print("CPU " + json.dumps({
        "us_per_msg": round((c2 - c1) * 1e6 / routed, 1) if routed else None,
        "routed": routed, "cpu_s": round(c2 - c1, 3), "seconds": round(t2 - t1, 2),
        "summary": summary,
    }))


if __name__ == "__main__":
    main()
