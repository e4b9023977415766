#!/usr/bin/env bash
# TLS scan (make soak): sslyze from PyPI, in a venv this script creates, against imd's
# TLS listener with a certificate from a throwaway CA (so the certificate checks are
# meaningful): Mozilla's "intermediate" configuration must pass. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/../.."
repo=$(pwd)
bin=$(realpath "${IMD_BIN:-target/release/imd}")
work=$(mktemp -d)
trap 'kill "${pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
venv="${SSLYZE_VENV:-/tmp/imd-sslyze-venv}"
if [ ! -x "$venv/bin/sslyze" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check sslyze
fi
cd "$work"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca-key.pem -out ca.pem \
  -days 30 -subj "/CN=imd scan CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign" 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out leaf.csr \
  -subj "/CN=localhost" 2>/dev/null
printf "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature\n" > ext.cnf
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 30 -out cert.pem \
  -extfile ext.cnf 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > imd.conf <<CONF
[server]
listen = ""
web_root = "$repo/www"
[tls]
listen = "127.0.0.1:$port"
cert = "$work/cert.pem"
key = "$work/key.pem"
self_signed = false
handshake_timeout_s = 2
[store]
path = "$work/imd.sqlite3"
CONF
"$bin" --config imd.conf 2>imd.log &
pid=$!
for _ in $(seq 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
"$venv/bin/sslyze" --mozilla_config=intermediate --certinfo_ca_file ca.pem "localhost:$port{127.0.0.1}" > scan.txt
grep -E "Compliant|compliant" scan.txt
# A client that opens a TCP connection and never says hello is closed by the handshake timeout.
start=$(date +%s%N)
python3 - "$port" <<'PY'
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
s.settimeout(10)
while s.recv(4096):
    pass
PY
took=$(( ($(date +%s%N) - start) / 1000000 ))
echo "tls-scan: intermediate compliant; a silent client was closed after ${took} ms (handshake_timeout_s = 2)"
[ "$took" -lt 5000 ]
