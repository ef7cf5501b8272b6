"""scripts/setup.sh end to end: setup, backup, reset, restore, stop, status, start.

Slow on purpose (a real embedded cluster, the real API in the background). Everything
runs apart from the developer's stack: its own CRM_DATA_DIR under pytest's tmp folder,
free ports, and every variable of .env.example set explicitly, so the developer's .env
neither leaks in nor gets written. The tests share one stack and run in file order.
"""

from __future__ import annotations

import os
import re
import socket
import stat
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from api.config import ROOT

SCRIPT = ROOT / "scripts" / "setup.sh"
CRM = ROOT / ".venv" / "bin" / "crm"
EXTRA = "prueba-respaldo"  # a brand the demo data does not have


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _example_defaults() -> dict[str, str]:
    """Every variable .env.example lists (commented ones too), with its example value."""
    found = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$", line)
        if m:
            found[m.group(2)] = "" if m.group(1) else m.group(3).strip()
    return found


def test_env_example_lists_every_variable_the_config_reads():
    source = (ROOT / "api" / "config.py").read_text()
    read = set(re.findall(r'(?:environ\.get|_int)\(\s*"([A-Z][A-Z0-9_]*)"', source))
    assert read, "api/config.py reads its variables with os.environ.get() or _int()"
    # metabase/provision.py reads its own (Metabase's address and admin)
    read |= set(re.findall(r'"(METABASE_[A-Z0-9_]+)"', (ROOT / "metabase" / "provision.py").read_text()))
    compose = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", (ROOT / "docker-compose.yml").read_text()))
    example = set(_example_defaults())
    assert read <= example, f"read by the code but not in .env.example: {sorted(read - example)}"
    assert example <= read | compose, f"in .env.example but read by nothing: {sorted(example - read - compose)}"


def _file_state(path: Path):
    return path.read_bytes() if path.exists() else None


@dataclass
class Stack:
    env: dict[str, str]
    data: Path
    api_port: int
    setup: subprocess.CompletedProcess

    def run(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        r = subprocess.run([str(SCRIPT), *args], check=False, env=self.env, capture_output=True, text=True,
                           stdin=subprocess.DEVNULL, timeout=timeout)
        if check and r.returncode != 0:
            pytest.fail(f"setup.sh {' '.join(args)} -> {r.returncode}\n"
                        f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}")
        return r

    def crm(self, *args: str) -> str:
        return subprocess.run([str(CRM), *args], env=self.env, capture_output=True, text=True,
                              check=True).stdout.strip()

    def owner(self) -> psycopg.Connection:
        return psycopg.connect(self.crm("db", "url"))

    def counts(self) -> dict[str, int]:
        """Rows of every table of schema crm, as the owner (BYPASSRLS: every brand)."""
        with self.owner() as conn:
            tables = [r[0] for r in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = 'crm' AND table_type = 'BASE TABLE' ORDER BY 1")]
            return {t: conn.execute(f'SELECT count(*) FROM crm."{t}"').fetchone()[0] for t in tables}

    def keys_file(self) -> Path:
        return self.data / "demo-keys.txt"


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    data = tmp_path_factory.mktemp("setup-script") / "data"
    env = dict(os.environ)
    env.update(_example_defaults())
    api_port = _free_port()
    env.update({
        "DATABASE_URL": "",  # embedded
        "CRM_DB_NAME": "crm",
        "CRM_SECRET_KEY": "setup-script-test-secret",
        "CRM_PG_SUPERUSER_PASSWORD": "setup-script-test-superuser",
        "CRM_DATA_DIR": str(data),
        "CRM_BACKUP_DIR": str(data / "respaldos"),
        "CRM_BACKUP_KEEP": "3",
        "CRM_PG_PORT": str(_free_port()),
        "CRM_API_HOST": "127.0.0.1",
        "CRM_API_PORT": str(api_port),
        "NOCODB_PORT": str(_free_port()),  # NocoDB too runs apart from a developer's stack
    })
    dot_env = _file_state(ROOT / ".env")
    st = Stack(env, data, api_port, setup=None)  # type: ignore[arg-type]
    try:
        st.setup = st.run("setup", check=False)
        yield st
    finally:
        st.run("stop", check=False)
    assert _file_state(ROOT / ".env") == dot_env, "setup.sh must not create or change the repo's .env"


def _health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=5) as r:
            return r.status
    except OSError:
        return 0


def test_setup_installs_seeds_and_starts(stack):
    r = stack.setup
    assert r.returncode == 0, f"setup failed\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    assert _health(stack.api_port) == 200
    assert f"http://127.0.0.1:{stack.api_port}/docs" in r.stdout

    keys = stack.keys_file()
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    lines = [ln for ln in keys.read_text().splitlines() if ln and not ln.startswith("#")]
    slugs = [ln.split("\t")[1] for ln in stack.crm("brands", "list").splitlines()]
    assert slugs, "the demo data has brands"
    assert any(ln.startswith("grupo (admin)") for ln in lines)
    assert sorted(ln.split()[0] for ln in lines if "(staff)" in ln) == sorted(slugs)
    for ln in lines:
        assert ln.split()[-1] in r.stdout  # printed for the developer

    # A second run is safe, quick, and prints the same keys.
    content = keys.read_text()
    started = time.monotonic()
    again = stack.run("setup")
    assert time.monotonic() - started < 60
    assert keys.read_text() == content
    for ln in lines:
        assert ln.split()[-1] in again.stdout
    assert stack.run("status").returncode == 0


def test_backup_reset_restore_gives_back_every_row(stack):
    assert (stack.data / "pg" / "PG_VERSION").exists(), "setup created the embedded cluster"
    stack.run("start", check=False)  # the API may be down: backup and restore work without it

    # Data the demo seed does not make, so a reset visibly loses it.
    stack.crm("brands", "create", EXTRA, "Prueba de respaldo")
    with stack.owner() as conn:
        marca_id = conn.execute("SELECT id FROM crm.marcas WHERE slug = %s", (EXTRA,)).fetchone()[0]
        conn.execute("INSERT INTO crm.clientes (marca_id, nombre, telefono) VALUES (%s, %s, %s)",
                     (marca_id, "Cliente del respaldo", "+56911112222"))
    before = stack.counts()
    assert before["marcas"] >= 1 and before["clientes"] >= 1

    r = stack.run("backup")
    dump = Path(r.stdout.strip().splitlines()[-1])
    assert dump.parent == stack.data / "respaldos"
    assert re.fullmatch(r"crm-\d{8}-\d{6}\.dump", dump.name)
    assert dump.is_file() and stat.S_IMODE(dump.stat().st_mode) == 0o600

    # reset without --yes and without a terminal: refused, nothing deleted
    r = stack.run("reset", check=False)
    assert r.returncode != 0 and "cancelado" in r.stderr
    assert stack.counts() == before

    stack.run("reset", "--yes")
    after_reset = stack.counts()
    assert after_reset["marcas"] == before["marcas"] - 1
    with stack.owner() as conn:
        assert conn.execute("SELECT 1 FROM crm.marcas WHERE slug = %s", (EXTRA,)).fetchone() is None

    # A file that is not a dump is refused, and the database is left alone.
    junk = stack.data / "no-es-un-respaldo.dump"
    junk.write_text("hola")
    r = stack.run("restore", str(junk), check=False)
    assert r.returncode != 0 and "no es un respaldo válido" in r.stderr
    r = stack.run("restore", str(stack.data / "no-existe.dump"), check=False)
    assert r.returncode != 0 and "no existe" in r.stderr
    assert stack.counts() == after_reset

    stack.run("restore", str(dump))
    assert stack.counts() == before

    # The extra brand's login role works again (password re-derived) and sees its own rows.
    with psycopg.connect(stack.crm("db", "url", "--brand", EXTRA)) as conn:
        assert conn.execute("SELECT slug FROM crm.marcas").fetchall() == [(EXTRA,)]
        assert conn.execute("SELECT count(*) FROM crm.clientes").fetchone()[0] == 1

    # Only the newest CRM_BACKUP_KEEP (3) backups stay.
    made = [Path(stack.run("backup").stdout.strip().splitlines()[-1]) for _ in range(3)]
    left = sorted(p.name for p in (stack.data / "respaldos").glob("crm-*.dump"))
    assert left == sorted(p.name for p in made)


def test_stop_then_status_fails_and_start_refuses_a_taken_port(stack):
    stack.run("stop")
    r = stack.run("status", check=False)
    assert r.returncode != 0
    assert "postgres: detenido" in r.stdout and "api:      detenida" in r.stdout

    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", stack.api_port))
        blocker.listen()
        r = stack.run("start", check=False)
    assert r.returncode != 0
    assert f"el puerto {stack.api_port} ya está en uso" in r.stderr
    assert not (stack.data / "run" / "api.pid").exists()
