# The commands a newcomer needs. `make test` is what CI runs (.ci/run).
# Builds reuse a cache outside the clone, so a fresh checkout does not rebuild everything.
export CARGO_TARGET_DIR ?= $(HOME)/.cache/openguild/target

.PHONY: run test lint bench

## Run the server on its embedded default (SQLite under ./data, 127.0.0.1:8080).
run:
	cargo run --release -- serve

## Every test: formatting, lints, and all test suites against the machine's real services.
test: lint
	scripts/ensure-services
	cargo nextest run --workspace --all-features --no-fail-fast

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings

## Benchmarks whose figures go to docs/PERFORMANCE.md.
bench:
	cargo bench -p openguild-domain --bench signing
	cargo bench -p openguild-store --bench throughput
	cargo bench -p openguild-projections --bench rebuild
