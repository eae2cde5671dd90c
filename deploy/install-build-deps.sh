#!/usr/bin/env bash
# Installs what building Vigil needs on a fresh Debian machine, and nothing
# more (`deploy/run-dev.sh` uses it: `vigil up --dev` needs no broker, no
# test clients). Skips whatever is already there; safe to run again.
#   protoc        the gRPC/protobuf code generator (proto/build.rs)
#   libclang      bindgen, for RocksDB's C API (librocksdb-sys)
#   clang, g++    compile RocksDB from source
set -euo pipefail

missing=()
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
ldconfig -p 2>/dev/null | grep -q 'libclang\(-[0-9.]*\)\?\.so' || missing+=(libclang-dev)
command -v clang >/dev/null 2>&1 || missing+=(clang)
command -v g++ >/dev/null 2>&1 || missing+=(g++)

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-build-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
