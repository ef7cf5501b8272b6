"""Customers: list, create, read, update, forget, and search by name, phone, email or RUT."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

import msgspec
from litestar import delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody, Parameter

from .. import pagination
from ..errors import Problem
from ..pagination import Pagina
from ..services import clientes as svc
from ..structs import given
from ..tenancy import Db
from ..tipos import Nombre, Nota

Canal = Literal["whatsapp", "web", "telefono", "presencial", "importacion"]
Segmento = Literal["nuevo", "recurrente", "vip", "inactivo"]


class ClienteIn(msgspec.Struct, forbid_unknown_fields=True):
    nombre: Nombre
    telefono: str | None = None
    email: str | None = None
    documento: str | None = None  # RUT, with or without dots and dash
    fecha_nacimiento: date | None = None
    ciudad: str | None = None
    region: str | None = None
    canal_origen: Canal = "presencial"
    segmento: Segmento = "nuevo"
    opt_out_marketing: bool = False
    opt_out_recordatorios: bool = False
    opt_out_encuestas: bool = False
    notas: Nota | None = None


class ClienteCambios(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    """PUT body: fields left out keep their value; null clears an optional field."""

    nombre: Nombre | msgspec.UnsetType = msgspec.UNSET
    telefono: str | None | msgspec.UnsetType = msgspec.UNSET
    email: str | None | msgspec.UnsetType = msgspec.UNSET
    documento: str | None | msgspec.UnsetType = msgspec.UNSET
    fecha_nacimiento: date | None | msgspec.UnsetType = msgspec.UNSET
    ciudad: str | None | msgspec.UnsetType = msgspec.UNSET
    region: str | None | msgspec.UnsetType = msgspec.UNSET
    canal_origen: Canal | msgspec.UnsetType = msgspec.UNSET
    segmento: Segmento | msgspec.UnsetType = msgspec.UNSET
    opt_out_marketing: bool | msgspec.UnsetType = msgspec.UNSET
    opt_out_recordatorios: bool | msgspec.UnsetType = msgspec.UNSET
    opt_out_encuestas: bool | msgspec.UnsetType = msgspec.UNSET
    notas: Nota | None | msgspec.UnsetType = msgspec.UNSET


class ClienteOut(msgspec.Struct):
    id: int
    marca_id: int
    nombre: str
    telefono: str | None
    email: str | None
    documento: str | None
    fecha_nacimiento: date | None
    ciudad: str | None
    region: str | None
    canal_origen: str
    segmento: str
    opt_out_marketing: bool
    opt_out_recordatorios: bool
    opt_out_encuestas: bool
    notas: str | None
    created_at: datetime
    updated_at: datetime


def _out(row) -> ClienteOut:
    return ClienteOut(**{f: getattr(row, f) for f in ClienteOut.__struct_fields__})


def _no_existe(cliente_id: int) -> Problem:
    return Problem(404, f"No existe el cliente {cliente_id}")


@get("/api/marcas/{marca:str}/clientes", summary="Listar clientes de la marca")
async def listar(
    db: Db,
    q: FromQuery[str | None] = None,
    segmento: FromQuery[Segmento | None] = None,
    ciudad: FromQuery[str | None] = None,
    cursor: FromQuery[str | None] = None,
    limite: FromQuery[int | None] = None,
) -> Pagina[ClienteOut]:
    lim = pagination.limit(limite)
    if q:
        offset = pagination.decode(cursor, "o1") or 0
        rows = await svc.search(db, q, lim + 1, offset, segmento, ciudad)
        return pagination.ranked_page([_out(r) for r in rows], lim, offset)
    where, params = svc.filters(segmento, ciudad)
    return await pagination.keyset_page(
        db, f"SELECT {svc.COLUMNS} FROM crm.clientes", where, params, cursor, limite, _out
    )


@get("/api/clientes", summary="Buscar clientes: nombre, teléfono, email o RUT")
async def buscar(
    db: Db,
    q: str = Parameter(min_length=1, max_length=200),
    cursor: FromQuery[str | None] = None,
    limite: FromQuery[int | None] = None,
) -> Pagina[ClienteOut]:
    lim = pagination.limit(limite)
    offset = pagination.decode(cursor, "o1") or 0
    rows = await svc.search(db, q, lim + 1, offset)
    return pagination.ranked_page([_out(r) for r in rows], lim, offset)


@post("/api/marcas/{marca:str}/clientes", summary="Crear cliente")
async def crear(data: JSONBody[ClienteIn], db: Db) -> ClienteOut:
    values = svc.clean(given(data))
    return _out(await svc.insert(db, values))


@get("/api/clientes/{cliente_id:int}", summary="Obtener cliente")
async def obtener(cliente_id: FromPath[int], db: Db) -> ClienteOut:
    row = await svc.get(db, cliente_id)
    if row is None:
        raise _no_existe(cliente_id)
    return _out(row)


@put("/api/clientes/{cliente_id:int}", summary="Actualizar cliente (campos omitidos no cambian)")
async def actualizar(cliente_id: FromPath[int], data: JSONBody[ClienteCambios], db: Db) -> ClienteOut:
    changes = svc.clean(given(data))
    row = await svc.update(db, cliente_id, changes)
    if row is None:
        raise _no_existe(cliente_id)
    return _out(row)


@delete(
    "/api/clientes/{cliente_id:int}",
    status_code=204,
    opt={"roles": ("admin",)},
    summary="Olvidar cliente: anonimiza sus datos personales y lo oculta",
)
async def olvidar(cliente_id: FromPath[int], db: Db) -> None:
    if not await svc.forget(db, cliente_id):
        raise _no_existe(cliente_id)


ROUTES = [listar, buscar, crear, obtener, actualizar, olvidar]
