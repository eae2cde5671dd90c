#!/usr/bin/env bash
# pgbench select-only in one run against four targets on this machine:
#   direct    PostgreSQL itself
#   relay     a do-nothing TCP relay (src/bin/vigil-tcp-relay.rs): the cost of
#             one extra hop, the physical limit for any proxy
#   pgbouncer Debian's PgBouncer (session pooling)
#   vigil     `vigil up` with the shipped PHI policy (classification, policy,
#             masking plans, Request/Decision/Response events durable in the ledger)
# at 1 and at 16 clients; prints tps, ratios and the median latency each adds.
#
#   tests/bench/proxy-bench.sh [seconds per run (default 10)] [protocol: simple|prepared (default prepared)]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}
MODE=${2:-prepared}
DB=vigil_bench

deploy/install-deps.sh >/dev/null
deploy/ensure-postgres.sh
command -v pgbouncer >/dev/null || /usr/sbin/pgbouncer --version >/dev/null 2>&1 || apt-get install -y -q pgbouncer >/dev/null
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
cargo build --release -q -p vigil -p vigil-tests --bin vigil --bin vigil-tcp-relay
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release

psql -h 127.0.0.1 -U postgres -d postgres -qtAc "SELECT 1 FROM pg_database WHERE datname='$DB'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $DB"
pgbench -h 127.0.0.1 -U postgres -i -s 10 -q "$DB" >/dev/null 2>&1

work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- relay
RELAY_PORT=$(free_port)
"$BIN/vigil-tcp-relay" "127.0.0.1:$RELAY_PORT" 127.0.0.1:5432 >/dev/null &
pids+=($!)

# --- pgbouncer (refuses to run as root: run it as postgres)
BOUNCER_PORT=$(free_port)
# auth_type trust still needs the user listed.
echo '"postgres" ""' > "$work/userlist.txt"
cat > "$work/pgbouncer.ini" <<INI
[databases]
$DB = host=127.0.0.1 port=5432 dbname=$DB user=postgres
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
auth_type = trust
auth_file = $work/userlist.txt
pool_mode = session
max_client_conn = 200
default_pool_size = 40
logfile = $work/pgbouncer.log
pidfile = $work/pgbouncer.pid
INI
chown -R postgres "$work"
runuser -u postgres -- "$PGBOUNCER" "$work/pgbouncer.ini" >/dev/null 2>&1 &
pids+=($!)

# --- vigil
VIGIL_PORT=$(free_port); HTTP_PORT=$(free_port); GRPC_PORT=$(free_port); METRICS_PORT=$(free_port)
HASH=$(printf 'bench\n' | "$BIN/vigil" hash-password)
"$BIN/vigil" body-key new --id bench > "$work/body.keys"
python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())' > "$work/masking.key"
cat > "$work/vigil.toml" <<TOML
data_dir = "$work/data"
# The bench logs in with a static identity (development accounts only).
allow_static_identities = true
[ledger]
origin = "bench.vigil/pgbench"
http_listen = "127.0.0.1:$HTTP_PORT"
grpc_listen = "127.0.0.1:$GRPC_PORT"
body_keys_file = "$work/body.keys"
[[postgres]]
name = "bench"
listen = "127.0.0.1:$VIGIL_PORT"
policy = "builtin:phi-default"
upstream = { host = "127.0.0.1", port = 5432, user = "postgres", allow_privileged_role = true }
[[identities]]
name = "bench"
password_hash = "$HASH"
[masking]
hash_key_file = "$work/masking.key"
[metrics]
listen = "127.0.0.1:$METRICS_PORT"
TOML
VIGIL_LOG=warn "$BIN/vigil" up --config "$work/vigil.toml" >"$work/vigil.out" 2>"$work/vigil.err" &
pids+=($!)
for _ in $(seq 1 100); do grep -q "vigil is ready" "$work/vigil.out" 2>/dev/null && break; sleep 0.1; done
grep -q "vigil is ready" "$work/vigil.out" || { cat "$work/vigil.err"; exit 1; }
sleep 0.5

# run NAME PORT USER PASSWORD CLIENTS -> "tps p50_us"
run() {
  local name=$1 port=$2 user=$3 pw=$4 clients=$5
  local dir="$work/log-$name-$clients"; mkdir -p "$dir"; chmod 777 "$dir"
  local out
  out=$(cd "$dir" && PGPASSWORD=$pw pgbench -h 127.0.0.1 -p "$port" -U "$user" -n -S -M "$MODE" \
        -c "$clients" -j 2 -T "$SECS" -l "$DB" 2>&1) || { echo "$out" >&2; echo "0 0"; return; }
  local tps
  tps=$(echo "$out" | grep -Eo 'tps = [0-9.]+' | head -n1 | awk '{print $3}')
  local p50
  p50=$(cat "$dir"/pgbench_log.* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {print a[int(NR/2)+1]}')
  echo "$tps $p50"
}

echo "pgbench -S -M $MODE, scale 10, ${SECS}s per run, 2 pgbench threads; same 2-core machine for everything"
printf '%-9s %7s %9s %8s %8s %8s %10s\n' target clients tps vs_direct vs_relay p50_us added_p50
for clients in 1 16; do
  read -r d_tps d_p50 <<<"$(run direct 5432 postgres '' "$clients")"
  read -r r_tps r_p50 <<<"$(run relay "$RELAY_PORT" postgres '' "$clients")"
  read -r b_tps b_p50 <<<"$(run pgbouncer "$BOUNCER_PORT" postgres '' "$clients")"
  read -r v_tps v_p50 <<<"$(run vigil "$VIGIL_PORT" bench bench "$clients")"
  for row in "direct $d_tps $d_p50" "relay $r_tps $r_p50" "pgbouncer $b_tps $b_p50" "vigil $v_tps $v_p50"; do
    read -r name tps p50 <<<"$row"
    python3 - "$name" "$clients" "$tps" "$p50" "$d_tps" "$r_tps" "$d_p50" <<'PY'
import sys
name, clients, tps, p50, d_tps, r_tps, d_p50 = sys.argv[1:]
tps, p50, d_tps, r_tps, d_p50 = map(float, (tps, p50, d_tps, r_tps, d_p50))
ratio = lambda a, b: f"{a / b:.3f}" if b else "-"
print(f"{name:<9} {clients:>7} {tps:>9.0f} {ratio(tps, d_tps):>8} {ratio(tps, r_tps):>8} {p50:>8.0f} {p50 - d_p50:>+10.0f}")
PY
  done
done
size=$(curl -s "http://127.0.0.1:$HTTP_PORT/checkpoint" 2>/dev/null | sed -n 2p || true)
echo "ledger entries after the vigil runs: ${size:-unknown}"
# How the statements' records were made durable: before forwarding
# (durable) or while a read that changes nothing ran (overlapped).
curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E '^vigil_record_seconds_(count|sum)\{mode="(durable|overlapped)"' || true
