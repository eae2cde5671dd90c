#!/usr/bin/env bash
# Measures pgbench select-only throughput directly against PostgreSQL and
# through `vigil up` in the same run, and prints the ratio.
#
#   tests/bench/pgbench-ratio.sh [seconds per run (default 20)] [clients (default 8)]
#
# Every statement through Vigil is recorded durably (a synced RocksDB write,
# shared by concurrent statements: group commit) before it is forwarded, and
# its result is recorded after; the ratio is the price of that audit trail
# plus the extra hop, on the same 2-core machine as PostgreSQL and pgbench.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_PER_RUN=${1:-20}
CLIENTS=${2:-8}
DB=vigil_bench

deploy/install-deps.sh
deploy/ensure-postgres.sh
cargo build --release -p vigil >/dev/null
VIGIL=$PWD/target/release/vigil
[ -n "${CARGO_TARGET_DIR:-}" ] && VIGIL=$CARGO_TARGET_DIR/release/vigil

psql -h 127.0.0.1 -U postgres -d postgres -qtAc "SELECT 1 FROM pg_database WHERE datname='$DB'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $DB"
pgbench -h 127.0.0.1 -U postgres -i -s 10 -q "$DB" >/dev/null 2>&1

work=$(mktemp -d)
trap 'kill $VIGIL_PID 2>/dev/null || true; wait $VIGIL_PID 2>/dev/null || true; rm -rf "$work"' EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PG_PORT=$(free_port); HTTP_PORT=$(free_port); GRPC_PORT=$(free_port)
HASH=$(printf 'bench\n' | "$VIGIL" hash-password)
cat > "$work/vigil.toml" <<TOML
data_dir = "$work/data"
[ledger]
origin = "bench.vigil/pgbench"
http_listen = "127.0.0.1:$HTTP_PORT"
grpc_listen = "127.0.0.1:$GRPC_PORT"
[[postgres]]
name = "bench"
listen = "127.0.0.1:$PG_PORT"
upstream = { host = "127.0.0.1", port = 5432, user = "postgres" }
[[identities]]
name = "bench"
password_hash = "$HASH"
TOML
VIGIL_LOG=warn "$VIGIL" up --config "$work/vigil.toml" >"$work/vigil.out" 2>"$work/vigil.err" &
VIGIL_PID=$!
for _ in $(seq 1 100); do grep -q "vigil is ready" "$work/vigil.out" 2>/dev/null && break; sleep 0.1; done
grep -q "vigil is ready" "$work/vigil.out" || { cat "$work/vigil.err"; exit 1; }

tps() { grep -Eo 'tps = [0-9.]+' | head -n1 | awk '{print $3}'; }
run() { # mode port user password
  PGPASSWORD=$4 pgbench -h 127.0.0.1 -p "$2" -U "$3" -n -S -M "$1" -c "$CLIENTS" -j 2 -T "$SECONDS_PER_RUN" "$DB" 2>&1 | tps
}

echo "pgbench -S (select-only), scale 10, $CLIENTS clients, 2 threads, ${SECONDS_PER_RUN}s per run"
printf '%-10s %12s %12s %8s\n' mode direct_tps vigil_tps ratio
for mode in simple prepared; do
  direct=$(run "$mode" 5432 postgres "")
  proxied=$(run "$mode" "$PG_PORT" bench bench)
  ratio=$(python3 -c "print(f'{$proxied/$direct:.3f}')")
  printf '%-10s %12.0f %12.0f %8s\n' "$mode" "$direct" "$proxied" "$ratio"
done
size=$(curl -s "http://127.0.0.1:$HTTP_PORT/checkpoint" 2>/dev/null | sed -n 2p || true)
echo "ledger entries after the run: ${size:-unknown}"
