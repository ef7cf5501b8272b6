"""db/schema.sql and db/migrations/ describe the same database.

Two scratch databases on the test server: one installed fresh from db/schema.sql, one
taken from truly empty through every migration (installer.ensure_roles +
installer.apply_pending). Their `pg_dump --schema-only` must match line for line, and
crm.migraciones must record the same versions.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import subprocess

import psycopg
import pytest

from api import installer, pg_embedded, roles


def _scratch(settings, tag: str) -> str:
    return f"crm_mig_{tag}_{os.getpid()}"


@pytest.fixture(scope="module")
def scratch(settings):
    names = {"fresh": _scratch(settings, "fresh"), "migrated": _scratch(settings, "migrated")}
    for name in names.values():
        installer.drop_database(settings, name)
        assert installer.create_database(settings, name) is True
    yield names
    for name in names.values():
        installer.drop_database(settings, name)
    with psycopg.connect(roles.with_database(roles.admin_url(settings), "postgres"), autocommit=True) as conn:
        left = conn.execute("SELECT datname FROM pg_database WHERE datname = ANY(%s)",
                            (list(names.values()),)).fetchall()
    assert left == []


def _url(settings, name: str) -> str:
    return roles.with_database(roles.admin_url(settings), name)


def _settings_for(settings, name: str):
    """The same server, another database: install() connects to admin_url(s)."""
    if settings.database_url:
        return dataclasses.replace(settings, database_url=_url(settings, name), db_name=name)
    return dataclasses.replace(settings, db_name=name)


_NOISE = re.compile(r"^(--.*|\\restrict .*|\\unrestrict .*|)$")


def schema_dump(settings, name: str) -> list[str]:
    r = subprocess.run([pg_embedded.tool("pg_dump"), "--schema-only", "--no-owner", "--dbname",
                        _url(settings, name)], check=False, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = [line.rstrip() for line in r.stdout.splitlines()]
    kept = [line for line in lines if not _NOISE.match(line)]
    assert any("CREATE TABLE crm.clientes" in line for line in kept), "el volcado no trae el esquema"
    assert len(kept) > 300, len(kept)
    return kept


def migraciones(settings, name: str) -> list[tuple]:
    with psycopg.connect(_url(settings, name), autocommit=True) as conn:
        return conn.execute("SELECT version, nombre FROM crm.migraciones ORDER BY version").fetchall()


def test_fresh_install_equals_migrated_install(settings, scratch):
    fresh, migrated = scratch["fresh"], scratch["migrated"]

    summary = installer.install(_settings_for(settings, fresh))
    assert "schema.sql" in summary

    with psycopg.connect(_url(settings, migrated)) as conn:
        assert installer.applied_versions(conn) is None  # truly empty: no crm.migraciones
        installer.ensure_roles(conn)
        summary = installer.apply_pending(conn)
        assert installer.applied_versions(conn) == {v for v, _, _ in installer.migrations()}
        # running it again applies nothing
        assert installer.apply_pending(conn) == "sin migraciones pendientes"
    assert all(path.name in summary for _, _, path in installer.migrations()), summary

    a, b = schema_dump(settings, fresh), schema_dump(settings, migrated)
    diff = "\n".join(difflib.unified_diff(a, b, "schema.sql", "migraciones", lineterm="", n=2))
    assert a == b, f"db/schema.sql y db/migrations/ difieren:\n{diff[:6000]}"

    expected = [(v, n) for v, n, _ in installer.migrations()]
    assert migraciones(settings, fresh) == migraciones(settings, migrated) == expected


def test_install_is_idempotent(settings, scratch):
    """`crm db init` runs again on an installed database: nothing pending, schema unchanged."""
    name = scratch["fresh"]
    s = _settings_for(settings, name)
    installer.install(s)  # installs when this test runs alone; otherwise already done
    before = schema_dump(settings, name)
    assert installer.install(s) == "sin migraciones pendientes"
    assert schema_dump(settings, name) == before


def test_migration_files_are_numbered_without_gaps():
    found = installer.migrations()
    assert found, "no hay migraciones en db/migrations/"
    versions = [v for v, _, _ in found]
    assert versions == list(range(1, len(versions) + 1)), versions
    with open(installer.SCHEMA_FILE) as f:
        schema = f.read()
    # schema.sql records the latest version it already contains
    recorded = {int(v) for v in re.findall(r"INSERT INTO crm\.migraciones \(version, nombre\) VALUES \((\d+),",
                                           schema)}
    assert max(recorded) == versions[-1]
