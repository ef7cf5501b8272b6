"""The outbox (api/services/salientes.py): the 24-hour rule when queueing, delivery
statuses applied forward only, and the dispatch the worker runs.

Everything runs on a real PostgreSQL as the API's role, bound to one brand, exactly as
the webhook and the worker do. Meta's and Twilio's APIs cannot be reached from the tests:
local HTTP servers stand in for them (`ServidorFalso` of tests/test_whatsapp_envio.py,
answering as the real APIs document) and count every request they receive; the senders
make real HTTP requests to them.

The dispatch tests use a database of their own (`outbox`): `despachar` sends what is due
in every brand, and the session database holds other tests' queued rows.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import threading
from datetime import timedelta
from typing import Any

import msgspec
import psycopg
import pytest
from conftest import admin, make_brand
from sqlalchemy import create_engine
from test_whatsapp_envio import ACCOUNT_SID, AUTH_TOKEN, Peticion, ServidorFalso, respuesta_twilio

from api import installer, roles
from api.db import Database
from api.services import salientes
from whatsapp.eventos import Estado
from whatsapp.grabador import EnviadorGrabador
from whatsapp.meta import EnviadorMeta
from whatsapp.salida import Opcion, Respuesta
from whatsapp.twilio_canal import EnviadorTwilio

TEXTO = Respuesta(tipo="texto", texto="¡Hola! Tu pedido va en camino 🛵")
LISTA = Respuesta(tipo="lista", texto="¿Qué te gustaría?", opciones=(Opcion(id="p1", titulo="Pollo"),))
BOTONES = Respuesta(tipo="botones", texto="¿Confirmas?", opciones=(Opcion(id="si", titulo="Sí"),))
PLANTILLA = Respuesta(tipo="plantilla", texto="Hola Camila", plantilla="bienvenida", parametros=("Camila",))
_telefonos = itertools.count(1)


# ---------------------------------------------------------------- helpers


def correr(s, fn, pool: int = 2) -> Any:
    """Run `fn(database)` on a fresh pool of the API's role, in its own event loop."""

    async def main():
        database = Database(dataclasses.replace(s, db_pool_size=pool))
        await database.open()
        try:
            return await fn(database)
        finally:
            await database.close()

    return asyncio.run(main())


def en_marca(s, marca_id: int, fn) -> Any:
    """Run `fn(conn)` in one transaction bound to the brand (as the webhook does)."""

    async def dentro(database):
        async with database.transaction(marca_id, "test") as conn:
            return await fn(conn)

    return correr(s, dentro)


def nuevo_cliente(s, marca_id: int, entrante_hace: timedelta | None) -> tuple[int, str]:
    """A customer whose last inbound WhatsApp message was `entrante_hace` ago (None: never
    wrote), written as the API's role bound to the brand."""
    telefono = f"+5697{next(_telefonos):07d}"
    with psycopg.connect(roles.role_url(roles.API, s)) as conn:
        conn.execute("SELECT set_config('app.marca_id', %s, true)", (str(marca_id),))
        cliente = conn.execute(
            "INSERT INTO crm.clientes (nombre, telefono) VALUES ('Camila', %s) RETURNING id", (telefono,)
        ).fetchone()[0]
        if entrante_hace is not None:
            conn.execute(
                "INSERT INTO crm.interacciones (cliente_id, canal, direccion, tipo, contenido, created_at) "
                "VALUES (%s, 'whatsapp', 'entrante', 'mensaje', 'hola', now() - %s)",
                (cliente, entrante_hace),
            )
            # an older web message and a recent email do not open WhatsApp's window
            conn.execute(
                "INSERT INTO crm.interacciones (cliente_id, canal, direccion, tipo, contenido) "
                "VALUES (%s, 'email', 'entrante', 'mensaje', 'hola por email')",
                (cliente,),
            )
    return cliente, telefono


def encolar(s, marca, cliente: int, telefono: str, respuesta: Respuesta, canal: int | None = None) -> int:
    return en_marca(
        s,
        marca.id,
        lambda db: salientes.encolar(
            db,
            cliente_id=cliente,
            canal_id=canal or marca.ids["canal"],
            telefono=telefono,
            respuesta=respuesta,
        ),
    )


def fila(s, saliente_id: int) -> dict:
    with admin(s) as conn:
        conn.row_factory = psycopg.rows.dict_row
        return conn.execute(
            "SELECT *, extract(epoch FROM proximo_intento - updated_at) AS espera FROM crm.salientes "
            "WHERE id = %s",
            (saliente_id,),
        ).fetchone()


def salientes_de(s, marca_id: int) -> list[dict]:
    with admin(s) as conn:
        conn.row_factory = psycopg.rows.dict_row
        return conn.execute(
            "SELECT * FROM crm.salientes WHERE marca_id = %s ORDER BY id", (marca_id,)
        ).fetchall()


def interacciones_salientes(s, cliente: int) -> list[str]:
    with admin(s) as conn:
        return [
            r[0]
            for r in conn.execute(
                "SELECT contenido FROM crm.interacciones WHERE cliente_id = %s AND direccion = 'saliente' "
                "AND canal = 'whatsapp' ORDER BY id",
                (cliente,),
            )
        ]


# ================================================================ encolar: the 24-hour rule


@pytest.fixture(scope="module")
def marca(settings, api_engine):
    return make_brand(settings, api_engine, "sal")


@pytest.mark.parametrize("respuesta", [TEXTO, LISTA, BOTONES, PLANTILLA])
def test_dentro_de_la_ventana_todo_se_encola(settings, marca, respuesta):
    cliente, telefono = nuevo_cliente(settings, marca.id, timedelta(hours=23, minutes=50))
    sid = encolar(settings, marca, cliente, telefono, respuesta)
    r = fila(settings, sid)
    assert (r["estado"], r["error"], r["intentos"], r["telefono"]) == ("en_cola", None, 0, telefono)
    assert (r["cliente_id"], r["canal_id"], r["marca_id"]) == (cliente, marca.ids["canal"], marca.id)
    # the reply travels as JSON and comes back as the same Respuesta
    assert msgspec.convert(r["respuesta"], Respuesta) == respuesta
    assert interacciones_salientes(settings, cliente) == [respuesta.texto]


def test_en_respuesta_a_guarda_la_interaccion_entrante(settings, marca):
    sid = en_marca(
        settings,
        marca.id,
        lambda db: salientes.encolar(
            db,
            cliente_id=marca.ids["cliente"],
            canal_id=marca.ids["canal"],
            telefono="+56911112222",
            respuesta=TEXTO,
            en_respuesta_a=marca.ids["interaccion"],
        ),
    )
    assert fila(settings, sid)["en_respuesta_a"] == marca.ids["interaccion"]


@pytest.mark.parametrize("respuesta", [TEXTO, LISTA, BOTONES])
@pytest.mark.parametrize("hace", [timedelta(hours=24, minutes=1), timedelta(days=30), None])
def test_fuera_de_la_ventana_un_mensaje_libre_falla_sin_enviarse(settings, marca, respuesta, hace):
    cliente, telefono = nuevo_cliente(settings, marca.id, hace)
    sid = encolar(settings, marca, cliente, telefono, respuesta)
    r = fila(settings, sid)
    assert r["estado"] == "fallido" and r["intentos"] == 0 and r["id_externo"] is None
    assert r["error"].startswith("fuera de la ventana de 24 horas: solo plantillas aprobadas")
    assert "no ha escrito en las últimas 24 horas" in r["error"]
    assert interacciones_salientes(settings, cliente) == []  # it never reached the customer


def test_fuera_de_la_ventana_una_plantilla_aprobada_se_encola(settings, marca):
    cliente, telefono = nuevo_cliente(settings, marca.id, timedelta(days=3))
    sid = encolar(settings, marca, cliente, telefono, PLANTILLA)  # make_brand approved `bienvenida`
    assert (fila(settings, sid)["estado"], fila(settings, sid)["error"]) == ("en_cola", None)
    assert interacciones_salientes(settings, cliente) == [PLANTILLA.texto]


@pytest.mark.parametrize("nombre", ["borrador_sin_aprobar", "no_existe", None])
def test_fuera_de_la_ventana_una_plantilla_no_aprobada_o_inexistente_falla(settings, marca, nombre):
    with psycopg.connect(roles.role_url(roles.API, settings)) as conn:
        conn.execute("SELECT set_config('app.marca_id', %s, true)", (str(marca.id),))
        conn.execute(
            "INSERT INTO crm.plantillas (nombre, cuerpo, aprobada) "
            "VALUES ('borrador_sin_aprobar', 'Hola', false) ON CONFLICT DO NOTHING"
        )
    cliente, telefono = nuevo_cliente(settings, marca.id, None)
    sid = encolar(
        settings, marca, cliente, telefono, Respuesta(tipo="plantilla", texto="Hola", plantilla=nombre)
    )
    r = fila(settings, sid)
    assert r["estado"] == "fallido"
    assert r["error"].startswith("fuera de la ventana de 24 horas: solo plantillas aprobadas")
    assert f"«{nombre or ''}» no existe o no está aprobada" in r["error"]


def test_la_plantilla_aprobada_de_otra_marca_no_sirve(settings, api_engine, marca):
    otra = make_brand(settings, api_engine, "sal")  # it has its own approved `bienvenida`
    with psycopg.connect(roles.role_url(roles.API, settings)) as conn:
        conn.execute("SELECT set_config('app.marca_id', %s, true)", (str(otra.id),))
        conn.execute(
            "INSERT INTO crm.plantillas (nombre, cuerpo, aprobada) VALUES ('solo_de_la_otra', 'x', true)"
        )
    cliente, telefono = nuevo_cliente(settings, marca.id, None)
    sid = encolar(
        settings,
        marca,
        cliente,
        telefono,
        Respuesta(tipo="plantilla", texto="x", plantilla="solo_de_la_otra"),
    )
    assert fila(settings, sid)["estado"] == "fallido"


def test_un_canal_de_otra_marca_es_rechazado_sin_escribir_nada(settings, api_engine, marca, brand_b):
    cliente, telefono = nuevo_cliente(settings, marca.id, timedelta(minutes=1))
    antes = len(salientes_de(settings, marca.id))
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        encolar(settings, marca, cliente, telefono, TEXTO, canal=brand_b.ids["canal"])
    assert len(salientes_de(settings, marca.id)) == antes
    assert interacciones_salientes(settings, cliente) == []


# ================================================================ aplicar_estado


def estado(id_externo: str, que: str, **kw) -> Estado:
    from datetime import UTC, datetime

    return Estado(
        proveedor="meta",
        id_externo=id_externo,
        destino="pnid",
        estado=que,
        ocurrido_en=datetime.now(UTC),
        **kw,
    )


def enviado(s, marca, id_externo: str) -> int:
    """An outbox row the worker already sent, with the provider's id."""
    cliente, telefono = nuevo_cliente(s, marca.id, timedelta(minutes=5))
    sid = encolar(s, marca, cliente, telefono, TEXTO)
    with admin(s) as conn:
        conn.execute(
            "UPDATE crm.salientes SET estado = 'enviado', id_externo = %s, proveedor = 'meta', "
            "enviado_en = now() WHERE id = %s",
            (id_externo, sid),
        )
    return sid


def aplicar(s, marca_id: int, e: Estado) -> int:
    return en_marca(s, marca_id, lambda db: salientes.aplicar_estado(db, e))


def test_los_estados_avanzan(settings, marca):
    sid = enviado(settings, marca, "wamid.avanza")
    assert aplicar(settings, marca.id, estado("wamid.avanza", "sent")) == 0  # already enviado
    assert aplicar(settings, marca.id, estado("wamid.avanza", "delivered")) == 1
    assert fila(settings, sid)["estado"] == "entregado"
    assert aplicar(settings, marca.id, estado("wamid.avanza", "read")) == 1
    assert fila(settings, sid)["estado"] == "leido"


def test_estados_desordenados_no_retroceden(settings, marca):
    sid = enviado(settings, marca, "wamid.desorden")
    assert aplicar(settings, marca.id, estado("wamid.desorden", "read")) == 1
    assert aplicar(settings, marca.id, estado("wamid.desorden", "delivered")) == 0
    assert aplicar(settings, marca.id, estado("wamid.desorden", "sent")) == 0
    r = fila(settings, sid)
    assert (r["estado"], r["error"]) == ("leido", None)


def test_el_trigger_tambien_impide_retroceder(settings, marca):
    # aplicar_estado skips stale statuses itself; the table's trigger guards other writers
    sid = enviado(settings, marca, "wamid.trigger")
    aplicar(settings, marca.id, estado("wamid.trigger", "read"))
    with psycopg.connect(roles.role_url(roles.API, settings)) as conn:
        conn.execute("SELECT set_config('app.marca_id', %s, true)", (str(marca.id),))
        conn.execute("UPDATE crm.salientes SET estado = 'enviado' WHERE id = %s", (sid,))
    assert fila(settings, sid)["estado"] == "leido"


def test_fallido_es_final_y_guarda_su_error(settings, marca):
    sid = enviado(settings, marca, "wamid.falla")
    falla = estado(
        "wamid.falla", "failed", error_codigo="131026", error_mensaje="Message undeliverable: not on WhatsApp"
    )
    assert aplicar(settings, marca.id, falla) == 1
    for tarde in ("sent", "delivered", "read"):
        aplicar(settings, marca.id, estado("wamid.falla", tarde))
    assert (
        aplicar(settings, marca.id, estado("wamid.falla", "failed", error_codigo="1", error_mensaje="otro"))
        == 0
    )
    r = fila(settings, sid)
    assert (r["estado"], r["error"]) == ("fallido", "131026: Message undeliverable: not on WhatsApp")


def test_fallido_sin_detalle(settings, marca):
    sid = enviado(settings, marca, "wamid.sin-detalle")
    aplicar(settings, marca.id, estado("wamid.sin-detalle", "failed", error_codigo="30008"))
    assert fila(settings, sid)["error"] == "30008"


def test_id_desconocido_no_actualiza_nada(settings, marca):
    assert aplicar(settings, marca.id, estado("wamid.no-existe", "delivered")) == 0


def test_el_id_de_otra_marca_no_se_toca(settings, marca, brand_b):
    sid = enviado(settings, marca, "wamid.de-mi-marca")
    assert aplicar(settings, brand_b.id, estado("wamid.de-mi-marca", "read")) == 0
    assert fila(settings, sid)["estado"] == "enviado"


# ================================================================ despachar

_wamids = itertools.count(1)


def respuesta_graph(p: Peticion) -> tuple[int, Any, float]:
    """Graph API's answer to POST /{version}/{phone_number_id}/messages, one wamid each."""
    to = p.json()["to"]
    wamid = f"wamid.PRUEBA{next(_wamids):06d}"
    return (
        200,
        {
            "messaging_product": "whatsapp",
            "contacts": [{"input": to, "wa_id": to.lstrip("+")}],
            "messages": [{"id": wamid}],
        },
        0.02,
    )


@pytest.fixture(scope="module")
def outbox(settings):
    """A database of its own (despachar serves every brand of its database)."""
    name = f"{settings.db_name}_outbox"
    installer.drop_database(settings, name)
    installer.create_database(settings, name)
    installer.install(settings, database=name)
    s = dataclasses.replace(
        settings, database_url=roles.with_database(roles.admin_url(settings), name), db_name=name
    )
    engine = create_engine(roles.sqlalchemy_url(roles.role_url(roles.API, s)))
    yield s, engine
    engine.dispose()
    installer.drop_database(settings, name)


@pytest.fixture
def graph():
    servidor = ServidorFalso(respuesta_graph)
    yield servidor
    servidor.cerrar()


@pytest.fixture
def api_twilio():
    servidor = ServidorFalso(respuesta_twilio)
    yield servidor
    servidor.cerrar()


@pytest.fixture
def limpia(outbox):
    """The outbox database with nothing queued: every earlier row is set aside."""
    s, engine = outbox
    with admin(s) as conn:
        conn.execute(
            "UPDATE crm.salientes SET estado = 'fallido', error = 'apartado por la prueba' "
            "WHERE estado = 'en_cola'"
        )
    return s, engine


def meta_en(servidor: ServidorFalso) -> EnviadorMeta:
    return EnviadorMeta("EAAG-token-de-prueba", base_url=servidor.url, version="v21.0", timeout=2.0)


def twilio_en(servidor: ServidorFalso) -> EnviadorTwilio:
    return EnviadorTwilio(ACCOUNT_SID, AUTH_TOKEN, base_url=servidor.url, timeout=2.0)


def despachar(s, envs, limite: int = 50) -> int:
    return correr(s, lambda db: salientes.despachar(db, envs, limite), pool=4)


def en_cola(s, engine, n: int, respuesta: Respuesta = TEXTO) -> tuple[Any, list[int]]:
    """A new brand (Meta channel `pnid-<slug>`) with `n` replies queued to `n` customers."""
    marca = make_brand(s, engine, "out")
    with admin(s) as conn:  # make_brand queues one row for its own tests: not this one's
        conn.execute("UPDATE crm.salientes SET estado = 'fallido' WHERE marca_id = %s", (marca.id,))
    ids = []
    for _ in range(n):
        cliente, telefono = nuevo_cliente(s, marca.id, timedelta(minutes=1))
        ids.append(encolar(s, marca, cliente, telefono, respuesta))
    return marca, ids


def rutas(servidor: ServidorFalso) -> list[str]:
    return [p.ruta for p in servidor.peticiones]


def test_despachar_envia_por_meta_y_guarda_el_wamid(limpia, graph):
    s, engine = limpia
    marca, ids = en_cola(s, engine, 3)
    assert despachar(s, {"meta": meta_en(graph)}) == 3
    assert rutas(graph) == [f"/v21.0/pnid-{marca.slug}/messages"] * 3
    enviados = {p.json()["to"] for p in graph.peticiones}
    wamids = set()
    for sid in ids:
        r = fila(s, sid)
        assert (r["estado"], r["proveedor"], r["intentos"], r["error"]) == ("enviado", "meta", 1, None)
        assert r["id_externo"].startswith("wamid.PRUEBA") and r["enviado_en"] is not None
        assert r["telefono"] in enviados
        wamids.add(r["id_externo"])
    assert len(wamids) == 3
    assert graph.peticiones[0].json()["text"] == {"body": TEXTO.texto}
    # nothing left: a second pass attempts nothing and calls nobody
    assert despachar(s, {"meta": meta_en(graph)}) == 0 and len(graph.peticiones) == 3
    # and the wamid is what the delivery statuses find
    assert aplicar(s, marca.id, estado(fila(s, ids[0])["id_externo"], "delivered")) == 1


def test_despachar_por_twilio(limpia, api_twilio):
    s, engine = limpia
    marca = make_brand(s, engine, "out")
    with admin(s) as conn:
        conn.execute("UPDATE crm.salientes SET estado = 'fallido' WHERE marca_id = %s", (marca.id,))
    with psycopg.connect(roles.role_url(roles.API, s)) as conn:
        conn.execute("SELECT set_config('app.marca_id', %s, true)", (str(marca.id),))
        numero = f"+5622{900000 + marca.id % 100000:07d}"
        canal = conn.execute(
            "INSERT INTO crm.canales (proveedor, identificador, numero) "
            "VALUES ('twilio', %s, %s) RETURNING id",
            (numero, numero),
        ).fetchone()[0]
    cliente, telefono = nuevo_cliente(s, marca.id, timedelta(hours=1))
    sid = encolar(s, marca, cliente, telefono, LISTA, canal=canal)
    assert despachar(s, {"meta": EnviadorGrabador(), "twilio": twilio_en(api_twilio)}) == 1
    form = api_twilio.peticiones[0].formulario()
    assert (form["From"], form["To"]) == ([f"whatsapp:{numero}"], [f"whatsapp:{telefono}"])
    assert form["Body"] == ["¿Qué te gustaría?\n\n1. Pollo"]
    r = fila(s, sid)
    assert (r["estado"], r["proveedor"], r["id_externo"]) == (
        "enviado",
        "twilio",
        "SM0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a",
    )


def test_un_500_se_reintenta_con_espera_creciente_y_al_octavo_falla(limpia, graph):
    s, engine = limpia
    graph.por_defecto = lambda p: (500, {"error": {"message": "An unknown error occurred", "code": 1}}, 0.0)
    _, (sid,) = en_cola(s, engine, 1)
    envs = {"meta": meta_en(graph)}
    for intento in range(1, salientes.MAX_INTENTOS):
        assert despachar(s, envs) == 1
        r = fila(s, sid)
        assert (r["estado"], r["intentos"], r["proveedor"]) == ("en_cola", intento, "meta")
        assert r["error"] == "1: An unknown error occurred"
        assert r["espera"] == 2**intento  # proximo_intento = now() + 2**intentos seconds
        assert despachar(s, envs) == 0  # not due yet: nobody is called
        assert len(graph.peticiones) == intento
        with admin(s) as conn:  # time passes
            conn.execute("UPDATE crm.salientes SET proximo_intento = now() WHERE id = %s", (sid,))
    assert despachar(s, envs) == 1
    r = fila(s, sid)
    assert (r["estado"], r["intentos"]) == ("fallido", salientes.MAX_INTENTOS)
    assert r["error"] == f"1: An unknown error occurred (tras {salientes.MAX_INTENTOS} intentos)"
    assert len(graph.peticiones) == salientes.MAX_INTENTOS
    assert despachar(s, envs) == 0


def test_la_espera_tiene_tope():
    assert [salientes.espera(n) for n in (1, 2, 3, 8)] == [2, 4, 8, 256]
    assert salientes.espera(12) == salientes.espera(40) == 3600


def test_un_rechazo_falla_de_inmediato(limpia, graph):
    s, engine = limpia
    graph.responder(
        400,
        {
            "error": {
                "message": "(#131026) Message Undeliverable.",
                "type": "OAuthException",
                "code": 131026,
                "error_data": {"details": "The recipient phone number is not a WhatsApp number."},
            }
        },
    )
    _, (sid,) = en_cola(s, engine, 1)
    assert despachar(s, {"meta": meta_en(graph)}) == 1
    r = fila(s, sid)
    assert (r["estado"], r["intentos"], r["id_externo"]) == ("fallido", 1, None)
    assert r["error"] == (
        "131026: (#131026) Message Undeliverable.: The recipient phone number is not a WhatsApp number."
    )
    assert despachar(s, {"meta": meta_en(graph)}) == 0 and len(graph.peticiones) == 1


def test_una_respuesta_imposible_falla_sin_llamar(limpia, graph):
    s, engine = limpia
    _, (sid,) = en_cola(s, engine, 1, Respuesta(tipo="botones", texto="¿?"))  # buttons without options
    assert despachar(s, {"meta": meta_en(graph)}) == 1
    r = fila(s, sid)
    assert r["estado"] == "fallido" and r["error"].startswith("respuesta_invalida: botones: 0 opciones")
    assert graph.peticiones == []


def test_dos_despachos_a_la_vez_envian_cada_fila_una_vez(limpia, graph):
    s, engine = limpia
    marca, ids = en_cola(s, engine, 24)
    contados: list[int] = []
    listos = threading.Barrier(2)

    def trabajador():  # a worker process of its own: its own pool and event loop
        async def turnos(db):
            envs, total = {"meta": meta_en(graph)}, 0
            listos.wait()
            while n := await salientes.despachar(db, envs, limite=5):
                total += n
            return total

        contados.append(correr(s, turnos, pool=4))

    hilos = [threading.Thread(target=trabajador) for _ in range(2)]
    for h in hilos:
        h.start()
    for h in hilos:
        h.join(timeout=60)
    assert sum(contados) == 24
    telefonos = [p.json()["to"] for p in graph.peticiones]
    assert len(telefonos) == 24 and len(set(telefonos)) == 24  # each row sent exactly once
    filas = salientes_de(s, marca.id)
    assert sorted(r["id"] for r in filas if r["estado"] == "enviado") == ids
    assert all(r["intentos"] == 1 for r in filas if r["estado"] == "enviado")


def test_una_fila_tomada_por_otro_trabajador_se_salta_y_nada_queda_bloqueado(limpia, graph):
    """Another worker's session holds one row's advisory lock: this one sends the others,
    then that one once it is released; no lock of the outbox outlives a batch."""
    s, engine = limpia
    _, ids = en_cola(s, engine, 3)
    envs = {"meta": meta_en(graph)}
    with admin(s) as otro:
        otro.execute("SELECT pg_advisory_lock(%s, %s)", (salientes.CLASE_BLOQUEO, ids[1] % 2**31))
        assert despachar(s, envs) == 2
        assert [fila(s, i)["estado"] for i in ids] == ["enviado", "en_cola", "enviado"]
        otro.execute("SELECT pg_advisory_unlock_all()")
    assert despachar(s, envs) == 1 and fila(s, ids[1])["estado"] == "enviado"
    assert all(fila(s, i)["intentos"] == 1 for i in ids)
    with admin(s) as conn:
        assert conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s",
                            (salientes.CLASE_BLOQUEO,)).fetchone()[0] == 0


@pytest.fixture
def versiones(limpia):
    """How many times each outbox row is updated while the test runs, counted by a trigger
    of the test's own (dropped after it)."""
    s, _ = limpia
    with admin(s) as conn:
        conn.execute("CREATE TABLE public.prueba_versiones (id bigint)")
        conn.execute("CREATE FUNCTION public.prueba_version() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER "
                     "AS $$ BEGIN INSERT INTO public.prueba_versiones VALUES (NEW.id); RETURN NULL; END $$")
        conn.execute("CREATE TRIGGER prueba_version AFTER UPDATE ON crm.salientes FOR EACH ROW "
                     "EXECUTE FUNCTION public.prueba_version()")
    try:
        def contar(sid: int) -> int:
            with admin(s) as conn:
                return conn.execute("SELECT count(*) FROM public.prueba_versiones WHERE id = %s",
                                    (sid,)).fetchone()[0]
        yield contar
    finally:
        with admin(s) as conn:
            conn.execute("DROP TRIGGER prueba_version ON crm.salientes")
            conn.execute("DROP FUNCTION public.prueba_version()")
            conn.execute("DROP TABLE public.prueba_versiones")


def test_reclamar_no_escribe_la_fila(limpia, graph, versiones):
    """Claiming writes nothing: a row sent has two versions in its life (queued, sent), not
    three. Sending is delivery progress, which the row keeps and the audit trail does not
    copy (tests/test_audit.py): the trail has the row's insert alone."""
    s, engine = limpia
    marca, (sid,) = en_cola(s, engine, 1)
    assert despachar(s, {"meta": meta_en(graph)}) == 1
    assert versiones(sid) == 1
    with admin(s) as conn:
        acciones = [r[0] for r in conn.execute(
            "SELECT accion FROM crm.auditoria WHERE marca_id = %s AND tabla = 'salientes' AND registro_id = %s "
            "ORDER BY id", (marca.id, sid))]
    assert acciones == ["INSERT"]


def test_los_mensajes_a_un_cliente_salen_en_orden(limpia, graph):
    s, engine = limpia
    marca, (primero,) = en_cola(s, engine, 1)
    r = fila(s, primero)
    segundo = encolar(s, marca, r["cliente_id"], r["telefono"], LISTA)
    graph.responder(503, {"error": {"message": "Service unavailable", "code": 2}})
    envs = {"meta": meta_en(graph)}
    assert despachar(s, envs) == 1  # only the first: the second waits behind it
    assert (fila(s, primero)["estado"], fila(s, segundo)["estado"]) == ("en_cola", "en_cola")
    assert despachar(s, envs) == 0  # the first is waiting for its retry: the second too
    with admin(s) as conn:
        conn.execute("UPDATE crm.salientes SET proximo_intento = now() WHERE id = %s", (primero,))
    assert despachar(s, envs) == 1 and fila(s, primero)["estado"] == "enviado"
    assert despachar(s, envs) == 1 and fila(s, segundo)["estado"] == "enviado"
    assert [p.json()["type"] for p in graph.peticiones] == ["text", "text", "interactive"]


def test_el_limite_es_por_marca(limpia, graph):
    s, engine = limpia
    _, ids_a = en_cola(s, engine, 3)
    _, ids_b = en_cola(s, engine, 2)
    assert despachar(s, {"meta": meta_en(graph)}, limite=2) == 4
    assert [fila(s, i)["estado"] for i in ids_a] == ["enviado", "enviado", "en_cola"]
    assert [fila(s, i)["estado"] for i in ids_b] == ["enviado", "enviado"]
    assert despachar(s, {"meta": meta_en(graph)}, limite=2) == 1


def test_sin_credenciales_se_graba_y_no_se_envia(limpia, graph, api_twilio, caplog):
    s, engine = limpia
    sin = dataclasses.replace(
        s,
        whatsapp_access_token="",
        twilio_account_sid="",
        twilio_auth_token="",
        whatsapp_graph_url=graph.url,
        twilio_api_url=api_twilio.url,
    )
    with caplog.at_level("WARNING", logger="crm.salientes"):
        envs = salientes.enviadores(sin)
    assert {n: e.nombre for n, e in envs.items()} == {"meta": "grabador", "twilio": "grabador"}
    aviso = [r.getMessage() for r in caplog.records if r.name == "crm.salientes"]
    assert len(aviso) == 1 and "meta ni de twilio" in aviso[0] and "NO llegan a los clientes" in aviso[0]
    _, ids = en_cola(s, engine, 2)
    assert despachar(s, envs) == 2
    for sid in ids:
        r = fila(s, sid)
        assert (r["estado"], r["proveedor"]) == ("enviado", "grabador")
        assert r["id_externo"].startswith("grabado-")
    assert graph.peticiones == [] and api_twilio.peticiones == []
    assert len(envs["meta"].enviados) == 2


def test_enviadores_con_credenciales(settings, caplog):
    con = dataclasses.replace(
        settings,
        whatsapp_access_token="EAAG-token",
        twilio_account_sid=ACCOUNT_SID,
        twilio_auth_token=AUTH_TOKEN,
        twilio_api_url="http://127.0.0.1:9",
    )
    with caplog.at_level("INFO", logger="crm.salientes"):
        envs = salientes.enviadores(con)
    assert isinstance(envs["meta"], EnviadorMeta) and isinstance(envs["twilio"], EnviadorTwilio)
    assert envs["twilio"]._client.api.base_url == "http://127.0.0.1:9"
    assert not [r for r in caplog.records if r.levelname == "WARNING"]
    solo_meta = dataclasses.replace(con, twilio_auth_token="")
    with caplog.at_level("WARNING", logger="crm.salientes"):
        envs = salientes.enviadores(solo_meta)
    assert envs["meta"].nombre == "meta" and envs["twilio"].nombre == "grabador"
    assert any("sin credenciales de twilio" in r.getMessage() for r in caplog.records)
