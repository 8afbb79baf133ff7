#!/usr/bin/env bash
# Start a private PostgreSQL server for the tests (installs Debian's package if missing).
# Writes the SQLAlchemy URL to var/test-postgres.url, which tests/conftest.py reads.
# Usage: scripts/test-postgres.sh start|stop
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${YIMEN_PG_DIR:-/tmp/yimen-test-pg}
PORT=${YIMEN_PG_PORT:-54329}
URL_FILE=var/test-postgres.url
mkdir -p var

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

as_pg() {  # PostgreSQL refuses to run as root
  if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi
}

case "${1:-start}" in
start)
  if [ -z "$(pg_bin)" ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "installing PostgreSQL from Debian packages…"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
      echo "PostgreSQL is not installed and we are not root: PostgreSQL tests will be skipped"
      rm -f "$URL_FILE"; exit 0
    fi
  fi
  BIN=$(pg_bin)
  if ! as_pg "$BIN/pg_ctl -D $DATA status" >/dev/null 2>&1; then
    rm -rf "$DATA"; mkdir -p "$DATA"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$DATA"
    as_pg "$BIN/initdb -D $DATA --auth=trust -U postgres -E UTF8 --locale=C.UTF-8" >/dev/null
    as_pg "$BIN/pg_ctl -D $DATA -l $DATA/server.log -w -o '-p $PORT -k $DATA -c listen_addresses=127.0.0.1' start" >/dev/null
  fi
  for db in yimen_source yimen_catalog; do
    "$BIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='$db'" | grep -q 1 \
      || "$BIN/createdb" -h 127.0.0.1 -p "$PORT" -U postgres "$db"
  done
  echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/yimen_source" > "$URL_FILE"
  echo "test PostgreSQL running on 127.0.0.1:$PORT"
  ;;
stop)
  BIN=$(pg_bin)
  [ -n "$BIN" ] && as_pg "$BIN/pg_ctl -D $DATA stop -m fast" >/dev/null 2>&1 || true
  rm -f "$URL_FILE"
  ;;
esac
