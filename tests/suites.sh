#!/usr/bin/env bash
# make test: runs each suite (a make target) in the order given, every one of them even
# when an earlier one fails, then prints one line per suite and the total as
# "N passed, N failed" (the form CI reads). Exits 1 if any suite failed.
# A CI log is often read from its tail alone, so the lines that say what failed in each
# failed suite (test names, panics, assertion messages) are repeated just above the
# summary; each suite's whole output is kept in target/suites/<suite>.log.
# Usage: tests/suites.sh TARGET...
set -uo pipefail
make_cmd="${MAKE:-make}"
logs="target/suites"
mkdir -p "$logs"
results=()
failures=()
passed=0
failed=0
for suite in "$@"; do
  echo "=== $suite ==="
  started=$(date +%s)
  if $make_cmd --no-print-directory "$suite" 2>&1 | tee "$logs/$suite.log"; then
    verdict=passed
    passed=$((passed + 1))
  else
    verdict=FAILED
    failed=$((failed + 1))
    failures+=("$suite")
  fi
  results+=("$(printf '%-14s %-7s %5d s' "$suite" "$verdict" $(( $(date +%s) - started )))")
done
for suite in ${failures[@]+"${failures[@]}"}; do
  echo
  echo "=== what failed in $suite (whole log: $logs/$suite.log) ==="
  # Rust: failing test names and panics; node --test: "not ok" lines and their
  # error text; make/clippy/shell: error lines.
  grep -E -A3 '^ *(not ok|---- .* stdout ----|test .* FAILED|error(\[|:))|panicked at|\*\*\* |^ *(error|expected|actual|message):|FAIL' \
    "$logs/$suite.log" | cut -c1-240 | tail -n 60
done
# A test that failed once and passed when run again (tests/browser/run.sh) passes,
# and is named here so it is chased.
for suite in "$@"; do
  grep -h 'FLAKY:' "$logs/$suite.log" 2>/dev/null | sed "s/^/$suite: /" || true
done
echo
echo "=== make test summary ==="
printf '%s\n' "${results[@]}"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
