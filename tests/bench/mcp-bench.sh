#!/usr/bin/env bash
# MCP tools/call through Vigil against the same server directly, in one run:
#   direct  our MCP server (tests/clients/mcp_patients_server.py, the official
#           Python SDK, JSON answers, its own bearer token)
#   vigil   `vigil up` (release) in front of it: the agent's OIDC token
#           verified, the call judged by builtin:mcp-default (mask), Request
#           and Decision durable in the ledger (synced RocksDB) before the
#           call is forwarded, the result masked and its Response recorded
# at 1 and at 16 concurrent agents (each its own session, calls one after
# another); prints calls/s and p50/p99 latency, and what Vigil adds.
#
#   tests/bench/mcp-bench.sh [seconds per run (default 10)]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}

deploy/install-deps.sh >/dev/null
cargo build --release -q -p vigil -p vigil-tests --bin vigil --bin vigil-mcp-bench
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { # file, text
  for _ in $(seq 1 300); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

# --- the OpenID provider and an agent's token
OIDC_PORT=$(free_port)
cat > "$work/oidc.json" <<JSON
{"clients": [{"client_id": "bench-agent", "client_secret": "bench-secret", "groups": ["agents"]}],
 "resources": {"urn:vigil:mcp-bench": {"scope": "mcp:tools", "ttl": 3600, "alg": "RS256"}}}
JSON
node tests/clients/oidc_provider.mjs --port "$OIDC_PORT" --config "$work/oidc.json" > "$work/oidc.log" 2>/dev/null &
pids+=($!)
wait_line "$work/oidc.log" ready
ISSUER="http://127.0.0.1:$OIDC_PORT"
TOKEN=$(curl -s -u bench-agent:bench-secret -d grant_type=client_credentials \
  -d resource=urn:vigil:mcp-bench -d scope=mcp:tools "$ISSUER/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

# --- the MCP server
SERVER_PORT=$(free_port)
python3 tests/clients/mcp_patients_server.py --port "$SERVER_PORT" --token bench-upstream --json > "$work/server.log" 2>&1 &
pids+=($!)
wait_line "$work/server.log" ready
echo bench-upstream > "$work/upstream.token"

# --- vigil
VIGIL_MCP=$(free_port); HTTP=$(free_port); GRPC=$(free_port); PG=$(free_port)
"$BIN/vigil" body-key new --id bench > "$work/body.keys"
cat > "$work/vigil.toml" <<TOML
data_dir = "$work/data"
[ledger]
origin = "bench.vigil/mcp"
http_listen = "127.0.0.1:$HTTP"
grpc_listen = "127.0.0.1:$GRPC"
body_keys_file = "$work/body.keys"
[[oidc.issuers]]
issuer = "$ISSUER"
audiences = ["urn:vigil:mcp-bench"]
[masking]
hash_key_file = "$work/masking.key"
[[mcp]]
name = "bench"
listen = "127.0.0.1:$VIGIL_MCP"
required_scopes = ["mcp:tools"]
upstream = { url = "http://127.0.0.1:$SERVER_PORT/mcp", bearer_file = "$work/upstream.token" }
TOML
python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())' > "$work/masking.key"
"$BIN/vigil" up --config "$work/vigil.toml" > "$work/vigil.log" 2>&1 &
pids+=($!)
wait_line "$work/vigil.log" "vigil is ready"

run() { # label url token agents
  "$BIN/vigil-mcp-bench" "$2" "$3" "$4" "$SECS" | python3 -c "
import json,sys; r=json.load(sys.stdin); print('$1', r['agents'], round(r['calls_per_second']), r['p50_us'], r['p99_us'])"
}
echo "target agents calls/s p50_us p99_us"
results=()
for agents in 1 16; do
  d=$(run direct "http://127.0.0.1:$SERVER_PORT/mcp" bench-upstream $agents); echo "$d"
  v=$(run vigil "http://127.0.0.1:$VIGIL_MCP/mcp" "$TOKEN" $agents); echo "$v"
  results+=("$d|$v")
done
echo
echo "agents  calls/s vigil/direct  p50 added (ms)  p99 added (ms)"
for pair in "${results[@]}"; do
  IFS='|' read -r d v <<<"$pair"
  python3 - "$d" "$v" <<'PY'
import sys
d = sys.argv[1].split(); v = sys.argv[2].split()
print(f"{d[1]:>6}  {int(v[2])/int(d[2]):>18.2f}  {(int(v[3])-int(d[3]))/1000:>14.2f}  {(int(v[4])-int(d[4]))/1000:>14.2f}")
PY
done
