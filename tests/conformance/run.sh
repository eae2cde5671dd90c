#!/usr/bin/env bash
# The official MCP conformance suite (@modelcontextprotocol/conformance, npm;
# it needs Node 22, installed locally from npm's `node@22` package) against
# the reference server @modelcontextprotocol/server-everything directly, and
# against Vigil in front of the same server; prints both and the scenarios
# whose outcome differs (a difference is a bug of ours unless explained:
# see ARCHITECTURE.md "Conformance").
#
#   tests/conformance/run.sh [scenario ...]     (default: every server scenario)
#
# Vigil runs `vigil up` with the policy tests/conformance/policy.toml (every
# call allowed, sampling and elicitation allowed, results masked) and a real
# OIDC provider's token; the suite cannot send a token itself, so
# tests/clients/bearer_proxy.mjs adds it in front of Vigil.
set -euo pipefail
cd "$(dirname "$0")/../.."
deploy/install-deps.sh >/dev/null
NODE22=${VIGIL_NODE22_DIR:-$HOME/.cache/vigil-node22}
if [ ! -x "$NODE22/node_modules/.bin/conformance" ]; then
  mkdir -p "$NODE22"
  npm install --prefix "$NODE22" --no-audit --no-fund --silent node@22 @modelcontextprotocol/conformance@0.1.16
fi
export PATH="$NODE22/node_modules/.bin:$PATH"
cargo build -q -p vigil
BIN=${CARGO_TARGET_DIR:-$PWD/target}/debug

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() {
  for _ in $(seq 1 300); do grep -qi "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

SERVER_PORT=$(free_port)
PORT=$SERVER_PORT tests/clients/node_modules/.bin/mcp-server-everything streamableHttp > "$work/server.log" 2>&1 &
pids+=($!)
wait_line "$work/server.log" listening

OIDC_PORT=$(free_port)
cat > "$work/oidc.json" <<JSON
{"clients": [{"client_id": "conformance", "client_secret": "conformance-secret", "groups": ["agents"]}],
 "resources": {"urn:vigil:conformance": {"scope": "mcp:tools", "ttl": 3600, "alg": "RS256"}}}
JSON
node tests/clients/oidc_provider.mjs --port "$OIDC_PORT" --config "$work/oidc.json" > "$work/oidc.log" 2>/dev/null &
pids+=($!)
wait_line "$work/oidc.log" ready
TOKEN=$(curl -s -u conformance:conformance-secret -d grant_type=client_credentials \
  -d resource=urn:vigil:conformance -d scope=mcp:tools "http://127.0.0.1:$OIDC_PORT/token" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

VIGIL_MCP=$(free_port); HTTP=$(free_port); GRPC=$(free_port)
"$BIN/vigil" body-key new --id conformance > "$work/body.keys"
python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())' > "$work/masking.key"
cat > "$work/vigil.toml" <<TOML
data_dir = "$work/data"
[ledger]
origin = "conformance.vigil/mcp"
http_listen = "127.0.0.1:$HTTP"
grpc_listen = "127.0.0.1:$GRPC"
body_keys_file = "$work/body.keys"
[[oidc.issuers]]
issuer = "http://127.0.0.1:$OIDC_PORT"
audiences = ["urn:vigil:conformance"]
[masking]
hash_key_file = "$work/masking.key"
[[mcp]]
name = "conformance"
listen = "127.0.0.1:$VIGIL_MCP"
policy = "$PWD/tests/conformance/policy.toml"
upstream = { url = "http://127.0.0.1:$SERVER_PORT/mcp" }
TOML
"$BIN/vigil" up --config "$work/vigil.toml" > "$work/vigil.log" 2>&1 &
pids+=($!)
wait_line "$work/vigil.log" "vigil is ready"
PROXY_PORT=$(free_port)
node tests/clients/bearer_proxy.mjs --port "$PROXY_PORT" --upstream "http://127.0.0.1:$VIGIL_MCP" --token "$TOKEN" > "$work/proxy.log" 2>&1 &
pids+=($!)
wait_line "$work/proxy.log" ready

scenarios=("$@")
if [ ${#scenarios[@]} -eq 0 ]; then
  mapfile -t scenarios < <(conformance list --server | sed -n 's/^  - \([a-z0-9-]*\).*/\1/p')
fi
run() { # url scenario -> PASS/FAIL line
  local out
  if out=$(timeout 120 conformance server --url "$1" --scenario "$2" 2>&1); then echo "pass"; else
    echo "fail: $(echo "$out" | grep -iE 'fail|error|✗' | head -3 | tr '\n' ' ' | cut -c1-300)"; fi
}
printf "%-34s %-8s %-8s\n" scenario direct vigil
differ=0; dp=0; vp=0
for s in "${scenarios[@]}"; do
  d=$(run "http://127.0.0.1:$SERVER_PORT/mcp" "$s")
  v=$(run "http://127.0.0.1:$PROXY_PORT/mcp" "$s")
  [ "$d" = pass ] && dp=$((dp+1)); [ "$v" = pass ] && vp=$((vp+1))
  printf "%-34s %-8s %-8s\n" "$s" "${d%%:*}" "${v%%:*}"
  if [ "${d%%:*}" != "${v%%:*}" ]; then
    differ=$((differ+1)); echo "    direct: $d"; echo "    vigil:  $v"
  fi
done
echo
echo "${#scenarios[@]} scenarios: direct passed $dp, through Vigil passed $vp, $differ differ"
