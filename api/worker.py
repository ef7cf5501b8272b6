"""`crm worker`: sends the outbox (crm.salientes) in a loop, and refreshes the report
summaries the dashboards read (resumen.refrescar()) every CRM_REFRESCO_RESUMEN seconds.

Each turn sends what is due in every brand (`salientes.despachar_lote`); when nothing was
due it sleeps `CRM_WORKER_INTERVAL` seconds, and after a turn with no full batch anywhere
it waits `PAUSA_PARCIAL` (a reply waits at most that long more; a backlog none). SIGTERM
or SIGINT stop it after the batch in progress. Several workers may run at once: rows are
claimed with SKIP LOCKED, never sent twice. It connects as the API's role, so row-level
security applies to it too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal

from .config import Settings
from .db import Database
from .services import resumen, salientes

log = logging.getLogger("crm.worker")

MAX_PAUSA_ERROR = 30.0  # seconds between retries while the database is unreachable
PAUSA_PARCIAL = 0.1  # seconds between turns that found some replies due but no full batch


async def correr(s: Settings, detener: asyncio.Event | None = None, limite: int = salientes.LIMITE) -> None:
    """Run until `detener` is set (or SIGTERM/SIGINT arrives)."""
    detener = detener or asyncio.Event()
    loop = asyncio.get_running_loop()
    senales = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread
            loop.add_signal_handler(sig, _al_recibir, sig, detener)
            senales.append(sig)
    database = Database(s)
    envs = salientes.enviadores(s)
    try:
        await database.open()
        log.info(
            "worker: iniciado (intervalo %.2f s, hasta %s mensajes por marca y turno)",
            s.worker_interval,
            limite,
        )
        errores = 0
        proximo_resumen = 0.0  # the summaries are refreshed at start, then every refresco_resumen
        while not detener.is_set():
            if loop.time() >= proximo_resumen:
                proximo_resumen = loop.time() + s.refresco_resumen
                try:
                    log.info("worker: resúmenes de reportes: %s", "; ".join(await resumen.refrescar(database)))
                except Exception:
                    log.exception("worker: no se pudieron refrescar los resúmenes de reportes")
            try:
                lote = await salientes.despachar_lote(database, envs, limite)
            except Exception:
                errores += 1
                pausa = min(s.worker_interval * 2**errores, MAX_PAUSA_ERROR)
                log.exception("worker: el turno falló; se reintenta en %.1f s", pausa)
                await _esperar(detener, pausa)
                continue
            errores = 0
            if not lote.intentados:
                await _esperar(detener, s.worker_interval)
                continue
            log.info("worker: %s", lote)
            if not lote.lleno:
                # A trickle, not a backlog: gather a little before the next turn, so a steady
                # stream costs a few claims a second and not hundreds (each turn claims in
                # every brand).
                await _esperar(detener, min(PAUSA_PARCIAL, s.worker_interval))
    finally:
        for sig in senales:
            loop.remove_signal_handler(sig)
        await salientes.cerrar(envs)
        await database.close()
        log.info("worker: detenido")


def _al_recibir(sig: signal.Signals, detener: asyncio.Event) -> None:
    if not detener.is_set():
        log.info("worker: %s recibido; termina el turno en curso y se detiene", sig.name)
    detener.set()


async def _esperar(detener: asyncio.Event, segundos: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(detener.wait(), timeout=segundos)


def configurar_logs(s: Settings) -> None:
    nivel = {"trace": "DEBUG", "critical": "CRITICAL"}.get(s.log_level.lower(), s.log_level.upper())
    logging.basicConfig(
        level=getattr(logging, nivel, logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("twilio.http_client").setLevel(logging.WARNING)


def main(s: Settings) -> int:
    configurar_logs(s)
    asyncio.run(correr(s))
    return 0
