"""Cursor pagination: newest first, keyset on id (stable under concurrent inserts)."""

from __future__ import annotations

import base64
from typing import Generic, TypeVar

import msgspec
from sqlalchemy import text

from .errors import campo

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 200


class Pagina(msgspec.Struct, Generic[T]):
    datos: list[T]
    siguiente: str | None  # pass as ?cursor= to get the next page; null on the last page


def encode(value: int, kind: str = "v1") -> str:
    """kind v1: the last id seen (keyset); kind o1: an offset (ranked search results)."""
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode().rstrip("=")


def decode(cursor: str | None, kind: str = "v1") -> int | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        version, value = raw.split(":", 1)
        if version != kind or not 0 <= int(value) < 2**63:
            raise ValueError
        return int(value)
    except (ValueError, UnicodeDecodeError):
        raise campo(
            "cursor", "cursor inválido; use el valor de `siguiente` de la página anterior", 400
        ) from None


def limit(value: int | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not 1 <= value <= MAX_LIMIT:
        raise campo("limite", f"debe estar entre 1 y {MAX_LIMIT}", 400)
    return value


async def keyset_page(
    db, select: str, where: list[str], params: dict, cursor: str | None, limite: int | None, out
) -> Pagina:
    """Newest-first page of `select` ("SELECT cols FROM table") under `where` (SQL
    conditions, ANDed) and its `params`; `out` turns a row into its response Struct."""
    lim = limit(limite)
    if (last := decode(cursor)) is not None:
        where, params = [*where, "id < :cursor"], {**params, "cursor": last}
    sql = f"{select} WHERE {' AND '.join(where) or 'true'} ORDER BY id DESC LIMIT :limit"
    rows = await db.execute(text(sql), {**params, "limit": lim + 1})
    return page([out(r) for r in rows], lim)


def page(rows: list[T], lim: int, id_of=lambda r: r.id) -> Pagina[T]:
    """`rows` was fetched with LIMIT lim + 1: the extra row only signals a next page."""
    more = len(rows) > lim
    rows = rows[:lim]
    return Pagina(datos=rows, siguiente=encode(id_of(rows[-1])) if more and rows else None)


def ranked_page(rows: list[T], lim: int, offset: int) -> Pagina[T]:
    """Like page(), for results in rank order: the cursor carries the next offset."""
    more = len(rows) > lim
    return Pagina(datos=rows[:lim], siguiente=encode(offset + lim, "o1") if more else None)
