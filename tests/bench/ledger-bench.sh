#!/usr/bin/env bash
# Ledger benchmark (not part of the test suite): builds vigil-ledger-bench in
# release and runs its three parts, each in its own process so that the RSS
# figures of one are not inflated by another.
#
#   tests/bench/ledger-bench.sh [--quick] [--entries N] [--append-events N]
#                               [--latency-secs S] [--pairs N] [--dir DIR]
#
#   a) sustained durable appends of 1 KiB events through Store::append_batch
#      (batches of 4096 and 1024) against raw RocksDB WriteBatch puts of the
#      same bytes with sync=true, measured in the same run; events/s, ratio.
#   b) ack -> inclusion in a stored signed checkpoint, checkpointer every
#      250 ms as in the service; p50/p99/max.
#   c) proofs at --entries (default 10,000,000; --quick: 1,000,000) entries
#      with 64-byte bodies: inclusion/consistency generation and verification
#      p50/p99 over 10k random pairs, node lookups per proof, RSS every 1M
#      entries, reopen time.
#
# The logs live in a temporary directory under --dir (default /tmp), removed
# at the end. 10M entries take about 8 GB of disk while the run lasts; the
# full run takes about 10 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."

ARGS=()
PARENT=/tmp
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) ARGS+=("$1"); shift ;;
    --entries|--append-events|--latency-secs|--pairs) ARGS+=("$1" "$2"); shift 2 ;;
    --dir) PARENT=$2; shift 2 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

cargo build --release -p vigil-tests --bin vigil-ledger-bench >&2
BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/vigil-ledger-bench

work=$(mktemp -d "$PARENT/vigil-ledger-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "machine: $(nproc) cpus, $(awk '/MemTotal/ {printf "%.0f GiB RAM", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo "disk: $(df -h "$work" | awk 'NR==2 {print $1", "$4" free"}')"
echo "command: tests/bench/ledger-bench.sh ${ARGS[*]:-}"
for phase in append latency proofs; do
  "$BIN" "$phase" --dir "$work" "${ARGS[@]}" | tee "$work/$phase.out"
done

echo
echo "== ledger bench summary"
for phase in append latency proofs; do
  sed -n 's/^RESULT /  /p' "$work/$phase.out"
done
