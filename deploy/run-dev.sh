#!/usr/bin/env bash
# One command for a fresh machine: install the build prerequisites (only
# those: no broker, no test clients), build Vigil,
# and run `vigil up --dev` (PostgreSQL clients on 127.0.0.1:6543 as dev/dev,
# forwarded to the local PostgreSQL on 127.0.0.1:5432; data in ./vigil-data).
# Extra arguments go to `vigil up`, e.g. --data-dir /tmp/vigil.
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/install-build-deps.sh
cargo build --release -p vigil
exec "${CARGO_TARGET_DIR:-target}/release/vigil" up --dev "$@"
