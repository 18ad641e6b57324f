-- PostgreSQL roles for a shared opsrunner store.
--   opsrunner_writer   the controllers: owns the schema (alembic migrations run when
--                      opsrunner opens the store), writes runs, results and samples,
--                      takes the advisory locks that stop overlapping runs
--   opsrunner_reporter read-only: `opsrunner report`, `score`, `verify`, dashboards,
--                      auditors; cannot insert, update or delete anything, the evidence
--                      ledger included (tests/unit/store/test_store_pg_roles.py)
-- The ledger table refuses UPDATE, DELETE and TRUNCATE by trigger (migration 0005), for the
-- writer too; the hash chain and signed checkpoints (`opsrunner verify`) detect the rest.
-- Run once as a superuser:
--   psql -v writer_password='…' -v reporter_password='…' -f deploy/postgresql-roles.sql
-- then point the controllers at
--   --store postgresql://opsrunner_writer:…@dbhost/opsrunner
\set ON_ERROR_STOP on

CREATE ROLE opsrunner_writer LOGIN PASSWORD :'writer_password';
CREATE ROLE opsrunner_reporter LOGIN PASSWORD :'reporter_password';
CREATE DATABASE opsrunner OWNER opsrunner_writer ENCODING 'UTF8' TEMPLATE template0;
REVOKE ALL ON DATABASE opsrunner FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE opsrunner TO opsrunner_writer;
GRANT CONNECT ON DATABASE opsrunner TO opsrunner_reporter;

\connect opsrunner
REVOKE ALL ON SCHEMA public FROM PUBLIC;
ALTER SCHEMA public OWNER TO opsrunner_writer;
GRANT USAGE ON SCHEMA public TO opsrunner_reporter;
-- Tables the writer's migrations create later are readable by the reporter too.
ALTER DEFAULT PRIVILEGES FOR ROLE opsrunner_writer IN SCHEMA public
    GRANT SELECT ON TABLES TO opsrunner_reporter;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO opsrunner_reporter;
