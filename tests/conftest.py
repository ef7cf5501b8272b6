"""Shared fixtures: a real PostgreSQL for every test.

By default the tests start their own embedded cluster under .data/test (port
CRM_TEST_PG_PORT, default 5434), apart from the development one. Set
CRM_TEST_DATABASE_URL to a superuser URL to run them against any other server; each
run works in its own database (crm_test_<pid>), dropped at the end.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
from contextlib import asynccontextmanager

import psycopg
import pytest
import uvicorn
from sqlalchemy import create_engine

from api import installer, roles
from api.config import ROOT
from api.config import settings as base_settings


def _test_settings():
    s = base_settings()
    db = f"crm_test_{os.getpid()}"
    url = os.environ.get("CRM_TEST_DATABASE_URL")
    if url:
        s = dataclasses.replace(s, database_url=roles.with_database(url, db), db_name=db)
    else:
        s = dataclasses.replace(s, database_url=None, db_name=db, data_dir=ROOT / ".data" / "test",
                                pg_port=int(os.environ.get("CRM_TEST_PG_PORT", "5434")))
    # Webhook secrets of the tests; no provider credentials, so nothing could ever be sent.
    return dataclasses.replace(s, secret_key="test-secret", pg_superuser_password="test-superuser",
                               rate_limit_per_minute=100_000, whatsapp_app_secret="test-app-secret",
                               whatsapp_verify_token="test-verify-token", whatsapp_access_token="",
                               twilio_account_sid="", twilio_auth_token="test-twilio-token",
                               public_base_url="", calentar=False)


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


def admin(settings) -> psycopg.Connection:
    """Superuser connection: sees every brand's rows, to check what was really written."""
    return psycopg.connect(roles.admin_url(settings), autocommit=True)


def counts(settings) -> dict[str, int]:
    """Rows of every table in schema crm, read as the superuser (no row-level security)."""
    with admin(settings) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'crm' ORDER BY tablename")]
        assert "clientes" in tables and "auditoria" in tables
        return {t: conn.execute(f"SELECT count(*) FROM crm.{t}").fetchone()[0] for t in tables}


@pytest.fixture(scope="session")
def api_engine(settings):
    engine = create_engine(roles.sqlalchemy_url(roles.role_url(roles.API, settings)))
    yield engine
    engine.dispose()


# ---------------------------------------------------------------- API fixtures
import itertools  # noqa: E402
import logging  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

from litestar.testing import TestClient  # noqa: E402
from sqlalchemy import text  # noqa: E402

from api.app import create_app  # noqa: E402
from api.services import claves, marcas  # noqa: E402

logging.getLogger("httpx").setLevel(logging.WARNING)
_serial = itertools.count(1)


@dataclass
class Brand:
    """A brand made for a test: its keys per role and a few rows of each kind."""
    id: int
    slug: str
    keys: dict[str, str]  # rol -> clear key
    ids: dict[str, int] = field(default_factory=dict)  # cliente, producto, pedido, interaccion

    def h(self, rol: str = "admin") -> dict[str, str]:
        return {"X-API-Key": self.keys[rol]}


def make_key(engine, marca_id, rol, limite=None) -> str:
    key, stmt, params = claves.insert_statement(marca_id, rol, "test", limite)
    with engine.begin() as conn:
        conn.execute(stmt, params)
    return key


def make_brand(settings, engine, prefix: str = "m") -> Brand:
    """A brand with keys of every role, one customer, product, order and interaction."""
    n = next(_serial)
    slug = f"{prefix}{os.getpid() % 10000}-{n}"
    with engine.begin() as conn:
        row = marcas.create(conn, settings, slug, f"Marca {slug}")
    brand = Brand(row["id"], slug, {r: make_key(engine, row["id"], r) for r in claves.ROLES})
    with engine.begin() as conn:
        conn.execute(text("SELECT set_config('app.marca_id', :m, true)"), {"m": str(brand.id)})
        ins = lambda sql, **p: conn.execute(text(sql), p).scalar_one()  # noqa: E731
        brand.ids["cliente"] = ins("INSERT INTO crm.clientes (nombre, telefono, email) VALUES "
                                   "(:n, :t, :e) RETURNING id", n=f"Cliente {slug}",
                                   t=f"+5698{n:07d}", e=f"c{n}@{slug}.cl")
        brand.ids["producto"] = ins("INSERT INTO crm.productos (sku, nombre, precio) VALUES "
                                    "('SKU1', 'Pollo asado', 12990) RETURNING id")
        brand.ids["pedido"] = ins("INSERT INTO crm.pedidos (cliente_id, canal) VALUES (:c, 'web') "
                                  "RETURNING id", c=brand.ids["cliente"])
        conn.execute(text("INSERT INTO crm.pedido_items (pedido_id, producto_id, cantidad) "
                          "VALUES (:p, :pr, 2)"), {"p": brand.ids["pedido"], "pr": brand.ids["producto"]})
        brand.ids["interaccion"] = ins(
            "INSERT INTO crm.interacciones (cliente_id, canal, direccion, tipo, contenido) "
            "VALUES (:c, 'whatsapp', 'entrante', 'mensaje', 'hola') RETURNING id", c=brand.ids["cliente"])
        brand.ids["canal"] = ins("INSERT INTO crm.canales (proveedor, identificador) VALUES ('meta', :i) "
                                 "RETURNING id", i=f"pnid-{slug}")
        brand.ids["conversacion"] = ins("INSERT INTO crm.conversaciones (cliente_id) VALUES (:c) RETURNING id",
                                        c=brand.ids["cliente"])
        brand.ids["alerta"] = ins("INSERT INTO crm.alertas (cliente_id, interaccion_id, motivo) "
                                  "VALUES (:c, :i, 'mensaje sin respuesta automática') RETURNING id",
                                  c=brand.ids["cliente"], i=brand.ids["interaccion"])
        brand.ids["plantilla"] = ins("INSERT INTO crm.plantillas (nombre, cuerpo, aprobada) "
                                     "VALUES ('bienvenida', 'Hola {{1}}', true) RETURNING id")
        brand.ids["saliente"] = ins(
            "INSERT INTO crm.salientes (cliente_id, canal_id, telefono, respuesta) "
            "VALUES (:c, :k, :t, '{\"tipo\": \"texto\", \"texto\": \"hola\"}') RETURNING id",
            c=brand.ids["cliente"], k=brand.ids["canal"], t=f"+5698{n:07d}")
    return brand


@pytest.fixture(scope="session")
def brand_a(settings, api_engine) -> Brand:
    return make_brand(settings, api_engine, "a")


@pytest.fixture(scope="session")
def brand_b(settings, api_engine) -> Brand:
    return make_brand(settings, api_engine, "b")


@pytest.fixture(scope="session")
def group_key(api_engine) -> str:
    return make_key(api_engine, None, "admin")


@pytest.fixture(scope="session")
def client(settings):
    """Real HTTP through Litestar's test client, on the test database."""
    with TestClient(create_app(settings)) as c:
        yield c


@asynccontextmanager
async def servidor_http(app):
    """The app served by uvicorn on a free local port, in the running event loop: real
    HTTP with requests truly in flight together. (Litestar's AsyncTestClient runs each
    request to completion in another thread before the next one starts.) Yields the base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on"))
    tarea = asyncio.ensure_future(server.serve())
    while not server.started:
        if tarea.done():
            tarea.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await tarea


@pytest.fixture
def tienda(settings, api_engine, client):
    """A brand with a Meta channel and a small chicken menu."""
    b = make_brand(settings, api_engine, "w")
    for sku, nombre, precio, alias in (("CUARTO", "Cuarto de pollo", 5990, ["cuarto"]),
                                       ("ENTERO", "Pollo entero", 15990, []),
                                       ("MEDIO", "Medio pollo", 8990, []),
                                       ("PAPAS", "Papas fritas", 2990, ["papas"]),
                                       ("BEBIDA", "Bebida 1.5 litros", 2490, ["bebida", "coca"])):
        r = client.post(f"/api/marcas/{b.slug}/productos", headers=b.h(),
                        json={"sku": sku, "nombre": nombre, "precio": precio, "alias": alias})
        assert r.status_code == 201, r.text
        b.ids[sku] = r.json()["id"]
    client.put(f"/api/marcas/{b.slug}/productos/{b.ids['producto']}", headers=b.h(), json={"activo": False})
    b.pnid = f"pnid-{b.slug}"
    return b
