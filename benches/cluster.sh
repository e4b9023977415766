#!/usr/bin/env bash
# The cluster row of make bench, also run alone (`make bench-cluster`, about 3 minutes).
# `make cluster`'s launcher (tests/cluster/cluster.sh, detached) starts PostgreSQL, Redis
# and two imd nodes on loopback, with benches/load.conf's settings and history on
# (synchronous = full); beside them, on the same PostgreSQL server, one imd without
# [cluster]. Then, with the load average beside each figure:
#   - latency: imd-load chat over both nodes, half the pairs on one node and half across
#     the two (--placement mixed), so the p99 of messages across nodes and on one node
#     come from one run at one rate (three turns, after a warm-up), and one run through
#     HAProxy (the balancer places the sessions);
#   - cost: CPU per routed message of the single node, of the cluster with every pair
#     across nodes, and with every pair on one node, at one rate (benches/cluster_cpu.py:
#     nodes, Redis and PostgreSQL apart; WAL bytes, commits and Redis commands per
#     message), and the serialization failures PostgreSQL logged meanwhile.
# Writes target/bench/cluster/cluster.json (benches/run.sh turns it into rows).
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bench/cluster
target="${CARGO_TARGET_DIR:-target}"
rm -rf "$out" && mkdir -p "$out"
ulimit -n 20000 || true
SINGLE=(18083 18446)
RATE_LATENCY=${RATE_LATENCY:-500}
RATE_CPU=${RATE_CPU:-500}

for port in "${SINGLE[@]}"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    echo "bench cluster: port $port is in use; stop what listens there first" >&2
    exit 1
  fi
done
cargo build --release --workspace --bins 2>&1 | grep -v '^ *\(Compiling\|Finished\)' || true

# The launcher adds these sections to every node's config: benches/load.conf's settings
# (no rate limits, cheap argon2), history on, synchronous = full. Its PostgreSQL runs
# with fsync = off: a commit waits for the WAL write, not for the disk.
cat >"$out/bench.conf" <<'EOF'
[server]
max_connections = 25000
[limits]
connections_per_ip = 0
[store]
synchronous = "full"
[password]
argon2_m_kib = 1024
argon2_t = 1
argon2_p = 1
threads = 4
[history]
enabled = true
[rate_limit]
register_per_min = 0
query_per_min = 0
login_fail_per_min = 0
send_per_s = 0
heartbeat_per_min = 0
EOF
CLUSTER_NODES=2 CLUSTER_CONF="$out/bench.conf" CLUSTER_OWNER=$$ IMD_BIN="$PWD/$target/release/imd" \
  bash tests/cluster/cluster.sh up --detach >"$out/state"
get() { sed -n "s/^$1=//p" "$out/state" | tail -n 1; }
dir=$(get dir)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  # The logs outlive the cluster, for a look at what the figures came from.
  for f in n1 n2 pg redis; do [ -f "$dir/$f/log" ] && cp "$dir/$f/log" "$out/$f.log"; done
  bash tests/cluster/cluster.sh down "$dir" || true
}
trap cleanup EXIT
wait_port() { for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
loadavg() { cut -d' ' -f1 /proc/loadavg; }
# Transactions PostgreSQL aborted for a serialization failure so far (the store retries
# each whole); its log has a line for every one.
aborts() { grep -c 'could not serialize' "$dir/pg/log" || true; }
# with_aborts JSON BEFORE: JSON with the aborts since BEFORE and the load average now.
with_aborts() {
  python3 -c "import json,sys; s=json.loads(sys.argv[1]); s['serialization_failures']=int(sys.argv[3])-int(sys.argv[2]); s['loadavg_end']=float(sys.argv[4]); print(json.dumps(s))" \
    "$1" "$2" "$(aborts)" "$(loadavg)"
}
port_of() { get "$1" | cut -d: -f2; }
PG_PORT=$(get postgres_port); REDIS_PORT=$(get redis_port)
postmaster=$(head -1 "$dir/pg/data/postmaster.pid")
redis=$(cat "$dir/redis/pid")
NODE_A=("$(port_of n1_plain)" "$(port_of n1_tls)"); NODE_B=("$(port_of n2_plain)" "$(port_of n2_tls)")
node_a=$(get n1_pid); node_b=$(get n2_pid)

# One imd without [cluster] on the same PostgreSQL server (a database of its own), with
# the same settings: what a message costs without the bus.
psql -h 127.0.0.1 -p "$PG_PORT" -U postgres -q -c "create database imd_single" >/dev/null
sed -e "s|^path = \"target/bench/data/imd.sqlite3\"|url = \"postgres://postgres@127.0.0.1:$PG_PORT/imd_single\"|" \
    -e "s|127.0.0.1:18080|127.0.0.1:${SINGLE[0]}|" -e "s|127.0.0.1:18443|127.0.0.1:${SINGLE[1]}|" \
    -e 's|^synchronous = "normal"|synchronous = "full"|' -e 's|^enabled = false|enabled = true|' \
    benches/load.conf >"$out/single.conf"
"$target/release/imd" --config "$out/single.conf" 2>"$out/single.log" &
single=$!; pids+=("$single")
wait_port "${SINGLE[0]}" && wait_port "${SINGLE[1]}"

load() { "$target/release/imd-load" "$@" 2>>"$out/load.log"; }
summary() { grep '^SUMMARY ' | sed 's/^SUMMARY //'; }
both=(--tls --ws 127.0.0.1:${NODE_A[1]} --ws 127.0.0.1:${NODE_B[1]} --http 127.0.0.1:${NODE_A[0]})

# A fresh database: the first minute of messages grows every table from empty (the
# first run on a new cluster had p99 3.7 s where the next had 16 ms). Not measured.
echo "== cluster: warm-up, $RATE_LATENCY msgs/s for 10 s (not measured)"
load chat --sessions 200 --size 64 --rate "$RATE_LATENCY" --duration 10 --placement mixed \
  "${both[@]}" --prefix warm >/dev/null || true

# measured LINE BEFORE_LOADAVG BEFORE_ABORTS: LINE with the load average at its start and
# end and the serialization failures PostgreSQL logged meanwhile.
measured() {
  with_aborts "$(python3 -c "import json,sys; s=json.loads(sys.argv[1]); s['loadavg_start']=float(sys.argv[2]); print(json.dumps(s))" "$1" "$2")" "$3"
}
echo "== cluster: p99 across nodes beside on one node, $RATE_LATENCY msgs/s, 200 WSS sessions, pairs mixed"
latency=""
for turn in 1 2 3; do
  before=$(loadavg); a0=$(aborts)
  line=$(load chat --sessions 200 --size 64 --rate "$RATE_LATENCY" --duration 10 --placement mixed \
    "${both[@]}" --prefix "lat$turn" | summary || true)
  echo "turn $turn (load average $before → $(loadavg)): $line"
  if [ -n "$line" ]; then latency+=$(measured "$line" "$before" "$a0")$'\n'; fi
done
echo "== cluster: the same through HAProxy (leastconn: the balancer places the sessions)"
before=$(loadavg); a0=$(aborts)
line=$(load chat --sessions 200 --size 64 --rate "$RATE_LATENCY" --duration 10 --tls \
  --ws "$(get haproxy_tls)" --http "$(get haproxy_plain)" --prefix balanced | summary || true)
balanced=""
if [ -n "$line" ]; then balanced=$(measured "$line" "$before" "$a0"); fi
echo "through HAProxy: $balanced"

echo "== cluster: CPU per routed message at $RATE_CPU msgs/s, 200 WSS sessions, history on, PostgreSQL"
cost() { # LABEL NODES REDIS imd-load args…
  local label=$1 nodes=$2 redis_arg=$3
  shift 3
  local a0 line
  a0=$(aborts)
  line=$(python3 benches/cluster_cpu.py "$nodes" "$redis_arg" "$postmaster:$PG_PORT" 7 \
    "$target/release/imd-load" chat --sessions 200 --size 64 --rate $RATE_CPU --duration 10 --prefix "$label" "$@" \
    2>>"$out/load.log" | grep '^CPU ' | sed 's/^CPU //' || true)
  if [ -n "$line" ]; then with_aborts "$line" "$a0"; fi
}
cpu_single=$(cost single "$single:${SINGLE[0]}" - --tls --ws 127.0.0.1:${SINGLE[1]} --http 127.0.0.1:${SINGLE[0]})
echo "one node, no [cluster]: $cpu_single"
cpu_cross=$(cost cross "$node_a:${NODE_A[0]},$node_b:${NODE_B[0]}" "$redis:$REDIS_PORT" "${both[@]}" --placement cross)
echo "cluster, every pair across nodes: $cpu_cross"
cpu_same=$(cost same "$node_a:${NODE_A[0]},$node_b:${NODE_B[0]}" "$redis:$REDIS_PORT" "${both[@]}" --placement same)
echo "cluster, every pair on one node: $cpu_same"

python3 - "$out/cluster.json" <<PY
import json, sys
turns = [json.loads(l) for l in '''$latency'''.splitlines() if l.strip()]
parse = lambda text: json.loads(text) if text.strip() else None
result = {"rate_latency": $RATE_LATENCY, "rate_cpu": $RATE_CPU, "latency_turns": turns, "balanced": parse('''$balanced'''),
          "cpu_single": parse('''$cpu_single'''), "cpu_cross": parse('''$cpu_cross'''), "cpu_same": parse('''$cpu_same''')}
json.dump(result, open(sys.argv[1], "w"), indent=1)
PY
echo "wrote $out/cluster.json"
