#!/usr/bin/env bash
# Autobahn|Testsuite (wstest -m fuzzingclient) against the reactor's echo example,
# on 127.0.0.1 only. Passes with 0 failed cases and at most 2 non-strict ones.
#
# autobahntestsuite is Python 2 code and this project needs nothing but Python 3:
# the first run builds a venv, fetches the two pinned sdists from PyPI (hashes in
# sources.txt), ports them with port.py (lib2to3 and a few checked edits) plus the
# run-time conversions in shims.py, and installs them. The venv is kept and rebuilt
# only when one of those files changes.
#
# Knobs: AUTOBAHN_CASES / AUTOBAHN_EXCLUDE (comma-separated case patterns, default
# all / none), AUTOBAHN_VENV (default target/autobahn/venv), AUTOBAHN_TIMEOUT
# (seconds for the whole wstest run, default 1800), PYTHON (default python3).
# Exit: 0 pass, 1 the cases fail, 2 setup or run failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-target}"
report="$target/autobahn"
venv="${AUTOBAHN_VENV:-$target/autobahn/venv}"
python="${PYTHON:-python3}"
report="$(realpath -m "$report")"
venv="$(realpath -m "$venv")"

fail() { echo "autobahn: setup failed: $*" >&2; exit 2; }

# The venv matches the port when this hash of every file that shapes it matches.
port_hash() {
  cat "$here/port.py" "$here/shims.py" "$here/requirements.txt" "$here/sources.txt" \
    <("$python" --version 2>&1) | sha256sum | cut -d' ' -f1
}

build_venv() {
  local work
  command -v "$python" >/dev/null || fail "$python not found"
  "$python" -c 'import lib2to3' 2>/dev/null \
    || fail "$python has no lib2to3 (Python <= 3.12 has it)"
  echo "autobahn: building the wstest venv in $venv (once; about a minute)" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv" || fail "python -m venv (on Debian: apt-get install python3-venv)"
  local pip=("$venv/bin/python" -m pip --quiet --disable-pip-version-check)
  "${pip[@]}" install -r "$here/requirements.txt" || fail "pip install -r requirements.txt (PyPI reachable?)"
  work="$venv/src"
  mkdir -p "$work"
  "${pip[@]}" download --no-deps --no-binary :all: --require-hashes -r "$here/sources.txt" -d "$work" \
    || fail "pip download of the pinned sdists (or their sha256 differ)"
  tar -xzf "$work/autobahntestsuite-25.10.1.tar.gz" -C "$work"
  tar -xzf "$work/autobahn-0.10.9.tar.gz" -C "$work"
  "$venv/bin/python" "$here/port.py" "$work/autobahntestsuite-25.10.1" "$work/autobahn-0.10.9" \
    || fail "port.py could not port the sources"
  "${pip[@]}" install --no-deps "$work/autobahn-0.10.9" "$work/autobahntestsuite-25.10.1" \
    || fail "pip install of the ported sources"
  "$venv/bin/wstest" --help >/dev/null || fail "the ported wstest does not start"
  port_hash >"$venv/port-hash"
}

if [ "$(cat "$venv/port-hash" 2>/dev/null)" != "$(port_hash)" ]; then
  build_venv
fi

cargo build --release -p reactor --example echo
mkdir -p "$report"
rm -f "$report/index.json"
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$target/release/examples/echo" "127.0.0.1:$port" 2>"$report/echo.log" &
echo_pid=$!
trap 'kill "$echo_pid" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done
kill -0 "$echo_pid" 2>/dev/null || { cat "$report/echo.log" >&2; fail "the echo example did not start"; }

"$python" - "$report" "ws://127.0.0.1:$port" "${AUTOBAHN_CASES:-*}" "${AUTOBAHN_EXCLUDE:-}" <<'PY' >"$report/spec.json"
import json, sys
report, url, cases, exclude = sys.argv[1:]
patterns = lambda s: [p.strip() for p in s.split(",") if p.strip()]
print(json.dumps({"outdir": report, "servers": [{"agent": "reactor-echo", "url": url}],
                  "cases": patterns(cases), "exclude-cases": patterns(exclude),
                  "exclude-agent-cases": {}}, indent=2))
PY
started=$(date +%s)
echo "autobahn: wstest against ws://127.0.0.1:$port (log: $report/wstest.log)" >&2
# Twisted logs an exception inside the suite and carries on waiting for the case that
# died, so a traceback in the log ends the run at once instead of at the timeout.
(cd "$report" && exec "$venv/bin/wstest" -m fuzzingclient -s spec.json >wstest.log 2>&1) &
wstest_pid=$!
trap 'kill "$echo_pid" "$wstest_pid" 2>/dev/null || true' EXIT
deadline=$(( started + ${AUTOBAHN_TIMEOUT:-1800} ))
while kill -0 "$wstest_pid" 2>/dev/null; do
  if grep -q "Traceback" "$report/wstest.log"; then
    tail -n 20 "$report/wstest.log" >&2
    fail "wstest raised (the Python 3 port misses a case? see $report/wstest.log)"
  fi
  [ "$(date +%s)" -lt "$deadline" ] || fail "wstest still running after ${AUTOBAHN_TIMEOUT:-1800} s"
  sleep 2
done
wait "$wstest_pid" || { tail -n 20 "$report/wstest.log" >&2; fail "wstest exited with an error"; }
echo "autobahn: wstest took $(( $(date +%s) - started )) s; report: $report/index.html" >&2
"$python" "$here/judge.py" "$report/index.json"
