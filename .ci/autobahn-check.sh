#!/usr/bin/env bash
# Autobahn|Testsuite against the reactor's echo example: 0 failed and at most 2
# non-strict cases (what tungstenite alone gives) or this fails.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p reactor --example echo
report="target/autobahn"
mkdir -p "$report"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$target/release/examples/echo" "127.0.0.1:$port" 2>"$report/echo.log" &
echo_pid=$!
trap 'kill $echo_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then break; fi
  sleep 0.1
done
shared="${IMD_SHARED:-../shared}"
summary=$(AUTOBAHN_FAIL_ON_FAILED=1 bash "$shared/tools/autobahn.sh" "ws://127.0.0.1:$port" "$report" | tail -n 1)
echo "$summary"
failed=$(sed -n 's/.* \([0-9]*\) failed.*/\1/p' <<<"$summary")
nonstrict=$(sed -n 's/.* \([0-9]*\) non-strict.*/\1/p' <<<"$summary")
if [ "${failed:-x}" != 0 ] || [ "${nonstrict:-99}" -gt 2 ]; then
  echo "autobahn: want 0 failed and at most 2 non-strict" >&2
  exit 1
fi
