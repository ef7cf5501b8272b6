"""The four Metabase dashboards, as data: one native SQL card per query, over `reporting` only.

Every card's SQL uses Metabase's template tags (Metabase v0.50):
- `{{desde}}` and `{{hasta}}`: date variables, always inside optional clauses
  (`[[AND fecha >= {{desde}}]]`), so a dashboard with no dates shows the whole history;
- `{{marca}}`: a text variable, the brand filter of the executives' dashboards
  (`[[AND marca = {{marca}}]]`). A brand's own dashboards drop those clauses
  (`Tarjeta.sql_para(ejecutivo=False)`): its connection sees one brand anyway.
Every card returns a `marca` column (the brand's slug), so a brand role's results can be
checked row by row (tests/test_metabase_cards.py).

Most cards read the `reporting.resumen_*` views: daily and per-customer summaries that
`resumen.refrescar()` recomputes (db/migrations/0003_reporting.sql), because two years of a
group's history cannot be aggregated per request in 300 ms. Their figures are as fresh as
the last refresh; the rest (customers, outbox, alerts) read live views.

`renderizar()` substitutes the tags exactly as Metabase does before a query reaches
PostgreSQL (optional clauses dropped when one of their tags has no value, values as SQL
literals): the tests and bench/metabase_cards.py run what Metabase would run.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import date

# ---------------------------------------------------------------- template tags
ETIQUETAS = {
    "desde": {"display-name": "Desde", "type": "date"},
    "hasta": {"display-name": "Hasta", "type": "date"},
    "marca": {"display-name": "Marca", "type": "text"},
}
# The card parameter type Metabase gives each template tag type, and the dashboard filter type.
TIPO_PARAMETRO = {"date": "date/single", "text": "category"}
TIPO_FILTRO = {"date": "date/single", "text": "string/="}

_ETIQUETA = re.compile(r"\{\{\s*([A-Za-z0-9_]+)\s*\}\}")
_OPCIONAL = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)
_ID = uuid.UUID("7d1f3c52-6b0e-4f4e-9a4e-2c0d6f1b9a10")  # namespace of the tags' stable ids


def etiquetas(sql: str) -> list[str]:
    """The template tags a query uses, in order of first appearance."""
    vistas: dict[str, None] = {}
    for m in _ETIQUETA.finditer(sql):
        vistas.setdefault(m.group(1), None)
    return list(vistas)


def sin_marca(sql: str) -> str:
    """The query without its brand filter: every optional clause that uses {{marca}} removed."""
    sql = _OPCIONAL.sub(lambda m: "" if "marca" in etiquetas(m.group(1)) else m.group(0), sql)
    if "marca" in etiquetas(sql):
        raise ValueError("{{marca}} solo puede ir dentro de una cláusula opcional [[...]]")
    return re.sub(r"[ \t]+\n", "\n", sql)


def literal(valor) -> str:
    """A parameter value as the SQL literal Metabase substitutes."""
    if isinstance(valor, date):
        return f"DATE '{valor.isoformat()}'"
    if isinstance(valor, bool) or not isinstance(valor, (str, int)):
        raise TypeError(f"valor de parámetro no soportado: {valor!r}")
    if isinstance(valor, int):
        return str(valor)
    return "'" + valor.replace("'", "''") + "'"


def renderizar(sql: str, valores: dict) -> str:
    """What Metabase sends to the database for `sql` with these parameter values: an
    optional clause `[[...]]` is kept (without its brackets) only when every tag in it has a
    value; each tag is replaced by its value as a literal. A tag outside any optional clause
    must have a value."""
    dados = {k: v for k, v in valores.items() if v is not None and v != ""}

    def opcional(m: re.Match) -> str:
        return m.group(1) if all(t in dados for t in etiquetas(m.group(1))) else ""

    sql = _OPCIONAL.sub(opcional, sql)
    faltan = [t for t in etiquetas(sql) if t not in dados]
    if faltan:
        raise ValueError(f"faltan valores para {faltan}")
    return _ETIQUETA.sub(lambda m: literal(dados[m.group(1)]), sql)


# ---------------------------------------------------------------- definitions
@dataclass(frozen=True)
class Tarjeta:
    """One Metabase question: a native SQL query and how to show it."""

    nombre: str
    descripcion: str
    sql: str
    visualizacion: str = "table"  # Metabase `display`: table, line, bar, row, pie, scalar...
    ajustes: dict = field(default_factory=dict)  # Metabase `visualization_settings`
    ancho: int = 12  # dashboard grid: 24 columns
    alto: int = 6

    def sql_para(self, ejecutivo: bool) -> str:
        return self.sql.strip() if ejecutivo else sin_marca(self.sql).strip()

    def etiquetas(self, ejecutivo: bool) -> list[str]:
        return etiquetas(self.sql_para(ejecutivo))


@dataclass(frozen=True)
class Tablero:
    nombre: str
    descripcion: str
    tarjetas: tuple[Tarjeta, ...]


def id_etiqueta(tablero: str, tarjeta: str, etiqueta: str) -> str:
    """A template tag's id, stable across runs (Metabase stores it; provisioning compares)."""
    return str(uuid.uuid5(_ID, f"{tablero}/{tarjeta}/{etiqueta}"))


def _linea(x: str, y: list[str], serie: str | None = "marca") -> dict:
    return {"graph.dimensions": [x, serie] if serie else [x], "graph.metrics": y}


FRESCURA = " Cifras del resumen que el programador de tareas recalcula (resumen.refrescar())."

# ---------------------------------------------------------------- Revenue Overview
INGRESOS = Tablero(
    "Resumen de ingresos",
    "Revenue Overview: ingresos por marca y período, ticket promedio y crecimiento frente al período "
    "anterior. Ingresos = total de los pedidos no cancelados, en pesos; días en la zona horaria de cada marca.",
    (
        Tarjeta(
            "Ingresos por marca y mes",
            "Pedidos no cancelados, ingresos y ticket promedio por mes." + FRESCURA,
            """
SELECT marca, date_trunc('month', fecha)::date AS mes, sum(pedidos)::bigint AS pedidos,
       sum(ingresos)::bigint AS ingresos, round(sum(ingresos)::numeric / nullif(sum(pedidos), 0))::bigint AS ticket_promedio
  FROM reporting.resumen_ventas_dia
 WHERE estado <> 'cancelado'
   [[AND fecha >= {{desde}}]]
   [[AND fecha <= {{hasta}}]]
   [[AND marca = {{marca}}]]
 GROUP BY marca, mes
 ORDER BY mes, marca
""",
            "line",
            _linea("mes", ["ingresos"]),
            ancho=24,
        ),
        Tarjeta(
            "Ticket promedio por marca",
            "Pedidos, ingresos y ticket promedio (ingresos / pedidos) de cada marca en el período."
            + FRESCURA,
            """
SELECT marca, sum(pedidos)::bigint AS pedidos, sum(ingresos)::bigint AS ingresos,
       round(sum(ingresos)::numeric / nullif(sum(pedidos), 0))::bigint AS ticket_promedio
  FROM reporting.resumen_ventas_dia
 WHERE estado <> 'cancelado'
   [[AND fecha >= {{desde}}]]
   [[AND fecha <= {{hasta}}]]
   [[AND marca = {{marca}}]]
 GROUP BY marca
 ORDER BY ingresos DESC
""",
            "bar",
            _linea("marca", ["ticket_promedio"], None),
        ),
        Tarjeta(
            "Ingresos del período frente al anterior",
            "Ingresos del período elegido y del período inmediatamente anterior de igual largo, y su "
            "variación. Sin fechas: los últimos 30 días hasta hoy." + FRESCURA,
            """
WITH periodo AS (
  SELECT d.desde, d.hasta, d.desde - (d.hasta - d.desde + 1) AS desde_anterior
    FROM (SELECT coalesce([[{{desde}},]] coalesce([[{{hasta}},]] current_date) - 29) AS desde,
                 coalesce([[{{hasta}},]] current_date) AS hasta) d
), ventas AS (
  SELECT v.marca_id,
         sum(v.ingresos) FILTER (WHERE v.fecha >= p.desde) AS ingresos,
         sum(v.pedidos) FILTER (WHERE v.fecha >= p.desde) AS pedidos,
         sum(v.ingresos) FILTER (WHERE v.fecha < p.desde) AS ingresos_anterior
    FROM reporting.resumen_ventas_dia v CROSS JOIN periodo p
   WHERE v.estado <> 'cancelado' AND v.fecha BETWEEN p.desde_anterior AND p.hasta
   GROUP BY v.marca_id
)
SELECT m.slug AS marca, p.desde, p.hasta, coalesce(v.pedidos, 0)::bigint AS pedidos,
       coalesce(v.ingresos, 0)::bigint AS ingresos, coalesce(v.ingresos_anterior, 0)::bigint AS ingresos_periodo_anterior,
       round(100.0 * (coalesce(v.ingresos, 0) - v.ingresos_anterior) / nullif(v.ingresos_anterior, 0), 1)
         AS crecimiento_pct
  FROM reporting.marcas m CROSS JOIN periodo p
  LEFT JOIN ventas v ON v.marca_id = m.marca_id
 WHERE true
   [[AND m.slug = {{marca}}]]
 ORDER BY ingresos DESC, marca
""",
        ),
        Tarjeta(
            "Crecimiento mensual de ingresos",
            "Ingresos de cada mes frente al mes anterior de la misma marca (variación en %)." + FRESCURA,
            """
WITH meses AS (
  SELECT marca, date_trunc('month', fecha)::date AS mes, sum(ingresos)::bigint AS ingresos
    FROM reporting.resumen_ventas_dia
   WHERE estado <> 'cancelado'
     [[AND fecha >= date_trunc('month', {{desde}}) - interval '1 month']]
     [[AND fecha <= {{hasta}}]]
     [[AND marca = {{marca}}]]
   GROUP BY 1, 2
), crecimiento AS (
  SELECT marca, mes, ingresos, lag(ingresos) OVER w AS ingresos_mes_anterior,
         round(100.0 * (ingresos - lag(ingresos) OVER w) / nullif(lag(ingresos) OVER w, 0), 1) AS crecimiento_pct
    FROM meses
  WINDOW w AS (PARTITION BY marca ORDER BY mes)
)
SELECT marca, mes, ingresos, ingresos_mes_anterior, crecimiento_pct
  FROM crecimiento
 WHERE true
   [[AND mes >= date_trunc('month', {{desde}})]]
 ORDER BY mes, marca
""",
            "line",
            _linea("mes", ["crecimiento_pct"]),
        ),
        Tarjeta(
            "Ingresos por categoría de producto",
            "Unidades e ingresos (suma de los ítems de pedidos no cancelados) por categoría del catálogo."
            + FRESCURA,
            """
SELECT marca, categoria, sum(unidades)::bigint AS unidades, sum(ingresos)::bigint AS ingresos
  FROM reporting.resumen_categorias_dia
 WHERE true
   [[AND fecha >= {{desde}}]]
   [[AND fecha <= {{hasta}}]]
   [[AND marca = {{marca}}]]
 GROUP BY marca, categoria
 ORDER BY marca, ingresos DESC
""",
            "row",
            _linea("categoria", ["ingresos"]),
        ),
    ),
)

# ---------------------------------------------------------------- Customer Analytics
CLIENTES = Tablero(
    "Análisis de clientes",
    "Customer Analytics: captación por mes, retención por cohorte mensual, tasa de recompra, distribución "
    "del valor de vida (CLV) y segmentos. Sin datos de contacto: solo identificadores y atributos.",
    (
        Tarjeta(
            "Clientes nuevos por mes",
            "Clientes dados de alta cada mes (fecha de alta en la zona horaria de la marca), por canal de origen.",
            """
SELECT marca, date_trunc('month', fecha_alta)::date AS mes, canal_origen, count(*) AS clientes_nuevos
  FROM reporting.clientes
 WHERE true
   [[AND fecha_alta >= {{desde}}]]
   [[AND fecha_alta <= {{hasta}}]]
   [[AND marca = {{marca}}]]
 GROUP BY marca, mes, canal_origen
 ORDER BY mes, marca, canal_origen
""",
            "bar",
            {**_linea("mes", ["clientes_nuevos"], "canal_origen"), "stackable.stack_type": "stacked"},
            ancho=24,
        ),
        Tarjeta(
            "Retención por cohorte mensual",
            "Cohorte = mes de la primera compra (pedido no cancelado). Para cada mes siguiente: clientes de la "
            "cohorte que volvieron a comprar y su porcentaje. Las fechas filtran el mes de la cohorte."
            + FRESCURA,
            """
SELECT marca, cohorte, meses_desde_primera, clientes,
       round(100.0 * clientes / first_value(clientes) OVER (PARTITION BY marca, cohorte ORDER BY meses_desde_primera),
             1) AS retencion_pct
  FROM reporting.resumen_cohortes
 WHERE true
   [[AND cohorte >= date_trunc('month', {{desde}})]]
   [[AND cohorte <= {{hasta}}]]
   [[AND marca = {{marca}}]]
 ORDER BY marca, cohorte, meses_desde_primera
""",
            "table",
            {},
            ancho=24,
            alto=8,
        ),
        Tarjeta(
            "Tasa de recompra",
            "De los clientes cuya primera compra cae en el período: cuántos compraron dos veces o más "
            "(en toda su historia) y pedidos promedio por cliente." + FRESCURA,
            """
SELECT marca, count(*) AS clientes, count(*) FILTER (WHERE pedidos >= 2) AS clientes_que_repiten,
       round(100.0 * count(*) FILTER (WHERE pedidos >= 2) / count(*), 1) AS tasa_recompra_pct,
       round(avg(pedidos), 2) AS pedidos_por_cliente
  FROM reporting.resumen_clientes
 WHERE true
   [[AND primera_compra >= {{desde}}]]
   [[AND primera_compra <= {{hasta}}]]
   [[AND marca = {{marca}}]]
 GROUP BY marca
 ORDER BY marca
""",
            "bar",
            _linea("marca", ["tasa_recompra_pct"], None),
        ),
        Tarjeta(
            "Distribución del valor de vida del cliente (CLV)",
            "Clientes por tramo de valor de vida (suma de sus pedidos no cancelados, en pesos). Las fechas "
            "filtran la fecha de alta del cliente." + FRESCURA,
            """
WITH tramos (orden, tramo, minimo, maximo) AS (
  VALUES (1, 'Sin compras', 0, 1), (2, 'Menos de $10.000', 1, 10000), (3, '$10.000 a $25.000', 10000, 25000),
         (4, '$25.000 a $50.000', 25000, 50000), (5, '$50.000 a $100.000', 50000, 100000),
         (6, '$100.000 a $250.000', 100000, 250000), (7, '$250.000 a $500.000', 250000, 500000),
         (8, '$500.000 a $1.000.000', 500000, 1000000), (9, 'Más de $1.000.000', 1000000, 9223372036854775807)
), valor AS (
  SELECT c.marca, coalesce(v.valor, 0) AS valor
    FROM reporting.clientes c
    LEFT JOIN reporting.resumen_clientes v ON v.marca_id = c.marca_id AND v.cliente_id = c.cliente_id
   WHERE true
     [[AND c.fecha_alta >= {{desde}}]]
     [[AND c.fecha_alta <= {{hasta}}]]
     [[AND c.marca = {{marca}}]]
)
SELECT v.marca, t.orden, t.tramo, count(*) AS clientes, sum(v.valor)::bigint AS valor_total
  FROM valor v JOIN tramos t ON v.valor >= t.minimo AND v.valor < t.maximo
 GROUP BY v.marca, t.orden, t.tramo
 ORDER BY v.marca, t.orden
""",
            "bar",
            _linea("tramo", ["clientes"]),
        ),
        Tarjeta(
            "Clientes por segmento",
            "Clientes vigentes por segmento (nuevo, recurrente, vip, inactivo; lo recalcula el CRM) y su "
            "porcentaje en la marca. Las fechas filtran la fecha de alta.",
            """
SELECT marca, segmento, count(*) AS clientes,
       round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY marca), 1) AS porcentaje
  FROM reporting.clientes
 WHERE true
   [[AND fecha_alta >= {{desde}}]]
   [[AND fecha_alta <= {{hasta}}]]
   [[AND marca = {{marca}}]]
 GROUP BY marca, segmento
 ORDER BY marca, array_position(ARRAY['nuevo', 'recurrente', 'vip', 'inactivo'], segmento)
""",
            "bar",
            {**_linea("marca", ["clientes"], "segmento"), "stackable.stack_type": "normalized"},
        ),
    ),
)

# ---------------------------------------------------------------- Operations
OPERACIONES = Tablero(
    "Operaciones",
    "Operations: pedidos por canal y estado, tiempo entre cambios de estado, horas y días de más "
    "pedidos, y alertas de WhatsApp que esperan a una persona.",
    (
        Tarjeta(
            "Pedidos por canal y estado",
            "Pedidos creados en el período por canal y estado actual, con su monto total." + FRESCURA,
            """
SELECT marca, canal, estado, sum(pedidos)::bigint AS pedidos, sum(ingresos)::bigint AS monto
  FROM reporting.resumen_ventas_dia
 WHERE true
   [[AND fecha >= {{desde}}]]
   [[AND fecha <= {{hasta}}]]
   [[AND marca = {{marca}}]]
 GROUP BY marca, canal, estado
 ORDER BY marca, canal, array_position(ARRAY['pendiente', 'confirmado', 'en_preparacion', 'listo', 'entregado', 'cancelado'], estado)
""",
            "bar",
            {**_linea("canal", ["pedidos"], "estado"), "stackable.stack_type": "stacked"},
        ),
        Tarjeta(
            "Tiempo mediano entre cambios de estado",
            "Minutos desde el estado anterior hasta cada cambio (historial de estados de los pedidos): mediana "
            "y percentil 90 por mes del cambio. Las fechas filtran el mes." + FRESCURA,
            """
SELECT marca, mes, desde || ' → ' || hacia AS cambio, cambios, mediana_minutos, p90_minutos
  FROM reporting.resumen_tiempos_estado
 WHERE true
   [[AND mes >= date_trunc('month', {{desde}})]]
   [[AND mes <= {{hasta}}]]
   [[AND marca = {{marca}}]]
 ORDER BY marca, mes, array_position(ARRAY['pendiente', 'confirmado', 'en_preparacion', 'listo', 'entregado', 'cancelado'], hacia), array_position(ARRAY['pendiente', 'confirmado', 'en_preparacion', 'listo', 'entregado', 'cancelado'], desde)
""",
            "line",
            _linea("mes", ["mediana_minutos"], "cambio"),
        ),
        Tarjeta(
            "Pedidos por hora del día",
            "Pedidos creados en cada hora del día (hora local de la marca), cancelados incluidos." + FRESCURA,
            """
SELECT marca, hora, sum(pedidos)::bigint AS pedidos
  FROM reporting.resumen_pedidos_hora
 WHERE true
   [[AND fecha >= {{desde}}]]
   [[AND fecha <= {{hasta}}]]
   [[AND marca = {{marca}}]]
 GROUP BY marca, hora
 ORDER BY marca, hora
""",
            "bar",
            _linea("hora", ["pedidos"]),
        ),
        Tarjeta(
            "Pedidos por día de la semana",
            "Pedidos por día de la semana (calendario local de la marca), cancelados incluidos, y el promedio "
            "por día de ese tipo en que hubo pedidos." + FRESCURA,
            """
SELECT marca, dia_semana, (ARRAY['lunes', 'martes', 'miércoles', 'jueves', 'viernes', 'sábado', 'domingo'])[dia_semana] AS dia, sum(pedidos)::bigint AS pedidos,
       round(sum(pedidos)::numeric / count(DISTINCT fecha), 1) AS promedio_por_dia
  FROM reporting.resumen_pedidos_hora
 WHERE true
   [[AND fecha >= {{desde}}]]
   [[AND fecha <= {{hasta}}]]
   [[AND marca = {{marca}}]]
 GROUP BY marca, dia_semana
 ORDER BY marca, dia_semana
""",
            "bar",
            _linea("dia", ["pedidos"]),
        ),
        Tarjeta(
            "Alertas de WhatsApp por motivo",
            "Mensajes que el bot no pudo atender y pasaron a una persona: alertas por motivo, cuántas siguen "
            "abiertas y la mediana de horas hasta cerrarlas.",
            """
SELECT marca, motivo, count(*) AS alertas, count(*) FILTER (WHERE estado <> 'cerrada') AS sin_cerrar,
       round((percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM cerrada_en - created_at)) / 3600)::numeric,
             1) AS mediana_horas_hasta_cierre
  FROM reporting.alertas
 WHERE true
   [[AND fecha >= {{desde}}]]
   [[AND fecha <= {{hasta}}]]
   [[AND marca = {{marca}}]]
 GROUP BY marca, motivo
 ORDER BY marca, alertas DESC
""",
        ),
    ),
)

# ---------------------------------------------------------------- Marketing
SIN_CAMPANAS = (
    " Las campañas aún no existen en el CRM (no hay tabla de campañas): su rendimiento se sumará "
    "a este tablero cuando existan."
)
MARKETING = Tablero(
    "Marketing",
    "Marketing: rendimiento de WhatsApp (mensajes entrantes y salientes, respuestas, pedidos atribuidos, "
    "entregas) y bajas de marketing." + SIN_CAMPANAS,
    (
        Tarjeta(
            "Mensajes de WhatsApp por mes",
            "Mensajes de WhatsApp recibidos y enviados, y conversaciones (clientes distintos que escribieron "
            "cada día, sumados)." + SIN_CAMPANAS + FRESCURA,
            """
SELECT marca, date_trunc('month', fecha)::date AS mes, sum(entrantes)::bigint AS entrantes,
       sum(salientes)::bigint AS salientes, sum(conversaciones)::bigint AS conversaciones
  FROM reporting.resumen_mensajes_dia
 WHERE true
   [[AND fecha >= {{desde}}]]
   [[AND fecha <= {{hasta}}]]
   [[AND marca = {{marca}}]]
 GROUP BY marca, mes
 ORDER BY mes, marca
""",
            "line",
            _linea("mes", ["entrantes", "salientes"]),
            ancho=24,
        ),
        Tarjeta(
            "Respuestas a mensajes entrantes",
            "Mensajes entrantes de WhatsApp seguidos de un mensaje nuestro al mismo cliente dentro de 24 horas, "
            "tasa de respuesta y minutos promedio hasta esa respuesta." + FRESCURA,
            """
SELECT marca, date_trunc('month', fecha)::date AS mes, sum(entrantes)::bigint AS entrantes,
       sum(respondidos)::bigint AS respondidos_24h,
       round(100.0 * sum(respondidos) / nullif(sum(entrantes), 0), 1) AS tasa_respuesta_pct,
       round(sum(minutos_respuesta) / nullif(sum(respondidos), 0), 1) AS minutos_promedio_respuesta
  FROM reporting.resumen_mensajes_dia
 WHERE true
   [[AND fecha >= {{desde}}]]
   [[AND fecha <= {{hasta}}]]
   [[AND marca = {{marca}}]]
 GROUP BY marca, mes
 ORDER BY mes, marca
""",
            "line",
            _linea("mes", ["tasa_respuesta_pct"]),
        ),
        Tarjeta(
            "Pedidos atribuidos a WhatsApp",
            "Pedidos no cancelados que entraron por WhatsApp (canal del pedido), sus ingresos y su parte del "
            "total de la marca." + SIN_CAMPANAS + FRESCURA,
            """
SELECT marca, date_trunc('month', fecha)::date AS mes,
       sum(pedidos) FILTER (WHERE canal = 'whatsapp')::bigint AS pedidos_whatsapp,
       coalesce(sum(ingresos) FILTER (WHERE canal = 'whatsapp'), 0)::bigint AS ingresos_whatsapp,
       round(100.0 * coalesce(sum(pedidos) FILTER (WHERE canal = 'whatsapp'), 0) / sum(pedidos), 1)
         AS porcentaje_de_pedidos
  FROM reporting.resumen_ventas_dia
 WHERE estado <> 'cancelado'
   [[AND fecha >= {{desde}}]]
   [[AND fecha <= {{hasta}}]]
   [[AND marca = {{marca}}]]
 GROUP BY marca, mes
 ORDER BY mes, marca
""",
            "line",
            _linea("mes", ["porcentaje_de_pedidos"]),
        ),
        Tarjeta(
            "Bajas de marketing",
            "Clientes que pidieron no recibir mensajes promocionales (BAJA), por mes de alta del cliente: el "
            "CRM guarda la baja, no su fecha, así que las fechas filtran la fecha de alta." + SIN_CAMPANAS,
            """
SELECT marca, date_trunc('month', fecha_alta)::date AS mes_de_alta, count(*) AS clientes,
       count(*) FILTER (WHERE opt_out_marketing) AS con_baja,
       round(100.0 * count(*) FILTER (WHERE opt_out_marketing) / count(*), 1) AS porcentaje_baja
  FROM reporting.clientes
 WHERE true
   [[AND fecha_alta >= {{desde}}]]
   [[AND fecha_alta <= {{hasta}}]]
   [[AND marca = {{marca}}]]
 GROUP BY marca, mes_de_alta
 ORDER BY mes_de_alta, marca
""",
            "line",
            _linea("mes_de_alta", ["porcentaje_baja"]),
        ),
        Tarjeta(
            "Envíos de WhatsApp por estado",
            "Respuestas y plantillas de la bandeja de salida por estado de entrega (en cola, enviado, "
            "entregado, leído, fallido) y tipo." + SIN_CAMPANAS,
            """
SELECT marca, estado, tipo, count(*) AS mensajes,
       round(100.0 * count(*) / sum(count(*)) OVER (PARTITION BY marca), 1) AS porcentaje
  FROM reporting.salientes
 WHERE true
   [[AND fecha >= {{desde}}]]
   [[AND fecha <= {{hasta}}]]
   [[AND marca = {{marca}}]]
 GROUP BY marca, estado, tipo
 ORDER BY marca, array_position(ARRAY['en_cola', 'enviado', 'entregado', 'leido', 'fallido'], estado), tipo
""",
        ),
    ),
)

TABLEROS: tuple[Tablero, ...] = (INGRESOS, CLIENTES, OPERACIONES, MARKETING)


def tarjetas() -> list[tuple[Tablero, Tarjeta]]:
    return [(t, c) for t in TABLEROS for c in t.tarjetas]
