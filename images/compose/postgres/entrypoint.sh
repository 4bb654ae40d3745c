#!/bin/sh
# Starts Postgres on the data volume: on first start (an empty volume) initdb's a cluster, sets
# it to listen on every address with scram-sha-256 passwords, and runs init-db.sh on a
# socket-only server to create the application's login and database; then runs the server as
# the postgres user in the foreground (PID 1 of the container, so it gets the stop signal).
set -eu

if [ "${1:-}" != postgres ]; then
  exec "$@"  # e.g. `docker compose run postgres bash`
fi
shift

if [ "$(id -u)" = 0 ]; then
  # A volume (or a bind mount) may come up owned by root: hand it to postgres, then re-run
  # this script as postgres.
  mkdir -p "$PGDATA"
  chown postgres:postgres "$PGDATA"
  chmod 0700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" postgres "$@"
fi

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD: the application login needs a password}"
  echo "farm-postgres: initialising a new cluster in $PGDATA" >&2
  initdb --pgdata="$PGDATA" --username=postgres --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  {
    echo "# farm-postgres: every address, passwords only (scram-sha-256)"
    echo "host all all 0.0.0.0/0 scram-sha-256"
    echo "host all all ::/0 scram-sha-256"
  } >>"$PGDATA/pg_hba.conf"
  {
    echo "# farm-postgres"
    echo "listen_addresses = '*'"
    echo "password_encryption = 'scram-sha-256'"
  } >>"$PGDATA/postgresql.conf"
  # The first start listens on the socket only, so nothing (the healthcheck included) sees the
  # server before its login and database exist.
  pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait --silent start
  /usr/local/lib/farm-postgres/init-db.sh
  pg_ctl --pgdata="$PGDATA" --mode=fast --wait --silent stop
  echo "farm-postgres: initialised" >&2
fi

exec postgres -D "$PGDATA" "$@"
