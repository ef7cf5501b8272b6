"""One transaction shared by several coroutines, with their statements sent together.

Each coroutine runs its own sequence of statements (`execute`, `diferir`), written as if
it had the transaction to itself. Whenever every coroutine still running is waiting for
the database, what they asked for travels in one pipeline, in the order it was asked:
a batch of N coroutines that each need three statements costs three round trips, not 3N.
BEGIN, the brand binding and COMMIT are paid once per batch.

The coroutines must not depend on each other's writes (the WhatsApp batches hold at most
one message per customer). If any statement fails, PostgreSQL aborts the whole
transaction: every coroutine still waiting gets `LoteFallido`, the transaction is rolled
back, and the caller decides what to do (the WhatsApp batches redo each message alone).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from sqlalchemy.sql.elements import TextClause

from .db import Conn, Result, _query


class LoteFallido(RuntimeError):
    """A statement of the batch failed: the shared transaction is aborted."""


class ConnLote:
    """What a coroutine of the batch sees: the interface of `Conn` (`execute`, `diferir`).
    Savepoints are not offered: one coroutine's rollback would undo the others' work."""

    __slots__ = ("_lote",)

    def __init__(self, lote: _Lote) -> None:
        self._lote = lote

    def diferir(self, statement: TextClause | str, params: dict[str, Any] | None = None) -> None:
        self._lote.pedir(_query(statement), params, None, None)

    async def execute(self, statement: TextClause | str, params: dict[str, Any] | None = None, *,
                      planificar_cada_vez: bool = False) -> Result:
        futuro = asyncio.get_running_loop().create_future()
        self._lote.pedir(_query(statement), params, False if planificar_cada_vez else None, futuro)
        return await futuro


class _Lote:
    def __init__(self, conn: Conn) -> None:
        self.conn = conn
        self.pedidos: list[tuple[str, Any, bool | None, asyncio.Future | None]] = []
        self.vivas = 0  # coroutines not finished
        self.esperando = 0  # coroutines waiting for a result
        self.listo = asyncio.Event()
        self.fallo: BaseException | None = None

    def pedir(self, query: str, params: Any, prepare: bool | None, futuro: asyncio.Future | None) -> None:
        if self.fallo is not None:
            raise LoteFallido("la transacción del lote ya falló") from self.fallo
        self.pedidos.append((query, params, prepare, futuro))
        if futuro is not None:
            self.esperando += 1
            self._revisar()

    def termino(self, _tarea: asyncio.Task) -> None:
        self.vivas -= 1
        self._revisar()

    def _revisar(self) -> None:
        if self.esperando >= self.vivas:
            self.listo.set()

    async def enviar(self) -> None:
        """Everything asked so far, in one pipeline (after BEGIN and the binding, the first
        time); then each waiting coroutine gets its result."""
        pedidos, self.pedidos = self.pedidos, []
        raw = self.conn.raw
        cursores = []
        try:
            async with raw.pipeline():
                await self.conn._enviar_cola()
                for query, params, prepare, futuro in pedidos:
                    cursor = await raw.execute(query, params, prepare=prepare)
                    if futuro is not None:
                        cursores.append((cursor, futuro))
            resultados = [(futuro, Result(await c.fetchall() if c.description is not None else [], c.rowcount))
                          for c, futuro in cursores]
        except Exception as e:
            self.fallo = e
            for _, _, _, futuro in pedidos:
                if futuro is not None and not futuro.done():
                    futuro.set_exception(LoteFallido(str(e)))
            self.esperando = 0
            raise
        self.esperando = 0
        for futuro, resultado in resultados:
            if not futuro.done():
                futuro.set_result(resultado)


async def en_lote(conn: Conn, trabajos: Sequence[Callable[[ConnLote], Awaitable[Any]]]) -> list[Any]:
    """Run `trabajos` concurrently on the transaction of `conn`, each with its own `ConnLote`.
    Returns their results in order. Any failure (a statement, or a coroutine's own error)
    raises `LoteFallido` once every coroutine has stopped; the caller rolls back."""
    lote = _Lote(conn)
    tareas = [asyncio.ensure_future(t(ConnLote(lote))) for t in trabajos]
    lote.vivas = len(tareas)
    for t in tareas:
        t.add_done_callback(lote.termino)
    try:
        while lote.vivas:
            await lote.listo.wait()
            lote.listo.clear()
            for t in tareas:
                if t.done() and not t.cancelled() and t.exception() is not None:
                    raise LoteFallido(f"falló un elemento del lote: {t.exception()!r}") from t.exception()
            if lote.pedidos and lote.esperando >= lote.vivas:
                await lote.enviar()
    except BaseException as e:
        for t in tareas:
            t.cancel()
        await asyncio.gather(*tareas, return_exceptions=True)
        if isinstance(e, Exception) and not isinstance(e, LoteFallido):
            raise LoteFallido(str(e)) from e
        raise
    # Deferred writes of coroutines that ended without another statement: with COMMIT.
    conn._cola.extend((query, params) for query, params, _, _ in lote.pedidos)
    return [t.result() for t in tareas]
