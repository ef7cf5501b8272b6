"""Shared fixtures: a real PostgreSQL for every test.

By default the tests start their own embedded cluster under .data/test (port
CRM_TEST_PG_PORT, default 5434), apart from the development one. Set
CRM_TEST_DATABASE_URL to a superuser URL to run them against any other server; each
run works in its own database (crm_test_<pid>), dropped at the end.
"""

from __future__ import annotations

import dataclasses
import os

import psycopg
import pytest
from sqlalchemy import create_engine

from api import installer, pg_embedded, roles
from api.config import ROOT, settings as base_settings


def _test_settings():
    s = base_settings()
    db = f"crm_test_{os.getpid()}"
    url = os.environ.get("CRM_TEST_DATABASE_URL")
    if url:
        s = dataclasses.replace(s, database_url=roles.with_database(url, db), db_name=db)
    else:
        s = dataclasses.replace(s, database_url=None, db_name=db, data_dir=ROOT / ".data" / "test",
                                pg_port=int(os.environ.get("CRM_TEST_PG_PORT", "5434")))
    return dataclasses.replace(s, secret_key="test-secret", pg_superuser_password="test-superuser",
                               rate_limit_per_minute=100_000)


@pytest.fixture(scope="session")
def settings():
    s = _test_settings()
    if s.embedded:
        s.data_dir.mkdir(parents=True, exist_ok=True)
    installer.ensure_server(s)
    installer.drop_database(s)
    installer.create_database(s)
    installer.install(s)
    yield s
    installer.drop_database(s)


@pytest.fixture(scope="session")
def admin_url(settings):
    return roles.admin_url(settings)


def connect(settings, role: str, **kw) -> psycopg.Connection:
    """A psycopg connection logged in as `role` (owner, API, executive, a brand)."""
    return psycopg.connect(roles.role_url(role, settings), **kw)


@pytest.fixture(scope="session")
def api_engine(settings):
    engine = create_engine(roles.sqlalchemy_url(roles.role_url(roles.API, settings)))
    yield engine
    engine.dispose()
