"""Create the database, install the schema, apply migrations, set role passwords.

`crm db init` is safe to run any number of times: it creates what is missing, applies
pending migrations and re-derives role passwords from CRM_SECRET_KEY.
"""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
from psycopg import sql

from . import pg_embedded, roles
from .config import ROOT, Settings

ROLES_FILE = ROOT / "db" / "roles.sql"
SCHEMA_FILE = ROOT / "db" / "schema.sql"
MIGRATIONS_DIR = ROOT / "db" / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class InstallError(RuntimeError):
    pass


def ensure_server(s: Settings) -> None:
    """Start the embedded server when it is the one in use, then check we can reach it."""
    if s.embedded:
        pg_embedded.start(s)
        pg_embedded.wait_ready(s)
    url = roles.with_database(roles.admin_url(s), "postgres")
    try:
        psycopg.connect(url, connect_timeout=5).close()
    except psycopg.OperationalError as e:
        raise InstallError(f"No se pudo conectar a PostgreSQL ({_safe(url)}): {e}".strip()) from None


def _safe(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


def create_database(s: Settings, name: str | None = None) -> bool:
    name = name or roles.database_name(s)
    url = roles.with_database(roles.admin_url(s), "postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            return False
        conn.execute(sql.SQL("CREATE DATABASE {} ENCODING 'UTF8' TEMPLATE template0")
                     .format(sql.Identifier(name)))
        return True


def migrations() -> list[tuple[int, str, Path]]:
    found = []
    for path in sorted(MIGRATIONS_DIR.glob("*.sql")):
        m = _MIGRATION_NAME.match(path.name)
        if not m:
            raise InstallError(f"Migración con nombre inválido: {path.name} (se espera 0001_nombre.sql)")
        found.append((int(m.group(1)), m.group(2), path))
    return found


def applied_versions(conn: psycopg.Connection) -> set[int] | None:
    """None when the schema is not installed at all."""
    if conn.execute("SELECT to_regclass('crm.migraciones')").fetchone()[0] is None:
        return None
    return {r[0] for r in conn.execute("SELECT version FROM crm.migraciones")}


def install(s: Settings, database: str | None = None) -> str:
    """Install from schema.sql when empty, else apply pending migrations. Returns a summary."""
    url = roles.admin_url(s)
    if database:
        url = roles.with_database(url, database)
    with psycopg.connect(url) as conn:
        ensure_roles(conn)
        versions = applied_versions(conn)
        if versions is None:
            conn.execute(SCHEMA_FILE.read_text())
            conn.commit()
            summary = "esquema instalado desde db/schema.sql"
        else:
            summary = apply_pending(conn)
        set_passwords(conn, s)
        conn.commit()
    return summary


def apply_pending(conn: psycopg.Connection) -> str:
    """Apply every migration not yet recorded, each in its own transaction."""
    versions = applied_versions(conn) or set()
    done = []
    for version, name, path in migrations():
        if version in versions:
            continue
        try:
            conn.execute(path.read_text())
            conn.execute("RESET ROLE")
            conn.execute("INSERT INTO crm.migraciones (version, nombre) VALUES (%s, %s) "
                         "ON CONFLICT (version) DO NOTHING", (version, name))
            conn.commit()
        except psycopg.Error as e:
            conn.rollback()
            raise InstallError(f"La migración {path.name} falló y no se aplicó: {e}") from None
        done.append(path.name)
    return ("migraciones aplicadas: " + ", ".join(done)) if done else "sin migraciones pendientes"


def ensure_roles(conn: psycopg.Connection) -> None:
    """Cluster-wide roles (db/roles.sql); idempotent."""
    conn.execute(ROLES_FILE.read_text())
    conn.commit()


def set_passwords(conn: psycopg.Connection, s: Settings) -> None:
    """(Re)derive every role's password; recreate brand roles missing on this server
    (a backup restored onto a new server brings crm.marcas but not the roles)."""
    conn.execute("RESET ROLE")
    names = [roles.OWNER, roles.API, roles.EXECUTIVE]
    brand_roles = [r[0] for r in conn.execute("SELECT rol_db FROM crm.marcas ORDER BY id")]
    for role in brand_roles:
        if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)).fetchone():
            # Created as crm_owner, exactly as crm.crear_marca() does, so that function can
            # still manage the role later (PostgreSQL 16+ lets a role alter only its own).
            conn.execute("SET ROLE crm_owner")
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS").format(sql.Identifier(role)))
            conn.execute(sql.SQL("GRANT crm_marca TO {}").format(sql.Identifier(role)))
            conn.execute("RESET ROLE")
    for role in names + brand_roles:
        conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
            sql.Identifier(role), sql.Literal(roles.password_for(role, s))))


def drop_database(s: Settings, name: str | None = None) -> None:
    name = name or roles.database_name(s)
    url = roles.with_database(roles.admin_url(s), "postgres")
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
