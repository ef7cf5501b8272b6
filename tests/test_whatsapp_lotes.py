"""Inbound WhatsApp messages in batches (api/services/whatsapp_lotes.py, api/db_lote.py):
several messages in one transaction, with exactly the outcome each would have alone.

Real HTTP to the app served by uvicorn (requests truly in flight together), a real
PostgreSQL. To make a batch happen on
purpose, a test holds one customer's advisory lock from another session: that customer's
message waits in its transaction, the next messages queue up behind it, and when the lock
is released they go together."""

from __future__ import annotations

import asyncio
import inspect
import logging
from contextlib import asynccontextmanager

import httpx
import psycopg
import pytest
from conftest import servidor_http
from test_whatsapp_webhook import entrega, filas, firma, texto

from api import roles
from api.app import create_app
from api.db import Database
from api.db_lote import LoteFallido, en_lote
from api.routes.webhooks import Canales


def _app(settings):
    app = create_app(settings)
    app.state.lotes.simultaneos = 1  # one batch at a time, so the messages of a test meet in one
    return app


async def _post(c, pnid, fono, cuerpo):
    b = entrega(pnid, [texto(fono, cuerpo)])
    return await c.post("/api/webhooks/whatsapp", content=b, timeout=30,
                        headers={"Content-Type": "application/json", "X-Hub-Signature-256": firma(b)})


async def _esperar(condicion, que: str, limite: float = 10.0):
    for _ in range(int(limite / 0.02)):
        hecho = condicion()
        if await hecho if inspect.isawaitable(hecho) else hecho:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"no ocurrió: {que}")


def _en_cola(app) -> int:
    """Messages waiting in the app's queues (not yet in a batch)."""
    return sum(len(cola.items) for cola in app.state.lotes._colas.values())


@asynccontextmanager
async def _con_bloqueo(settings, app, clave: str):
    """The app served over HTTP while another session holds the advisory lock `clave` (a
    customer's). Yields the client, `bloqueados()` (how many advisory lock requests wait)
    and `soltar()`. The lock is released on leaving even after a failure, before the server
    stops (it waits for its requests)."""
    async with await psycopg.AsyncConnection.connect(roles.admin_url(settings), autocommit=True) as adm, \
            servidor_http(app) as url, httpx.AsyncClient(base_url=url) as c:
        await adm.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", (clave,))

        async def bloqueados() -> int:
            cur = await adm.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")
            return (await cur.fetchone())[0]

        async def soltar() -> None:
            await adm.execute("SELECT pg_advisory_unlock_all()")

        try:
            yield c, bloqueados, soltar
        finally:
            await soltar()


async def _retenidos(settings, tienda, primero: tuple[str, str], resto: list[tuple[str, str]]):
    """Send `primero` while its customer's lock is held elsewhere, then `resto` (which queue up
    behind it), then release the lock. Returns the answers, `primero`'s first."""
    app = _app(settings)
    async with _con_bloqueo(settings, app, f"whatsapp:{tienda.id}:{primero[0]}") as (c, bloqueados, soltar):
        primera = asyncio.ensure_future(_post(c, tienda.pnid, *primero))
        await _esperar(bloqueados, "el primer mensaje espera el bloqueo de su cliente")
        demas = [asyncio.ensure_future(_post(c, tienda.pnid, *m)) for m in resto]
        await _esperar(lambda: _en_cola(app) == len(resto), "los demás mensajes esperan en la cola")
        await soltar()
        return await asyncio.gather(primera, *demas)


def _transacciones(settings, tienda, fonos):
    """The transaction (xmin) that wrote each customer's inbound interactions."""
    rows = filas(settings, tienda.id, "SELECT c.telefono, i.xmin::text FROM crm.interacciones i "
                 "JOIN crm.clientes c ON c.marca_id = i.marca_id AND c.id = i.cliente_id "
                 "WHERE i.marca_id = {m} AND i.direccion = 'entrante' AND c.telefono = ANY(%s)", list(fonos))
    return dict(rows)


def test_queued_messages_go_in_one_transaction_with_each_ones_outcome(settings, tienda):
    primero = ("+56987651000", "hola")
    resto = [(f"+5698765100{i}", m) for i, m in enumerate(
        ["quiero 2 cuartos de pollo", "menú", "estado", "baja", "algo que nadie entiende", "una bebida"], 1)]
    respuestas = asyncio.run(_retenidos(settings, tienda, primero, resto))

    assert [r.status_code for r in respuestas] == [200] * 7
    assert [r.json() for r in respuestas] == [{"saludo": 1}, {"pedido": 1}, {"menu": 1}, {"estado": 1},
                                              {"baja": 1}, {"alerta": 1}, {"pedido": 1}]
    xmin = _transacciones(settings, tienda, [f for f, _ in [primero, *resto]])
    assert len({xmin[f] for f, _ in resto}) == 1, "the queued messages were one batch"
    assert xmin[primero[0]] != xmin[resto[0][0]]
    pedidos = filas(settings, tienda.id, "SELECT c.telefono, p.total, p.estado FROM crm.pedidos p JOIN crm.clientes c "
                    "ON c.marca_id = p.marca_id AND c.id = p.cliente_id WHERE p.marca_id = {m} "
                    "AND c.telefono = ANY(%s) ORDER BY 1", [f for f, _ in resto])
    assert pedidos == [("+56987651001", 2 * 5990, "pendiente"), ("+56987651006", 2490, "pendiente")]
    assert filas(settings, tienda.id, "SELECT opt_out_marketing FROM crm.clientes WHERE marca_id = {m} "
                 "AND telefono = '+56987651004'") == [(True,)]
    assert filas(settings, tienda.id, "SELECT count(*) FROM crm.alertas a JOIN crm.clientes c ON c.marca_id = "
                 "a.marca_id AND c.id = a.cliente_id WHERE a.marca_id = {m} AND c.telefono = '+56987651005'") == [(1,)]
    # one reply each, every write audited with the webhook as actor
    assert filas(settings, tienda.id, "SELECT count(*) FROM crm.salientes WHERE marca_id = {m} AND telefono = ANY(%s)",
                 [f for f, _ in [primero, *resto]]) == [(7,)]
    assert filas(settings, tienda.id, "SELECT DISTINCT actor FROM crm.auditoria WHERE marca_id = {m} "
                 "AND tabla = 'interacciones' AND despues->>'contenido' = 'menú'") == [("whatsapp:meta",)]


def test_a_customers_messages_are_never_in_one_batch_and_keep_their_order(settings, tienda):
    """Queued together, one customer's order and its confirmation still happen in order."""
    primero = ("+56987652000", "hola")
    fono = "+56987652001"
    resto = [(fono, "quiero un pollo entero"), ("+56987652002", "hola"), (fono, "sí"), (fono, "estado")]
    respuestas = asyncio.run(_retenidos(settings, tienda, primero, resto))

    assert [r.json() for r in respuestas] == [{"saludo": 1}, {"pedido": 1}, {"saludo": 1}, {"confirmado": 1},
                                              {"estado": 1}]
    xmin = filas(settings, tienda.id, "SELECT i.contenido, i.xmin::text FROM crm.interacciones i JOIN crm.clientes c "
                 "ON c.marca_id = i.marca_id AND c.id = i.cliente_id WHERE i.marca_id = {m} "
                 "AND i.direccion = 'entrante' AND c.telefono = %s ORDER BY i.id", fono)
    assert [x[0] for x in xmin] == ["quiero un pollo entero", "sí", "estado"]
    assert len({x[1] for x in xmin}) == 3, "each in its own batch"
    assert filas(settings, tienda.id, "SELECT p.total, p.estado FROM crm.pedidos p JOIN crm.clientes c ON "
                 "c.marca_id = p.marca_id AND c.id = p.cliente_id WHERE p.marca_id = {m} AND c.telefono = %s",
                 fono) == [(15990, "confirmado")]
    textos = [r[0]["texto"] for r in filas(settings, tienda.id, "SELECT respuesta FROM crm.salientes WHERE "
                                                               "marca_id = {m} AND telefono = %s ORDER BY id", fono)]
    assert "¿Lo confirmas?" in textos[0] and "confirmado" in textos[1] and "está confirmado" in textos[2]


def test_a_customer_in_a_running_batch_waits_while_others_go_beside_it(settings, tienda):
    """Two batches may run at once; a customer's second message waits for the first even
    then, while another customer's message goes at once in the free one."""
    fono, otro = "+56987653001", "+56987653002"

    async def escenario():
        app = create_app(settings)
        app.state.lotes.simultaneos = 2
        async with _con_bloqueo(settings, app, f"whatsapp:{tienda.id}:{fono}") as (c, bloqueados, soltar):
            pedido = asyncio.ensure_future(_post(c, tienda.pnid, fono, "quiero un pollo entero"))
            await _esperar(bloqueados, "the order waits for its customer's lock")
            confirmacion = asyncio.ensure_future(_post(c, tienda.pnid, fono, "sí"))
            await _esperar(lambda: _en_cola(app) == 1, "the confirmation waits in the queue")
            saludo = await _post(c, tienda.pnid, otro, "hola")  # the free batch takes it now
            retenidos = (pedido.done(), confirmacion.done(), await bloqueados() == 1)
            await soltar()
            return saludo, retenidos, await asyncio.gather(pedido, confirmacion)

    saludo, retenidos, (pedido, confirmacion) = asyncio.run(escenario())
    assert saludo.json() == {"saludo": 1}
    assert retenidos == (False, False, True), "only the order waited on the lock; the confirmation never joined it"
    assert [pedido.json(), confirmacion.json()] == [{"pedido": 1}, {"confirmado": 1}]
    assert filas(settings, tienda.id, "SELECT p.estado FROM crm.pedidos p JOIN crm.clientes c ON c.marca_id = "
                 "p.marca_id AND c.id = p.cliente_id WHERE p.marca_id = {m} AND c.telefono = %s", fono) == \
        [("confirmado",)]


@pytest.fixture
def falla_con_fallar(settings):
    """A trigger that makes recording an inbound message reading 'fallar aquí' fail."""
    with psycopg.connect(roles.admin_url(settings), autocommit=True) as conn:
        conn.execute("""
            CREATE FUNCTION crm.test_fallar() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
              IF NEW.contenido = 'fallar aquí' THEN RAISE EXCEPTION 'falla de prueba'; END IF;
              RETURN NEW;
            END $$;
            CREATE TRIGGER test_fallar BEFORE INSERT ON crm.interacciones
              FOR EACH ROW EXECUTE FUNCTION crm.test_fallar();""")
    try:
        yield
    finally:
        with psycopg.connect(roles.admin_url(settings), autocommit=True) as conn:
            conn.execute("DROP TRIGGER test_fallar ON crm.interacciones; DROP FUNCTION crm.test_fallar()")


class _Avisos(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.mensajes: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.mensajes.append(record.getMessage())


def test_one_failing_message_does_not_take_its_batch_down(settings, tienda, falla_con_fallar):
    primero = ("+56987653000", "hola")
    resto = [("+56987653001", "menú"), ("+56987653002", "fallar aquí"), ("+56987653003", "quiero papas")]
    avisos = _Avisos()  # on the logger itself: the app's start-up replaces the root's handlers
    logging.getLogger("crm.whatsapp").addHandler(avisos)
    try:
        respuestas = asyncio.run(_retenidos(settings, tienda, primero, resto))
    finally:
        logging.getLogger("crm.whatsapp").removeHandler(avisos)

    assert [r.status_code for r in respuestas] == [200, 200, 500, 200]
    assert respuestas[1].json() == {"menu": 1} and respuestas[3].json() == {"pedido": 1}
    assert any("lote de 3 mensajes de WhatsApp revertido" in m for m in avisos.mensajes), avisos.mensajes
    # the failing message wrote nothing (not even its new customer); the others, each alone
    assert filas(settings, tienda.id, "SELECT count(*) FROM crm.clientes WHERE marca_id = {m} "
                 "AND telefono = '+56987653002'") == [(0,)]
    xmin = _transacciones(settings, tienda, ["+56987653001", "+56987653003"])
    assert len(xmin) == 2 and len(set(xmin.values())) == 2
    assert filas(settings, tienda.id, "SELECT count(*) FROM crm.salientes WHERE marca_id = {m} "
                 "AND telefono = ANY(%s)", ["+56987653001", "+56987653002", "+56987653003"]) == [(2,)]


def test_two_api_processes_with_one_customers_messages_create_one_customer(settings, tienda):
    """Two apps stand for two API processes: their queues are separate, so only the
    customer's advisory lock in PostgreSQL keeps the two messages apart."""
    fono = "+56987654000"

    async def dos():
        async with servidor_http(create_app(settings)) as url_a, servidor_http(create_app(settings)) as url_b, \
                httpx.AsyncClient(base_url=url_a) as a, httpx.AsyncClient(base_url=url_b) as b:
            return await asyncio.gather(_post(a, tienda.pnid, fono, "quiero 2 cuartos de pollo"),
                                        _post(b, tienda.pnid, fono, "quiero un pollo entero"))

    assert sorted(next(iter(r.json())) for r in asyncio.run(dos())) == ["pedido", "pedido"]
    assert filas(settings, tienda.id, "SELECT count(*) FROM crm.clientes WHERE marca_id = {m} AND telefono = %s",
                 fono) == [(1,)]
    assert filas(settings, tienda.id, "SELECT count(*) FROM crm.pedidos p JOIN crm.clientes c ON c.marca_id = "
                 "p.marca_id AND c.id = p.cliente_id WHERE p.marca_id = {m} AND c.telefono = %s", fono) == [(2,)]


def test_en_lote_runs_each_coroutine_on_one_transaction_and_undoes_all_on_any_error(settings, tienda):
    async def probar():
        database = Database(settings)
        await database.open()
        try:
            async def escribe(db, n):
                db.diferir("INSERT INTO crm.clientes (nombre, telefono) VALUES (:n, :t)",
                           {"n": f"lote-prueba-{n}", "t": f"+5698765500{n:02d}"})
                return (await db.execute("SELECT txid_current() AS t")).one().t

            async with database.transaction(tienda.id, "prueba") as conn:
                txids = await en_lote(conn, [lambda db, n=n: escribe(db, n) for n in range(5)])
            assert len(set(txids)) == 1

            async def rompe(db):
                await db.execute("SELECT 1")
                raise ValueError("error propio de la corrutina")

            with pytest.raises(LoteFallido, match="error propio"):
                async with database.transaction(tienda.id, "prueba") as conn:
                    await en_lote(conn, [lambda db: escribe(db, 10), rompe, lambda db: escribe(db, 11)])
        finally:
            await database.close()

    asyncio.run(probar())
    assert filas(settings, tienda.id, "SELECT nombre FROM crm.clientes WHERE marca_id = {m} AND nombre LIKE "
                 "'lote-prueba-%%' ORDER BY nombre") == [(f"lote-prueba-{n}",) for n in range(5)]


def test_concurrent_lookups_of_one_channel_share_one_query(settings, tienda):
    """When the cached channel expires under load, one request reads it again; the others
    wait for that answer instead of each taking a connection for the same query."""

    class Contando:
        def __init__(self, database: Database) -> None:
            self.database, self.lecturas = database, 0

        def connection(self):
            self.lecturas += 1
            return self.database.connection()

    async def probar():
        database = Database(settings)
        await database.open()
        try:
            contando, canales = Contando(database), Canales(ttl=0)  # every lookup finds it expired
            primera = await asyncio.gather(*[canales.de(contando, "meta", tienda.pnid) for _ in range(20)])
            segunda = await asyncio.gather(*[canales.de(contando, "meta", tienda.pnid) for _ in range(20)])
            return primera + segunda, contando.lecturas
        finally:
            await database.close()

    canales_leidos, lecturas = asyncio.run(probar())
    assert {c.marca_id for c in canales_leidos} == {tienda.id}
    assert lecturas == 2
