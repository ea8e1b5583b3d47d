-- Database roles of ioc-stream (deploy/README.md, "Database roles"). Run once per database, as
-- a superuser, with psql variables for the passwords:
--
--   psql -v ON_ERROR_STOP=1 -v app_password="$IOC_DB_APP_PASSWORD" \
--        -v reader_password="$IOC_DB_READER_PASSWORD" -d ioc -f deploy/sql/roles.sql
--
-- ioc_app    owns the schema: `ioc db migrate`, the writer (it also creates and drops
--            partitions, and sets TimescaleDB policies), the worker (checkpoints), the notifier
--            (delivery log), `ioc keys create/revoke`, `ioc alerts`. The worker and the
--            notifier run the migrator at start, which needs CREATE on the schema.
-- ioc_reader reads only: the gateway (cold start), the HTTP ingest API (API keys),
--            Grafana and any history or BI tool.
--
-- Re-running it is safe: roles that exist get their password set again.

SELECT format('CREATE ROLE ioc_app LOGIN PASSWORD %L', :'app_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ioc_app') \gexec
SELECT format('CREATE ROLE ioc_reader LOGIN PASSWORD %L', :'reader_password')
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'ioc_reader') \gexec
ALTER ROLE ioc_app PASSWORD :'app_password';
ALTER ROLE ioc_reader PASSWORD :'reader_password';

-- Nobody else may create objects in this database's public schema.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT USAGE, CREATE ON SCHEMA public TO ioc_app;
GRANT USAGE ON SCHEMA public TO ioc_reader;
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO ioc_app', current_database()) \gexec
SELECT format('GRANT CONNECT ON DATABASE %I TO ioc_reader', current_database()) \gexec

-- Tables that exist already (a database migrated before the roles were introduced) …
GRANT SELECT ON ALL TABLES IN SCHEMA public TO ioc_reader;
-- … and every table, view and partition ioc_app creates from now on.
ALTER DEFAULT PRIVILEGES FOR ROLE ioc_app IN SCHEMA public GRANT SELECT ON TABLES TO ioc_reader;
