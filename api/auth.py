"""Who is calling: the API key of `X-API-Key`, looked up by its hash.

Lookups are cached in the process for a few seconds (CACHE_SECONDS): a revoked key
stops working within that time. last_used_at is written at most once a minute per key."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .db import Database
from .errors import Problem
from .services import claves

CACHE_SECONDS = 10.0
TOUCH_EVERY = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: int
    marca_id: int | None  # None: a group-wide admin key
    marca_slug: str | None
    rol: str
    limite_por_minuto: int | None

    @property
    def grupo(self) -> bool:
        return self.marca_id is None

    @property
    def actor(self) -> str:
        return f"clave_api:{self.key_id}"


class KeyCache:
    def __init__(self) -> None:
        self._entries: dict[bytes, tuple[float, Principal | None]] = {}

    async def resolve(self, database: Database, key: str | None) -> Principal:
        if not key:
            raise Problem(401, "Falta la clave de API en el encabezado X-API-Key",
                          headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'})
        h = claves.digest(key)
        now = time.monotonic()
        hit = self._entries.get(h)
        if hit is None or hit[0] < now:
            principal = await self._load(database, h)
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[h] = (now + CACHE_SECONDS, principal)
        else:
            principal = hit[1]
        if principal is None:
            raise Problem(401, "Clave de API inválida o revocada",
                          headers={"WWW-Authenticate": 'ApiKey header="X-API-Key"'})
        return principal

    async def _load(self, database: Database, h: bytes) -> Principal | None:
        async with database.connection() as conn:
            row = (await conn.execute(claves.LOOKUP, {"hash": h})).first()
            if row is None or row.revoked_at is not None:
                return None
            if row.last_used_at is None or datetime.now(timezone.utc) - row.last_used_at > TOUCH_EVERY:
                await conn.execute(claves.TOUCH, {"id": row.id})
        return Principal(row.id, row.marca_id, row.marca_slug, row.rol, row.limite_por_minuto)
