"""`crm worker` (api/worker.py): the loop that sends the outbox, its graceful stop, and its death.

A local HTTP server stands in for Meta's Graph API (`ServidorFalso` of
tests/test_whatsapp_envio.py): the worker sends real HTTP requests to it. The worker runs
on a database of its own (it serves every brand of its database), once in-process and
once as the real `crm worker` command stopped with SIGTERM/SIGINT mid-batch or killed.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import re
import signal
import subprocess
import sys
import time
from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import create_engine
from test_salientes import LISTA, TEXTO, encolar, fila, nuevo_cliente
from test_salientes_despacho import despachar, en_cola, meta_en, respuesta_graph
from test_whatsapp_envio import ServidorFalso

from api import installer, roles, worker
from api.config import ROOT


@pytest.fixture(scope="module")
def base(settings):
    name = f"{settings.db_name}_worker"
    installer.drop_database(settings, name)
    installer.create_database(settings, name)
    installer.install(settings, database=name)
    s = dataclasses.replace(
        settings,
        database_url=roles.with_database(roles.admin_url(settings), name),
        db_name=name,
        db_pool_size=2,
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


def esperar(condicion, segundos: float = 15.0) -> None:
    limite = time.monotonic() + segundos
    while not condicion():
        assert time.monotonic() < limite, "la condición no se cumplió a tiempo"
        time.sleep(0.05)


def test_el_worker_envia_lo_que_llega_y_se_detiene(base, graph, caplog):
    s, engine = base
    s = dataclasses.replace(
        s, whatsapp_access_token="EAAG-token", whatsapp_graph_url=graph.url, worker_interval=0.05
    )
    marca, ids = en_cola(s, engine, 3)

    async def caso():
        detener = asyncio.Event()
        tarea = asyncio.create_task(worker.correr(s, detener))
        while sum(fila(s, i)["estado"] == "enviado" for i in ids) < 3:
            assert not tarea.done(), tarea
            await asyncio.sleep(0.05)
        # a reply queued while the worker idles goes out on its next look
        cliente, telefono = nuevo_cliente(s, marca.id, timedelta(minutes=1))
        ids.append(await asyncio.to_thread(encolar, s, marca, cliente, telefono, LISTA))
        while fila(s, ids[-1])["estado"] != "enviado":
            await asyncio.sleep(0.05)
        detener.set()
        await asyncio.wait_for(tarea, timeout=5)

    with caplog.at_level(logging.INFO, logger="crm"):
        asyncio.run(caso())
    assert len(graph.peticiones) == 4
    assert [fila(s, i)["proveedor"] for i in ids] == ["meta"] * 4
    lineas = [r.getMessage() for r in caplog.records if r.name == "crm.worker"]
    assert lineas[0].startswith("worker: iniciado") and lineas[-1] == "worker: detenido"
    lotes = [m for m in lineas if re.fullmatch(r"worker: \d+ enviados, \d+ para reintentar, \d+ fallidos", m)]
    assert sum(int(m.split()[1]) for m in lotes) == 4  # one line per batch that sent something


def test_el_worker_sobrevive_a_una_base_caida_y_sigue(base, graph, caplog):
    """A failed turn (here: the outbox is briefly unreadable to the API's role) is logged
    and retried; the worker keeps running."""
    s, engine = base
    s = dataclasses.replace(
        s, whatsapp_access_token="EAAG-token", whatsapp_graph_url=graph.url, worker_interval=0.02
    )
    _, (sid,) = en_cola(s, engine, 1)

    async def caso():
        with psycopg.connect(roles.role_url(roles.OWNER, s)) as conn:
            conn.execute("REVOKE SELECT ON crm.salientes FROM crm_api")
        try:
            detener = asyncio.Event()
            tarea = asyncio.create_task(worker.correr(s, detener))
            while not any("el turno falló" in r.getMessage() for r in caplog.records):
                assert not tarea.done(), tarea
                await asyncio.sleep(0.02)
        finally:
            with psycopg.connect(roles.role_url(roles.OWNER, s)) as conn:
                conn.execute("GRANT SELECT ON crm.salientes TO crm_api")
        while fila(s, sid)["estado"] != "enviado":
            assert not tarea.done(), tarea
            await asyncio.sleep(0.05)
        detener.set()
        await asyncio.wait_for(tarea, timeout=5)

    with caplog.at_level(logging.INFO, logger="crm"):
        asyncio.run(caso())
    assert len(graph.peticiones) == 1


def _entorno(s, graph) -> dict[str, str]:
    """The environment of a `crm worker` on the test database; every variable of
    .env.example set, so the developer's .env does not leak in."""
    env = dict(os.environ)
    for line in (ROOT / ".env.example").read_text().splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line)
        if m:
            env[m.group(1)] = ""
    env.update(
        {
            "DATABASE_URL": roles.admin_url(s),
            "CRM_SECRET_KEY": s.secret_key,
            "WHATSAPP_ACCESS_TOKEN": "EAAG-token",
            "WHATSAPP_GRAPH_URL": graph.url,
            "CRM_WORKER_INTERVAL": "0.05",
            "CRM_DB_POOL_SIZE": "2",
            "CRM_LOG_LEVEL": "info",
        }
    )
    return env


@pytest.mark.parametrize("senal", [signal.SIGTERM, signal.SIGINT])
def test_crm_worker_termina_el_lote_al_recibir_la_senal(base, graph, tmp_path, senal):
    s, engine = base
    _, ids = en_cola(s, engine, 2)
    graph.por_defecto = lambda p: (*respuesta_graph(p)[:2], 1.5)  # each send takes 1.5 s
    log = tmp_path / "worker.log"
    with open(log, "wb") as salida:
        proceso = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "worker"],
            cwd=ROOT,
            env=_entorno(s, graph),
            stdout=salida,
            stderr=subprocess.STDOUT,
        )
        try:
            esperar(lambda: len(graph.peticiones) == 2)  # the batch is in flight
            proceso.send_signal(senal)
            assert proceso.wait(timeout=15) == 0
        finally:
            if proceso.poll() is None:
                proceso.kill()
    texto = log.read_text()
    assert f"{senal.name} recibido; termina el turno en curso" in texto, texto
    # the batch in flight was finished and recorded before exiting
    assert [fila(s, i)["estado"] for i in ids] == ["enviado", "enviado"], texto
    assert "worker: 2 enviados, 0 para reintentar, 0 fallidos" in texto
    assert texto.rstrip().endswith("worker: detenido"), texto
    assert "Traceback" not in texto
    assert len(graph.peticiones) == 2


def test_un_worker_que_muere_suelta_sus_filas_al_instante(base, graph, tmp_path):
    """`crm worker` killed (SIGKILL) with a batch in flight: while it lives no other worker
    may take its rows; once it is gone its connection and its locks are too, so another
    worker sends them straight away (at least once: the dead one's sends were never
    recorded), not after a lease runs out."""
    s, engine = base
    _, ids = en_cola(s, engine, 2)
    graph.por_defecto = lambda p: (*respuesta_graph(p)[:2], 20)  # the provider hangs
    otro = ServidorFalso(respuesta_graph)
    try:
        with open(tmp_path / "worker.log", "wb") as salida:
            proceso = subprocess.Popen([sys.executable, "-m", "api.cli", "worker"], cwd=ROOT,
                                       env=_entorno(s, graph), stdout=salida, stderr=subprocess.STDOUT)
            try:
                esperar(lambda: len(graph.peticiones) == 2)  # the batch is in flight
                assert despachar(s, {"meta": meta_en(otro)}) == 0  # its rows are held
                proceso.kill()
                proceso.wait(timeout=15)
            finally:
                if proceso.poll() is None:
                    proceso.kill()
        esperar(lambda: despachar(s, {"meta": meta_en(otro)}) == 2 or len(otro.peticiones) == 2)
        assert [fila(s, i)["estado"] for i in ids] == ["enviado", "enviado"]
        assert len(otro.peticiones) == 2 and all(fila(s, i)["intentos"] == 1 for i in ids)
    finally:
        otro.cerrar()


def test_crm_worker_sin_credenciales_lo_dice(base, graph, tmp_path):
    s, engine = base
    _, (sid,) = en_cola(s, engine, 1, TEXTO)
    env = _entorno(s, graph) | {"WHATSAPP_ACCESS_TOKEN": ""}
    proceso = subprocess.Popen(
        [sys.executable, "-m", "api.cli", "worker"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        esperar(lambda: fila(s, sid)["estado"] == "enviado")
        proceso.send_signal(signal.SIGTERM)
        salida, _ = proceso.communicate(timeout=15)
    finally:
        if proceso.poll() is None:
            proceso.kill()
    assert proceso.returncode == 0
    assert "sin credenciales de meta ni de twilio" in salida and "NO llegan a los clientes" in salida
    assert fila(s, sid)["proveedor"] == "grabador" and graph.peticiones == []
