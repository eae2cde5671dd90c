#!/usr/bin/env bash
# The test command (README): sets up everything the tests need on a fresh
# machine, then runs the whole suite. CI's .ci/run only calls this.
set -euo pipefail
cd "$(dirname "$0")/.."

deploy/install-deps.sh
deploy/ensure-postgres.sh

# Dependency rules (ARCHITECTURE.md): the ledger, the proxies' shared core and the approvals core
# stay free of async runtimes and RPC stacks.
for crate in vigil-ledger vigil-identity vigil-proxy-core vigil-sql vigil-mcp vigil-llm vigil-approvals vigil-config vigil-metrics; do
  if cargo tree -p "$crate" -e normal --prefix none | grep -E '^(tokio|tonic|rdkafka) '; then
    echo "dependency rule broken: $crate must not depend on tokio, tonic or rdkafka" >&2
    exit 1
  fi
done

# Style and lints are part of the test command: an unformatted file or a
# clippy warning fails it, as it fails review.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

# The end-to-end tests run the real binary: build it first.
cargo build --workspace --all-targets

if command -v cargo-nextest >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast
else
  cargo test --workspace --no-fail-fast
fi
