#!/bin/sh
# The official postgres image's start, in short: on an empty PGDATA, initdb with
# POSTGRES_USER (postgres) and POSTGRES_PASSWORD or POSTGRES_HOST_AUTH_METHOD, connections
# from anywhere, and POSTGRES_DB created; then the server in the foreground as postgres.
set -eu
user=${POSTGRES_USER:-postgres}
method=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$method" != trust ]; then
        echo "error: set POSTGRES_PASSWORD, or POSTGRES_HOST_AUTH_METHOD=trust" >&2
        exit 1
    fi
    pwfile=$(mktemp)
    printf '%s\n' "${POSTGRES_PASSWORD:-}" > "$pwfile"
    chown postgres "$pwfile"
    as_postgres="setpriv --reuid=postgres --regid=postgres --init-groups"
    if [ -n "${POSTGRES_PASSWORD:-}" ]; then
        $as_postgres initdb -U "$user" --pwfile="$pwfile" -A "$method" >/dev/null
    else
        $as_postgres initdb -U "$user" -A trust >/dev/null
    fi
    rm -f "$pwfile"
    echo "host all all all $method" >> "$PGDATA/pg_hba.conf"
    echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
    db=${POSTGRES_DB:-$user}
    if [ "$db" != postgres ]; then
        echo "CREATE DATABASE \"$db\";" | $as_postgres postgres --single -D "$PGDATA" postgres >/dev/null
    fi
fi
if [ "$1" = postgres ]; then
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$@"
fi
exec "$@"
