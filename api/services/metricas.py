"""Brand metrics: the dashboard's figures and the periodic report, one SQL query each.

Every function takes a connection already bound to one brand (row-level security keeps
each query inside it, so nothing here filters by marca_id) and plain values: the scheduler
or the CLI can call them as the API does.

Days are calendar days in the brand's time zone: day D covers [D 00:00, D+1 00:00) local
time, so a DST day lasts 23 or 25 hours. The range predicate is written on `created_at`
itself, with bounds computed in SQL as local midnight `AT TIME ZONE` the brand's zone, so
the (marca_id, created_at) indexes of clientes, pedidos and interacciones answer it.
"""

from __future__ import annotations

import csv
import io
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import text

from ..errors import campo
from .pedidos import CANALES, ESTADOS

MAX_DIAS = 731  # two years, leap day included
DIAS_POR_DEFECTO = 30
FECHA_MIN, FECHA_MAX = date(1900, 1, 1), date(2999, 12, 31)

# [desde 00:00, hasta + 1 day 00:00) local time, as timestamptz. Parameters :desde, :hasta, :tz.
DESDE_TS = "(CAST(:desde AS timestamp) AT TIME ZONE :tz)"
HASTA_TS = "((CAST(:hasta AS timestamp) + interval '1 day') AT TIME ZONE :tz)"


def en_rango(columna: str = "created_at") -> str:
    """The range predicate on the column itself (never on an expression of it)."""
    return f"{columna} >= {DESDE_TS} AND {columna} < {HASTA_TS}"


EN_RANGO = en_rango()
DIA_LOCAL = "(created_at AT TIME ZONE :tz)::date"


# ---------------------------------------------------------------- range
async def hoy(db, tz: str) -> date:
    """Today in the time zone `tz`, by the database's clock and zone data."""
    return (await db.execute(text("SELECT (now() AT TIME ZONE :tz)::date"), {"tz": tz})).scalar_one()


def rango(desde: date | None, hasta: date | None, hoy: date | None) -> tuple[date, date]:
    """The range asked for, with defaults: the last 30 days ending `hoy` (or ending `hasta`
    when only it is given; from `desde` to `hoy` when only `desde` is). Raises a 400 naming
    the field when the range is reversed, too long or out of bounds."""
    for nombre, valor in (("desde", desde), ("hasta", hasta)):
        if valor is not None and not FECHA_MIN <= valor <= FECHA_MAX:
            raise campo(nombre, f"debe estar entre {FECHA_MIN} y {FECHA_MAX}", 400)
    if hasta is None:
        if desde is not None and desde > hoy:
            raise campo("desde", f"es posterior a hoy ({hoy}); indique también hasta", 400)
        hasta = hoy
    if desde is None:
        desde = hasta - timedelta(days=DIAS_POR_DEFECTO - 1)
    if hasta < desde:
        raise campo("hasta", "debe ser igual o posterior a desde", 400)
    if (hasta - desde).days + 1 > MAX_DIAS:
        raise campo("hasta", f"el rango no puede superar {MAX_DIAS} días", 400)
    return desde, hasta


def _p(desde: date, hasta: date, tz: str, **extra) -> dict:
    return {"desde": desde, "hasta": hasta, "tz": tz, **extra}


def _serie_diaria(sql_por_dia: str) -> str:
    """Every day of the range, with the per-day figure of `sql_por_dia` (columns fecha,
    valor) or 0."""
    return (
        "SELECT d::date AS fecha, coalesce(x.valor, 0)::bigint AS valor "
        "FROM generate_series(CAST(:desde AS timestamp), CAST(:hasta AS timestamp), interval '1 day') AS d "
        f"LEFT JOIN ({sql_por_dia}) AS x ON x.fecha = d::date ORDER BY 1"
    )


async def _serie(db, sql_por_dia: str, desde: date, hasta: date, tz: str) -> list[tuple[date, int]]:
    rows = await db.execute(text(_serie_diaria(sql_por_dia)), _p(desde, hasta, tz))
    return [(r.fecha, r.valor) for r in rows]


# ---------------------------------------------------------------- dashboard
async def clientes_nuevos_por_dia(db, desde: date, hasta: date, tz: str) -> list[tuple[date, int]]:
    """Customers registered each local day (forgotten ones included: the registration
    happened, and their orders still count as activity)."""
    return await _serie(
        db,
        f"SELECT {DIA_LOCAL} AS fecha, count(*) AS valor FROM crm.clientes WHERE {EN_RANGO} GROUP BY 1",
        desde,
        hasta,
        tz,
    )


async def clientes_activos_por_dia(db, desde: date, hasta: date, tz: str) -> list[tuple[date, int]]:
    """Distinct customers with a non-cancelled order each local day."""
    return await _serie(
        db,
        f"SELECT {DIA_LOCAL} AS fecha, count(DISTINCT cliente_id) AS valor FROM crm.pedidos "
        f"WHERE {EN_RANGO} AND estado <> 'cancelado' GROUP BY 1",
        desde,
        hasta,
        tz,
    )


async def ingresos_por_dia(db, desde: date, hasta: date, tz: str) -> list[tuple[date, int]]:
    """Sum of the totals of non-cancelled orders each local day, in pesos."""
    return await _serie(
        db,
        f"SELECT {DIA_LOCAL} AS fecha, sum(total) AS valor FROM crm.pedidos "
        f"WHERE {EN_RANGO} AND estado <> 'cancelado' GROUP BY 1",
        desde,
        hasta,
        tz,
    )


async def resumen_pedidos(db, desde: date, hasta: date, tz: str) -> dict[str, int]:
    """Non-cancelled orders: count, revenue and average ticket (integer pesos, rounded
    half away from zero; 0 without orders)."""
    row = (
        await db.execute(
            text(
                "SELECT count(*) AS pedidos, coalesce(sum(total), 0)::bigint AS ingresos, "
                "coalesce(round(sum(total) / nullif(count(*), 0)), 0)::bigint AS ticket_promedio "
                f"FROM crm.pedidos WHERE {EN_RANGO} AND estado <> 'cancelado'"
            ),
            _p(desde, hasta, tz),
        )
    ).one()
    return {"pedidos": row.pedidos, "ingresos": row.ingresos, "ticket_promedio": row.ticket_promedio}


async def _pedidos_por(
    db, columna: str, claves: tuple[str, ...], desde: date, hasta: date, tz: str
) -> list[tuple[str, int]]:
    """All orders in range (cancelled included) counted by `columna`: every known value in
    its usual order, zeros included, then any value the list does not know."""
    assert columna in ("canal", "estado")
    rows = await db.execute(
        text(
            "SELECT coalesce(k.clave, x.clave) AS clave, coalesce(x.valor, 0)::bigint AS valor "
            "FROM unnest(CAST(:claves AS text[])) WITH ORDINALITY AS k(clave, orden) "
            f"FULL JOIN (SELECT {columna} AS clave, count(*) AS valor FROM crm.pedidos "
            f"           WHERE {EN_RANGO} GROUP BY 1) AS x ON x.clave = k.clave "
            "ORDER BY k.orden NULLS LAST, 1"
        ),
        _p(desde, hasta, tz, claves=list(claves)),
    )
    return [(r.clave, r.valor) for r in rows]


async def pedidos_por_canal(db, desde: date, hasta: date, tz: str) -> list[tuple[str, int]]:
    return await _pedidos_por(db, "canal", CANALES, desde, hasta, tz)


async def pedidos_por_estado(db, desde: date, hasta: date, tz: str) -> list[tuple[str, int]]:
    return await _pedidos_por(db, "estado", ESTADOS, desde, hasta, tz)


async def top_productos(db, desde: date, hasta: date, tz: str, limite: int = 10) -> list[dict]:
    """Best-selling products by revenue over non-cancelled orders (ties: more units, then id)."""
    rows = await db.execute(
        text(
            "SELECT pr.id AS producto_id, pr.nombre, pr.categoria, t.unidades, t.ingresos "
            "FROM (SELECT i.marca_id, i.producto_id, sum(i.cantidad)::bigint AS unidades, "
            "             sum(i.subtotal)::bigint AS ingresos "
            "        FROM crm.pedidos p "
            "        JOIN crm.pedido_items i ON i.marca_id = p.marca_id AND i.pedido_id = p.id "
            f"      WHERE {en_rango('p.created_at')} "
            "         AND p.estado <> 'cancelado' "
            "       GROUP BY i.marca_id, i.producto_id) AS t "
            "JOIN crm.productos pr ON pr.marca_id = t.marca_id AND pr.id = t.producto_id "
            "ORDER BY t.ingresos DESC, t.unidades DESC, pr.id LIMIT :limite"
        ),
        _p(desde, hasta, tz, limite=limite),
    )
    return [dict(r._mapping) for r in rows]


async def top_categorias(db, desde: date, hasta: date, tz: str, limite: int = 10) -> list[dict]:
    """Best-selling categories by revenue over non-cancelled orders (ties: more units, then name)."""
    rows = await db.execute(
        text(
            "SELECT pr.categoria, sum(i.cantidad)::bigint AS unidades, sum(i.subtotal)::bigint AS ingresos "
            "FROM crm.pedidos p "
            "JOIN crm.pedido_items i ON i.marca_id = p.marca_id AND i.pedido_id = p.id "
            "JOIN crm.productos pr ON pr.marca_id = i.marca_id AND pr.id = i.producto_id "
            f"WHERE {en_rango('p.created_at')} AND p.estado <> 'cancelado' "
            "GROUP BY pr.categoria ORDER BY ingresos DESC, unidades DESC, pr.categoria LIMIT :limite"
        ),
        _p(desde, hasta, tz, limite=limite),
    )
    return [dict(r._mapping) for r in rows]


async def satisfaccion(db, desde: date, hasta: date, tz: str) -> dict:
    """Average satisfaction score (1–5, 2 decimals; None without scores) and how many
    answered surveys (interactions with a score) it averages."""
    row = (
        await db.execute(
            text(
                "SELECT round(avg(puntaje_satisfaccion), 2) AS promedio, count(*) AS encuestas "
                f"FROM crm.interacciones WHERE {EN_RANGO} AND puntaje_satisfaccion IS NOT NULL"
            ),
            _p(desde, hasta, tz),
        )
    ).one()
    return {"promedio": _float(row.promedio), "encuestas": row.encuestas}


async def whatsapp(db, desde: date, hasta: date, tz: str) -> dict:
    """The WhatsApp channel in the range:
    - mensajes entrantes / salientes per local day (interactions on channel whatsapp);
    - mediana de primera respuesta: for each inbound message, seconds until the next
      outbound message to that customer; the median over answered messages (None if none);
    - pedidos from WhatsApp (orders with canal whatsapp created in the range, any status);
    - conversion: of the customers who wrote in the range, the share who placed a WhatsApp
      order in the range (0–1, 4 decimals; None when nobody wrote)."""
    por_dia = (
        f"SELECT {DIA_LOCAL} AS fecha, count(*) AS valor FROM crm.interacciones "
        f"WHERE {EN_RANGO} AND canal = 'whatsapp' AND direccion = :direccion GROUP BY 1"
    )
    series = {}
    for direccion in ("entrante", "saliente"):
        rows = await db.execute(text(_serie_diaria(por_dia)), _p(desde, hasta, tz, direccion=direccion))
        series[direccion] = [(r.fecha, r.valor) for r in rows]
    row = (
        await db.execute(
            text(
                "WITH entrantes AS (SELECT marca_id, cliente_id, created_at FROM crm.interacciones "
                f"  WHERE {EN_RANGO} AND canal = 'whatsapp' AND direccion = 'entrante'), "
                "respuestas AS (SELECT extract(epoch FROM r.created_at - e.created_at) AS segundos "
                "  FROM entrantes e CROSS JOIN LATERAL (SELECT o.created_at FROM crm.interacciones o "
                "    WHERE o.marca_id = e.marca_id AND o.cliente_id = e.cliente_id AND o.canal = 'whatsapp' "
                "      AND o.direccion = 'saliente' AND o.created_at >= e.created_at "
                "    ORDER BY o.created_at LIMIT 1) r), "
                "compradores AS (SELECT DISTINCT cliente_id FROM crm.pedidos "
                f"  WHERE {EN_RANGO} AND canal = 'whatsapp') "
                "SELECT (SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY segundos) FROM respuestas) AS mediana, "
                f"  (SELECT count(*) FROM crm.pedidos WHERE {EN_RANGO} AND canal = 'whatsapp') AS pedidos, "
                "  (SELECT count(DISTINCT cliente_id) FROM entrantes) AS conversaciones, "
                "  (SELECT count(*) FROM (SELECT DISTINCT cliente_id FROM entrantes) c "
                "     JOIN compradores USING (cliente_id)) AS convertidos"
            ),
            _p(desde, hasta, tz),
        )
    ).one()
    return {
        "entrantes": series["entrante"],
        "salientes": series["saliente"],
        "mediana_primera_respuesta_segundos": None if row.mediana is None else round(float(row.mediana), 1),
        "pedidos": row.pedidos,
        "conversion": round(row.convertidos / row.conversaciones, 4) if row.conversaciones else None,
    }


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


# ---------------------------------------------------------------- periodic report
AGRUPACIONES = {"dia": ("day", "1 day"), "semana": ("week", "1 week"), "mes": ("month", "1 month")}
COLUMNAS_REPORTE = (
    "periodo",
    "pedidos",
    "ingresos",
    "ticket_promedio",
    "clientes_nuevos",
    "clientes_activos",
    "pedidos_cancelados",
    "satisfaccion_promedio",
)


async def reporte(db, desde: date, hasta: date, tz: str, agrupar: str = "dia") -> list[dict]:
    """One row per local day, week (starting Monday) or calendar month touching the range,
    every period present; `periodo` is the period's first day, and the first and last
    periods count only the days inside the range. Keys: COLUMNAS_REPORTE."""
    if agrupar not in AGRUPACIONES:
        raise campo("agrupar", f"debe ser {', '.join(AGRUPACIONES)}", 400)
    unidad, paso = AGRUPACIONES[agrupar]
    periodo = "date_trunc(:unidad, created_at AT TIME ZONE :tz)::date"
    rows = await db.execute(
        text(f"""
        WITH periodos AS (
          SELECT p::date AS periodo
            FROM generate_series(date_trunc(:unidad, CAST(:desde AS timestamp)), CAST(:hasta AS timestamp),
                                 CAST(:paso AS interval)) AS p
        ), ped AS (
          SELECT {periodo} AS periodo,
                 count(*) FILTER (WHERE estado <> 'cancelado') AS pedidos,
                 coalesce(sum(total) FILTER (WHERE estado <> 'cancelado'), 0) AS ingresos,
                 count(DISTINCT cliente_id) FILTER (WHERE estado <> 'cancelado') AS clientes_activos,
                 count(*) FILTER (WHERE estado = 'cancelado') AS pedidos_cancelados
            FROM crm.pedidos WHERE {EN_RANGO} GROUP BY 1
        ), cli AS (
          SELECT {periodo} AS periodo, count(*) AS clientes_nuevos
            FROM crm.clientes WHERE {EN_RANGO} GROUP BY 1
        ), enc AS (
          SELECT {periodo} AS periodo, round(avg(puntaje_satisfaccion), 2) AS satisfaccion_promedio
            FROM crm.interacciones WHERE {EN_RANGO} AND puntaje_satisfaccion IS NOT NULL GROUP BY 1
        )
        SELECT periodos.periodo,
               coalesce(ped.pedidos, 0)::bigint AS pedidos,
               coalesce(ped.ingresos, 0)::bigint AS ingresos,
               coalesce(round(ped.ingresos / nullif(ped.pedidos, 0)), 0)::bigint AS ticket_promedio,
               coalesce(cli.clientes_nuevos, 0)::bigint AS clientes_nuevos,
               coalesce(ped.clientes_activos, 0)::bigint AS clientes_activos,
               coalesce(ped.pedidos_cancelados, 0)::bigint AS pedidos_cancelados,
               enc.satisfaccion_promedio
          FROM periodos
          LEFT JOIN ped USING (periodo) LEFT JOIN cli USING (periodo) LEFT JOIN enc USING (periodo)
         ORDER BY periodos.periodo"""),
        _p(desde, hasta, tz, unidad=unidad, paso=paso),
    )
    out = []
    for r in rows:
        fila = dict(r._mapping)
        fila["satisfaccion_promedio"] = _float(fila["satisfaccion_promedio"])
        out.append(fila)
    return out


def reporte_csv(filas: list[dict]) -> bytes:
    """RFC 4180 CSV, UTF-8, a header row of COLUMNAS_REPORTE; dates ISO, no score → empty."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(COLUMNAS_REPORTE)
    for f in filas:
        w.writerow(
            [
                "" if f[c] is None else (f[c].isoformat() if isinstance(f[c], date) else f[c])
                for c in COLUMNAS_REPORTE
            ]
        )
    return buf.getvalue().encode("utf-8")


_FORMATO_XLSX = {
    "periodo": "yyyy-mm-dd",
    "ingresos": "#,##0",
    "ticket_promedio": "#,##0",
    "satisfaccion_promedio": "0.00",
}


def reporte_xlsx(filas: list[dict], titulo: str = "Reporte") -> bytes:
    """An Excel workbook, one sheet: bold header, real dates, pesos as #,##0, widths set."""
    from openpyxl import Workbook
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter

    wb = Workbook()
    ws = wb.active
    ws.title = titulo[:31]
    ws.append(list(COLUMNAS_REPORTE))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    for f in filas:
        ws.append([f[c] for c in COLUMNAS_REPORTE])
    for i, c in enumerate(COLUMNAS_REPORTE, start=1):
        letra = get_column_letter(i)
        if c in _FORMATO_XLSX:
            for (cell,) in ws.iter_rows(min_row=2, min_col=i, max_col=i):
                cell.number_format = _FORMATO_XLSX[c]
        ws.column_dimensions[letra].width = max(len(c) + 2, 14)
    ws.freeze_panes = "A2"
    buf = io.BytesIO()
    wb.save(buf)
    return buf.getvalue()
