# Sourced by the proxy benches: how they set up `vigil up` alike.
#
# bench_vigil_config DIR PORT HTTP GRPC METRICS BINARY: writes DIR/vigil.toml
# (data in DIR/data) for a gateway on 127.0.0.1:PORT with the shipped PHI
# policy in front of the local PostgreSQL, and the identity `bench`
# (password `bench`); the body keyring and the masking key go in DIR's
# parent, shared by every gateway of one bench run, and are made once.

bench_vigil_config() {
  local dir=$1 port=$2 http=$3 grpc=$4 metrics=$5 bin=$6
  local shared
  shared=$(dirname "$dir")
  mkdir -p "$dir"
  [ -s "$shared/body.keys" ] || "$bin" body-key new --id bench > "$shared/body.keys"
  [ -s "$shared/masking.key" ] || python3 -c 'import base64,os; print(base64.b64encode(os.urandom(32)).decode())' > "$shared/masking.key"
  [ -s "$shared/password.hash" ] || printf 'bench\n' | "$bin" hash-password > "$shared/password.hash"
  cat > "$dir/vigil.toml" <<TOML
data_dir = "$dir/data"
# The bench logs in with a static identity (development accounts only).
allow_static_identities = true
[ledger]
origin = "bench.vigil/pgbench"
http_listen = "127.0.0.1:$http"
grpc_listen = "127.0.0.1:$grpc"
body_keys_file = "$shared/body.keys"
[[postgres]]
name = "bench"
listen = "127.0.0.1:$port"
policy = "builtin:phi-default"
upstream = { host = "127.0.0.1", port = 5432, user = "postgres", allow_privileged_role = true }
[[identities]]
name = "bench"
password_hash = "$(cat "$shared/password.hash")"
[masking]
hash_key_file = "$shared/masking.key"
[metrics]
listen = "127.0.0.1:$metrics"
TOML
}
