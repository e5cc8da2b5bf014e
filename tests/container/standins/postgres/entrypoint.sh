#!/bin/sh
# First start: initdb with POSTGRES_USER / POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE), create
# POSTGRES_DB; then serve on every address with password (scram) authentication, as the
# official image does.
set -eu
if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then  # a secret file, as the official image reads it
    POSTGRES_PASSWORD=$(cat "$POSTGRES_PASSWORD_FILE")
fi
: "${POSTGRES_USER:=postgres}"
: "${POSTGRES_DB:=$POSTGRES_USER}"
: "${POSTGRES_PASSWORD:?the stand-in, like the official image, needs POSTGRES_PASSWORD}"
as_postgres() { setpriv --reuid=postgres --regid=postgres --init-groups -- "$@"; }
mkdir -p "$PGDATA" /run/postgresql
chown postgres:postgres "$PGDATA" /run/postgresql
chmod 700 "$PGDATA"
if [ ! -s "$PGDATA/PG_VERSION" ]; then
    pwfile=$(mktemp)
    printf '%s' "$POSTGRES_PASSWORD" > "$pwfile"
    chown postgres "$pwfile"
    as_postgres initdb --pgdata="$PGDATA" --username="$POSTGRES_USER" --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 > /dev/null
    rm -f "$pwfile"
    echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
    as_postgres pg_ctl --pgdata="$PGDATA" --options="-c listen_addresses=''" --wait --silent start
    if [ "$POSTGRES_DB" != postgres ]; then
        as_postgres psql --quiet --username="$POSTGRES_USER" --dbname=postgres \
            --command="CREATE DATABASE \"$POSTGRES_DB\""
    fi
    as_postgres pg_ctl --pgdata="$PGDATA" --mode=fast --wait --silent stop
    echo "postgres-entrypoint: initialised $PGDATA (user $POSTGRES_USER, database $POSTGRES_DB)"
fi
exec setpriv --reuid=postgres --regid=postgres --init-groups -- \
    postgres -D "$PGDATA" -c listen_addresses='*'
