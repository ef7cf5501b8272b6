"""The API's database access: one async engine (as the API's role), one transaction
per request that first binds the brand and the actor for row-level security and audit."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from . import roles
from .config import Settings

BIND = text("SELECT set_config('app.marca_id', :marca, true), set_config('app.actor', :actor, true)")


def make_engine(s: Settings) -> AsyncEngine:
    return create_async_engine(
        roles.sqlalchemy_url(roles.role_url(roles.API, s)),
        pool_size=s.db_pool_size, max_overflow=s.db_pool_size, pool_pre_ping=False,
        pool_recycle=1800)


async def bind(conn: AsyncConnection, marca_id: int | None, actor: str) -> None:
    """Start of every transaction: which brand the policies see, who the audit names."""
    await conn.execute(BIND, {"marca": "" if marca_id is None else str(marca_id), "actor": actor})
