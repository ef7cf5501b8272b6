"""Brands: listed and created by group admin keys; any key reads its own brand."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

import msgspec
from litestar import Request, get, post
from litestar.params import JSONBody
from sqlalchemy import text

from ..errors import campo
from ..services import marcas
from ..tenancy import Ctx, Db

_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{1,39}$")


class MarcaIn(msgspec.Struct, forbid_unknown_fields=True):
    slug: str
    nombre: str
    zona_horaria: str = "America/Santiago"
    moneda: str = "CLP"
    settings: dict[str, Any] = msgspec.field(default_factory=dict)


class MarcaOut(msgspec.Struct):
    id: int
    slug: str
    nombre: str
    zona_horaria: str
    moneda: str
    settings: dict[str, Any]
    rol_db: str
    created_at: datetime


def _out(row) -> MarcaOut:
    return MarcaOut(**{f: getattr(row, f) for f in MarcaOut.__struct_fields__})


@get("/api/marcas", opt={"grupo": True}, summary="Listar marcas (clave del grupo)")
async def listar(db: Db) -> list[MarcaOut]:
    rows = await db.execute(text(f"SELECT {marcas.COLUMNS} FROM crm.marcas ORDER BY id"))
    return [_out(r) for r in rows]


@post("/api/marcas", opt={"grupo": True}, summary="Crear marca y su rol de base de datos")
async def crear(data: JSONBody[MarcaIn], db: Db, request: Request) -> MarcaOut:
    if not _SLUG.match(data.slug):
        raise campo("slug", "solo minúsculas, dígitos y guiones; de 2 a 40 caracteres")
    if not data.nombre.strip():
        raise campo("nombre", "no puede estar vacío")
    if not (await db.execute(text("SELECT crm.zona_horaria_valida(:z)"), {"z": data.zona_horaria})).scalar():
        raise campo("zona_horaria", f"zona horaria desconocida: {data.zona_horaria}")
    stmt, params = marcas.create_statement(
        request.app.state.settings,
        data.slug,
        data.nombre.strip(),
        data.zona_horaria,
        data.moneda,
        data.settings,
    )
    row = (await db.execute(stmt, params)).one()
    request.app.state.tenancy.forget_marcas()
    return _out(row)


@get("/api/marcas/{marca:str}", summary="Obtener una marca")
async def obtener(ctx: Ctx, db: Db) -> MarcaOut:
    row = (
        await db.execute(
            text(f"SELECT {marcas.COLUMNS} FROM crm.marcas WHERE id = :id"), {"id": ctx.marca_id}
        )
    ).one()
    return _out(row)


ROUTES = [listar, crear, obtener]
