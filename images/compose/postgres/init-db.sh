#!/bin/sh
# First start only (entrypoint.sh runs it on a socket-only server, as postgres): the admin
# login (POSTGRES_USER), which owns the database and may create roles, not a superuser. It
# runs the migrations (its tables) and makes the other logins (images/compose/farm/roles.py):
# the application's, which owns nothing, and the analysts'.
#
# Also, as the superuser only can: nobody but a superuser may create large objects in the
# database (they are writes outside any table's privileges), so an analyst's read-only login
# stays read-only. TEMPORARY is revoked from PUBLIC by migration 0008.
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

psql -v ON_ERROR_STOP=1 --no-psqlrc -q -d "$db" <<'SQL'
REVOKE EXECUTE ON FUNCTION lo_creat(integer), lo_create(oid), lo_from_bytea(oid, bytea),
  lo_import(text), lo_import(text, oid), lo_put(oid, bigint, bytea) FROM PUBLIC;
SQL
echo "farm-postgres: admin login $user, database $db" >&2
