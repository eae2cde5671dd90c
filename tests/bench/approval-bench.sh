#!/usr/bin/env bash
# Approval latency benchmark (not part of the test suite): vigil-approval-bench
# holds a statement at a proxy in front of the local PostgreSQL, approves it
# through the approval service's gRPC API and measures approval -> first
# row. Two deployments, measured one after the other in the same run:
#   in-process  one `vigil up` (embedded bus, approval service inside)
#   kafka       a tansu broker, `vigil ledger`, `vigil approvals serve` and
#               `vigil proxy` as separate processes
#
#   tests/bench/approval-bench.sh [--iterations N] [--debug] [--only in-process|kafka]
#
# Prints p50, p99 and max against the targets (p99 under 20 ms in-process,
# under 200 ms through Kafka).
set -euo pipefail
cd "$(dirname "$0")/../.."

ITER=200
PROFILE=release
ONLY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --iterations) ITER=$2; shift 2 ;;
    --debug) PROFILE=debug; shift ;;
    --only) ONLY=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

if [ "$PROFILE" = release ]; then
  cargo build --release -p vigil -p vigil-tests --bin vigil --bin vigil-approval-bench >&2
else
  cargo build -p vigil -p vigil-tests --bin vigil --bin vigil-approval-bench >&2
fi
BIN=${CARGO_TARGET_DIR:-$PWD/target}/$PROFILE

TANSU=${TANSU_BIN:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}
WORK=$(mktemp -d /tmp/vigil-approval-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$BIN/vigil" body-key new --id bench-1 >"$WORK/body.keys"
AGENT_HASH=$(echo "agent-password" | "$BIN/vigil" hash-password)
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
psql -h 127.0.0.1 -U postgres -d test -qc \
  "CREATE TABLE IF NOT EXISTS bench_held (id int); INSERT INTO bench_held SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM bench_held)"

# A real OpenID provider (tests/clients, installed by deploy/install-deps.sh)
# issues the approver's access token, as in production.
OP=$(free_port)
cat >"$WORK/op.json" <<'JSON'
{ "clients": [ { "client_id": "approver", "client_secret": "approver-secret", "groups": ["approvers"] } ],
  "resources": { "urn:vigil:bench": { "scope": "approve", "ttl": 3600, "alg": "ES256" } } }
JSON
node tests/clients/oidc_provider.mjs --port "$OP" --config "$WORK/op.json" >"$WORK/op.out" 2>"$WORK/op.err" &
pids+=($!)
for _ in $(seq 1 100); do grep -q "^ready" "$WORK/op.out" 2>/dev/null && break; sleep 0.1; done
ISSUER=$(sed -n 's/^ready //p' "$WORK/op.out")
[ -n "$ISSUER" ] || { cat "$WORK/op.err" >&2; exit 1; }
curl -sf -u approver:approver-secret -d grant_type=client_credentials \
  -d resource=urn:vigil:bench -d scope=approve "$ISSUER/token" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])' >"$WORK/approver.token"

identities() {
  cat <<TOML
[[identities]]
name = "agent"
password_hash = "$AGENT_HASH"
groups = ["agents"]
[[oidc.issuers]]
issuer = "$ISSUER"
audiences = ["urn:vigil:bench"]
TOML
}
ledger_table() { # $1 http port, $2 grpc port
  cat <<TOML
[ledger]
origin = "bench.vigil/approvals"
http_listen = "127.0.0.1:$1"
grpc_listen = "127.0.0.1:$2"
body_keys_file = "$WORK/body.keys"
TOML
}
postgres_table() { # $1 port
  cat <<TOML
[[postgres]]
name = "bench"
listen = "127.0.0.1:$1"
policy = "$WORK/policy.toml"
upstream = { host = "127.0.0.1", port = 5432, user = "postgres", allow_privileged_role = true }
TOML
}
# start NAME ARGS...: runs vigil in the background until it is ready.
start() {
  local name=$1; shift
  "$BIN/vigil" "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  pids+=($!)
  for _ in $(seq 1 300); do
    grep -q "vigil is ready" "$WORK/$name.out" 2>/dev/null && return 0
    sleep 0.1
  done
  cat "$WORK/$name.err" >&2; exit 1
}
# measure LABEL PG_PORT APPROVALS_PORT TARGET_MS
measure() {
  local out p99
  out=$("$BIN/vigil-approval-bench" \
    --pg "host=127.0.0.1 port=$2 user=agent password=agent-password dbname=test" \
    --approvals "http://127.0.0.1:$3" --approver-token-file "$WORK/approver.token" \
    --sql "SELECT id FROM bench_held" --iterations "$ITER")
  p99=$(echo "$out" | sed -n 's/.*p99 \([0-9.]*\) ms.*/\1/p')
  echo "$1: $out ($PROFILE build)"
  python3 -c "p=float('$p99'); print(f'  target p99 < $4 ms: {\"met\" if p < $4 else \"NOT met\"}')"
}

if [ "$ONLY" != kafka ]; then
  PG=$(free_port); HP=$(free_port); GP=$(free_port); AP=$(free_port)
  {
    echo "data_dir = \"$WORK/up\""; echo "allow_static_identities = true"
    ledger_table "$HP" "$GP"; postgres_table "$PG"; identities
    printf '[approvals]\ngrpc_listen = "127.0.0.1:%s"\n' "$AP"
  } >"$WORK/up.toml"
  start up up --config "$WORK/up.toml"
  measure "in-process (vigil up)" "$PG" "$AP" 20
fi

if [ "$ONLY" != in-process ]; then
  KP=$(free_port); PG=$(free_port); HP=$(free_port); GP=$(free_port); AP=$(free_port)
  (cd "$WORK" && exec "$TANSU" broker --listener-url "tcp://127.0.0.1:$KP" \
    --advertised-listener-url "tcp://127.0.0.1:$KP" --storage-engine sqlite://tansu.db \
    >"$WORK/tansu.out" 2>"$WORK/tansu.err") &
  pids+=($!)
  bus() { printf '[bus]\nkind = "kafka"\nbootstrap = "127.0.0.1:%s"\n' "$KP"; }
  { echo "data_dir = \"$WORK/ledger\""; ledger_table "$HP" "$GP"; bus; } >"$WORK/ledger.toml"
  # The proxy proves itself to the approval service with a token.
  "$BIN/vigil" approvals proxy-token >"$WORK/proxy-token.out"
  awk '$1 == "token" {print $2}' "$WORK/proxy-token.out" >"$WORK/proxy.token"
  PROXY_TOKEN_SHA=$(awk '$1 == "sha256" {print $2}' "$WORK/proxy-token.out")
  {
    echo "data_dir = \"$WORK/approvals\""; echo "allow_static_identities = true"; identities
    printf '[approvals]\ngrpc_listen = "127.0.0.1:%s"\npolicies = ["%s"]\nproxy_tokens_sha256 = ["%s"]\n' \
      "$AP" "$WORK/policy.toml" "$PROXY_TOKEN_SHA"; bus
  } >"$WORK/approvals.toml"
  {
    echo "data_dir = \"$WORK/proxy\""; echo "allow_static_identities = true"; identities
    postgres_table "$PG"
    printf '[approval_service]\nurl = "http://127.0.0.1:%s"\ntoken_file = "%s"\n' "$AP" "$WORK/proxy.token"; bus
  } >"$WORK/proxy.toml"
  start ledger ledger --config "$WORK/ledger.toml"
  start approvals approvals serve --config "$WORK/approvals.toml"
  start proxy proxy --config "$WORK/proxy.toml"
  measure "through Kafka (vigil proxy + vigil approvals serve)" "$PG" "$AP" 200
fi
