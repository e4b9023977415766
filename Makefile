# imd — the project's vocabulary. `make run` and `make test` are the two commands a
# newcomer needs; everything else is here for operators and developers.

CARGO    ?= cargo
CONFIG   ?= conf/imd.conf
RELEASE  := target/release

.PHONY: run build cluster test test-rust test-autobahn test-browser test-fuzz bench bench-cluster fmt lint check clean install help soak fuzz fuzz-smoke fuzz-tool

## run: build and start imd with conf/imd.conf (web client: http://127.0.0.1:8080/im/www/v1/chat.html)
run: build
	$(RELEASE)/imd --config $(CONFIG)

## build: release build of the daemon alone (target/release/imd)
build:
	$(CARGO) build --release --bin imd

## cluster: PostgreSQL, Redis, 3 imd nodes and HAProxy on loopback (Debian packages, installed if missing); prints the web client's URL through the balancer, Ctrl-C stops it all; CLUSTER_CONF=file adds its sections to every node's config
cluster: build
	IMD_BIN=$(CURDIR)/$(RELEASE)/imd bash tests/cluster/cluster.sh up

# Every suite runs even when one before it fails; the slow, network-bound ones last.
SUITES := lint test-rust test-browser test-fuzz test-autobahn

## test: every suite (lint, test-rust, test-browser, test-fuzz, test-autobahn), all run even if one fails; ends "N passed, N failed"
test:
	MAKE="$(MAKE)" bash tests/suites.sh $(SUITES)

## test-rust: unit and integration tests of every crate
test-rust:
	$(CARGO) test --release --workspace

## test-autobahn: Autobahn|Testsuite against the reactor's echo example: 0 failed, at most 2 non-strict (builds its Python 3 venv on first use)
test-autobahn:
	bash tests/autobahn/run.sh

## test-browser: the web client in headless Chromium (installs Chromium and npm packages if missing)
test-browser: build
	IMD_BIN=$(CURDIR)/$(RELEASE)/imd bash tests/browser/run.sh

## bench: criterion benches, imd-load against imd (history off and on) and the echo baseline, B4 and fsync, wrk against imd and nginx, the cluster row (bench-cluster), 19,000 sessions back after a restart (~18 min; writes target/bench/results.md)
bench:
	bash benches/run.sh

## bench-cluster: make bench's cluster row alone: 2 nodes on PostgreSQL and Redis (make cluster's launcher), p99 across nodes beside on one node, CPU per message beside one node without the bus (~3 min; writes target/bench/cluster/cluster.json)
bench-cluster:
	bash benches/cluster.sh

## fmt: format every crate
fmt:
	$(CARGO) fmt --all

## lint: formatting, clippy (warnings are errors), and the repository standing alone
lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --release --workspace --all-targets -- -D warnings
	bash tests/standalone.sh

## check: check the shipped configuration
check: build
	$(RELEASE)/imd --check-config --config $(CONFIG)

## clean: cargo clean
clean:
	$(CARGO) clean

## help: the targets with one line each
help:
	@grep -E '^## ' Makefile | sed 's/^## /  make /'

PREFIX  ?= /usr/local
DESTDIR ?=

## install: the daemon, its config (kept if present), the web client and the systemd unit
install:
	$(CARGO) build --release --workspace --bins
	install -D -m 0755 $(RELEASE)/imd $(DESTDIR)$(PREFIX)/bin/imd
	install -D -m 0755 $(RELEASE)/imd-load $(DESTDIR)$(PREFIX)/bin/imd-load
	mkdir -p $(DESTDIR)$(PREFIX)/share/imd/www
	cp -r www/. $(DESTDIR)$(PREFIX)/share/imd/www/
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/imd/README.md
	install -D -m 0644 conf/imd.service $(DESTDIR)/etc/systemd/system/imd.service
	@if [ -e $(DESTDIR)/etc/imd/imd.conf ]; then \
	  echo "keeping $(DESTDIR)/etc/imd/imd.conf"; \
	else \
	  mkdir -p $(DESTDIR)/etc/imd; \
	  sed -e 's|^web_root = "www"|web_root = "$(PREFIX)/share/imd/www"|' \
	      -e 's|^path = "data/imd.sqlite3"|path = "/var/lib/imd/imd.sqlite3"|' \
	      conf/imd.conf > $(DESTDIR)/etc/imd/imd.conf; \
	  chmod 0640 $(DESTDIR)/etc/imd/imd.conf; \
	fi
	@if [ -z "$(DESTDIR)" ] && command -v useradd >/dev/null && ! id imd >/dev/null 2>&1; then \
	  useradd --system --home-dir /var/lib/imd --shell /usr/sbin/nologin imd; \
	fi
	@if [ -z "$(DESTDIR)" ] && id imd >/dev/null 2>&1; then chgrp imd /etc/imd/imd.conf; fi

## soak: the slow hardening runs (30 kill -9 with durability checks of accounts and kept conversations, the sslyze TLS scan, 1,000 slow and abusive clients, 100 pipelining clients that never read); not part of make test
soak: build
	IMD_BIN=$(CURDIR)/$(RELEASE)/imd python3 tests/hardening/crash.py
	IMD_BIN=$(RELEASE)/imd bash tests/hardening/tls-scan.sh
	IMD_BIN=$(CURDIR)/$(RELEASE)/imd python3 tests/hardening/slow-clients.py
	IMD_BIN=$(CURDIR)/$(RELEASE)/imd python3 tests/hardening/pipeline-flood.py

FUZZ_TARGETS := http_head http_conn ws_dispatch json_fields static_path
FUZZ_SECONDS ?= 60
# cargo-fuzz needs nightly flags; the stable toolchain accepts them with RUSTC_BOOTSTRAP.
FUZZ := RUSTC_BOOTSTRAP=1 cargo fuzz

## fuzz-tool: install cargo-fuzz when it is missing
fuzz-tool:
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

## fuzz: every fuzz target for FUZZ_SECONDS each (libFuzzer); crashes land in tests/fuzz/artifacts
fuzz: fuzz-tool
	for t in $(FUZZ_TARGETS); do \
	  mkdir -p tests/fuzz/corpus/$$t && \
	  $(FUZZ) run --fuzz-dir tests/fuzz $$t tests/fuzz/corpus/$$t tests/fuzz/seeds/$$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; \
	done

## test-fuzz: the fuzz smoke of make test (installs cargo-fuzz when missing)
test-fuzz: fuzz-tool fuzz-smoke

## fuzz-smoke: replay the seeds, then 10 s of each target
fuzz-smoke:
	$(MAKE) fuzz FUZZ_SECONDS=10
