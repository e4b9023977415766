#!/usr/bin/env bash
# Autobahn|Testsuite against the reactor's echo example (what `make test-autobahn`
# runs): 0 failed and at most 2 non-strict cases, or this fails.
exec bash "$(dirname "$0")/../tests/autobahn/run.sh" "$@"
