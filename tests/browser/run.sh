#!/usr/bin/env bash
# Browser tests of the web client: installs what is missing (Debian's Chromium, the
# npm packages), then runs each test file (all of them, or those named) with node's
# test runner.
# A file that fails is run once more: a shared, loaded CI machine can starve a headless
# browser past a 15 s wait. A failure that does not come back is still printed as
# FLAKY with its first output kept, so it is seen and chased, not silently absorbed;
# one that comes back fails the suite.
set -euo pipefail
cd "$(dirname "$0")"
if [ ! -x /usr/bin/chromium ]; then
  echo "browser tests: installing Debian's chromium" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
if [ ! -d node_modules/playwright-core ]; then
  npm ci --no-audit --no-fund --loglevel=error
fi
if [ $# -gt 0 ]; then files=("$@"); else files=(./*.test.mjs); fi
out="../../target/browser"
mkdir -p "$out"

failed=()
for file in "${files[@]}"; do
  log="$out/$(basename "$file" .mjs).log"
  if ! node --test --test-concurrency=1 "$file" 2>&1 | tee "$log"; then
    failed+=("$file")
  fi
done
[ ${#failed[@]} -eq 0 ] && exit 0

again=()
for file in "${failed[@]}"; do
  echo "browser tests: $file failed; running it once more"
  if ! node --test --test-concurrency=1 "$file"; then
    again+=("$file")
  fi
done
for file in "${failed[@]}"; do
  if [[ " ${again[*]-} " != *" $file "* ]]; then
    echo "browser tests: FLAKY: $file failed once and passed on the second run; the first failure:"
    grep -E -A8 '^ *not ok' "$out/$(basename "$file" .mjs).log" | head -40
  fi
done
if [ ${#again[@]} -gt 0 ]; then
  echo "browser tests: FAILED twice: ${again[*]}"
  exit 1
fi
