#!/usr/bin/env python3
"""What a routed message costs a cluster (benches/cluster.sh): runs one imd-load chat and,
over a window inside its sending phase (as cpu_per_message.py: provisioning left out),
divides by the messages the nodes answered (200 and 202 replies, summed over the nodes'
/im/metrics):

- the nodes' CPU time (utime + stime), all of them together and each;
- Redis's CPU time, and the commands and PUBLISHes it ran (INFO commandstats);
- PostgreSQL's CPU time (the postmaster and every process under it), the WAL it wrote
  (pg_current_wal_insert_lsn) and the history writers' commits (imd_history_batch_sends).

usage: cluster_cpu.py NODES REDIS PG WINDOW_S imd-load chat ARGS…
  NODES  PID:HTTP_PORT[,PID:HTTP_PORT…]     the imd nodes (or one single node)
  REDIS  PID:PORT, or - when there is none
  PG     POSTMASTER_PID:PORT
Prints `CPU {json}` with the figures, the load average over the window and imd-load's
summary."""

import json
import os
import subprocess
import sys
import time
import urllib.request

from cpu_per_message import cpu_seconds, start_steady, summary_of

TICK = os.sysconf("SC_CLK_TCK")


def metric_sum(port, prefixes):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/im/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(int(float(l.rsplit(" ", 1)[1])) for l in text.splitlines() if l.startswith(prefixes))


ANSWERS = ('imd_ws_replies_total{code="200"}', 'imd_ws_replies_total{code="202"}')
COMMITS = ("imd_history_batch_sends_count",)


def tree_cpu(root):
    """CPU seconds of `root` and every process whose parent it is (PostgreSQL's
    backends, writers and checkpointer are the postmaster's children)."""
    total = cpu_seconds(root)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == root:
            total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def redis_stats(port):
    out = subprocess.run(["redis-cli", "-p", str(port), "INFO", "all"], capture_output=True,
                         text=True, check=True).stdout
    calls, publish = 0, 0
    for line in out.splitlines():
        if line.startswith("cmdstat_"):
            n = int(line.split("calls=", 1)[1].split(",", 1)[0])
            calls += n
            if line.startswith("cmdstat_publish:"):
                publish = n
    return calls, publish


def wal_lsn(port):
    out = subprocess.run(["psql", "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "-At", "-c",
                          "select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')"],
                         capture_output=True, text=True, check=True).stdout
    return int(float(out.strip()))


def sample(nodes, redis, pg):
    s = {
        "t": time.monotonic(),
        "nodes": [cpu_seconds(pid) for pid, _ in nodes],
        "answered": sum(metric_sum(port, ANSWERS) for _, port in nodes),
        "commits": sum(metric_sum(port, COMMITS) for _, port in nodes),
        "pg_cpu": tree_cpu(pg[0]),
        "wal": wal_lsn(pg[1]),
    }
    if redis:
        s["redis_cpu"] = cpu_seconds(redis[0])
        s["redis_calls"], s["redis_publish"] = redis_stats(redis[1])
    return s


def pair(text):
    pid, port = text.split(":")
    return int(pid), int(port)


def main():
    nodes = [pair(n) for n in sys.argv[1].split(",")]
    redis = None if sys.argv[2] == "-" else pair(sys.argv[2])
    pg, window = pair(sys.argv[3]), float(sys.argv[4])
    answered = lambda: sum(metric_sum(port, ANSWERS) for _, port in nodes)
    load = start_steady(sys.argv[5:], answered, "cluster_cpu")
    a = sample(nodes, redis, pg)
    time.sleep(window)
    b = sample(nodes, redis, pg)
    load_avg = os.getloadavg()[0]
    summary = summary_of(load)
    n = b["answered"] - a["answered"]
    per = lambda seconds: round(seconds * 1e6 / n, 1) if n else None
    node_cpu = [y - x for x, y in zip(a["nodes"], b["nodes"])]
    figures = {
        "routed": n, "seconds": round(b["t"] - a["t"], 2), "loadavg_1m": round(load_avg, 1),
        "us_per_msg": per(sum(node_cpu)), "node_us_per_msg": [per(c) for c in node_cpu],
        "cpu_s": round(sum(node_cpu), 3),
        "pg_us_per_msg": per(b["pg_cpu"] - a["pg_cpu"]),
        "wal_bytes_per_msg": round((b["wal"] - a["wal"]) / n, 1) if n else None,
        "commits_per_s": round((b["commits"] - a["commits"]) / (b["t"] - a["t"]), 1),
        "msgs_per_commit": round(n / (b["commits"] - a["commits"]), 2) if b["commits"] > a["commits"] else None,
    }
    if redis:
        figures["redis_us_per_msg"] = per(b["redis_cpu"] - a["redis_cpu"])
        figures["redis_cmds_per_msg"] = round((b["redis_calls"] - a["redis_calls"]) / n, 2) if n else None
        figures["redis_publish_per_msg"] = round((b["redis_publish"] - a["redis_publish"]) / n, 2) if n else None
    figures["summary"] = summary
    print("CPU " + json.dumps(figures))


if __name__ == "__main__":
    main()
