"""A brand's WhatsApp channels: its numbers and their provider. Admin keys only (the
brand's admin or the group's): a channel decides where customers' messages land."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import get, post
from litestar.params import JSONBody
from msgspec import Meta

from ..errors import Problem, campo
from ..services import canales
from ..tenancy import Ctx, Db

ADMIN = ("admin",)


class CanalIn(msgspec.Struct, forbid_unknown_fields=True):
    proveedor: Literal["meta", "twilio"]
    identificador: Annotated[
        str,
        Meta(
            min_length=1,
            max_length=64,
            description="Meta: phone_number_id; Twilio: nuestro número de WhatsApp en E.164",
        ),
    ]
    numero: (
        Annotated[str, Meta(max_length=32, description="número que escriben los clientes (E.164)")] | None
    ) = None
    activo: bool = True


class CanalOut(msgspec.Struct):
    id: int
    marca_id: int
    proveedor: str
    identificador: str
    numero: str | None
    activo: bool
    created_at: datetime


def _out(row) -> CanalOut:
    return CanalOut(**{f: getattr(row, f) for f in CanalOut.__struct_fields__})


def _solo_admin(ctx: Ctx) -> None:
    # The tenancy guard checks `opt["roles"]` on writes only; reads are checked here.
    if ctx.principal.rol not in ADMIN:
        raise Problem(403, f"El rol {ctx.principal.rol} no puede ver los canales; se requiere admin")


@get(
    "/api/marcas/{marca:str}/canales",
    opt={"roles": ADMIN},
    summary="Listar canales de WhatsApp (admin)",
    tags=["whatsapp"],
)
async def listar(ctx: Ctx, db: Db) -> list[CanalOut]:
    _solo_admin(ctx)
    return [_out(r) for r in await db.execute(canales.LIST)]


@post(
    "/api/marcas/{marca:str}/canales",
    opt={"roles": ADMIN},
    summary="Registrar canal de WhatsApp (admin)",
    tags=["whatsapp"],
)
async def crear(data: JSONBody[CanalIn], ctx: Ctx, db: Db) -> CanalOut:
    """Meta: `identificador` = phone_number_id. Twilio: `identificador` = our number
    (E.164; `numero` is then the same). An identifier already registered, in this brand or
    another, answers 409."""
    _solo_admin(ctx)
    try:
        values = canales.valores(data.proveedor, data.identificador, data.numero, data.activo)
    except canales.CanalInvalido as e:
        raise campo(e.campo, e.mensaje) from None
    return _out((await db.execute(canales.INSERT, values)).one())


ROUTES = [listar, crear]
