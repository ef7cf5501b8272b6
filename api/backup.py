"""Backups: `pg_dump --format=custom` of the CRM database, and their restore.

    create(s)        -> path of the new dump in s.backup_dir (crm-YYYYmmdd-HHMMSS.dump, UTC);
                        only the newest s.backup_keep such files are kept
    restore(s, file) -> summary; the database is replaced by the dump's content

The dump is taken as the owner role (BYPASSRLS, so it sees every brand) and restored as
the admin URL (superuser), so extensions, ownership and grants come back as they were.
The restore goes into a scratch database first and replaces the live one only once
pg_restore succeeded: a broken or foreign dump never leaves the install without data.

Passwords never reach a command line or the output: the tools get a URL without
password and the password through PGPASSWORD.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from . import installer, pg_embedded, roles
from .config import Settings

_NAME = re.compile(r"^crm-\d{8}-\d{6}\.dump$")


class BackupError(installer.InstallError):
    """Shown by the CLI as `error: ...` with exit code 1."""


def _tool_call(url: str) -> tuple[str, dict[str, str]]:
    """A libpq URL without password, and the environment that carries it."""
    parts = urlsplit(url)
    env = dict(os.environ)
    for var in ("PGPASSWORD", "PGPASSFILE", "PGSERVICE", "PGDATABASE", "PGUSER", "PGHOST", "PGPORT"):
        env.pop(var, None)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, hostport = netloc.rsplit("@", 1)
        user, sep, password = userinfo.partition(":")
        if sep:
            env["PGPASSWORD"] = unquote(password)
        netloc = f"{user}@{hostport}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, "")), env


def _redact(text: str) -> str:
    return re.sub(r"//([^:/@\s]+):[^@\s]*@", r"//\1:***@", text)


def _run(args: list[str], env: dict[str, str], what: str) -> subprocess.CompletedProcess:
    r = subprocess.run(args, check=False, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        detail = _redact(r.stderr.strip() or r.stdout.strip() or f"código {r.returncode}")
        raise BackupError(f"{what} falló: {detail}")
    return r


def backups(s: Settings) -> list[Path]:
    """The dumps this module wrote, oldest first (the name sorts by time)."""
    if not s.backup_dir.is_dir():
        return []
    return sorted(p for p in s.backup_dir.iterdir() if _NAME.match(p.name) and p.is_file())


def create(s: Settings) -> str:
    if not s.backup_dir.is_dir():  # dumps hold customers' personal data: owner only
        s.backup_dir.mkdir(parents=True, mode=0o700)
    while True:
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        path = s.backup_dir / f"crm-{stamp}.dump"
        if not path.exists():
            break
        time.sleep(0.2)  # two backups within one second: wait for the next name
    partial = path.with_name(path.name + ".partial")
    url, env = _tool_call(roles.role_url(roles.OWNER, s))
    try:
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.close(fd)
        _run([pg_embedded.tool("pg_dump"), "--format=custom", "--no-password",
              f"--file={partial}", f"--dbname={url}"], env, "pg_dump")
        partial.rename(path)
    finally:
        partial.unlink(missing_ok=True)
    keep = max(s.backup_keep, 1)
    for old in backups(s)[:-keep]:
        old.unlink(missing_ok=True)
    return str(path)


def check_dump(file: Path) -> None:
    """Refuse a missing file or one that is not a custom-format dump of this application."""
    if not file.is_file():
        raise BackupError(f"No existe el archivo de respaldo {file}")
    r = subprocess.run([pg_embedded.tool("pg_restore"), "--list", str(file)], check=False,
                       capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if r.returncode != 0:
        raise BackupError(f"{file} no es un respaldo válido (formato custom de pg_dump): "
                          f"{r.stderr.strip() or 'pg_restore --list falló'}")
    if "TABLE DATA crm marcas" not in r.stdout:
        raise BackupError(f"{file} es un respaldo de PostgreSQL pero no de esta aplicación "
                          "(no contiene la tabla crm.marcas)")


def _admin(s: Settings) -> psycopg.Connection:
    return psycopg.connect(roles.with_database(roles.admin_url(s), "postgres"), autocommit=True)


def restore(s: Settings, file: str | os.PathLike) -> str:
    path = Path(file).expanduser().resolve()
    check_dump(path)
    name = roles.database_name(s)
    scratch = f"{name}_restaurando"[:63]

    installer.drop_database(s, scratch)
    installer.create_database(s, scratch)
    # Roles are cluster-wide: on a new server they must exist before the object grants come
    # back; db/roles.sql also grants them this database (pg_dump does not carry that).
    with psycopg.connect(roles.with_database(roles.admin_url(s), scratch)) as conn:
        installer.ensure_roles(conn)
    url, env = _tool_call(roles.with_database(roles.admin_url(s), scratch))
    try:
        _run([pg_embedded.tool("pg_restore"), "--exit-on-error", "--no-password",
              f"--dbname={url}", str(path)], env, "pg_restore")
    except BaseException:
        installer.drop_database(s, scratch)
        raise

    # Swap: the live database is replaced only now that the restore succeeded.
    installer.drop_database(s, name)
    with _admin(s) as conn:
        conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
            sql.Identifier(scratch), sql.Identifier(name)))

    # Pending migrations (older dump), missing brand roles, passwords from CRM_SECRET_KEY.
    summary = installer.install(s)
    with psycopg.connect(roles.admin_url(s)) as conn:
        brands = conn.execute("SELECT count(*) FROM crm.marcas").fetchone()[0]
    return f"respaldo {path.name} restaurado en la base {name} ({brands} marcas); {summary}"
