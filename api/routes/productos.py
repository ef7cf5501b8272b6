"""The brand's catalog. Writes need an admin or staff key."""

from __future__ import annotations

from datetime import datetime

import msgspec
import psycopg
from litestar import delete, get, post, put
from litestar.params import FromPath, FromQuery, JSONBody
from sqlalchemy import text

from .. import pagination
from ..errors import Problem, campo
from ..pagination import Pagina
from ..structs import given
from ..tenancy import Db
from ..tipos import Nombre, Pesos, Stock

COLUMNS = "id, marca_id, sku, nombre, categoria, precio, stock, activo, alias, created_at, updated_at"
CATALOGO = ("admin", "staff")


class ProductoIn(msgspec.Struct, forbid_unknown_fields=True):
    sku: str
    nombre: Nombre
    precio: Pesos
    categoria: str = "general"
    stock: Stock | None = None
    activo: bool = True
    alias: list[str] = msgspec.field(default_factory=list)


class ProductoCambios(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    sku: str | msgspec.UnsetType = msgspec.UNSET
    nombre: Nombre | msgspec.UnsetType = msgspec.UNSET
    precio: Pesos | msgspec.UnsetType = msgspec.UNSET
    categoria: str | msgspec.UnsetType = msgspec.UNSET
    stock: Stock | None | msgspec.UnsetType = msgspec.UNSET
    activo: bool | msgspec.UnsetType = msgspec.UNSET
    alias: list[str] | msgspec.UnsetType = msgspec.UNSET


class ProductoOut(msgspec.Struct):
    id: int
    marca_id: int
    sku: str
    nombre: str
    categoria: str
    precio: int
    stock: int | None
    activo: bool
    alias: list[str]
    created_at: datetime
    updated_at: datetime


def _out(row) -> ProductoOut:
    return ProductoOut(**{f: getattr(row, f) for f in ProductoOut.__struct_fields__})


def _check(values: dict) -> dict:
    for key in ("sku", "nombre", "categoria"):
        if key in values:
            values[key] = values[key].strip()
            if not values[key]:
                raise campo(key, "no puede estar vacío")
    if "alias" in values:
        values["alias"] = [a.strip() for a in values["alias"] if a.strip()]
    return values


def _no_existe(producto_id: int) -> Problem:
    return Problem(404, f"No existe el producto {producto_id}")


@get("/api/marcas/{marca:str}/productos", summary="Listar productos")
async def listar(
    db: Db,
    categoria: FromQuery[str | None] = None,
    activo: FromQuery[bool | None] = None,
    cursor: FromQuery[str | None] = None,
    limite: FromQuery[int | None] = None,
) -> Pagina[ProductoOut]:
    where, params = [], {"categoria": categoria, "activo": activo}
    where = [f"{k} = :{k}" for k, v in params.items() if v is not None]
    return await pagination.keyset_page(
        db, f"SELECT {COLUMNS} FROM crm.productos", where, params, cursor, limite, _out
    )


@post("/api/marcas/{marca:str}/productos", opt={"roles": CATALOGO}, summary="Crear producto")
async def crear(data: JSONBody[ProductoIn], db: Db) -> ProductoOut:
    values = _check(given(data))
    cols = ", ".join(values)
    row = (
        await db.execute(
            text(
                f"INSERT INTO crm.productos ({cols}) VALUES "
                f"({', '.join(':' + k for k in values)}) RETURNING {COLUMNS}"
            ),
            values,
        )
    ).one()
    return _out(row)


@get("/api/marcas/{marca:str}/productos/{producto_id:int}", summary="Obtener producto")
async def obtener(producto_id: FromPath[int], db: Db) -> ProductoOut:
    row = (
        await db.execute(text(f"SELECT {COLUMNS} FROM crm.productos WHERE id = :id"), {"id": producto_id})
    ).first()
    if row is None:
        raise _no_existe(producto_id)
    return _out(row)


@put(
    "/api/marcas/{marca:str}/productos/{producto_id:int}",
    opt={"roles": CATALOGO},
    summary="Actualizar producto (campos omitidos no cambian)",
)
async def actualizar(producto_id: FromPath[int], data: JSONBody[ProductoCambios], db: Db) -> ProductoOut:
    changes = _check(given(data))
    if not changes:
        return await obtener.fn(producto_id=producto_id, db=db)
    sets = ", ".join(f"{k} = :{k}" for k in changes)
    row = (
        await db.execute(
            text(f"UPDATE crm.productos SET {sets} WHERE id = :id RETURNING {COLUMNS}"),
            {**changes, "id": producto_id},
        )
    ).first()
    if row is None:
        raise _no_existe(producto_id)
    return _out(row)


@delete(
    "/api/marcas/{marca:str}/productos/{producto_id:int}",
    opt={"roles": CATALOGO},
    status_code=204,
    summary="Eliminar producto (sin pedidos; si los tiene, desactívelo)",
)
async def eliminar(producto_id: FromPath[int], db: Db) -> None:
    try:
        async with db.savepoint():
            row = (
                await db.execute(
                    text("DELETE FROM crm.productos WHERE id = :id RETURNING id"), {"id": producto_id}
                )
            ).first()
    except psycopg.errors.ForeignKeyViolation:
        raise Problem(
            409, 'El producto tiene pedidos y no se puede eliminar; desactívelo con PUT {"activo": false}'
        ) from None
    if row is None:
        raise _no_existe(producto_id)


ROUTES = [listar, crear, obtener, actualizar, eliminar]
