#!/usr/bin/env bash
# Where a statement's cost goes inside `vigil up`, thread by thread: user
# and kernel CPU (µs) and context switches (voluntary: a sleep and a
# wake-up; involuntary: a preemption) per pgbench transaction, from
# /proc/<pid>/task/*/{stat,status} before and after one run.
#
#   tests/bench/proxy-threads.sh [clients (default 1)] [seconds (default 8)] [pgbench workload flags (default -S)]
#
# VIGIL=/path/to/vigil measures another build. Same set-up as
# tests/bench/proxy-bench.sh (the shipped PHI policy, a static identity,
# pgbench -M prepared on the scale-10 database vigil_bench); nothing else
# should run meanwhile.
set -euo pipefail
cd "$(dirname "$0")/../.."
CLIENTS=${1:-1}
SECS=${2:-8}
FLAGS=${3:--S}
DB=vigil_bench

deploy/ensure-postgres.sh
if [ -z "${VIGIL:-}" ]; then
  cargo build --release -q -p vigil --bin vigil
  VIGIL=${CARGO_TARGET_DIR:-$PWD/target}/release/vigil
fi
psql -h 127.0.0.1 -U postgres -d postgres -qtAc "SELECT 1 FROM pg_database WHERE datname='$DB'" | grep -q 1 \
  || { psql -h 127.0.0.1 -U postgres -d postgres -qc "CREATE DATABASE $DB" && pgbench -h 127.0.0.1 -U postgres -i -s 10 -q "$DB" >/dev/null 2>&1; }

work=$(mktemp -d)
chmod 755 "$work"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
PORT=$(free_port)
. tests/bench/bench-vigil.sh
bench_vigil_config "$work/vigil" "$PORT" "$(free_port)" "$(free_port)" "$(free_port)" "$VIGIL"
VIGIL_LOG=warn "$VIGIL" up --config "$work/vigil/vigil.toml" >"$work/out" 2>"$work/err" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 1 100); do grep -q "vigil is ready" "$work/out" 2>/dev/null && break; sleep 0.1; done
grep -q "vigil is ready" "$work/out" || { cat "$work/err"; exit 1; }

# "tid name utime stime voluntary involuntary" for every thread of vigil.
snapshot() {
  for t in /proc/"$pid"/task/*; do
    printf '%s %s %s %s %s\n' "$(basename "$t")" "$(tr ' ' _ < "$t/comm")" \
      "$(awk '{print $14, $15}' "$t/stat")" \
      "$(awk '/^voluntary_ctxt/ {print $2}' "$t/status")" \
      "$(awk '/^nonvoluntary_ctxt/ {print $2}' "$t/status")"
  done 2>/dev/null | sort
}
bench() {
  PGPASSWORD=bench pgbench -h 127.0.0.1 -p "$PORT" -U bench -n $FLAGS -M prepared \
    -c "$CLIENTS" -j "$(( CLIENTS > 1 ? 2 : 1 ))" -T "$1" "$DB" 2>&1
}
bench 2 >/dev/null || true # warm-up: connections, caches, the ledger's first files
snapshot > "$work/before"
out=$(cd "$work" && bench "$SECS")
snapshot > "$work/after"
tx=$(echo "$out" | awk '/number of transactions actually processed/ {split($NF, a, "/"); print a[1]}')
tps=$(echo "$out" | awk '/^tps/ {print $3; exit}')
echo "pgbench $FLAGS -M prepared -c $CLIENTS -T $SECS through vigil up: $tps tps, $tx transactions"
join "$work/before" "$work/after" | awk -v tx="$tx" -v hz="$(getconf CLK_TCK)" '
  # joined: tid, then name utime stime vcsw nvcsw before ($2-$6) and after ($7-$11)
  { n = $2; u[n] += ($8 - $3) * 1e6 / hz / tx; s[n] += ($9 - $4) * 1e6 / hz / tx
    v[n] += ($10 - $5) / tx; nv[n] += ($11 - $6) / tx }
  END {
    printf "%-18s %10s %10s %8s %8s   (per transaction)\n", "thread", "user µs", "kernel µs", "vcsw", "nvcsw"
    for (n in u) if (u[n] + s[n] + v[n] + nv[n] > 0.005) {
      printf "%-18s %10.1f %10.1f %8.2f %8.2f\n", n, u[n], s[n], v[n], nv[n]
      U += u[n]; S += s[n]; V += v[n]; NV += nv[n] }
    printf "%-18s %10.1f %10.1f %8.2f %8.2f\n", "all", U, S, V, NV }'
