#!/usr/bin/env bash
# A local multi-process Vigil stack on one machine, for trying the Kafka
# deployment: a tansu broker (topics and offsets in SQLite), one `vigil
# ledger`, a standby ledger on the same data directory, `vigil approvals
# serve`, and two `vigil proxy` processes in front of the local PostgreSQL
# (127.0.0.1:5432, trust auth). The proxies apply the shipped PHI policy
# with approvers (group "approvers") for its review rules.
#
#   deploy/local-stack.sh start [DIR]   start everything (default DIR ./vigil-stack)
#   deploy/local-stack.sh stop  [DIR]   stop everything (SIGTERM)
#   deploy/local-stack.sh status [DIR]  which processes run, which ledger is
#                                       active, the log's size
#   deploy/local-stack.sh kill-ledger [DIR]  SIGKILL the active ledger, start a
#                                       new standby in its place, and time
#                                       the failover
#   deploy/local-stack.sh kill-broker [DIR]  SIGKILL the broker, start it again
#                                       on its store, and time the recovery
#
# The kill verbs run a statement through proxy a every second meanwhile
# (psql, user dev) and print when the log grew again: the failover time.
#
# Then: PGPASSWORD=dev psql -h 127.0.0.1 -p 6543 -U dev -d test   (proxy a)
#       PGPASSWORD=dev psql -h 127.0.0.1 -p 6544 -U dev -d test   (proxy b)
#       vigil audit verify --ledger http://127.0.0.1:6580 --key "$(cat DIR/ledger/ledger-verifier.key)"
#       VIGIL_PASSWORD=approver vigil approvals --user approver list   (held statements)
#
# Binaries: $VIGIL_BIN (default: vigil on PATH,
# else target/release/vigil, else target/debug/vigil) and $TANSU_BIN
# (default: tansu on PATH; deploy/install-deps.sh installs it).
set -euo pipefail

cmd="${1:-start}"
dir="$(mkdir -p "${2:-vigil-stack}" && cd "${2:-vigil-stack}" && pwd)"
repo="$(cd "$(dirname "$0")/.." && pwd)"

find_vigil() {
  if [ -n "${VIGIL_BIN:-}" ]; then echo "$VIGIL_BIN"; return; fi
  if command -v vigil >/dev/null 2>&1; then command -v vigil; return; fi
  for p in "${CARGO_TARGET_DIR:-$repo/target}/release/vigil" "${CARGO_TARGET_DIR:-$repo/target}/debug/vigil"; do
    if [ -x "$p" ]; then echo "$p"; return; fi
  done
  echo "local-stack: no vigil binary: cargo build --release -p vigil (or set VIGIL_BIN)" >&2
  exit 1
}
tansu="${TANSU_BIN:-$(command -v tansu || echo "$HOME/.cargo/bin/tansu")}"

BROKER_PORT=19092
procs=(broker ledger ledger-standby approvals proxy-a proxy-b)

running() { [ -f "$dir/$1.pid" ] && kill -0 "$(cat "$dir/$1.pid")" 2>/dev/null; }

# Waits until `name` printed `line` on stdout (its .out file), or fails.
wait_line() {
  local name="$1" line="$2"
  for _ in $(seq 1 300); do
    grep -qx "$line" "$dir/$name.out" 2>/dev/null && return 0
    running "$name" || { echo "local-stack: $name exited; see $dir/$name.err" >&2; exit 1; }
    sleep 0.1
  done
  echo "local-stack: $name did not print '$line' in 30 s; see $dir/$name.err" >&2
  exit 1
}

# The ledger process that holds the data directory (printed "vigil is
# ready"), if any.
active_ledger() {
  for name in ledger ledger-standby; do
    if running "$name" && grep -qx "vigil is ready" "$dir/$name.out" 2>/dev/null; then
      echo "$name"; return
    fi
  done
}

# The log's size from the active ledger's checkpoint (empty if none answers).
log_size() {
  { curl -fsS --max-time 2 http://127.0.0.1:6580/checkpoint 2>/dev/null || true; } | sed -n 2p
}

# Runs a statement through proxy a every second until the log holds more
# than $1 entries; prints how long that took since $2 (date +%s.%N).
probe_until_growth() {
  local before="$1" since="$2" n=0 size
  while :; do
    n=$((n + 1))
    if PGPASSWORD=dev PGCONNECT_TIMEOUT=5 psql -h 127.0.0.1 -p 6543 -U dev -d test -X -q \
        -c "SELECT 'failover-probe-$n'" >/dev/null 2>"$dir/probe.err"; then
      echo "  statement $n through proxy a: ok"
    else
      echo "  statement $n through proxy a: failed ($(head -c 200 "$dir/probe.err"))"
    fi
    size="$(log_size)"
    if [ -n "$size" ] && [ "$size" -gt "$before" ]; then
      echo "the log grew again ($before -> $size entries) $(awk -v now="$(date +%s.%N)" -v since="$since" 'BEGIN { printf "%.1f", now - since }') s after the kill"
      return 0
    fi
    if [ "$n" -ge 120 ]; then
      echo "local-stack: the log did not grow in 120 s (size ${size:-unknown}); see $dir/*.err" >&2
      return 1
    fi
    sleep 1
  done
}

start_bg() {
  local name="$1"; shift
  if running "$name"; then echo "$name already runs (pid $(cat "$dir/$name.pid"))"; return; fi
  (cd "$dir" && exec "$@" >"$dir/$name.out" 2>"$dir/$name.err") &
  echo $! >"$dir/$name.pid"
}

write_configs() {
  local vigil="$1"
  [ -f "$dir/body.keys" ] || "$vigil" body-key new --id local-1 >"$dir/body.keys"
  [ -f "$dir/masking.key" ] || head -c 32 /dev/urandom | base64 >"$dir/masking.key"
  local hash approver_hash
  hash="$(printf 'dev\n' | "$vigil" hash-password)"
  approver_hash="$(printf 'approver\n' | "$vigil" hash-password)"
  # The proxies prove themselves to the approval service with a token.
  if [ ! -f "$dir/proxy.token" ]; then
    "$vigil" approvals proxy-token | awk '$1 == "token" {print $2}' >"$dir/proxy.token"
    chmod 600 "$dir/proxy.token"
  fi
  local proxy_token_sha
  proxy_token_sha="$(tr -d '\n' <"$dir/proxy.token" | sha256sum | cut -d' ' -f1)"
  # The shipped PHI policy, with approvers for its review rules.
  sed -e 's/^# \[review\]/[review]/' \
      -e 's/^# approver_groups = .*/approver_groups = ["approvers"]/' \
    "$repo/deploy/policy/phi-default.toml" >"$dir/policy.toml"
  common() { # $1 = data dir
    cat <<EOF
data_dir = "$1"
allow_static_identities = true
[bus]
kind = "kafka"
bootstrap = "127.0.0.1:$BROKER_PORT"
EOF
  }
  # Only the ledger holds the body keyring: proxies never decrypt bodies.
  {
    common "$dir/ledger"
    cat <<EOF
[ledger]
origin = "localhost/vigil-stack"
http_listen = "127.0.0.1:6580"
grpc_listen = "127.0.0.1:6581"
body_keys_file = "$dir/body.keys"
EOF
  } >"$dir/ledger.toml"
  {
    common "$dir/approvals"
    cat <<EOF
[[identities]]
name = "approver"
password_hash = "$approver_hash"
groups = ["approvers"]
[approvals]
grpc_listen = "127.0.0.1:6582"
policies = ["$dir/policy.toml"]
proxy_tokens_sha256 = ["$proxy_token_sha"]
EOF
  } >"$dir/approvals.toml"
  for p in a:6543 b:6544; do
    local name="${p%%:*}" port="${p##*:}"
    {
      common "$dir/proxy-$name"
      cat <<EOF
[masking]
hash_key_file = "$dir/masking.key"
[[identities]]
name = "dev"
password_hash = "$hash"
groups = ["agents"]
[[postgres]]
name = "proxy-$name"
listen = "127.0.0.1:$port"
policy = "$dir/policy.toml"
upstream = { host = "127.0.0.1", port = 5432, user = "postgres", allow_privileged_role = true }
[approval_service]
url = "http://127.0.0.1:6582"
token_file = "$dir/proxy.token"
EOF
    } >"$dir/proxy-$name.toml"
  done
}

case "$cmd" in
  start)
    vigil="$(find_vigil)"
    [ -x "$tansu" ] || { echo "local-stack: no tansu: run deploy/install-deps.sh (or set TANSU_BIN)" >&2; exit 1; }
    write_configs "$vigil"
    start_bg broker "$tansu" broker --listener-url "tcp://127.0.0.1:$BROKER_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$BROKER_PORT" --storage-engine sqlite://tansu.db
    start_bg ledger "$vigil" ledger --config "$dir/ledger.toml"
    wait_line ledger "vigil is ready"
    start_bg ledger-standby "$vigil" ledger --config "$dir/ledger.toml"
    wait_line ledger-standby "vigil ledger is standing by"
    start_bg approvals "$vigil" approvals serve --config "$dir/approvals.toml"
    wait_line approvals "vigil is ready"
    start_bg proxy-a "$vigil" proxy --config "$dir/proxy-a.toml"
    start_bg proxy-b "$vigil" proxy --config "$dir/proxy-b.toml"
    wait_line proxy-a "vigil is ready"
    wait_line proxy-b "vigil is ready"
    echo "stack up in $dir:"
    echo "  broker  127.0.0.1:$BROKER_PORT   ledger http://127.0.0.1:6580 (gRPC 6581), standby waiting"
    echo "  proxies 127.0.0.1:6543 and 127.0.0.1:6544 (user dev, password dev)"
    echo "  approvals gRPC 127.0.0.1:6582 (vigil approvals --user approver, VIGIL_PASSWORD=approver)"
    echo "  verifier key: $(cat "$dir/ledger/ledger-verifier.key")"
    ;;
  stop)
    # Proxies first (their outboxes ship what they hold while the broker
    # is still there), the broker last.
    for name in proxy-a proxy-b approvals ledger-standby ledger broker; do
      if running "$name"; then kill "$(cat "$dir/$name.pid")" && echo "stopped $name"; fi
      rm -f "$dir/$name.pid"
      sleep 0.2
    done
    ;;
  status)
    for name in "${procs[@]}"; do
      if running "$name"; then echo "$name: running (pid $(cat "$dir/$name.pid"))"; else echo "$name: stopped"; fi
    done
    active="$(active_ledger)"
    echo "active ledger: ${active:-none}"
    echo "log size: $(log_size) entries"
    gaps="$({ curl -fsS --max-time 2 http://127.0.0.1:6580/metrics 2>/dev/null || true; } | awk '$1 == "vigil_ledger_sequence_gaps_total" {print $2}')"
    echo "sequence gaps noticed by the ledger: ${gaps:-unknown}"
    ;;
  kill-ledger)
    vigil="$(find_vigil)"
    active="$(active_ledger)"
    [ -n "$active" ] || { echo "local-stack: no active ledger" >&2; exit 1; }
    other=ledger; [ "$active" = ledger ] && other=ledger-standby
    running "$other" || { echo "local-stack: no standby ledger runs ($other); start the stack again first" >&2; exit 1; }
    before="$(log_size)"; before="${before:-0}"
    since="$(date +%s.%N)"
    kill -9 "$(cat "$dir/$active.pid")"
    echo "killed the active ledger ($active, SIGKILL); the log has $before entries"
    rm -f "$dir/$active.pid"
    echo "waiting for $other to take over (it waits the bus session timeout, 10 s, for the dead member to be evicted)"
    probe_until_growth "$before" "$since"
    wait_line "$other" "vigil is ready"
    # A new standby in the dead one's place, so the next kill fails over
    # too (started only now: two standbys would race for the directory).
    start_bg "$active" "$vigil" ledger --config "$dir/ledger.toml"
    wait_line "$active" "vigil ledger is standing by"
    echo "active ledger: $other; $active is the new standby"
    ;;
  kill-broker)
    running broker || { echo "local-stack: the broker does not run" >&2; exit 1; }
    before="$(log_size)"; before="${before:-0}"
    since="$(date +%s.%N)"
    kill -9 "$(cat "$dir/broker.pid")"
    rm -f "$dir/broker.pid"
    echo "killed the broker (SIGKILL); the log has $before entries; statements go on into the proxies' outboxes"
    sleep 2
    start_bg broker "$tansu" broker --listener-url "tcp://127.0.0.1:$BROKER_PORT" \
      --advertised-listener-url "tcp://127.0.0.1:$BROKER_PORT" --storage-engine sqlite://tansu.db
    echo "started the broker again on its store"
    probe_until_growth "$before" "$since"
    ;;
  *)
    echo "usage: $0 start|stop|status|kill-ledger|kill-broker [DIR]" >&2
    exit 2
    ;;
esac
