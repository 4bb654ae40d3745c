#!/bin/sh
# First start only (entrypoint.sh runs it on a socket-only server, as postgres): the
# application's login, which owns its database and may create roles (migration 0004 creates
# the NOLOGIN farm_analyst role, `farm db analyst` the analysts' logins); not a superuser.
set -eu
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}

psql -v ON_ERROR_STOP=1 --no-psqlrc -q -d postgres \
  -v user="$user" -v password="$POSTGRES_PASSWORD" -v db="$db" <<'SQL'
SELECT format('CREATE ROLE %I LOGIN CREATEROLE PASSWORD %L', :'user', :'password')
WHERE :'user' <> 'postgres'
\gexec
SELECT format('ALTER ROLE %I PASSWORD %L', :'user', :'password')
WHERE :'user' = 'postgres'
\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user')
WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db')
\gexec
SQL
echo "farm-postgres: login $user, database $db" >&2
