#!/usr/bin/env bash
# Makes sure the local PostgreSQL the tests use answers on 127.0.0.1:5432,
# starting the cluster if it is down.
set -euo pipefail

if pg_isready -h 127.0.0.1 -p 5432 -q; then
  exit 0
fi
echo "ensure-postgres: PostgreSQL is not answering on 127.0.0.1:5432; starting it"
version=$(ls /etc/postgresql | sort -V | tail -n1)
pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
for _ in $(seq 1 30); do
  pg_isready -h 127.0.0.1 -p 5432 -q && exit 0
  sleep 1
done
echo "ensure-postgres: PostgreSQL did not come up" >&2
exit 1
