#!/usr/bin/env bash
# Approval latency benchmark (not part of the test suite): one `vigil up`
# (release build, embedded bus, approval service in the same process) in
# front of the local PostgreSQL; vigil-approval-bench holds a statement,
# approves it through the gRPC API and measures approval -> first row.
#
#   tests/bench/approval-bench.sh [--iterations N] [--debug]
#
# Prints p50, p99 and max against the target (p99 under 20 ms in-process).
# Through Kafka is not measured: the approval service does not run as its
# own process yet (see ARCHITECTURE.md).
set -euo pipefail
cd "$(dirname "$0")/../.."

ITER=200
PROFILE=release
while [ $# -gt 0 ]; do
  case "$1" in
    --iterations) ITER=$2; shift 2 ;;
    --debug) PROFILE=debug; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$PROFILE" = release ]; then
  cargo build --release -p vigil -p vigil-tests --bin vigil --bin vigil-approval-bench >&2
else
  cargo build -p vigil -p vigil-tests --bin vigil --bin vigil-approval-bench >&2
fi
BIN=${CARGO_TARGET_DIR:-$PWD/target}/$PROFILE

WORK=$(mktemp -d /tmp/vigil-approval-bench.XXXXXX)
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PG=$(free_port); HP=$(free_port); GP=$(free_port); AP=$(free_port)

"$BIN/vigil" body-key new --id bench-1 >"$WORK/body.keys"
AGENT_HASH=$(echo "agent-password" | "$BIN/vigil" hash-password)
APPROVER_HASH=$(echo "approver-password" | "$BIN/vigil" hash-password)
cat >"$WORK/policy.toml" <<'TOML'
name = "approval-bench"
default = "allow"
[review]
approver_groups = ["approvers"]
ttl_secs = 60
[[rules]]
name = "held"
action = "review"
tables = ["bench_held"]
TOML
cat >"$WORK/vigil.toml" <<TOML
data_dir = "$WORK/data"
allow_static_identities = true
[ledger]
origin = "bench.vigil/approvals"
http_listen = "127.0.0.1:$HP"
grpc_listen = "127.0.0.1:$GP"
body_keys_file = "$WORK/body.keys"
[[postgres]]
name = "bench"
listen = "127.0.0.1:$PG"
policy = "$WORK/policy.toml"
upstream = { host = "127.0.0.1", port = 5432, user = "postgres" }
[[identities]]
name = "agent"
password_hash = "$AGENT_HASH"
groups = ["agents"]
[[identities]]
name = "approver"
password_hash = "$APPROVER_HASH"
groups = ["approvers"]
[approvals]
grpc_listen = "127.0.0.1:$AP"
TOML

psql -h 127.0.0.1 -U postgres -d test -qc \
  "CREATE TABLE IF NOT EXISTS bench_held (id int); INSERT INTO bench_held SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM bench_held)"

"$BIN/vigil" up --config "$WORK/vigil.toml" >"$WORK/vigil.out" 2>"$WORK/vigil.err" &
pid=$!
for _ in $(seq 1 100); do
  grep -q "vigil is ready" "$WORK/vigil.out" 2>/dev/null && break
  sleep 0.2
done
grep -q "vigil is ready" "$WORK/vigil.out" || { cat "$WORK/vigil.err" >&2; exit 1; }

OUT=$("$BIN/vigil-approval-bench" \
  --pg "host=127.0.0.1 port=$PG user=agent password=agent-password dbname=test" \
  --approvals "http://127.0.0.1:$AP" --approver "approver:approver-password" \
  --sql "SELECT id FROM bench_held" --iterations "$ITER")
echo "$OUT ($PROFILE build)"
P99=$(echo "$OUT" | sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p')
python3 -c "import sys; p=float('$P99'); print(f'in-process target p99 < 20 ms: {\"met\" if p < 20 else \"NOT met\"} ({p:.2f} ms)')"
