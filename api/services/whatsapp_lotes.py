"""Inbound WhatsApp messages, processed in batches: many messages, one transaction.

Under load most of a message's cost is not its own work but what surrounds it: BEGIN,
the brand binding, the customer's lock, COMMIT, and a round trip for each step. Messages
that arrive while their queue is busy are therefore taken together: one transaction bound
to the brand takes every customer's lock at once (sorted, so two batches never wait on
each other in a cycle), then runs each message's flow (`whatsapp_flujo.procesar`, the same
code as alone) side by side on that transaction, their statements sent together
(`api/db_lote.py`). A message that arrives when its queue is idle goes alone, at once.

Rules that keep this the same as one transaction per message:
- A batch holds at most one message per customer; a customer's next message waits for
  the next batch, so a conversation's messages are handled in order.
- Each message's answer is given only after the batch commits.
- If anything in a batch fails (a statement, a deadlock, the commit), the batch is rolled
  back and each of its messages is redone alone, in its own transaction: one bad message
  never takes the others down, and its own error reaches its own webhook request.

Messages are queued per brand and provider. Up to `simultaneos` batches of one queue run at
once, on separate connections, so PostgreSQL works on one while the API prepares the next
and can use more than one core; whichever finishes takes everything that queued meanwhile.
A customer with a message in a running batch waits for it: their next message goes in a
later batch, never beside it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass, field

from sqlalchemy import text

from whatsapp.eventos import Mensaje

from ..db import Database
from ..db_lote import en_lote
from . import whatsapp_flujo
from .whatsapp_flujo import Canal, Catalogos

log = logging.getLogger("crm.whatsapp")

# One lock per customer (the same key `Database.transaction(bloqueo=...)` takes), in the
# order given: sorted by the caller.
_BLOQUEOS = text("SELECT count(pg_advisory_xact_lock(hashtextextended(k, 0))) "
                 "FROM unnest(CAST(:claves AS text[])) AS k")

_Item = tuple[Canal, Mensaje, asyncio.Future]


@dataclass
class _Cola:
    items: deque[_Item] = field(default_factory=deque)
    tareas: int = 0  # batches running
    en_curso: set[str] = field(default_factory=set)  # customers (phones) with a message in one


class Lotes:
    def __init__(self, database: Database, catalogos: Catalogos, *, simultaneos: int = 3,
                 maximo: int = 64) -> None:
        self.database, self.catalogos = database, catalogos
        self.simultaneos, self.maximo = simultaneos, maximo
        self._colas: dict[tuple[int, str], _Cola] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def procesar(self, canal: Canal, proveedor: str, m: Mensaje) -> str:
        """Handle one inbound message (in a batch or alone); what happened, as
        `whatsapp_flujo.procesar` says. Raises what processing it alone raised."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests): queues of the old one are gone
            self._loop, self._colas = loop, {}
        clave = (canal.marca_id, proveedor)
        cola = self._colas.setdefault(clave, _Cola())
        futuro = loop.create_future()
        cola.items.append((canal, m, futuro))
        if cola.tareas < self.simultaneos and m.telefono not in cola.en_curso:
            cola.tareas += 1
            asyncio.ensure_future(self._atender(clave, cola))
        return await futuro

    async def _atender(self, clave: tuple[int, str], cola: _Cola) -> None:
        try:
            while lote := self._tomar(cola):
                cola.en_curso.update(m.telefono for _, m, _ in lote)
                try:
                    if len(lote) == 1:
                        await self._solo(clave[1], lote[0])
                    else:
                        await self._en_lote(clave[0], clave[1], lote)
                finally:
                    cola.en_curso.difference_update(m.telefono for _, m, _ in lote)
                    for _, _, futuro in lote:  # only when cancelled midway
                        if not futuro.done():
                            futuro.cancel()
        finally:
            cola.tareas -= 1
            if cola.tareas == 0:  # only when cancelled (the server is stopping)
                for _, _, futuro in cola.items:
                    futuro.cancel()
                cola.items.clear()

    def _tomar(self, cola: _Cola) -> list[_Item]:
        """The oldest waiting messages, at most `maximo`, at most one per customer, none of
        a customer whose message is in a running batch."""
        lote: list[_Item] = []
        quedan: deque[_Item] = deque()
        telefonos = set(cola.en_curso)
        while cola.items:
            item = cola.items.popleft()
            if len(lote) < self.maximo and item[1].telefono not in telefonos:
                telefonos.add(item[1].telefono)
                lote.append(item)
            else:
                quedan.append(item)
        cola.items = quedan
        return lote

    async def _en_lote(self, marca_id: int, proveedor: str, lote: list[_Item]) -> None:
        bloqueos = sorted({whatsapp_flujo.bloqueo(canal, m) for canal, m, _ in lote})
        trabajos = [lambda db, canal=canal, m=m: whatsapp_flujo.procesar(db, canal, m, self.catalogos)
                    for canal, m, _ in lote]
        try:
            async with self.database.transaction(marca_id, f"whatsapp:{proveedor}") as conn:
                conn.diferir(_BLOQUEOS, {"claves": bloqueos})
                # The catalog, read (when stale) once for the batch rather than by each message.
                await self.catalogos.de(conn, marca_id)
                resultados = await en_lote(conn, trabajos)
        except Exception as e:  # noqa: BLE001 (whatever failed, each message is redone alone)
            log.warning("lote de %d mensajes de WhatsApp revertido (%s); se procesan uno a uno",
                        len(lote), e)
            await asyncio.gather(*(self._solo(proveedor, item) for item in lote))
            return
        for (_, _, futuro), resultado in zip(lote, resultados, strict=True):
            if not futuro.done():
                futuro.set_result(resultado)

    async def _solo(self, proveedor: str, item: _Item) -> None:
        canal, m, futuro = item
        try:
            async with self.database.transaction(canal.marca_id, f"whatsapp:{proveedor}",
                                                 whatsapp_flujo.bloqueo(canal, m)) as db:
                resultado = await whatsapp_flujo.procesar(db, canal, m, self.catalogos)
        except Exception as e:  # noqa: BLE001 (handed to the message's own request)
            if not futuro.done():
                futuro.set_exception(e)
            return
        if not futuro.done():
            futuro.set_result(resultado)
