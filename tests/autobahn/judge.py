"""Read wstest's index.json and decide: 0 failed and at most MAX_NON_STRICT non-strict.

Usage: python3 judge.py REPORT_DIR/index.json

"Failed" is any case whose behaviour is not OK, NON-STRICT, INFORMATIONAL or
UNIMPLEMENTED (12.* and 13.* are UNIMPLEMENTED when no permessage-deflate is
negotiated). The last line is the summary; the exit status is 1 on a verdict of
fail, 2 when the report is missing or empty.
"""

import json
import sys

MAX_NON_STRICT = 2  # what tungstenite alone gives: it closes before the peer's close frame
PASSING = ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED")


def case_order(case_id):
    return [int(part) for part in case_id.split(".")]


def main():
    try:
        with open(sys.argv[1], encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        print(f"autobahn: no report: {e}", file=sys.stderr)
        return 2
    results = {case: r for agent in index.values() for case, r in agent.items()}
    if not results:
        print("autobahn: the report holds no case", file=sys.stderr)
        return 2
    by_behaviour = {}
    for case in sorted(results, key=case_order):
        by_behaviour.setdefault(results[case]["behavior"], []).append(case)
    failed = [c for b, cases in by_behaviour.items() if b not in PASSING for c in cases]
    non_strict = by_behaviour.get("NON-STRICT", [])
    for label, cases in (("failed", failed), ("non-strict", non_strict)):
        if cases:
            print(f"autobahn: {label}: {' '.join(sorted(cases, key=case_order))}")
    counts = ", ".join(f"{len(cases)} {b.lower()}" for b, cases in sorted(by_behaviour.items()))
    verdict = not failed and len(non_strict) <= MAX_NON_STRICT
    print(f"autobahn: {len(results)} cases: {counts} -> {'pass' if verdict else 'FAIL'}"
          f" (want 0 failed, at most {MAX_NON_STRICT} non-strict)")
    return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
