#!/usr/bin/env bash
# A throwaway imd cluster on loopback: PostgreSQL (a fresh initdb), Redis, N imd nodes
# (default 3) and HAProxy in front of them, all in one temporary directory. `make
# cluster` runs it in the foreground; tests and benches run it detached and drive its
# faults with the subcommands below. See docs/cluster.md, "Operations".
#
#   cluster.sh [up] [--detach]       start; foreground: print the web client's URL and
#                                    stop everything on Ctrl-C (SIGINT/SIGTERM)
#   cluster.sh down DIR              stop everything a detached run started, remove DIR
#   cluster.sh kill DIR NODE         kill -9 one node (e.g. n2)
#   cluster.sh start-node DIR NODE   start a node again, same name, ports and config
#   cluster.sh redis-restart DIR     kill -9 Redis and start an empty one on its port
#   cluster.sh pg-stop DIR           stop PostgreSQL (fast shutdown)
#   cluster.sh pg-start DIR          start it again on the same data and port
#
# Environment:
#   IMD_BIN        the daemon (default target/release/imd, built by `make cluster`)
#   CLUSTER_CONF   a TOML file whose sections are added to every node's config; a key
#                  it gives replaces the generated one (plain `key = value` lines)
#   CLUSTER_NODES  how many nodes (default 3)
#   CLUSTER_OWNER  a pid: a detached cluster stops by itself once that process is gone
#
# The state of a run is DIR/state, one `key=value` a line (a detached `up` prints it
# too): dir, url, plain_url, haproxy_tls, haproxy_plain, postgres_url, redis_url,
# nodes, and per node NODE_plain, NODE_tls, NODE_pid.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
self=$repo/tests/cluster/cluster.sh
say() { echo "cluster: $*" >&2; }
die() { say "$*"; exit 1; }

# --- shared helpers (every subcommand) -------------------------------------------

is_root() { [ "$(id -u)" = 0 ]; }

# The newest /usr/lib/postgresql/<version>/bin holding initdb.
pg_bin() {
    local v
    v=$(ls /usr/lib/postgresql 2>/dev/null | sort -n | tail -n 1)
    [ -n "$v" ] && [ -x "/usr/lib/postgresql/$v/bin/initdb" ] && echo "/usr/lib/postgresql/$v/bin"
}

# PostgreSQL refuses to run as root: as root, its commands run as the postgres user.
as_pg() {
    if is_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

state() { sed -n "s/^$2=//p" "$1/state" | tail -n 1; }

set_state() {
    local dir=$1 key=$2 value=$3
    grep -v "^$key=" "$dir/state" > "$dir/state.new" || true
    echo "$key=$value" >> "$dir/state.new"
    mv "$dir/state.new" "$dir/state"
}

pg_ctl_() {
    local dir=$1; shift
    as_pg "$(state "$dir" pg_bin)/pg_ctl" -D "$dir/pg/data" -l "$dir/pg/log" "$@"
}

pg_start() {
    local dir=$1
    pg_ctl_ "$dir" -w -t 60 -o "-p $(state "$dir" postgres_port) -k $dir/pg \
        -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300" start >/dev/null
}

redis_start() {
    local dir=$1
    setsid redis-server --bind 127.0.0.1 --port "$(state "$dir" redis_port)" \
        --save '' --appendonly no --dir "$dir/redis" >"$dir/redis/log" 2>&1 < /dev/null &
    echo $! > "$dir/redis/pid"
    wait_port "$(state "$dir" redis_port)" 10 || die "redis-server did not listen"
}

# Whether something accepts on 127.0.0.1:port.
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
    local port=$1 tries=$(($2 * 10))
    while ! listening "$port"; do
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || return 1
        sleep 0.1
    done
}

node_start() {
    local dir=$1 node=$2
    [ -f "$dir/$node/imd.conf" ] || die "no node $node in $dir"
    # Its own directory: its log and anything it writes beside its config.
    (cd "$dir/$node" && exec setsid "$(state "$dir" imd_bin)" --config imd.conf \
        >>log 2>&1 < /dev/null) &
    local pid=$!
    echo "$pid" > "$dir/$node/pid"
    set_state "$dir" "${node}_pid" "$pid"
    local port
    port=$(state "$dir" "${node}_tls"); port=${port##*:}
    local tries=300
    until listening "$port"; do
        kill -0 "$pid" 2>/dev/null || { tail -n 20 "$dir/$node/log" >&2; die "$node exited"; }
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || { tail -n 20 "$dir/$node/log" >&2; die "$node did not listen"; }
        sleep 0.1
    done
}

stop_pid() {
    local pid=$1 wait=${2:-10}
    kill -TERM "$pid" 2>/dev/null || return 0
    local tries=$((wait * 10))
    while kill -0 "$pid" 2>/dev/null && [ "$tries" -gt 0 ]; do
        sleep 0.1
        tries=$((tries - 1))
    done
    kill -KILL "$pid" 2>/dev/null || true
}

# Stops whatever DIR's run started, in dependency order, and removes DIR.
teardown() {
    local dir=$1 f stops=()
    [ -f "$dir/state" ] || return 0
    [ -f "$dir/haproxy.pid" ] && stop_pid "$(cat "$dir/haproxy.pid")" 5
    for f in "$dir"/n*/pid; do
        [ -f "$f" ] || continue
        stop_pid "$(cat "$f")" 10 &
        stops+=($!)
    done
    # Only these: Redis may be a child of this shell too.
    for f in "${stops[@]}"; do wait "$f" || true; done
    [ -f "$dir/redis/pid" ] && stop_pid "$(cat "$dir/redis/pid")" 5
    if [ -f "$dir/pg/data/postmaster.pid" ]; then
        pg_ctl_ "$dir" -m fast -w -t 30 stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

# --- up ----------------------------------------------------------------------------

install_missing() {
    local missing=()
    pg_bin >/dev/null || missing+=(postgresql)
    command -v redis-server >/dev/null || missing+=(redis-server)
    command -v haproxy >/dev/null || missing+=(haproxy)
    command -v openssl >/dev/null || missing+=(openssl)
    [ ${#missing[@]} -eq 0 ] && return 0
    is_root || die "missing ${missing[*]}, and not root to install them: apt-get install ${missing[*]}"
    say "installing ${missing[*]} from Debian"
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "${missing[@]}" >&2
    # Debian starts the services it installs; this cluster runs its own.
    for s in postgresql redis-server haproxy; do
        command -v systemctl >/dev/null && systemctl disable --now "$s" >/dev/null 2>&1 || true
        command -v service >/dev/null && service "$s" stop >/dev/null 2>&1 || true
    done
    pg_bin >/dev/null || die "apt-get installed postgresql but no initdb was found"
}

# Free loopback ports below Linux's ephemeral range (32768-60999), so a port picked
# here is not taken meanwhile by some client's outgoing connection.
declare -A taken=()
free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 12000))
        [ -z "${taken[$p]:-}" ] || continue
        [ -z "$(ss -Htan "( sport = :$p )" 2>/dev/null)" ] || continue
        listening "$p" && continue
        taken[$p]=1
        echo "$p"
        return
    done
}

# CLUSTER_CONF merged into the generated config ($1): a key of a section both have is
# replaced, other keys are added to their section, other sections appended.
merge_conf() {
    awk '
        function key(line) { sub(/[ \t]*=.*/, "", line); gsub(/^[ \t]+/, "", line); return line }
        function flush(s,   i, k) {
            for (i = 1; i <= n[s]; i++) { k = order[s, i]; if (!used[s, k]) print extra[s, k]; used[s, k] = 1 }
        }
        FNR == NR {
            if ($0 ~ /^[ \t]*\[[^]]+\][ \t]*$/) { s = $0; gsub(/[ \t\[\]]/, "", s); if (!(s in seen)) { seen[s] = 1; secs[++ns] = s }; next }
            if ($0 ~ /^[ \t]*(#|$)/) next
            k = key($0); if (!((s, k) in extra)) order[s, ++n[s]] = k; extra[s, k] = $0; next
        }
        /^[ \t]*\[[^]]+\][ \t]*$/ { flush(cur); cur = $0; gsub(/[ \t\[\]]/, "", cur); base[cur] = 1; print; next }
        /^[ \t]*[A-Za-z0-9_]+[ \t]*=/ { k = key($0); if ((cur, k) in extra) { print extra[cur, k]; used[cur, k] = 1; next } }
        { print }
        END {
            flush(cur)
            for (i = 1; i <= ns; i++) if (!(secs[i] in base)) { print ""; print "[" secs[i] "]"; flush(secs[i]) }
        }
    ' "$2" "$1"
}

up() {
    local detach=$1
    install_missing
    local imd=${IMD_BIN:-$repo/target/release/imd}
    [ -x "$imd" ] || die "no daemon at $imd (make build)"
    local conf=${CLUSTER_CONF:-}
    [ -z "$conf" ] || [ -f "$conf" ] || die "CLUSTER_CONF=$conf: no such file"
    local count=${CLUSTER_NODES:-3}
    local dir
    # The postgres user must reach it: not a root's private TMPDIR.
    dir=$(mktemp -d /tmp/imd-cluster.XXXXXX)
    chmod 755 "$dir"
    if [ "$detach" = 0 ]; then
        trap 'say "stopping"; teardown "$dir"; exit 0' INT TERM
        trap 'teardown "$dir"' EXIT
    else
        # A failed detached start leaves nothing behind.
        trap 'teardown "$dir"' EXIT
    fi
    local bin
    bin=$(pg_bin)
    local nodes=() i
    for i in $(seq 1 "$count"); do nodes+=("n$i"); done
    {
        echo "dir=$dir"
        echo "pg_bin=$bin"
        echo "imd_bin=$imd"
        echo "postgres_port=$(free_port)"
        echo "redis_port=$(free_port)"
        echo "haproxy_tls=127.0.0.1:$(free_port)"
        echo "haproxy_plain=127.0.0.1:$(free_port)"
        echo "nodes=${nodes[*]}"
        for i in "${nodes[@]}"; do
            echo "${i}_plain=127.0.0.1:$(free_port)"
            echo "${i}_tls=127.0.0.1:$(free_port)"
        done
    } > "$dir/state"
    local pg_port redis_port
    pg_port=$(state "$dir" postgres_port)
    redis_port=$(state "$dir" redis_port)

    # PostgreSQL: a fresh cluster, trust on loopback, the database imd.
    mkdir -p "$dir/pg" "$dir/redis"
    is_root && chown postgres "$dir/pg"
    as_pg "$bin/initdb" -D "$dir/pg/data" -U postgres --auth=trust -E UTF8 --no-sync \
        >"$dir/pg/initdb.log" 2>&1 || { cat "$dir/pg/initdb.log" >&2; die "initdb failed"; }
    pg_start "$dir" || { tail -n 20 "$dir/pg/log" >&2; die "PostgreSQL did not start"; }
    "$bin/createdb" -h 127.0.0.1 -p "$pg_port" -U postgres imd
    set_state "$dir" postgres_url "postgres://postgres@127.0.0.1:$pg_port/imd"
    redis_start "$dir"
    set_state "$dir" redis_url "redis://127.0.0.1:$redis_port"

    # One certificate for the run, so every node behind the balancer shows the same.
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
        -keyout "$dir/key.pem" -out "$dir/cert.pem" 2>/dev/null

    for i in "${nodes[@]}"; do
        mkdir -p "$dir/$i"
        cat > "$dir/$i/base.conf" <<EOF
[server]
listen = "$(state "$dir" "${i}_plain")"
web_root = "$repo/www"
[tls]
listen = "$(state "$dir" "${i}_tls")"
cert = "$dir/cert.pem"
key = "$dir/key.pem"
self_signed = false
[store]
url = "$(state "$dir" postgres_url)"
[cluster]
redis = "$(state "$dir" redis_url)"
node = "$i"
EOF
        if [ -n "$conf" ]; then
            merge_conf "$dir/$i/base.conf" "$conf" > "$dir/$i/imd.conf"
        else
            cp "$dir/$i/base.conf" "$dir/$i/imd.conf"
        fi
        "$imd" --check-config --config "$dir/$i/imd.conf" >/dev/null \
            || die "node $i's config is refused ($dir/$i/imd.conf)"
    done
    for i in "${nodes[@]}"; do node_start "$dir" "$i"; done

    # HAProxy in TCP mode: TLS passes through to the nodes, WebSockets are long-lived
    # tunnels. A node that stops answering its checks (1 s apart) is taken out; a
    # connection that fails meanwhile is retried on another node.
    # Two descriptors a connection, within the hard limit it may raise itself to.
    local maxconn
    maxconn=$(ulimit -Hn)
    [ "$maxconn" = unlimited ] && maxconn=1048576
    maxconn=$(( (maxconn - 100) / 2 ))
    [ "$maxconn" -gt 100000 ] && maxconn=100000
    {
        cat <<EOF
global
    maxconn $maxconn
defaults
    mode tcp
    timeout connect 2s
    timeout client 1h
    timeout server 1h
    retries 2
    option redispatch
frontend tls
    bind $(state "$dir" haproxy_tls)
    default_backend tls_nodes
frontend plain
    bind $(state "$dir" haproxy_plain)
    default_backend plain_nodes
backend tls_nodes
    balance leastconn
EOF
        for i in "${nodes[@]}"; do
            echo "    server $i $(state "$dir" "${i}_tls") check inter 1s fall 2 rise 1"
        done
        echo "backend plain_nodes"
        echo "    balance leastconn"
        for i in "${nodes[@]}"; do
            echo "    server $i $(state "$dir" "${i}_plain") check inter 1s fall 2 rise 1"
        done
    } > "$dir/haproxy.cfg"
    setsid haproxy -db -f "$dir/haproxy.cfg" >"$dir/haproxy.log" 2>&1 < /dev/null &
    echo $! > "$dir/haproxy.pid"
    local hport
    hport=$(state "$dir" haproxy_tls); wait_port "${hport##*:}" 10 \
        || { cat "$dir/haproxy.log" >&2; die "haproxy did not listen"; }
    set_state "$dir" url "https://$(state "$dir" haproxy_tls)/im/www/v1/chat.html"
    set_state "$dir" plain_url "http://$(state "$dir" haproxy_plain)/im/www/v1/chat.html"

    if [ "$detach" = 1 ]; then
        trap - EXIT
        # The watcher owns the run from here: `down` (SIGTERM) or the owner's end.
        setsid bash "$self" _watch "$dir" "${CLUSTER_OWNER:-}" </dev/null >/dev/null 2>&1 &
        echo "watch_pid=$!" >> "$dir/state"
        cat "$dir/state"
        return
    fi
    say "PostgreSQL $(state "$dir" postgres_url), Redis $(state "$dir" redis_url)"
    for i in "${nodes[@]}"; do
        say "node $i: https://$(state "$dir" "${i}_tls") http://$(state "$dir" "${i}_plain") (log $dir/$i/log)"
    done
    say "HAProxy: https://$(state "$dir" haproxy_tls) http://$(state "$dir" haproxy_plain)"
    echo "web client through the balancer: $(state "$dir" url)"
    echo "  (self-signed certificate; plain: $(state "$dir" plain_url))"
    say "Ctrl-C stops everything"
    while :; do sleep 1; done
}

watch() {
    local dir=$1 owner=$2
    trap 'teardown "$dir"; exit 0' TERM INT
    while [ -d "$dir" ]; do
        if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then break; fi
        sleep 0.5 &
        wait $!
    done
    teardown "$dir"
}

cmd=${1:-up}
[ $# -gt 0 ] && shift
case "$cmd" in
    up)
        detach=0
        for a in "$@"; do
            case "$a" in
                --detach) detach=1 ;;
                *) die "unknown option $a" ;;
            esac
        done
        up "$detach"
        ;;
    --detach) up 1 ;;
    down) [ -f "${1:?DIR}/state" ] || die "no cluster in $1"
        pid=$(state "$1" watch_pid)
        if [ -n "$pid" ] && kill -TERM "$pid" 2>/dev/null; then
            while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
        else
            teardown "$1"
        fi ;;
    kill) kill -KILL "$(cat "${1:?DIR}/${2:?NODE}/pid")" ;;
    start-node) node_start "${1:?DIR}" "${2:?NODE}" ;;
    redis-restart) kill -KILL "$(cat "${1:?DIR}/redis/pid")" 2>/dev/null || true
        while listening "$(state "$1" redis_port)"; do sleep 0.05; done
        redis_start "$1" ;;
    pg-stop) pg_ctl_ "${1:?DIR}" -m fast -w -t 30 stop >/dev/null ;;
    pg-start) pg_start "${1:?DIR}" ;;
    _watch) watch "$1" "${2:-}" ;;
    *) die "unknown command $cmd (up, down, kill, start-node, redis-restart, pg-stop, pg-start)" ;;
esac
