#!/usr/bin/env bash
# Kafka bus benchmark (not part of the test suite): a tansu broker (SQLite
# storage, as in the tests), a real `vigil ledger` process (release build,
# default checkpoint interval 250 ms), and vigil-kafka-bench playing
# proxies: each records into its own durable outbox (the proxy's code, synced
# group commits) and ships to the broker.
#
#   tests/bench/kafka-bench.sh [--rate EVENTS_PER_S] [--seconds S] [--proxies N]
#                              [--property librdkafka.key=value ...]
#   tests/bench/kafka-bench.sh --drain N
#   (either with --broker-storage URL: tansu's storage engine, default
#   sqlite://tansu.db as in the tests; memory://tansu/ keeps nothing on disk)
#
# Prints sustained events/s from the first publish until a signed checkpoint
# covers the last event, the publish -> signed-checkpoint lag (p50, p99, max
# over every 200th event), both against the target (20,000 events/s, p99
# under 2 s), and the CPU time each process took per event.
#
# --drain N: the ledger's side alone. N events go straight into the topic
# first (no outbox), a bare consumer reads them back (the broker's fetch
# rate), and only then does the ledger start and work through the backlog.
set -euo pipefail
cd "$(dirname "$0")/../.."

RATE=25000
SECONDS_=20
PROXIES=2
PROPS=()
DRAIN=""
STORAGE="sqlite://tansu.db"
while [ $# -gt 0 ]; do
  case "$1" in
    --rate) RATE=$2; shift 2 ;;
    --seconds) SECONDS_=$2; shift 2 ;;
    --proxies) PROXIES=$2; shift 2 ;;
    --property) PROPS+=(--property "$2"); shift 2 ;;
    --drain) DRAIN=$2; shift 2 ;;
    --broker-storage) STORAGE=$2; shift 2 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

cargo build --release -p vigil -p vigil-tests --bin vigil --bin vigil-kafka-bench >&2
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release
TANSU=${TANSU_BIN:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}

WORK=$(mktemp -d /tmp/vigil-kafka-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
KPORT=$(free_port); HPORT=$(free_port); GPORT=$(free_port)

(cd "$WORK" && exec "$TANSU" broker --listener-url "tcp://127.0.0.1:$KPORT" \
  --advertised-listener-url "tcp://127.0.0.1:$KPORT" --storage-engine "$STORAGE" \
  >"$WORK/tansu.out" 2>"$WORK/tansu.err") &
pids+=($!)
TANSU_PID=$!

if [ -n "$DRAIN" ]; then
  for _ in $(seq 1 100); do (echo >"/dev/tcp/127.0.0.1/$KPORT") 2>/dev/null && break; sleep 0.1; done
  echo "kafka bench (drain): tansu $("$TANSU" --version 2>/dev/null | head -1), $(nproc) cores, $DRAIN events"
  "$BIN/vigil-kafka-bench" --bootstrap "127.0.0.1:$KPORT" --prefill "$DRAIN"
fi

"$BIN/vigil" body-key new --id bench-1 >"$WORK/body.keys"
cat >"$WORK/ledger.toml" <<TOML
data_dir = "$WORK/ledger"
[ledger]
origin = "bench.vigil/kafka"
http_listen = "127.0.0.1:$HPORT"
grpc_listen = "127.0.0.1:$GPORT"
body_keys_file = "$WORK/body.keys"
[bus]
kind = "kafka"
bootstrap = "127.0.0.1:$KPORT"
TOML
VIGIL_LOG=warn "$BIN/vigil" ledger --config "$WORK/ledger.toml" >"$WORK/ledger.out" 2>"$WORK/ledger.err" &
pids+=($!)
LEDGER_PID=$!
for _ in $(seq 1 600); do
  grep -qx "vigil is ready" "$WORK/ledger.out" 2>/dev/null && break
  sleep 0.1
done
grep -qx "vigil is ready" "$WORK/ledger.out" || { cat "$WORK/ledger.err" >&2; exit 1; }

if [ -n "$DRAIN" ]; then
  exec_args=(--bootstrap "127.0.0.1:$KPORT" --ledger-http "http://127.0.0.1:$HPORT"
    --ledger-grpc "http://127.0.0.1:$GPORT" --pids "tansu=$TANSU_PID,ledger=$LEDGER_PID")
  "$BIN/vigil-kafka-bench" "${exec_args[@]}" --drain "$DRAIN"
  exit 0
fi

echo "kafka bench: tansu $("$TANSU" --version 2>/dev/null | head -1), $(nproc) cores, $PROXIES proxies at $RATE events/s for $SECONDS_ s"
"$BIN/vigil-kafka-bench" --bootstrap "127.0.0.1:$KPORT" --ledger-http "http://127.0.0.1:$HPORT" \
  --ledger-grpc "http://127.0.0.1:$GPORT" --proxies "$PROXIES" --rate "$RATE" --seconds "$SECONDS_" \
  --pids "tansu=$TANSU_PID,ledger=$LEDGER_PID" "${PROPS[@]}" \
  || { echo "bench failed; the ledger's log:" >&2; tail -20 "$WORK/ledger.err" >&2; exit 1; }
