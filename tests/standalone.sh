#!/usr/bin/env bash
# Part of `make lint`: the repository stands alone and says what it does.
# - nothing tracked reads, runs or links a directory beside the clone (a sibling shared/ folder, or any other);
# - the fuzz crate's Cargo.lock is committed and current, so its builds are repeatable;
# - `make run` builds the daemon alone; `make test`'s runner runs every suite even
#   after a failure and ends with the "N passed, N failed" line CI reads;
# - README's "Make targets" table and its `make test` row match the Makefile.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
complain() { echo "standalone: $*" >&2; status=1; }

# This file names the patterns, so it is the one file allowed to hold them.
if hits=$(git grep -nIE '\.\./shared|/work/shared|IMD_SHARED' -- . ':!tests/standalone.sh'); then
  complain "these lines reach outside the repository:"
  echo "$hits" >&2
fi

if ! git ls-files --error-unmatch tests/fuzz/Cargo.lock >/dev/null 2>&1; then
  complain "tests/fuzz/Cargo.lock is not committed"
elif ! cargo metadata --locked --format-version 1 --manifest-path tests/fuzz/Cargo.toml >/dev/null; then
  complain "tests/fuzz/Cargo.lock is out of date (cargo metadata --locked failed)"
fi

builds=$(make -n --no-print-directory run CARGO=cargo | grep '^cargo ' || true)
[ "$builds" = "cargo build --release --bin imd" ] \
  || complain "make run should build the daemon alone; it runs: $builds"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
printf 'ok:\n\t@true\nbad:\n\t@false\n' >"$scratch/suites.mk"
code=0
summary=$(MAKE="make -f $scratch/suites.mk" bash tests/suites.sh ok bad ok 2>&1) || code=$?
[ "$code" -ne 0 ] || complain "tests/suites.sh exits 0 although a suite failed"
[ "$(tail -n 1 <<<"$summary")" = "2 passed, 1 failed" ] \
  || complain "tests/suites.sh does not run on after a failure, or its last line is not the total: $summary"

python3 - <<'PY' || status=1
import re, sys

makefile = open("Makefile", encoding="utf-8").read()
readme = open("README.md", encoding="utf-8").read()
# Every target is .PHONY; each has a `## name:` line (what `make help` shows) and a row.
phony = set(re.search(r"^\.PHONY: (.*)$", makefile, re.M).group(1).split())
documented = set(re.findall(r"^## ([\w-]+):", makefile, re.M))
targets = set(re.findall(r"^([\w-]+):", makefile, re.M))
bad = False
for name in sorted(targets - phony):
    print(f"standalone: Makefile target {name} is not .PHONY", file=sys.stderr)
    bad = True
for name in sorted(phony - documented):
    print(f"standalone: Makefile target {name} has no `## {name}:` line", file=sys.stderr)
    bad = True
table = readme.split("## Make targets", 1)[1].split("\n## ", 1)[0]
rows = {}
for line in table.splitlines():
    m = re.match(r"\| `make ([\w-]+)`((?: / `make [\w-]+`)*) \| (.*) \|$", line)
    if m:
        for name in [m.group(1)] + re.findall(r"`make ([\w-]+)`", m.group(2)):
            rows[name] = m.group(3)
for name in sorted(documented - rows.keys()):
    print(f"standalone: README's Make targets table lacks `make {name}`", file=sys.stderr)
    bad = True
for name in sorted(rows.keys() - documented):
    print(f"standalone: README lists `make {name}`, which the Makefile does not document", file=sys.stderr)
    bad = True
suites = re.search(r"^SUITES := (.*)$", makefile, re.M).group(1).split()
listed = re.findall(r"`([\w-]+)`", rows.get("test", ""))
if listed != suites:
    print(f"standalone: README's `make test` row lists {listed}, the Makefile runs {suites}",
          file=sys.stderr)
    bad = True
sys.exit(1 if bad else 0)
PY

[ "$status" -eq 0 ] && echo "standalone: ok"
exit "$status"
