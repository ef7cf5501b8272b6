"""The outbox's dispatch (api/services/salientes.py, despachar), as the worker runs it:
sending through Meta and Twilio, retries with growing waits, claims that never send a row
twice or write it, one customer's replies in order, a limit per brand, and the recording
sender when there are no credentials.

Meta's and Twilio's APIs cannot be reached from the tests: local HTTP servers stand in for
them (`ServidorFalso` of tests/test_whatsapp_envio.py, answering as the real APIs document)
and count every request they receive; the senders make real HTTP requests to them.

These tests use a database of their own (`outbox`): `despachar` sends what is due in every
brand, and the session database holds other tests' queued rows.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from conftest import admin, make_brand
from sqlalchemy import create_engine
from test_salientes import LISTA, TEXTO, aplicar, correr, encolar, estado, fila, nuevo_cliente, salientes_de
from test_whatsapp_envio import ACCOUNT_SID, AUTH_TOKEN, Peticion, ServidorFalso, respuesta_twilio

from api import installer, roles
from api.services import salientes
from whatsapp.grabador import EnviadorGrabador
from whatsapp.meta import EnviadorMeta
from whatsapp.salida import Respuesta
from whatsapp.twilio_canal import EnviadorTwilio

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
        conn.execute("CREATE FUNCTION public.prueba_version() RETURNS trigger LANGUAGE plpgsql "
                     "SECURITY DEFINER AS $$ BEGIN INSERT INTO public.prueba_versiones VALUES (NEW.id); RETURN NULL; END $$")
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
