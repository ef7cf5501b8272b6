"""Metrics: the dashboard and the periodic report, on a small dataset with known figures.

The dataset (brand in America/Santiago) puts orders at 23:30 and 00:30 local time around
an ordinary midnight and around both 2026 DST changes:
- 2026-04-05 00:00 -03 → 2026-04-04 23:00 -04: April 4 lasts 25 hours, 23:30 happens twice;
- 2026-09-06 00:00 -04 → 01:00 -03: September 6 lasts 23 hours, its midnight does not exist.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import uuid
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from conftest import make_brand, make_key
from openpyxl import load_workbook
from sqlalchemy import text

from api.services import marcas
from api.services import metricas as svc

CAMINO = {
    "pendiente": [],
    "confirmado": ["confirmado"],
    "en_preparacion": ["confirmado", "en_preparacion"],
    "listo": ["confirmado", "en_preparacion", "listo"],
    "entregado": ["confirmado", "en_preparacion", "listo", "entregado"],
    "cancelado": ["cancelado"],
}

PRODUCTOS = {  # sku: (nombre, categoria, precio)
    "A": ("Pollo entero", "pollos", 10000),
    "B": ("Papas fritas", "acompañamientos", 3000),
    "C": ("Bebida", "bebidas", 1490),
    "D": ("Medio pollo", "pollos", 6000),
}
CLIENTES = {  # name: created_at
    "c1": "2026-03-10 09:00-03",
    "c2": "2026-03-10 23:45-03",  # Mar 11 02:45 UTC: still March 10 in Santiago
    "c3": "2026-03-08 12:00-03",
    "c4": "2026-03-12 00:15-03",
}
PEDIDOS = [  # (cliente, canal, created_at, items, estado)
    ("c1", "whatsapp", "2026-03-10 23:30-03", {"A": 2}, "entregado"),  # 20000, Mar 10
    ("c2", "web", "2026-03-11 00:30-03", {"B": 1, "C": 2}, "confirmado"),  # 5980, Mar 11
    ("c1", "whatsapp", "2026-03-11 12:00-03", {"D": 6}, "cancelado"),  # 36000, not revenue
    ("c3", "telefono", "2026-03-11 20:00-03", {"A": 1, "B": 2}, "pendiente"),  # 16000
    ("c2", "presencial", "2026-03-13 10:00-03", {"C": 3}, "listo"),  # 4470, Mar 13 (Friday)
    ("c4", "web", "2026-03-15 23:30-03", {"A": 1}, "cancelado"),  # Sunday in Santiago, Monday in UTC
    # DST ends: April 4 has 25 hours
    ("c1", "whatsapp", "2026-04-04 23:30-03", {"A": 1}, "entregado"),  # 10000, Apr 4 (first 23:30)
    ("c2", "web", "2026-04-04 23:30-04", {"B": 1}, "confirmado"),  # 3000, Apr 4 (second 23:30)
    ("c3", "web", "2026-04-05 00:30-04", {"C": 1}, "pendiente"),  # 1490, Apr 5
    ("c1", "telefono", "2026-04-05 23:30-04", {"A": 1}, "pendiente"),  # 10000, Apr 5
    # DST starts: September 6 has 23 hours, from 00:00 -04 (= 01:00 -03)
    ("c1", "whatsapp", "2026-09-05 23:30-04", {"A": 1}, "entregado"),  # 10000, Sep 5
    ("c2", "web", "2026-09-06 01:30-03", {"B": 1}, "en_preparacion"),  # 3000, Sep 6
    ("c3", "web", "2026-09-06 23:30-03", {"C": 2}, "pendiente"),  # 2980, Sep 6
    ("c1", "presencial", "2026-09-07 00:30-03", {"D": 1}, "entregado"),  # 6000, Sep 7
]
ENCUESTAS = [  # (created_at, score)
    ("2026-03-08 23:50-03", 1),  # Mar 9 in UTC, Mar 8 in Santiago: outside Mar 9–15
    ("2026-03-10 23:50-03", 5),
    ("2026-03-11 00:10-03", 4),
    ("2026-03-14 15:00-03", 4),
    ("2026-03-16 00:10-03", 1),
]


def _pedido(conn, cliente_id: int, canal: str, ts: str, items: dict[int, int], estado: str) -> int:
    pid = conn.execute(
        text(
            "INSERT INTO crm.pedidos (cliente_id, canal, created_at) "
            "VALUES (:c, :canal, CAST(:ts AS timestamptz)) RETURNING id"
        ),
        {"c": cliente_id, "canal": canal, "ts": ts},
    ).scalar_one()
    for producto_id, cantidad in items.items():
        conn.execute(
            text("INSERT INTO crm.pedido_items (pedido_id, producto_id, cantidad) VALUES (:p, :pr, :n)"),
            {"p": pid, "pr": producto_id, "n": cantidad},
        )
    for paso in CAMINO[estado]:
        conn.execute(text("UPDATE crm.pedidos SET estado = :e WHERE id = :id"), {"e": paso, "id": pid})
    return pid


def _bind(conn, marca_id: int) -> None:
    conn.execute(text("SELECT set_config('app.marca_id', :m, true)"), {"m": str(marca_id)})


@pytest.fixture(scope="module")
def tienda(settings, api_engine):
    """A fresh brand holding the dataset above (plus make_brand's own rows, created now)."""
    b = make_brand(settings, api_engine, "met")
    with api_engine.begin() as conn:
        _bind(conn, b.id)
        prod = {
            sku: conn.execute(
                text(
                    "INSERT INTO crm.productos (sku, nombre, categoria, precio) VALUES (:s, :n, :c, :p) RETURNING id"
                ),
                {"s": sku, "n": n, "c": c, "p": p},
            ).scalar_one()
            for sku, (n, c, p) in PRODUCTOS.items()
        }
        cli = {
            k: conn.execute(
                text(
                    "INSERT INTO crm.clientes (nombre, created_at) VALUES (:n, CAST(:ts AS timestamptz)) RETURNING id"
                ),
                {"n": k, "ts": ts},
            ).scalar_one()
            for k, ts in CLIENTES.items()
        }
        for cliente, canal, ts, items, estado in PEDIDOS:
            _pedido(conn, cli[cliente], canal, ts, {prod[s]: n for s, n in items.items()}, estado)
        for ts, puntaje in ENCUESTAS:
            conn.execute(
                text(
                    "INSERT INTO crm.interacciones (cliente_id, canal, direccion, tipo, puntaje_satisfaccion, created_at) "
                    "VALUES (:c, 'whatsapp', 'entrante', 'encuesta', :p, CAST(:ts AS timestamptz))"
                ),
                {"c": cli["c1"], "p": puntaje, "ts": ts},
            )
        # a message without a score inside the range: not a survey answer
        conn.execute(
            text(
                "INSERT INTO crm.interacciones (cliente_id, canal, direccion, tipo, contenido, created_at) "
                "VALUES (:c, 'whatsapp', 'entrante', 'mensaje', 'hola', '2026-03-12 10:00-03')"
            ),
            {"c": cli["c2"]},
        )
    b.ids.update({f"producto_{k}": v for k, v in prod.items()})
    return b


def _get(client, brand, path: str, rol: str = "admin", **params):
    return client.get(f"/api/marcas/{brand.slug}/metricas/{path}", params=params, headers=brand.h(rol))


def _dias(desde: date, hasta: date) -> list[str]:
    return [str(desde + timedelta(days=i)) for i in range((hasta - desde).days + 1)]


def _serie(body: dict, campo: str) -> dict[str, int]:
    """The per-day list as {fecha: valor}, after checking every day is present once, in order."""
    puntos = body[campo]
    assert [p["fecha"] for p in puntos] == _dias(
        date.fromisoformat(body["desde"]), date.fromisoformat(body["hasta"])
    )
    return {p["fecha"]: p["valor"] for p in puntos}


def _no_cero(serie: dict[str, int]) -> dict[str, int]:
    return {k: v for k, v in serie.items() if v}


# ---------------------------------------------------------------- dashboard
def test_dashboard_week_with_exact_figures(client, tienda):
    r = _get(client, tienda, "dashboard", desde="2026-03-09", hasta="2026-03-15")
    assert r.status_code == 200, r.text
    d = r.json()
    assert (d["desde"], d["hasta"], d["zona_horaria"]) == ("2026-03-09", "2026-03-15", "America/Santiago")

    # c2 registered at 23:45 local (02:45 UTC next day); c3 before the range; c4 at 00:15
    nuevos = _serie(d, "clientes_nuevos_por_dia")
    assert _no_cero(nuevos) == {"2026-03-10": 2, "2026-03-12": 1}
    assert nuevos["2026-03-09"] == 0 and len(nuevos) == 7
    # Mar 11: c2 and c3 bought; c1's order that day was cancelled, so c1 is not active
    assert _no_cero(_serie(d, "clientes_activos_por_dia")) == {
        "2026-03-10": 1,
        "2026-03-11": 2,
        "2026-03-13": 1,
    }
    assert _no_cero(_serie(d, "ingresos_por_dia")) == {
        "2026-03-10": 20000,
        "2026-03-11": 21980,
        "2026-03-13": 4470,
    }
    assert d["ingresos"] == 46450 and d["pedidos"] == 4
    assert d["ticket_promedio"] == 11613  # 11612.5 rounds half up

    assert d["pedidos_por_canal"] == [
        {"clave": "whatsapp", "valor": 2},
        {"clave": "web", "valor": 2},
        {"clave": "telefono", "valor": 1},
        {"clave": "presencial", "valor": 1},
    ]
    assert {e["clave"]: e["valor"] for e in d["pedidos_por_estado"]} == {
        "pendiente": 1,
        "confirmado": 1,
        "en_preparacion": 0,
        "listo": 1,
        "entregado": 1,
        "cancelado": 2,
    }
    assert [e["clave"] for e in d["pedidos_por_estado"]] == list(svc.ESTADOS)

    # the cancelled 6 × Medio pollo (36000) would top the list if it counted
    assert d["top_productos"] == [
        {
            "producto_id": tienda.ids["producto_A"],
            "nombre": "Pollo entero",
            "categoria": "pollos",
            "unidades": 3,
            "ingresos": 30000,
        },
        {
            "producto_id": tienda.ids["producto_B"],
            "nombre": "Papas fritas",
            "categoria": "acompañamientos",
            "unidades": 3,
            "ingresos": 9000,
        },
        {
            "producto_id": tienda.ids["producto_C"],
            "nombre": "Bebida",
            "categoria": "bebidas",
            "unidades": 5,
            "ingresos": 7450,
        },
    ]
    assert d["top_categorias"] == [
        {"categoria": "pollos", "unidades": 3, "ingresos": 30000},
        {"categoria": "acompañamientos", "unidades": 3, "ingresos": 9000},
        {"categoria": "bebidas", "unidades": 5, "ingresos": 7450},
    ]
    # 5, 4, 4 inside the local range; the scores at Mar 8 23:50 and Mar 16 00:10 are outside
    assert d["satisfaccion_promedio"] == 4.33 and d["encuestas"] == 3
    assert sum(p["valor"] for p in d["ingresos_por_dia"]) == d["ingresos"]


def test_dashboard_day_boundary_local_midnight(client, tienda):
    d10 = _get(client, tienda, "dashboard", desde="2026-03-10", hasta="2026-03-10").json()
    assert (d10["pedidos"], d10["ingresos"], d10["encuestas"]) == (1, 20000, 1)
    assert _serie(d10, "clientes_nuevos_por_dia") == {"2026-03-10": 2}
    d11 = _get(client, tienda, "dashboard", desde="2026-03-11", hasta="2026-03-11").json()
    assert (d11["pedidos"], d11["ingresos"], d11["ticket_promedio"]) == (2, 21980, 10990)
    assert d11["satisfaccion_promedio"] == 4.0


def test_dashboard_dst_end_april(client, tienda):
    """April 4 lasts 25 hours: both 23:30s belong to it; 00:30 -04 belongs to April 5."""
    d = _get(client, tienda, "dashboard", desde="2026-04-04", hasta="2026-04-05").json()
    assert _serie(d, "ingresos_por_dia") == {"2026-04-04": 13000, "2026-04-05": 11490}
    assert _serie(d, "clientes_activos_por_dia") == {"2026-04-04": 2, "2026-04-05": 2}
    uno = _get(client, tienda, "dashboard", desde="2026-04-04", hasta="2026-04-04").json()
    assert (uno["pedidos"], uno["ingresos"], uno["ticket_promedio"]) == (2, 13000, 6500)
    dos = _get(client, tienda, "dashboard", desde="2026-04-05", hasta="2026-04-05").json()
    assert (dos["pedidos"], dos["ingresos"]) == (2, 11490)


def test_dashboard_dst_start_september(client, tienda):
    """September 6 lasts 23 hours, from 00:00 -04; its local midnight does not exist."""
    d = _get(client, tienda, "dashboard", desde="2026-09-05", hasta="2026-09-07").json()
    assert _serie(d, "ingresos_por_dia") == {"2026-09-05": 10000, "2026-09-06": 5980, "2026-09-07": 6000}
    cinco = _get(client, tienda, "dashboard", desde="2026-09-05", hasta="2026-09-05").json()
    assert (cinco["pedidos"], cinco["ingresos"]) == (1, 10000)
    seis = _get(client, tienda, "dashboard", desde="2026-09-06", hasta="2026-09-06").json()
    assert (seis["pedidos"], seis["ingresos"], seis["ticket_promedio"]) == (2, 5980, 2990)
    assert [p["producto_id"] for p in seis["top_productos"]] == [
        tienda.ids["producto_B"],
        tienda.ids["producto_C"],
    ]


def test_dashboard_empty_range(client, tienda):
    d = _get(client, tienda, "dashboard", desde="2026-06-01", hasta="2026-06-03").json()
    assert _serie(d, "clientes_nuevos_por_dia") == {"2026-06-01": 0, "2026-06-02": 0, "2026-06-03": 0}
    assert _no_cero(_serie(d, "clientes_activos_por_dia")) == {}
    assert _no_cero(_serie(d, "ingresos_por_dia")) == {}
    assert (d["ingresos"], d["pedidos"], d["ticket_promedio"], d["encuestas"]) == (0, 0, 0, 0)
    assert d["satisfaccion_promedio"] is None
    assert d["top_productos"] == [] and d["top_categorias"] == []
    assert d["pedidos_por_canal"] == [{"clave": c, "valor": 0} for c in svc.CANALES]


def test_dashboard_default_range(client, tienda):
    """Last 30 days ending today in Santiago; make_brand's own order (2 × 12990) is today's."""
    hoy = datetime.now(ZoneInfo("America/Santiago")).date()
    d = _get(client, tienda, "dashboard").json()
    assert (d["desde"], d["hasta"]) == (str(hoy - timedelta(days=29)), str(hoy))
    assert len(d["ingresos_por_dia"]) == 30
    assert (d["pedidos"], d["ingresos"]) == (1, 25980)
    assert _no_cero(_serie(d, "clientes_nuevos_por_dia")) == {str(hoy): 1}

    solo_hasta = _get(client, tienda, "dashboard", hasta="2026-03-15").json()
    assert (solo_hasta["desde"], solo_hasta["hasta"]) == ("2026-02-14", "2026-03-15")
    assert solo_hasta["ingresos"] == 46450
    solo_desde = _get(client, tienda, "dashboard", desde=str(hoy - timedelta(days=5))).json()
    assert solo_desde["hasta"] == str(hoy) and len(solo_desde["ingresos_por_dia"]) == 6


def test_dashboard_uses_the_brand_time_zone(client, settings, api_engine):
    """The same instant falls on another day for a brand in UTC."""
    slug = f"metutc{os.getpid() % 10000}-{uuid.uuid4().hex[:6]}"
    with api_engine.begin() as conn:
        row = marcas.create(conn, settings, slug, "Marca UTC", zona_horaria="UTC")
    key = make_key(api_engine, row["id"], "lector")
    with api_engine.begin() as conn:
        _bind(conn, row["id"])
        cli = conn.execute(
            text(
                "INSERT INTO crm.clientes (nombre, created_at) "
                "VALUES ('u', '2026-03-11 02:30+00') RETURNING id"
            )
        ).scalar_one()
        prod = conn.execute(
            text("INSERT INTO crm.productos (sku, nombre, precio) VALUES ('U', 'U', 700) RETURNING id")
        ).scalar_one()
        _pedido(conn, cli, "web", "2026-03-11 02:30+00", {prod: 1}, "pendiente")
    r = client.get(
        f"/api/marcas/{slug}/metricas/dashboard?desde=2026-03-10&hasta=2026-03-11", headers={"X-API-Key": key}
    )
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["zona_horaria"] == "UTC"
    assert _serie(d, "ingresos_por_dia") == {"2026-03-10": 0, "2026-03-11": 700}
    assert _serie(d, "clientes_nuevos_por_dia") == {"2026-03-10": 0, "2026-03-11": 1}


# ---------------------------------------------------------------- reports
RANGO = {"desde": "2026-03-01", "hasta": "2026-04-12"}  # Sunday to Sunday


def _reporte(client, brand, agrupar: str, **rango) -> list[dict]:
    r = _get(client, brand, "reportes", agrupar=agrupar, **(rango or RANGO))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["agrupar"] == agrupar and body["zona_horaria"] == "America/Santiago"
    return body["filas"]


def _totales(filas: list[dict]) -> dict[str, int]:
    return {
        k: sum(f[k] for f in filas) for k in ("pedidos", "ingresos", "clientes_nuevos", "pedidos_cancelados")
    }


def test_report_by_day_week_month_agree(client, tienda):
    dias = _reporte(client, tienda, "dia")
    semanas = _reporte(client, tienda, "semana")
    meses = _reporte(client, tienda, "mes")
    assert [f["periodo"] for f in dias] == _dias(date(2026, 3, 1), date(2026, 4, 12))
    assert [f["periodo"] for f in semanas] == [
        "2026-02-23",
        "2026-03-02",
        "2026-03-09",
        "2026-03-16",
        "2026-03-23",
        "2026-03-30",
        "2026-04-06",
    ]
    assert [f["periodo"] for f in meses] == ["2026-03-01", "2026-04-01"]
    esperado = {"pedidos": 8, "ingresos": 70940, "clientes_nuevos": 4, "pedidos_cancelados": 2}
    assert _totales(dias) == _totales(semanas) == _totales(meses) == esperado

    sem = {f["periodo"]: f for f in semanas}
    # Sunday Mar 15 23:30 local is Monday in UTC: its cancelled order stays in the week of Mar 9
    assert sem["2026-03-09"] == {
        "periodo": "2026-03-09",
        "pedidos": 4,
        "ingresos": 46450,
        "ticket_promedio": 11613,
        "clientes_nuevos": 3,
        "clientes_activos": 3,
        "pedidos_cancelados": 2,
        "satisfaccion_promedio": 4.33,
    }
    assert sem["2026-03-02"] == {
        "periodo": "2026-03-02",
        "pedidos": 0,
        "ingresos": 0,
        "ticket_promedio": 0,
        "clientes_nuevos": 1,
        "clientes_activos": 0,
        "pedidos_cancelados": 0,
        "satisfaccion_promedio": 1.0,
    }
    # the DST weekend, Sunday Apr 5 23:30 -04 included
    assert sem["2026-03-30"] == {
        "periodo": "2026-03-30",
        "pedidos": 4,
        "ingresos": 24490,
        "ticket_promedio": 6123,
        "clientes_nuevos": 0,
        "clientes_activos": 3,
        "pedidos_cancelados": 0,
        "satisfaccion_promedio": None,
    }
    assert sem["2026-02-23"]["pedidos"] == 0 and sem["2026-04-06"]["pedidos"] == 0

    mes = {f["periodo"]: f for f in meses}
    assert mes["2026-03-01"] == {
        "periodo": "2026-03-01",
        "pedidos": 4,
        "ingresos": 46450,
        "ticket_promedio": 11613,
        "clientes_nuevos": 4,
        "clientes_activos": 3,
        "pedidos_cancelados": 2,
        "satisfaccion_promedio": 3.0,
    }

    dia = {f["periodo"]: f for f in dias}
    assert (dia["2026-04-04"]["pedidos"], dia["2026-04-04"]["ingresos"]) == (2, 13000)
    assert dia["2026-03-11"]["clientes_activos"] == 2 and dia["2026-03-11"]["pedidos_cancelados"] == 1

    # the dashboard over the same range gives the same totals
    d = _get(client, tienda, "dashboard", **RANGO).json()
    assert (d["pedidos"], d["ingresos"]) == (esperado["pedidos"], esperado["ingresos"])
    assert sum(p["valor"] for p in d["clientes_nuevos_por_dia"]) == esperado["clientes_nuevos"]


def test_report_months_with_empty_ones(client, tienda):
    meses = _reporte(client, tienda, "mes", desde="2026-03-01", hasta="2026-09-30")
    assert [(f["periodo"], f["pedidos"], f["ingresos"], f["ticket_promedio"]) for f in meses] == [
        ("2026-03-01", 4, 46450, 11613),
        ("2026-04-01", 4, 24490, 6123),
        ("2026-05-01", 0, 0, 0),
        ("2026-06-01", 0, 0, 0),
        ("2026-07-01", 0, 0, 0),
        ("2026-08-01", 0, 0, 0),
        ("2026-09-01", 4, 21980, 5495),
    ]


def test_report_csv(client, tienda):
    r = _get(client, tienda, "reportes", agrupar="semana", formato="csv", **RANGO)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"] == (
        f'attachment; filename="reporte-{tienda.slug}-2026-03-01-2026-04-12-semana.csv"'
    )
    filas = list(csv.DictReader(io.StringIO(r.content.decode("utf-8"))))
    assert list(filas[0]) == list(svc.COLUMNAS_REPORTE)
    esperado = _reporte(client, tienda, "semana")
    assert len(filas) == len(esperado) == 7
    for f, e in zip(filas, esperado):
        assert f["periodo"] == e["periodo"]
        for k in (
            "pedidos",
            "ingresos",
            "ticket_promedio",
            "clientes_nuevos",
            "clientes_activos",
            "pedidos_cancelados",
        ):
            assert int(f[k]) == e[k], k
        assert (float(f["satisfaccion_promedio"]) if f["satisfaccion_promedio"] else None) == e[
            "satisfaccion_promedio"
        ]
    assert filas[2]["ingresos"] == "46450" and filas[2]["satisfaccion_promedio"] == "4.33"


def test_report_xlsx(client, tienda):
    r = _get(
        client, tienda, "reportes", agrupar="mes", formato="xlsx", desde="2026-03-01", hasta="2026-09-30"
    )
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    assert r.headers["content-disposition"] == (
        f'attachment; filename="reporte-{tienda.slug}-2026-03-01-2026-09-30-mes.xlsx"'
    )
    ws = load_workbook(io.BytesIO(r.content)).active
    filas = list(ws.iter_rows(values_only=True))
    assert filas[0] == svc.COLUMNAS_REPORTE
    assert all(c.font.bold for c in ws[1])
    assert len(filas) == 8
    marzo = dict(zip(svc.COLUMNAS_REPORTE, filas[1]))
    assert marzo["periodo"] == datetime(2026, 3, 1)  # a real date cell
    assert (
        marzo["pedidos"],
        marzo["ingresos"],
        marzo["ticket_promedio"],
        marzo["clientes_nuevos"],
        marzo["pedidos_cancelados"],
        marzo["satisfaccion_promedio"],
    ) == (4, 46450, 11613, 4, 2, 3.0)
    assert ws["A2"].is_date and ws["A2"].number_format == "yyyy-mm-dd"
    assert ws["C2"].number_format == "#,##0" and ws["D2"].number_format == "#,##0"
    assert ws.column_dimensions["A"].width >= 12
    assert [f[2] for f in filas[1:]] == [46450, 24490, 0, 0, 0, 0, 21980]
    assert filas[3][7] is None  # May: no survey answered


# ---------------------------------------------------------------- bad input, other brands
@pytest.mark.parametrize(
    "path,params,field",
    [
        ("reportes", {"agrupar": "anio"}, "agrupar"),
        ("reportes", {"formato": "pdf"}, "formato"),
        ("dashboard", {"desde": "2026-13-01"}, "desde"),
        ("reportes", {"hasta": "ayer"}, "hasta"),
        ("dashboard", {"desde": "2026-03-15", "hasta": "2026-03-14"}, "hasta"),
        ("reportes", {"desde": "2026-03-15", "hasta": "2026-03-14"}, "hasta"),
        ("dashboard", {"desde": "2024-01-01", "hasta": "2026-01-01"}, "hasta"),  # 732 days
        ("dashboard", {"desde": "2999-01-01"}, "desde"),  # after today, without hasta
        ("dashboard", {"desde": "0001-01-01", "hasta": "0001-01-02"}, "desde"),
    ],
)
def test_bad_parameters_are_400_naming_the_field(client, tienda, path, params, field):
    r = _get(client, tienda, path, **params)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == 400
    assert [e["campo"] for e in body["errores"]] == [field]
    assert body["detail"].startswith(f"{field}:")


def test_longest_range_is_accepted(client, tienda):
    r = _get(client, tienda, "reportes", desde="2024-01-01", hasta="2025-12-31", agrupar="mes")  # 731 days
    assert r.status_code == 200, r.text
    assert len(r.json()["filas"]) == 24


def test_another_brand_is_not_found(client, settings, api_engine, tienda):
    otra = make_brand(settings, api_engine, "metb")
    for path in ("dashboard", "reportes", "reportes?formato=csv"):
        r = client.get(f"/api/marcas/{tienda.slug}/metricas/{path}", headers=otra.h())
        assert r.status_code == 404, r.text
        r = client.get(f"/api/marcas/{tienda.id}/metricas/{path}", headers=otra.h("lector"))
        assert r.status_code == 404, r.text
    # every role of the brand itself may read its metrics
    for rol in tienda.keys:
        assert _get(client, tienda, "dashboard", rol=rol).status_code == 200


def test_group_key_reads_any_brand(client, group_key, tienda):
    r = client.get(
        f"/api/marcas/{tienda.slug}/metricas/dashboard?desde=2026-03-09&hasta=2026-03-15",
        headers={"X-API-Key": group_key},
    )
    assert r.status_code == 200 and r.json()["ingresos"] == 46450


# ---------------------------------------------------------------- plans
class _Espia:
    """Stands in for the async connection: runs each statement on a sync one and keeps it."""

    def __init__(self, conn):
        self.conn, self.sentencias = conn, []

    async def execute(self, stmt, params=None):
        self.sentencias.append((stmt, params))
        return self.conn.execute(stmt, params)


def _nodos(plan: dict):
    yield plan
    for hijo in plan.get("Plans", []):
        yield from _nodos(hijo)


CONSULTAS = [
    "clientes_nuevos_por_dia",
    "clientes_activos_por_dia",
    "ingresos_por_dia",
    "resumen_pedidos",
    "pedidos_por_canal",
    "pedidos_por_estado",
    "top_productos",
    "top_categorias",
    "satisfaccion",
]


@pytest.mark.parametrize("nombre", CONSULTAS + ["reporte"])
def test_queries_put_the_range_in_an_index_condition(api_engine, tienda, nombre):
    """Each query's range predicate is on created_at itself, so an index can answer it:
    with sequential scans and nested loops disabled (the test tables are tiny, and which
    plan wins on a handful of rows is noise), the range shows up as an index condition.
    On demo data at scale 10 the planner picks the (marca_id, created_at) indexes for
    ranges of weeks and months, and a scan of the whole brand for ranges near its history."""
    with api_engine.begin() as conn:
        _bind(conn, tienda.id)
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        conn.execute(text("SET LOCAL enable_nestloop = off"))
        espia = _Espia(conn)
        asyncio.run(getattr(svc, nombre)(espia, date(2026, 3, 9), date(2026, 3, 15), "America/Santiago"))
        assert len(espia.sentencias) == 1
        stmt, params = espia.sentencias[0]
        plan = conn.execute(text("EXPLAIN (FORMAT JSON) " + stmt.text), params).scalar_one()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    conds = [n.get("Index Cond", "") for n in _nodos(plan[0]["Plan"]) if "Index Name" in n]
    assert any("created_at >=" in c and "created_at <" in c for c in conds), conds
