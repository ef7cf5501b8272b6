"""Warming the API's connections at start-up (api/services/whatsapp_calentar.py): a real
conversation runs on each pool connection against the real PostgreSQL, and nothing of it
is kept."""

from __future__ import annotations

import asyncio
import dataclasses

import psycopg
from litestar.testing import TestClient
from sqlalchemy import text
from test_whatsapp_webhook import filas

from api import roles
from api.app import create_app
from api.db import Database
from api.services.whatsapp_calentar import ACTOR, calentar, telefono
from api.services.whatsapp_flujo import Catalogos

CONVERSACION = ["pedido", "confirmado", "estado", "menu", "saludo", "baja", "alerta"]


def _rastro(settings, marca_id, n):
    """What the warming customers of `n` connections could have left: customers, orders,
    interactions, replies, alerts, audit rows."""
    fonos = [telefono(i) for i in range(n)]
    return (filas(settings, marca_id, "SELECT count(*) FROM crm.clientes WHERE telefono = ANY(%s)", fonos)
            + filas(settings, marca_id, "SELECT count(*) FROM crm.salientes WHERE telefono = ANY(%s)", fonos)
            + filas(settings, marca_id, "SELECT count(*) FROM crm.interacciones WHERE id_externo LIKE "
                    "'calentamiento.%%'")
            + filas(settings, marca_id, "SELECT count(*) FROM crm.auditoria WHERE actor = %s", ACTOR)
            + filas(settings, marca_id, "SELECT count(*) FROM crm.pedido_estados WHERE actor = %s", ACTOR))


def test_each_connection_converses_and_everything_is_rolled_back(settings, tienda):
    async def calentar_tres():
        database = Database(dataclasses.replace(settings, db_pool_size=3))
        await database.open()
        try:
            catalogos = Catalogos()
            hechos = await calentar(database, catalogos, 3, marca_id=tienda.id)
            return hechos, tienda.id in catalogos._cache
        finally:
            await database.close()

    hechos, catalogo_cargado = asyncio.run(calentar_tres())
    assert hechos == [CONVERSACION] * 3, "the whole flow ran: order, confirmation, status, menu, ..."
    assert catalogo_cargado, "the brand's order parser is ready for the first real message"
    assert _rastro(settings, tienda.id, 3) == [(0,)] * 5


def test_the_api_warms_its_pool_before_taking_requests(settings, tienda):
    app = create_app(dataclasses.replace(settings, calentar=True, db_pool_size=2))
    assert not app.state.catalogos._cache
    with TestClient(app) as client:
        assert app.state.catalogos._cache, "a brand's catalog was read by the warming conversations"
        assert client.get("/api/health").status_code == 200
    assert _rastro(settings, tienda.id, 2) == [(0,)] * 5


def test_a_warming_held_up_by_a_lock_gives_up_and_leaves_nothing(settings, tienda):
    """A session holding the warming customer's lock would hold the API's start-up: after
    `limite` seconds the warming is abandoned (rolled back) and the pool works."""
    async def retenido():
        database = Database(dataclasses.replace(settings, db_pool_size=1))
        await database.open()
        async with await psycopg.AsyncConnection.connect(roles.admin_url(settings), autocommit=True) as adm:
            await adm.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))",
                              (f"whatsapp:{tienda.id}:{telefono(0)}",))
            try:
                hechos = await calentar(database, Catalogos(), 1, marca_id=tienda.id, limite=1.0)
                async with database.connection() as conn:
                    vivo = (await conn.execute(text("SELECT 1 AS uno"))).one().uno
            finally:
                await database.close()
        return hechos, vivo

    assert asyncio.run(retenido()) == ([], 1)
    assert _rastro(settings, tienda.id, 1) == [(0,)] * 5


def test_no_brand_to_converse_with_means_no_warming(settings):
    async def sin_marca():
        database = Database(dataclasses.replace(settings, db_pool_size=1))
        await database.open()
        try:
            return await calentar(database, Catalogos(), 1, marca_id=-1)
        finally:
            await database.close()

    assert asyncio.run(sin_marca()) == []
