-- Cluster-wide roles of the CRM (roles belong to the server, not to one database), and
-- their access to the database this runs in (pg_dump does not carry database grants).
-- Idempotent; run by `crm db init` and `crm backup restore` before db/schema.sql.
-- Per-brand login roles (crm_marca_<slug>) are created with their brand by crm.crear_marca().
DO $$
BEGIN
  -- Owns every object; logs in only for maintenance (migrations, seeds, backups).
  -- BYPASSRLS because pg_dump and COPY refuse to run under row-level security.
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'crm_owner') THEN
    CREATE ROLE crm_owner LOGIN CREATEROLE BYPASSRLS;
  END IF;
  -- The API's login role: not owner, not superuser, no BYPASSRLS.
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'crm_api') THEN
    CREATE ROLE crm_api LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB;
  END IF;
  -- Executives: read-only, across brands, through the reporting schema.
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'crm_ejecutivo') THEN
    CREATE ROLE crm_ejecutivo LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB;
  END IF;
  -- Group of the per-brand login roles (crm_marca_<slug>): holds their table grants.
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'crm_marca') THEN
    CREATE ROLE crm_marca NOLOGIN;
  END IF;
  EXECUTE format('GRANT CONNECT, CREATE, TEMPORARY ON DATABASE %I TO crm_owner', current_database());
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO crm_api, crm_ejecutivo, crm_marca', current_database());
END
$$;
GRANT crm_marca TO crm_owner WITH ADMIN OPTION;

