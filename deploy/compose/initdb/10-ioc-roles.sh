#!/bin/sh
# First start of the TimescaleDB container only (empty data volume): ioc-stream's two roles.
# The image's own 000_install_timescaledb.sh has already created the extension in $POSTGRES_DB.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v app_password="$IOC_DB_APP_PASSWORD" -v reader_password="$IOC_DB_READER_PASSWORD" \
    -f /ioc-sql/roles.sql
