# The commands a newcomer needs. `make test` is what CI runs (.ci/run).
# Builds reuse a cache outside the clone, so a fresh checkout does not rebuild everything.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/openguild/target

.PHONY: run test lint bench ui ui-test e2e

UI_SOURCES := $(shell find ui/src ui/index.html ui/package.json ui/vite.config.ts -type f 2>/dev/null)

## Run the server on its embedded default (SQLite under ./data, 127.0.0.1:8080), with the
## web client built first when its sources changed.
run: ui
	cargo run --release -- serve

## Every test: formatting, lints, the client's checks and unit tests, all Rust suites against
## the machine's real services, then the browser suite against a real server.
test: lint ui-test
	scripts/ensure-services
	cargo nextest run --workspace --all-features --no-fail-fast
	$(MAKE) e2e

## The web client, built into ui/dist (served by `openguild serve`).
ui: ui/dist/index.html

ui/node_modules/.package-lock.json: ui/package-lock.json
	cd ui && npm ci --no-audit --no-fund

ui/dist/index.html: ui/node_modules/.package-lock.json $(UI_SOURCES)
	cd ui && npm run build

ui-test: ui/node_modules/.package-lock.json
	cd ui && npm run check && npm test

## Browser tests: Debian's Chromium (installed if missing) against a real `openguild serve`.
## The binary is the one the test suites built (same features, so nothing rebuilds).
e2e: ui
	scripts/ensure-browser
	cargo build --workspace --all-features --bins
	cd ui && node --test --test-concurrency=1 e2e/

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings

## Benchmarks whose figures go to docs/PERFORMANCE.md.
bench:
	cargo bench -p openguild-domain --bench signing
	cargo bench -p openguild-store --bench throughput
	cargo bench -p openguild-projections --bench rebuild
	cargo bench -p openguild-projections --bench unread
	cargo bench -p openguild --bench send
	cargo bench -p openguild --bench federation
	cargo bench -p openguild --bench shared
