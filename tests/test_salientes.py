"""The outbox (api/services/salientes.py): the 24-hour rule when queueing and delivery
statuses applied forward only. The dispatch the worker runs: tests/test_salientes_despacho.py.

Everything runs on a real PostgreSQL as the API's role, bound to one brand, exactly as
the webhook and the worker do. Meta's and Twilio's APIs cannot be reached from the tests:
local HTTP servers stand in for them (`ServidorFalso` of tests/test_whatsapp_envio.py,
answering as the real APIs document) and count every request they receive; the senders
make real HTTP requests to them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from datetime import timedelta
from typing import Any

import msgspec
import psycopg
import pytest
from conftest import admin, make_brand

from api import roles
from api.db import Database
from api.services import salientes
from whatsapp.eventos import Estado
from whatsapp.salida import Opcion, Respuesta

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
