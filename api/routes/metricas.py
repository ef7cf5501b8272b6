"""Brand metrics: the dashboard's figures and the periodic report (JSON, CSV or Excel).

Ranges are calendar days in the brand's time zone, both ends included; by default the
last 30 days ending today there. The queries live in api/services/metricas.py."""

from __future__ import annotations

from datetime import date
from typing import Literal

import msgspec
from litestar import Response, get
from litestar.params import FromQuery

from ..services import metricas as svc
from ..tenancy import Ctx, Db

Agrupar = Literal["dia", "semana", "mes"]
Formato = Literal["json", "csv", "xlsx"]

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


class PuntoDia(msgspec.Struct):
    fecha: date
    valor: int


class Conteo(msgspec.Struct):
    clave: str
    valor: int


class ProductoTop(msgspec.Struct):
    producto_id: int
    nombre: str
    categoria: str
    unidades: int
    ingresos: int


class CategoriaTop(msgspec.Struct):
    categoria: str
    unidades: int
    ingresos: int


class WhatsAppMetricas(msgspec.Struct):
    mensajes_entrantes_por_dia: list[PuntoDia]
    mensajes_salientes_por_dia: list[PuntoDia]
    mediana_primera_respuesta_segundos: float | None  # inbound message → next reply; null if none
    pedidos: int  # orders created from WhatsApp in the range (any status)
    conversion: float | None  # share of customers who wrote and ordered via WhatsApp (0–1)


class Dashboard(msgspec.Struct):
    desde: date
    hasta: date
    zona_horaria: str
    clientes_nuevos_por_dia: list[PuntoDia]
    clientes_activos_por_dia: list[PuntoDia]  # distinct customers with a non-cancelled order
    ingresos: int  # pesos, non-cancelled orders
    pedidos: int  # non-cancelled orders
    ticket_promedio: int  # pesos, rounded; 0 without orders
    ingresos_por_dia: list[PuntoDia]
    pedidos_por_canal: list[Conteo]  # every order, cancelled included
    pedidos_por_estado: list[Conteo]  # every order, cancelled included
    top_productos: list[ProductoTop]  # top 10 by revenue, non-cancelled orders
    top_categorias: list[CategoriaTop]
    satisfaccion_promedio: float | None  # 1–5, 2 decimals; null without answered surveys
    encuestas: int  # answered surveys (interactions with a score)
    whatsapp: WhatsAppMetricas


class FilaReporte(msgspec.Struct):
    periodo: date  # first day of the day, week (Monday) or month
    pedidos: int
    ingresos: int
    ticket_promedio: int
    clientes_nuevos: int
    clientes_activos: int
    pedidos_cancelados: int
    satisfaccion_promedio: float | None


class Reporte(msgspec.Struct):
    desde: date
    hasta: date
    zona_horaria: str
    agrupar: str
    filas: list[FilaReporte]


async def _rango(db, ctx, desde: date | None, hasta: date | None) -> tuple[date, date]:
    hoy = await svc.hoy(db, ctx.marca.zona_horaria) if desde is None or hasta is None else None
    return svc.rango(desde, hasta, hoy)


@get(
    "/api/marcas/{marca:str}/metricas/dashboard",
    summary="Métricas del panel de una marca en un rango de días",
    tags=["metricas"],
)
async def dashboard(
    ctx: Ctx,
    db: Db,
    desde: FromQuery[date | None] = None,
    hasta: FromQuery[date | None] = None,
) -> Dashboard:
    """Days in the brand's time zone, both ends included; by default the last 30 days
    ending today. Range up to 731 days."""
    desde, hasta = await _rango(db, ctx, desde, hasta)
    tz = ctx.marca.zona_horaria
    resumen = await svc.resumen_pedidos(db, desde, hasta, tz)
    sat = await svc.satisfaccion(db, desde, hasta, tz)
    wa = await svc.whatsapp(db, desde, hasta, tz)
    return Dashboard(
        desde=desde,
        hasta=hasta,
        zona_horaria=tz,
        clientes_nuevos_por_dia=[
            PuntoDia(f, v) for f, v in await svc.clientes_nuevos_por_dia(db, desde, hasta, tz)
        ],
        clientes_activos_por_dia=[
            PuntoDia(f, v) for f, v in await svc.clientes_activos_por_dia(db, desde, hasta, tz)
        ],
        ingresos=resumen["ingresos"],
        pedidos=resumen["pedidos"],
        ticket_promedio=resumen["ticket_promedio"],
        ingresos_por_dia=[PuntoDia(f, v) for f, v in await svc.ingresos_por_dia(db, desde, hasta, tz)],
        pedidos_por_canal=[Conteo(k, v) for k, v in await svc.pedidos_por_canal(db, desde, hasta, tz)],
        pedidos_por_estado=[Conteo(k, v) for k, v in await svc.pedidos_por_estado(db, desde, hasta, tz)],
        top_productos=[ProductoTop(**p) for p in await svc.top_productos(db, desde, hasta, tz)],
        top_categorias=[CategoriaTop(**c) for c in await svc.top_categorias(db, desde, hasta, tz)],
        satisfaccion_promedio=sat["promedio"],
        encuestas=sat["encuestas"],
        whatsapp=WhatsAppMetricas(
            mensajes_entrantes_por_dia=[PuntoDia(f, v) for f, v in wa["entrantes"]],
            mensajes_salientes_por_dia=[PuntoDia(f, v) for f, v in wa["salientes"]],
            mediana_primera_respuesta_segundos=wa["mediana_primera_respuesta_segundos"],
            pedidos=wa["pedidos"],
            conversion=wa["conversion"],
        ),
    )


@get(
    "/api/marcas/{marca:str}/metricas/reportes",
    summary="Reporte por día, semana o mes (JSON, CSV o Excel)",
    tags=["metricas"],
)
async def reportes(
    ctx: Ctx,
    db: Db,
    desde: FromQuery[date | None] = None,
    hasta: FromQuery[date | None] = None,
    agrupar: FromQuery[Agrupar] = "dia",
    formato: FromQuery[Formato] = "json",
) -> Response[Reporte]:
    """One row per period touching the range, every period present (weeks start Monday,
    months by calendar, in the brand's time zone); the first and last periods count only
    the days inside the range. `formato=csv|xlsx` downloads a file."""
    desde, hasta = await _rango(db, ctx, desde, hasta)
    tz = ctx.marca.zona_horaria
    filas = await svc.reporte(db, desde, hasta, tz, agrupar)
    if formato == "json":
        return Response(Reporte(desde, hasta, tz, agrupar, [FilaReporte(**f) for f in filas]))
    nombre = f"reporte-{ctx.marca.slug}-{desde}-{hasta}-{agrupar}.{formato}"
    headers = {"Content-Disposition": f'attachment; filename="{nombre}"'}
    if formato == "csv":
        return Response(svc.reporte_csv(filas), media_type="text/csv", headers=headers)
    return Response(svc.reporte_xlsx(filas), media_type=XLSX, headers=headers)


ROUTES = [dashboard, reportes]
