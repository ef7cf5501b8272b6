"""Interactions: recorded once per external id (idempotent intake), listed per customer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from litestar import Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody
from msgspec import Meta
from sqlalchemy import text

from .. import pagination
from ..errors import Problem, campo
from ..pagination import Pagina
from ..structs import given
from ..tenancy import Db
from ..tipos import Contenido, Id, Puntaje

COLUMNS = (
    "id, marca_id, cliente_id, canal, direccion, tipo, contenido, id_externo, "
    "puntaje_satisfaccion, created_at"
)


class InteraccionIn(msgspec.Struct, forbid_unknown_fields=True):
    cliente_id: Id
    canal: Literal["whatsapp", "web", "telefono", "presencial", "email", "sms"]
    direccion: Literal["entrante", "saliente"]
    tipo: Literal["mensaje", "llamada", "nota", "encuesta"]
    contenido: Contenido = ""
    id_externo: Annotated[str, Meta(min_length=1, max_length=200)] | None = None
    puntaje_satisfaccion: Puntaje | None = None


class InteraccionOut(msgspec.Struct):
    id: int
    marca_id: int
    cliente_id: Id
    canal: str
    direccion: str
    tipo: str
    contenido: str
    id_externo: str | None
    puntaje_satisfaccion: int | None
    created_at: datetime


def _out(row) -> InteraccionOut:
    return InteraccionOut(**{f: getattr(row, f) for f in InteraccionOut.__struct_fields__})


@post("/api/interacciones", summary="Registrar interacción (idempotente por canal e id_externo)")
async def registrar(data: JSONBody[InteraccionIn], db: Db) -> Response[InteraccionOut]:
    """A repeated `id_externo` on the same channel returns the first record with 200."""
    if (
        await db.execute(
            text("SELECT 1 FROM crm.clientes WHERE id = :id AND deleted_at IS NULL"), {"id": data.cliente_id}
        )
    ).first() is None:
        raise campo("cliente_id", f"no existe el cliente {data.cliente_id} en esta marca")
    values = given(data)
    row = (
        await db.execute(
            text(
                f"INSERT INTO crm.interacciones ({', '.join(values)}) VALUES ({', '.join(':' + k for k in values)}) "
                f"ON CONFLICT (marca_id, canal, id_externo) DO NOTHING RETURNING {COLUMNS}"
            ),
            values,
        )
    ).first()
    if row is not None:
        return Response(_out(row), status_code=201)
    existing = (
        await db.execute(
            text(
                f"SELECT {COLUMNS} FROM crm.interacciones WHERE canal = :canal AND id_externo = :id_externo"
            ),
            values,
        )
    ).one()
    return Response(_out(existing), status_code=200)


@get("/api/clientes/{cliente_id:int}/interacciones", summary="Historial de interacciones del cliente")
async def historial(
    cliente_id: FromPath[int],
    db: Db,
    cursor: FromQuery[str | None] = None,
    limite: FromQuery[int | None] = None,
) -> Pagina[InteraccionOut]:
    pagination.limit(limite)  # a bad limit is a 400 before any query
    if (
        await db.execute(text("SELECT 1 FROM crm.clientes WHERE id = :id"), {"id": cliente_id})
    ).first() is None:
        raise Problem(404, f"No existe el cliente {cliente_id}")
    return await pagination.keyset_page(
        db,
        f"SELECT {COLUMNS} FROM crm.interacciones",
        ["cliente_id = :c"],
        {"c": cliente_id},
        cursor,
        limite,
        _out,
    )


ROUTES = [registrar, historial]
