#!/usr/bin/env bash
# Start a throwaway PostgreSQL on loopback for the store's PostgreSQL tests and print the
# URL to use. Prints nothing (and the tests skip) where PostgreSQL cannot be had.
set -u
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ]; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) >&2 || exit 0
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$bin" ] || exit 0
fi
data=$(mktemp -d /tmp/rankact-pg.XXXXXX)
chown postgres "$data" 2>/dev/null || true
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/sh -c "$*"; else sh -c "$*"; fi; }
port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
as_pg "$bin/initdb -D $data -A trust -U postgres >/dev/null" >&2 || exit 0
as_pg "$bin/pg_ctl -D $data -o '-p $port -k $data -c listen_addresses=127.0.0.1' -l $data/log -w start >/dev/null" >&2 || exit 0
as_pg "$bin/createdb -h 127.0.0.1 -p $port -U postgres rankact_test" >&2 || exit 0
echo "postgresql+psycopg://postgres@127.0.0.1:$port/rankact_test"
