"""Warming the API's database connections before it takes requests.

A PostgreSQL backend is slow the first time it touches a table: it loads the descriptions
of the table and its indexes, compiles each trigger function for that table (PL/pgSQL
keeps one compiled copy per function and table, in each backend), and plans every
statement from scratch. Measured on the WhatsApp ingest bench: a message on a fresh
connection took 14-28 ms against 5-10 ms later, and right after a restart under load the
first second held about half of the run's requests slower than 100 ms.

So at start-up every connection the pool opened runs a short conversation through the real
flow (`whatsapp_flujo.procesar`): an order, its confirmation, the status, the menu, a
greeting, an opt-out and a message for a person. Each connection does it in a transaction
that is always rolled back, as a customer of its own that no real number can be
(+56 0…: no Chilean number starts with 0). Nothing it writes is ever visible or kept;
what stays is the warmed caches, the brand's order parser, and the identity numbers those
inserts drew (as any rolled-back insert draws them).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from datetime import UTC, datetime

from sqlalchemy import text

from whatsapp.eventos import Mensaje

from ..db import Database
from . import whatsapp_flujo
from .whatsapp_flujo import Canal, Catalogos

log = logging.getLogger("crm.api")

ACTOR = "calentamiento"
_MARCAS = text("SELECT id, nombre, zona_horaria, settings FROM crm.marcas ORDER BY id")
_CANAL_Y_PRODUCTO = text("""
    SELECT (SELECT id FROM crm.canales WHERE activo ORDER BY id LIMIT 1) AS canal_id,
           (SELECT nombre FROM crm.productos WHERE activo ORDER BY id LIMIT 1) AS producto""")


class _Deshacer(Exception):
    """Ends a warming transaction: the block raises it, `transaction()` rolls back."""


def telefono(n: int) -> str:
    """The warming customer of this process's connection `n`: E.164-shaped, never a real
    number, and another API process's are others (they never wait on each other)."""
    return f"+5600{os.getpid() % 10**6:06d}{n:03d}"


async def _marca(database: Database, marca_id: int | None) -> tuple[Canal, str] | None:
    """The brand to converse with (`marca_id`, else the first with an active channel and an
    active product): its channel and a product name."""
    async with database.connection() as conn:
        marcas = (await conn.execute(_MARCAS)).all()
    for m in marcas:
        if marca_id is not None and m.id != marca_id:
            continue
        async with database.transaction(m.id, ACTOR) as db:
            row = (await db.execute(_CANAL_Y_PRODUCTO)).one()
        if row.canal_id is not None and row.producto is not None:
            return Canal(m.id, row.canal_id, m.nombre, m.zona_horaria, m.settings), row.producto
    return None


async def _conversar(database: Database, catalogos: Catalogos, canal: Canal, producto: str, n: int) -> list[str]:
    fono = telefono(n)
    textos = [f"2 {producto}", "sí", "estado", "menú", "hola", "baja", "calentamiento sin intención"]
    hechos: list[str] = []
    try:
        async with database.transaction(canal.marca_id, ACTOR,
                                        whatsapp_flujo.bloqueo(canal, _mensaje(fono, "", n, 0))) as db:
            for i, t in enumerate(textos):
                hechos.append(await whatsapp_flujo.procesar(db, canal, _mensaje(fono, t, n, i), catalogos))
            raise _Deshacer
    except _Deshacer:
        pass
    return hechos


def _mensaje(fono: str, texto: str, n: int, i: int) -> Mensaje:
    return Mensaje(proveedor="meta", id_externo=f"calentamiento.{time.time_ns()}.{n}.{i}", destino="",
                   telefono=fono, tipo="texto", recibido_en=datetime.now(UTC),
                   nombre_perfil="Calentamiento", texto=texto)


async def calentar(database: Database, catalogos: Catalogos, conexiones: int,
                   marca_id: int | None = None, limite: float = 15.0) -> list[list[str]]:
    """Warm `conexiones` pool connections at once (each held by its own conversation, so
    each is a different one). Returns what each conversation's messages came to (as
    `whatsapp_flujo.procesar` says); none when no brand has a channel and a product yet.
    A failure, or taking longer than `limite` seconds (a lock held elsewhere), is logged
    and never stops the API from starting."""
    t0 = time.monotonic()
    try:
        elegida = await _marca(database, marca_id)
        if elegida is None:
            return []
        canal, producto = elegida
        hechos = await asyncio.wait_for(asyncio.gather(
            *(_conversar(database, catalogos, canal, producto, n) for n in range(conexiones))), limite)
    except Exception as e:  # noqa: BLE001 (a cold start is slower, never broken)
        log.warning("no se pudieron preparar las conexiones: %r", e)
        return []
    log.info("%d conexiones preparadas en %.0f ms (%s)", len(hechos), 1000 * (time.monotonic() - t0),
             ", ".join(hechos[0]))
    return hechos
