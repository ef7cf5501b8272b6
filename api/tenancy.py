"""Which brand a request acts on, and its one transaction.

- A brand key acts on its own brand. A path naming another brand answers 404, exactly
  as for a brand that does not exist: existence is never confirmed across brands.
- A group admin key acts on the brand named in the path (`/api/marcas/{marca}/...`) or,
  on routes without one, in the `X-Tenant: <slug>` header.
- `lector` keys cannot write; some routes narrow the roles further (`opt={"roles": ...}`);
  routes with `opt={"grupo": True}` are for group admin keys only.

`provide_db` opens the request's transaction and binds the brand and the actor first
(`set_config(..., true)`), so row-level security applies to every statement after it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass

from litestar import Request
from litestar.di import NamedDependency
from sqlalchemy import text

from .auth import KeyCache, Principal
from .db import Conn, Database
from .errors import Problem
from .ratelimit import TokenBuckets, retry_after_header

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_MARCA_TTL = 30.0


@dataclass(frozen=True, slots=True)
class Marca:
    id: int
    slug: str
    zona_horaria: str


@dataclass(frozen=True, slots=True)
class Contexto:
    principal: Principal
    marca: Marca | None  # None only on group-level routes (/api/marcas)

    @property
    def marca_id(self) -> int:
        assert self.marca is not None
        return self.marca.id


class Tenancy:
    """Per-process state: the database pool, the key cache, the rate-limit buckets, brand lookups."""

    def __init__(self, database: Database, default_rate_limit: int) -> None:
        self.database = database
        self.keys = KeyCache()
        self.buckets = TokenBuckets()
        self.default_rate_limit = default_rate_limit
        self._marcas: dict[str, tuple[float, Marca | None]] = {}

    async def marca(self, ref: str) -> Marca | None:
        """Brand by id or slug, cached briefly (brands are created, never renamed)."""
        now = time.monotonic()
        hit = self._marcas.get(ref)
        if hit and hit[0] > now:
            return hit[1]
        column = "id" if ref.isdigit() else "slug"
        value: int | str = int(ref) if ref.isdigit() else ref
        if column == "id" and value > 2**62:
            return None
        async with self.database.connection() as conn:
            row = (await conn.execute(
                text(f"SELECT id, slug, zona_horaria FROM crm.marcas WHERE {column} = :v"),
                {"v": value})).first()
        found = Marca(row.id, row.slug, row.zona_horaria) if row else None
        if len(self._marcas) > 10_000:
            self._marcas.clear()
        self._marcas[ref] = (now + _MARCA_TTL, found)
        return found

    def forget_marcas(self) -> None:
        self._marcas.clear()


def _not_found_brand(ref: str) -> Problem:
    return Problem(404, f"No existe la marca {ref}")


async def provide_ctx(request: Request) -> Contexto:
    tenancy: Tenancy = request.app.state.tenancy
    principal = await tenancy.keys.resolve(tenancy.database, request.headers.get("x-api-key"))
    opt = request.route_handler.opt

    wait = tenancy.buckets.take(principal.key_id,
                                principal.limite_por_minuto or tenancy.default_rate_limit)
    if wait:
        raise Problem(429, "Demasiadas solicitudes con esta clave; espere e intente de nuevo",
                      headers=retry_after_header(wait))

    if opt.get("grupo") and not principal.grupo:
        raise Problem(403, "Solo una clave de administración del grupo puede gestionar marcas")
    if request.method not in SAFE_METHODS:
        if principal.rol == "lector":
            raise Problem(403, "Esta clave es de solo lectura (rol lector)")
        allowed = opt.get("roles")
        if allowed and principal.rol not in allowed:
            raise Problem(403, f"El rol {principal.rol} no puede hacer esta operación; "
                               f"se requiere {' o '.join(allowed)}")

    ref = request.path_params.get("marca")
    if ref is not None:
        marca = await tenancy.marca(str(ref))
        if marca is None or (not principal.grupo and marca.id != principal.marca_id):
            raise _not_found_brand(str(ref))
        return Contexto(principal, marca)
    if opt.get("grupo"):
        return Contexto(principal, None)
    if principal.grupo:
        slug = request.headers.get("x-tenant")
        if not slug:
            raise Problem(400, "Con una clave del grupo, indique la marca en el encabezado X-Tenant (su slug)",
                          [{"campo": "X-Tenant", "mensaje": "obligatorio con una clave del grupo"}])
        marca = await tenancy.marca(slug)
        if marca is None:
            raise _not_found_brand(slug)
        return Contexto(principal, marca)
    marca = await tenancy.marca(str(principal.marca_id))
    if marca is None:  # the key's brand was deleted
        raise Problem(401, "Clave de API inválida o revocada")
    return Contexto(principal, marca)


async def provide_db(request: Request, ctx: NamedDependency[Contexto]) -> AsyncGenerator[Conn, None]:
    """One transaction per request: committed after the handler succeeds (before the
    response is sent), rolled back on any error, so nothing is ever half-written."""
    tenancy: Tenancy = request.app.state.tenancy
    async with tenancy.database.transaction(ctx.marca.id if ctx.marca else None, ctx.principal.actor) as conn:
        yield conn


# Handler parameter types: the request's brand context and its transaction.
Ctx = NamedDependency[Contexto]
Db = NamedDependency[Conn]
