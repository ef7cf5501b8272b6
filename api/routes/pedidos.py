"""Orders: list with filters, create with items, read with items and history, move status."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Annotated, Literal

import msgspec
from litestar import get, post, put
from litestar.params import FromPath, FromQuery, JSONBody
from msgspec import Meta

from .. import pagination
from ..errors import campo
from ..pagination import Pagina
from ..services import pedidos as svc
from ..tenancy import Ctx, Db
from ..tipos import Cantidad, Id, Nota

Estado = Literal["pendiente", "confirmado", "en_preparacion", "listo", "entregado", "cancelado"]
Canal = Literal["whatsapp", "web", "telefono", "presencial"]


class ItemIn(msgspec.Struct, forbid_unknown_fields=True):
    producto_id: Id
    cantidad: Cantidad = 1


class PedidoIn(msgspec.Struct, forbid_unknown_fields=True):
    cliente_id: Id
    items: Annotated[list[ItemIn], Meta(min_length=1, max_length=200)]
    canal: Canal = "web"
    nota: Nota | None = None


class PedidoCambio(msgspec.Struct, forbid_unknown_fields=True):
    estado: Estado
    nota: Nota | None = None


class ItemOut(msgspec.Struct):
    id: int
    producto_id: int
    producto: str
    cantidad: int
    precio_unitario: int
    subtotal: int


class EstadoOut(msgspec.Struct):
    desde: str | None
    hacia: str
    actor: str
    created_at: datetime


class PedidoOut(msgspec.Struct):
    id: int
    marca_id: int
    cliente_id: int
    canal: str
    estado: str
    total: int
    nota: str | None
    created_at: datetime
    updated_at: datetime


class PedidoDetalle(PedidoOut):
    items: list[ItemOut] = []
    historial: list[EstadoOut] = []


def _out(row, cls=PedidoOut, **extra):
    return cls(**{f: getattr(row, f) for f in PedidoOut.__struct_fields__}, **extra)


def _detail(row) -> PedidoDetalle:
    return _out(
        row,
        PedidoDetalle,
        items=msgspec.convert(row.items, list[ItemOut]),
        historial=msgspec.convert(row.historial, list[EstadoOut]),
    )


@get("/api/marcas/{marca:str}/pedidos", summary="Listar pedidos (filtros: estado, canal, fechas, cliente)")
async def listar(
    ctx: Ctx,
    db: Db,
    estado: FromQuery[Estado | None] = None,
    canal: FromQuery[Canal | None] = None,
    desde: FromQuery[date | None] = None,
    hasta: FromQuery[date | None] = None,
    cliente_id: FromQuery[Id | None] = None,
    cursor: FromQuery[str | None] = None,
    limite: FromQuery[int | None] = None,
) -> Pagina[PedidoOut]:
    """`desde` and `hasta` are calendar days in the brand's time zone, both included."""
    if desde and hasta and hasta < desde:
        raise campo("hasta", "debe ser igual o posterior a desde", 400)
    where, params = [], {"tz": ctx.marca.zona_horaria}
    for key, value in (("estado", estado), ("canal", canal), ("cliente_id", cliente_id)):
        if value is not None:
            where.append(f"{key} = :{key}")
            params[key] = value
    if desde:
        where.append("created_at >= (CAST(:desde AS timestamp) AT TIME ZONE :tz)")
        params["desde"] = datetime.combine(desde, time())
    if hasta and hasta < date.max:  # the last calendar day has no end bound to add
        where.append("created_at < (CAST(:hasta AS timestamp) AT TIME ZONE :tz)")
        params["hasta"] = datetime.combine(hasta + timedelta(days=1), time())
    return await pagination.keyset_page(
        db, f"SELECT {svc.COLUMNS} FROM crm.pedidos", where, params, cursor, limite, _out
    )


@post("/api/pedidos", summary="Crear pedido con sus ítems (precios del catálogo vigente)")
async def crear(data: JSONBody[PedidoIn], db: Db) -> PedidoDetalle:
    row = await svc.create(
        db, data.cliente_id, data.canal, [(i.producto_id, i.cantidad) for i in data.items], data.nota
    )
    return _detail(row)


@get("/api/pedidos/{pedido_id:int}", summary="Obtener pedido con ítems e historial de estados")
async def obtener(pedido_id: FromPath[int], db: Db) -> PedidoDetalle:
    row = await svc.get(db, pedido_id)
    if row is None:
        raise svc.not_found(pedido_id)
    return _detail(row)


@put("/api/pedidos/{pedido_id:int}", summary="Cambiar estado (solo transiciones permitidas; 409 si no)")
async def cambiar_estado(pedido_id: FromPath[int], data: JSONBody[PedidoCambio], db: Db) -> PedidoDetalle:
    row = await svc.change_status(db, pedido_id, data.estado, data.nota)
    if row is None:
        raise svc.not_found(pedido_id)
    return _detail(row)


ROUTES = [listar, crear, obtener, cambiar_estado]
