#!/usr/bin/env bash
# make test: runs each suite (a make target) in the order given, every one of them even
# when an earlier one fails, then prints one line per suite and the total as
# "N passed, N failed" (the form CI reads). Exits 1 if any suite failed.
# Usage: tests/suites.sh TARGET...
set -uo pipefail
make_cmd="${MAKE:-make}"
results=()
passed=0
failed=0
for suite in "$@"; do
  echo "=== $suite ==="
  started=$(date +%s)
  if $make_cmd --no-print-directory "$suite"; then
    verdict=passed
    passed=$((passed + 1))
  else
    verdict=FAILED
    failed=$((failed + 1))
  fi
  results+=("$(printf '%-14s %-7s %5d s' "$suite" "$verdict" $(( $(date +%s) - started )))")
done
echo
echo "=== make test summary ==="
printf '%s\n' "${results[@]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
