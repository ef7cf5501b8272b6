"""The API's database access: a psycopg async pool (as the API's role) and one
transaction per request that first binds the brand and the actor for row-level security
and audit.

SQL is written as SQLAlchemy `text()` (named `:params`), compiled once by SQLAlchemy's
PostgreSQL dialect and run on psycopg directly. SQLAlchemy's async engine was measured
on this path and cost half the throughput (688 → 1,277 req/s on GET /api/clientes/{id},
p99 123 → 52 ms), all of it in its greenlet bridge and result machinery; the CLI and
the tests keep using its sync engine.

Round trips are what a request pays for most: each statement costs about 0.25 ms of
Python in psycopg's protocol handling, besides the server's own work. So BEGIN and the
binding are not sent alone: they travel, in one pipeline, with the transaction's first
statement. Writes whose result the caller does not need can be queued with
`Conn.diferir()`: they go with the next statement or with COMMIT, in the same round trip.
An error in any of them aborts the transaction and is raised at that point, as if each
had been sent alone; nothing is half-written.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from functools import lru_cache
from typing import Any

from psycopg import AsyncConnection
from psycopg.pq import TransactionStatus
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import psycopg as _pg
from sqlalchemy.sql.elements import TextClause

from . import roles
from .config import Settings

_DIALECT = _pg.dialect()
_BIND = "SELECT set_config('app.marca_id', %s, true), set_config('app.actor', %s, true)"
_BIND_LOCK = ("SELECT set_config('app.marca_id', %s, true), set_config('app.actor', %s, true), "
              "pg_advisory_xact_lock(hashtextextended(%s, 0))")


@lru_cache(maxsize=4096)
def compile_sql(statement: str) -> str:
    """`:name` parameters → psycopg's `%(name)s`, literal `%` escaped (SQLAlchemy does it)."""
    return str(text(statement).compile(dialect=_DIALECT))


@lru_cache(maxsize=1024)
def _row_class(names: tuple[bytes, ...]):
    base = namedtuple("Row", [n.decode() for n in names], rename=True)  # noqa: PYI024
    return type("Row", (base,), {"__slots__": (), "_mapping": property(lambda self: self._asdict())})


def _row_factory(cursor):
    """Rows as named tuples (row.id, tuple unpacking) that also offer `_mapping`. The
    column names come straight from the result: `cursor.description` builds a Column
    object per column on every statement (about 20 µs of a 130 µs statement)."""
    res = cursor.pgresult
    if res is None or not res.nfields:
        return tuple
    return _row_class(tuple(res.fname(i) for i in range(res.nfields)))._make


class NoResult(LookupError):
    pass


class Result:
    """The rows of one statement, fetched eagerly (every query here is bounded)."""

    __slots__ = ("rows", "rowcount")

    def __init__(self, rows: list, rowcount: int) -> None:
        self.rows, self.rowcount = rows, rowcount

    def __iter__(self):
        return iter(self.rows)

    def all(self) -> list:
        return self.rows

    def first(self):
        return self.rows[0] if self.rows else None

    def one(self):
        if len(self.rows) != 1:
            raise NoResult(f"expected one row, got {len(self.rows)}")
        return self.rows[0]

    def scalar(self):
        return self.rows[0][0] if self.rows else None

    def scalar_one(self):
        return self.one()[0]

    def mappings(self) -> Result:
        return Result([r._asdict() for r in self.rows], self.rowcount)


def _query(statement: TextClause | str) -> str:
    return compile_sql(statement.text if isinstance(statement, TextClause) else statement)


class Conn:
    """One connection of the pool, inside the request's transaction."""

    __slots__ = ("_cola", "_inicio", "raw")

    def __init__(self, raw: AsyncConnection, inicio: list[tuple[str, Any]] | None = None) -> None:
        self.raw = raw
        self._inicio = inicio or []  # BEGIN and the binding, until they are sent
        self._cola: list[tuple[str, Any]] = []  # deferred writes

    def diferir(self, statement: TextClause | str, params: dict[str, Any] | None = None) -> None:
        """Queue a write whose result is not needed: it is sent with the next statement,
        or with COMMIT, in the same round trip. Its error surfaces there."""
        self._cola.append((_query(statement), params))

    async def execute(self, statement: TextClause | str, params: dict[str, Any] | None = None, *,
                      planificar_cada_vez: bool = False) -> Result:
        """Run one statement (after whatever is queued). `planificar_cada_vez`: never as a
        prepared statement, so PostgreSQL plans it with the actual values each time (for
        the few statements whose best plan depends on how many rows qualify right now)."""
        query = _query(statement)
        prepare = False if planificar_cada_vez else None
        if self._inicio or self._cola:
            async with self.raw.pipeline():
                await self._enviar_cola()
                cur = await self.raw.execute(query, params, prepare=prepare)
        else:
            cur = await self.raw.execute(query, params, prepare=prepare)
        rows = await cur.fetchall() if cur.description is not None else []
        return Result(rows, cur.rowcount)

    async def _enviar_cola(self) -> None:
        cola, self._inicio, self._cola = self._inicio + self._cola, [], []
        for query, params in cola:
            await self.raw.execute(query, params)

    async def _confirmar(self) -> None:
        """What is still queued, then COMMIT: one round trip. Nothing at all when nothing
        was asked of the database (BEGIN was never sent)."""
        if self._inicio and not self._cola:
            return
        if not self._cola:
            await self.raw.execute("COMMIT")
            return
        async with self.raw.pipeline():
            await self._enviar_cola()
            await self.raw.execute("COMMIT")

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction: its statements are undone alone if they fail."""
        await self.execute("SAVEPOINT paso")
        try:
            yield
        except BaseException:
            await self.raw.execute("ROLLBACK TO SAVEPOINT paso")
            raise
        await self.execute("RELEASE SAVEPOINT paso")


class Database:
    """The pool of the API's role. Connections are in autocommit mode: transactions are
    opened explicitly by `transaction()`, so BEGIN travels with the tenant binding."""

    def __init__(self, s: Settings) -> None:
        self.pool = AsyncConnectionPool(
            roles.role_url(roles.API, s), min_size=s.db_pool_size, max_size=s.db_pool_size * 2,
            open=False, kwargs={"autocommit": True, "row_factory": _row_factory}, name="crm-api")

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=30)

    async def close(self) -> None:
        await self.pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A connection outside any brand (statements autocommit): key and brand lookups."""
        async with self.pool.connection() as raw:
            conn = Conn(raw)
            yield conn
            if conn._cola:
                async with raw.pipeline():
                    await conn._enviar_cola()

    @asynccontextmanager
    async def sesion(self) -> AsyncIterator[AsyncConnection]:
        """One connection kept for a while, for what lives in a session rather than a
        transaction (the outbox worker's advisory locks); `transaction(..., en=...)` runs
        transactions on it. Session advisory locks are released before it goes back to the
        pool (a broken connection is discarded by the pool, and its locks with it)."""
        async with self.pool.connection() as raw:
            try:
                yield raw
            finally:
                if not raw.closed:
                    await raw.execute("SELECT pg_advisory_unlock_all()")

    @asynccontextmanager
    async def transaction(self, marca_id: int | None, actor: str, bloqueo: str | None = None,
                          en: AsyncConnection | None = None) -> AsyncIterator[Conn]:
        """One transaction bound to one brand: committed when the block ends normally,
        rolled back on any error, so nothing is ever half-written. `bloqueo` names an
        advisory lock held until the end (taken in the same round trip as BEGIN). `en`: a
        connection from `sesion()` instead of one from the pool."""
        marca = "" if marca_id is None else str(marca_id)
        bind = (_BIND, (marca, actor)) if bloqueo is None else (_BIND_LOCK, (marca, actor, bloqueo))
        async with nullcontext(en) if en is not None else self.pool.connection() as raw:
            conn = Conn(raw, [("BEGIN", None), bind])
            try:
                yield conn
                await conn._confirmar()
            except BaseException:
                if raw.info.transaction_status != TransactionStatus.IDLE:
                    await raw.execute("ROLLBACK")
                raise
