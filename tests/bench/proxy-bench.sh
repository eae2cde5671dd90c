#!/usr/bin/env bash
# pgbench in one run against four targets on this machine:
#   direct    PostgreSQL itself
#   relay     a do-nothing TCP relay (src/bin/vigil-tcp-relay.rs): the cost of
#             one extra hop, the physical limit for any proxy
#   pgbouncer Debian's PgBouncer (session pooling)
#   vigil     `vigil up` with the shipped PHI policy (classification, policy,
#             masking plans, Request/Decision/Response events durable in the ledger)
#   baseline  another `vigil` binary, set up as `vigil`; only with
#             BASELINE=/path/to/vigil (an older build, to measure a change
#             against it in the same alternated run)
#   kafka     the Kafka deployment (deploy/local-stack.sh: a tansu broker,
#             `vigil ledger`, a standby, `vigil approvals serve`, `vigil proxy`
#             with its durable outbox), through proxy a; only with KAFKA=1.
#             The stack runs only for its own runs (the broker alone keeps a
#             core busy while idle), and each run lasts until the ledger has
#             caught up with what the proxy shipped: its CPU figure includes
#             the ledger's catch-up.
#   kafka-base the Kafka deployment run with the BASELINE binary; only with
#             KAFKA=1 and BASELINE set.
# for two workloads, select-only (-S) and pgbench's built-in TPC-B-like write
# transaction, at 1 and 16 clients. The four targets run one after the other,
# ROUNDS times over (alternated, so that a slow minute of this shared machine
# hits every target alike); the table gives each target's median over the
# rounds: tps, ratios, the median latency each adds, and each proxy's CPU
# time per statement (from /proc: Vigil's one process, proxy and ledger; the
# relay's and PgBouncer's, which is what the hop alone costs).
#
# It first prints the limits of this machine: a synced 1 KiB write appending
# to a file and overwriting one (fdatasync; every statement Vigil records
# durably pays one, shared by whatever statements arrive together).
#
#   [KAFKA=1] [BASELINE=/path/to/vigil] [TARGETS="direct relay kafka ..."] tests/bench/proxy-bench.sh [seconds per run (default 10)] [protocol: simple|prepared (default prepared)] [rounds (default 3)]
#
# TARGETS keeps only the named targets (default: all that apply); `direct`
# and `relay` are needed for the ratios.
#
# Vigil's CPU per statement counts its processes: `vigil up`; for the Kafka
# deployment the proxy and both ledgers (not the broker). Beside it, the
# context switches a statement costs those processes (csw/stmt: sleeps and
# wake-ups, and preemptions, of the threads alive at the end of the run),
# which on a VM cost CPU as well as latency.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:-10}
MODE=${2:-prepared}
ROUNDS=${3:-3}
DB=vigil_bench

deploy/install-deps.sh >/dev/null
deploy/ensure-postgres.sh
command -v pgbouncer >/dev/null || /usr/sbin/pgbouncer --version >/dev/null 2>&1 || apt-get install -y -q pgbouncer >/dev/null
PGBOUNCER=$(command -v pgbouncer || echo /usr/sbin/pgbouncer)
KAFKA=${KAFKA:-0}
BASELINE=${BASELINE:-}
cargo build --release -q -p vigil -p vigil-tests --bin vigil --bin vigil-tcp-relay
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release

psql -h 127.0.0.1 -U postgres -d postgres -qtAc "SELECT 1 FROM pg_database WHERE datname='$DB'" | grep -q 1 \
  || psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $DB"
pgbench -h 127.0.0.1 -U postgres -i -s 10 -q "$DB" >/dev/null 2>&1

work=$(mktemp -d)
chmod 755 "$work"
pids=()
cleanup() {
  if [ "$KAFKA" = 1 ]; then deploy/local-stack.sh stop "$work/stack" >/dev/null 2>&1 || true; fi
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- relay
RELAY_PORT=$(free_port)
"$BIN/vigil-tcp-relay" "127.0.0.1:$RELAY_PORT" 127.0.0.1:5432 >/dev/null &
PID_relay=$!
pids+=("$PID_relay")

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

# --- vigil (and the baseline binary, set up alike)
. tests/bench/bench-vigil.sh
# start_vigil NAME BINARY: sets NAME's port, HTTP port, metrics port and pid
# (PORT_vigil, HTTP_vigil, METRICS_vigil, PID_vigil for "vigil").
start_vigil() {
  local name=$1 bin=$2 dir="$work/$1"
  local port http grpc metrics
  port=$(free_port); http=$(free_port); grpc=$(free_port); metrics=$(free_port)
  bench_vigil_config "$dir" "$port" "$http" "$grpc" "$metrics" "$bin"
  VIGIL_LOG=warn "$bin" up --config "$dir/vigil.toml" >"$dir/vigil.out" 2>"$dir/vigil.err" &
  local pid=$!
  pids+=("$pid")
  for _ in $(seq 1 100); do grep -q "vigil is ready" "$dir/vigil.out" 2>/dev/null && break; sleep 0.1; done
  grep -q "vigil is ready" "$dir/vigil.out" || { cat "$dir/vigil.err"; exit 1; }
  printf -v "PORT_$name" %s "$port"
  printf -v "HTTP_$name" %s "$http"
  printf -v "METRICS_$name" %s "$metrics"
  printf -v "PID_$name" %s "$pid"
}
start_vigil vigil "$BIN/vigil"
VIGIL_PORT=$PORT_vigil HTTP_PORT=$HTTP_vigil METRICS_PORT=$METRICS_vigil
[ -n "$BASELINE" ] && start_vigil baseline "$BASELINE"
sleep 0.5

targets=("direct 5432 postgres ''" "relay $RELAY_PORT postgres ''" "pgbouncer $BOUNCER_PORT postgres ''" "vigil $VIGIL_PORT bench bench")
[ -n "$BASELINE" ] && targets+=("baseline $PORT_baseline bench bench")
[ "$KAFKA" = 1 ] && targets+=("kafka 6543 dev dev")
[ "$KAFKA" = 1 ] && [ -n "$BASELINE" ] && targets+=("kafka-base 6543 dev dev")
if [ -n "${TARGETS:-}" ]; then
  kept=()
  for target in "${targets[@]}"; do
    case " $TARGETS " in *" ${target%% *} "*) kept+=("$target");; esac
  done
  targets=("${kept[@]}")
fi
# kafka_up NAME: the stack with this build (kafka) or the baseline (kafka-base).
kafka_up() {
  local bin="$BIN/vigil"
  [ "$1" = kafka-base ] && bin=$BASELINE
  VIGIL_BIN="$bin" deploy/local-stack.sh start "$work/stack" >"$work/stack.out" 2>&1 \
    || { cat "$work/stack.out" >&2; exit 1; }
}
# Stops the stack and waits until its processes have exited (`stop` removes
# the pid files at once; a proxy still shutting down holds its outbox's lock).
kafka_down() {
  local pids=() p
  for p in "$work"/stack/*.pid; do [ -f "$p" ] && pids+=("$(cat "$p")"); done
  deploy/local-stack.sh stop "$work/stack" >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do while kill -0 "$p" 2>/dev/null; do sleep 0.1; done; done
}
# Waits until the ledger's signed size stops growing (it has appended what
# the proxy shipped), at most two minutes.
kafka_settle() {
  local last="" now
  for _ in $(seq 1 240); do
    now=$(curl -fsS --max-time 2 http://127.0.0.1:6580/checkpoint 2>/dev/null | sed -n 2p || true)
    [ -n "$now" ] && [ "$now" = "$last" ] && return 0
    last=$now
    sleep 0.5
  done
}

CLK_TCK=$(getconf CLK_TCK)
# The processes of a target: `vigil up`, the Kafka deployment's proxy and
# ledgers, the relay or PgBouncer (the last two: what one hop costs any
# proxy, the floor under Vigil's figures).
target_pids() {
  case $1 in
    baseline) echo "$PID_baseline" ;;
    relay) echo "$PID_relay" ;;
    pgbouncer) cat "$work/pgbouncer.pid" ;;
    kafka | kafka-base) for p in proxy-a ledger ledger-standby; do cat "$work/stack/$p.pid"; done ;;
    *) echo "$PID_vigil" ;;
  esac
}
# "CPU_US SWITCHES": CPU time (µs) a target's processes have used so far,
# all threads, and the context switches (voluntary or not) of the threads
# alive now: each one a sleep and a wake-up, or a preemption.
target_usage() {
  local pids cpu switches p
  pids=$(target_pids "$1")
  cpu=$(for p in $pids; do cat "/proc/$p/stat"; done 2>/dev/null | awk -v hz="$CLK_TCK" '{t += $14 + $15} END {print t * 1e6 / hz}')
  switches=$(for p in $pids; do cat /proc/"$p"/task/*/status; done 2>/dev/null | awk '/^(non)?voluntary_ctxt_switches/ {s += $2} END {print s + 0}')
  echo "$cpu $switches"
}

# run NAME PORT USER PASSWORD CLIENTS WORKLOAD
#   -> "tps p50_us cpu_us_per_statement switches_per_statement"
# (the last two "-" for direct)
run() {
  local name=$1 port=$2 user=$3 pw=$4 clients=$5 workload=$6
  local dir="$work/log-$name-$clients-$workload-$RANDOM"; mkdir -p "$dir"; chmod 777 "$dir"
  local flag=-S per_tx=1
  # TPC-B-like: BEGIN, three UPDATEs, a SELECT, an INSERT, END.
  [ "$workload" = tpcb ] && flag="" per_tx=7
  local before="0 0"
  local stack=0
  [ "${name%-base}" = kafka ] && stack=1
  [ "$stack" = 1 ] && kafka_up "$name"
  [ "$name" != direct ] && before=$(target_usage "$name")
  local out
  out=$(cd "$dir" && PGPASSWORD=$pw pgbench -h 127.0.0.1 -p "$port" -U "$user" -n $flag -M "$MODE" \
        -c "$clients" -j 2 -T "$SECS" -l "$DB" 2>&1) || {
    echo "$out" >&2; [ "$stack" = 1 ] && kafka_down; echo "0 0 - -"; return; }
  local cpu="-" switches="-"
  [ "$stack" = 1 ] && kafka_settle
  if [ "$name" != direct ]; then
    local txs
    txs=$(echo "$out" | grep -Eo 'transactions actually processed: [0-9]+' | awk '{print $4}')
    read -r cpu switches <<<"$(awk -v a="$before" -v b="$(target_usage "$name")" -v n="$txs" -v k="$per_tx" \
      'BEGIN {split(a, x, " "); split(b, y, " "); printf "%.1f %.2f", (y[1] - x[1]) / (n * k), (y[2] - x[2]) / (n * k)}')"
  fi
  local tps
  tps=$(echo "$out" | grep -Eo 'tps = [0-9.]+' | head -n1 | awk '{print $3}')
  [ "$stack" = 1 ] && kafka_down
  local p50
  p50=$(cat "$dir"/pgbench_log.* | awk '{print $3}' | sort -n | awk '{a[NR]=$1} END {print a[int(NR/2)+1]}')
  rm -rf "$dir"
  echo "$tps $p50 $cpu $switches"
}

echo "machine: $(nproc) cpus, $(uname -sr); limits measured now, under $work:"
python3 tests/bench/fsync-limits.py "$work" 2000 | sed 's/^/  /'
echo "pgbench -M $MODE, scale 10, ${SECS}s per run, 2 pgbench threads, $ROUNDS alternated rounds, medians; same 2-core machine for everything"
results="$work/results"
: > "$results"
for workload in select tpcb; do
  for clients in 1 16; do
    for round in $(seq 1 "$ROUNDS"); do
      for target in "${targets[@]}"; do
        read -r name port user pw <<<"$target"
        [ "$pw" = "''" ] && pw=""
        echo "$workload $clients $name $round $(run "$name" "$port" "$user" "$pw" "$clients" "$workload")" >> "$results"
      done
    done
  done
done
python3 - "$results" <<'PY'
import statistics, sys
# A run that failed (its target did not start) leaves a row without figures.
rows = [r for r in (line.split() for line in open(sys.argv[1])) if len(r) >= 8]
med = lambda xs: statistics.median(xs) if xs else float("nan")
def cell(workload, clients, name, column):
    values = [float(r[column]) for r in rows
              if (r[0], r[1], r[2]) == (workload, clients, name) and r[column] != "-"]
    return med(values)
for workload, title in (("select", "select-only (-S)"), ("tpcb", "TPC-B-like (7 statements a transaction)")):
    print(f"\n{title}")
    print(f"{'target':<10} {'clients':>7} {'tps':>9} {'vs_direct':>9} {'vs_relay':>8} {'p50_us':>8} {'added_p50':>10} {'cpu_us/stmt':>11} {'csw/stmt':>8}")
    for clients in ("1", "16"):
        d_tps, r_tps = cell(workload, clients, "direct", 4), cell(workload, clients, "relay", 4)
        d_p50 = cell(workload, clients, "direct", 5)
        for name in ("direct", "relay", "pgbouncer", "vigil", "baseline", "kafka", "kafka-base"):
            if not any(r[2] == name for r in rows):
                continue
            tps, p50 = cell(workload, clients, name, 4), cell(workload, clients, name, 5)
            cpu = cell(workload, clients, name, 6)
            ratio = lambda a, b: f"{a / b:.3f}" if b else "-"
            cpu_text = f"{cpu:.1f}" if cpu == cpu else "-"
            switches = cell(workload, clients, name, 7)
            switches_text = f"{switches:.2f}" if switches == switches else "-"
            print(f"{name:<10} {clients:>7} {tps:>9.0f} {ratio(tps, d_tps):>9} {ratio(tps, r_tps):>8} {p50:>8.0f} {p50 - d_p50:>+10.0f} {cpu_text:>11} {switches_text:>8}")
spread = [
    (w, c, n, min(float(r[4]) for r in rows if (r[0], r[1], r[2]) == (w, c, n)),
     max(float(r[4]) for r in rows if (r[0], r[1], r[2]) == (w, c, n)))
    for w in ("select", "tpcb") for c in ("1", "16") for n in ("vigil", "baseline", "kafka", "kafka-base")
    if any((r[0], r[1], r[2]) == (w, c, n) for r in rows)
]
print("\nvigil tps range over the rounds: " + "; ".join(f"{n} {w} {c}c {lo:.0f}-{hi:.0f}" for w, c, n, lo, hi in spread))
PY
size=$(curl -s "http://127.0.0.1:$HTTP_PORT/checkpoint" 2>/dev/null | sed -n 2p || true)
echo "ledger entries after the vigil runs: ${size:-unknown}"
# How the statements' records were made durable: before forwarding
# (durable) or while a read that changes nothing ran (overlapped).
curl -s "http://127.0.0.1:$METRICS_PORT/metrics" | grep -E '^vigil_record_seconds_(count|sum)\{mode="(durable|overlapped)"' || true
