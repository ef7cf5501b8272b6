"""Every Metabase card (metabase/tableros.py) runs on the demo data as each brand's login role
and as the executive role, the way Metabase would run it.

The demo is loaded at a small scale into a database of its own; the demo has no WhatsApp
outbox rows nor alerts, so a few of each are added per brand; then the summaries are
computed (resumen.refrescar(), as the scheduler will). Each card's template tags are
substituted as Metabase does (metabase.tableros.renderizar: optional clauses dropped when
a tag has no value, values as SQL literals) and the query runs:
- as each brand role (the brand's dashboards, no brand filter): it returns rows, and every
  row's `marca` is that brand; the rows equal the executive's with `marca` = that brand;
- as crm_ejecutivo: rows of every brand, and with the brand filter only that brand's.
No card reads anything but `reporting`; the summaries they read agree with the live views.
"""

from __future__ import annotations

import dataclasses
import re
from datetime import date, timedelta
from decimal import Decimal

import psycopg
import pytest

from api import installer, roles
from api.seed import generator, load_demo

from metabase import tableros
from metabase.tableros import ETIQUETAS, renderizar, sin_marca, tarjetas

SCALE = 0.05
ANCLA = generator().ANCHOR_DATE  # the demo's "now"
RANGO = {"desde": ANCLA - timedelta(days=89), "hasta": ANCLA}  # the demo's last 90 days
ESCENARIOS = {"sin filtros": {}, "90 días": RANGO, "solo hasta": {"hasta": ANCLA - timedelta(days=365)}}
CARDS = tarjetas()
IDS = [f"{t.nombre}/{c.nombre}" for t, c in CARDS]


@pytest.fixture(scope="module")
def demo(settings):
    name = f"{settings.db_name}_mbcards"
    installer.drop_database(settings, name)
    installer.create_database(settings, name)
    installer.install(settings, database=name)
    s = dataclasses.replace(
        settings, database_url=roles.with_database(roles.admin_url(settings), name), db_name=name
    )
    load_demo(s, scale=SCALE)
    with psycopg.connect(roles.role_url(roles.OWNER, s), autocommit=True) as conn:
        _outbox_and_alerts(conn)
    with psycopg.connect(roles.role_url(roles.API, s), autocommit=True) as conn:
        pasos = [r[0] for r in conn.execute("SELECT resumen.refrescar()")]
    assert len(pasos) == 7, pasos
    yield s
    installer.drop_database(settings, name)


def _outbox_and_alerts(conn) -> None:
    """A few outbox rows (every delivery status, a template among them) and alerts (open and
    closed) per brand, within the demo's last 90 days: the demo has none."""
    marcas = conn.execute("SELECT id FROM crm.marcas ORDER BY id").fetchall()
    for (marca_id,) in marcas:
        canal_id = conn.execute("SELECT id FROM crm.canales WHERE marca_id = %s", (marca_id,)).fetchone()[0]
        clientes = conn.execute(
            "SELECT id, telefono FROM crm.clientes WHERE marca_id = %s AND telefono IS NOT NULL "
            "ORDER BY id LIMIT 5",
            (marca_id,),
        ).fetchall()
        for n, (estado, (cliente_id, telefono)) in enumerate(
            zip(("en_cola", "enviado", "entregado", "leido", "fallido"), clientes, strict=True)
        ):
            respuesta = (
                '{"tipo": "plantilla", "texto": "hola", "plantilla": "bienvenida"}'
                if n == 0
                else '{"tipo": "texto", "texto": "hola"}'
            )
            conn.execute(
                """
                INSERT INTO crm.salientes (marca_id, cliente_id, canal_id, telefono, respuesta, estado, error,
                                           created_at)
                VALUES (%s, %s, %s, %s, %s, %s, %s, %s)""",
                (
                    marca_id,
                    cliente_id,
                    canal_id,
                    telefono,
                    respuesta,
                    estado,
                    f"número {telefono} inválido" if estado == "fallido" else None,
                    f"{ANCLA - timedelta(days=n + 1)} 12:00-03",
                ),
            )
            conn.execute(
                """
                INSERT INTO crm.alertas (marca_id, cliente_id, motivo, estado, created_at, cerrada_en)
                VALUES (%s, %s, %s, %s, %s, %s)""",
                (
                    marca_id,
                    cliente_id,
                    "selección no reconocida: mi dirección es Calle Falsa 123"
                    if n % 2
                    else "mensaje sin pedido reconocible",
                    "cerrada" if n < 3 else "abierta",
                    f"{ANCLA - timedelta(days=n + 1)} 12:00-03",
                    f"{ANCLA - timedelta(days=n + 1)} 15:30-03" if n < 3 else None,
                ),
            )


@pytest.fixture(scope="module")
def marcas(demo) -> list[str]:
    with psycopg.connect(roles.role_url(roles.EXECUTIVE, demo)) as conn:
        slugs = [r[0] for r in conn.execute("SELECT slug FROM crm.marcas ORDER BY id")]
    assert slugs == ["gollos", "goio", "eco-eterno"]
    return slugs


@pytest.fixture(scope="module")
def conns(demo, marcas):
    opened = {
        rol: psycopg.connect(roles.role_url(rol, demo), autocommit=True)
        for rol in [roles.EXECUTIVE] + [roles.brand_role(m) for m in marcas]
    }
    yield opened
    for c in opened.values():
        c.close()


def _run(conn, sql: str) -> list[dict]:
    cur = conn.execute(sql)
    cols = [d.name for d in cur.description]
    assert "marca" in cols, f"la tarjeta no devuelve la columna marca: {cols}"
    return [dict(zip(cols, r, strict=True)) for r in cur.fetchall()]


# ---------------------------------------------------------------- the cards run
@pytest.mark.parametrize(("tablero", "tarjeta"), CARDS, ids=IDS)
def test_card_as_each_brand_role(conns, marcas, tablero, tarjeta):
    sql = tarjeta.sql_para(ejecutivo=False)
    assert "marca" not in tableros.etiquetas(sql)
    for slug in marcas:
        for escenario, valores in ESCENARIOS.items():
            filas = _run(conns[roles.brand_role(slug)], renderizar(sql, valores))
            if escenario != "solo hasta" or tarjeta.nombre not in SIN_HISTORIA_ANTIGUA:
                assert filas, f"{slug}, {escenario}: sin filas"
            assert {f["marca"] for f in filas} <= {slug}, f"{slug}, {escenario}: filas de otra marca"


@pytest.mark.parametrize(("tablero", "tarjeta"), CARDS, ids=IDS)
def test_card_as_the_executive(conns, marcas, tablero, tarjeta):
    sql = tarjeta.sql_para(ejecutivo=True)
    assert "marca" in tableros.etiquetas(sql), "los ejecutivos filtran por marca"
    ex = conns[roles.EXECUTIVE]
    assert {f["marca"] for f in _run(ex, renderizar(sql, {}))} == set(marcas)
    assert {f["marca"] for f in _run(ex, renderizar(sql, RANGO))} == set(marcas)
    for slug in marcas:
        for escenario, valores in ESCENARIOS.items():
            filas = _run(ex, renderizar(sql, {**valores, "marca": slug}))
            if escenario != "solo hasta" or tarjeta.nombre not in SIN_HISTORIA_ANTIGUA:
                assert filas, f"marca={slug}, {escenario}: sin filas"
            assert {f["marca"] for f in filas} == ({slug} if filas else set()), f"marca={slug}, {escenario}"


# Cards over rows the test adds in the demo's last days only (outbox, alerts): nothing a year back.
SIN_HISTORIA_ANTIGUA = {"Alertas de WhatsApp por motivo", "Envíos de WhatsApp por estado"}


@pytest.mark.parametrize(("tablero", "tarjeta"), CARDS, ids=IDS)
def test_brand_dashboard_equals_executive_filtered_to_the_brand(conns, marcas, tablero, tarjeta):
    """The brand role's figures are the executive's with the brand filter: same SQL, and the
    database, not the filter, is what narrows the brand role to its brand."""
    for slug in marcas:
        for valores in (ESCENARIOS["sin filtros"], RANGO):
            propio = _run(conns[roles.brand_role(slug)], renderizar(tarjeta.sql_para(False), valores))
            filtrado = _run(
                conns[roles.EXECUTIVE], renderizar(tarjeta.sql_para(True), {**valores, "marca": slug})
            )
            assert sorted(propio, key=repr) == sorted(filtrado, key=repr), slug


# ---------------------------------------------------------------- the definitions
_QUALIFIED = re.compile(r"\b(?:from|join)\s+([a-z_][a-z0-9_]*)\s*\.\s*([a-z_][a-z0-9_]*)", re.IGNORECASE)
_RELATION = re.compile(r"\b(?:from|join)\s+(?!lateral\b)([a-z_][a-z0-9_]*)\b(?!\s*[.(])", re.IGNORECASE)
_CTE = re.compile(r"(?:\bwith|\)\s*,)\s*([a-z_][a-z0-9_]*)\s*(?:\([^)]*\))?\s+as\s*\(", re.IGNORECASE)
_NOT_A_RELATION = re.compile(
    r"\b(extract|substring|trim|overlay)\s*\(\s*[^()]*?\bfrom\b|\bdistinct\s+from\b", re.IGNORECASE
)


def _relations(sql: str) -> tuple[set[str], set[str]]:
    """(schemas of qualified relations, unqualified relations that are not CTEs) after FROM/JOIN."""
    sql = _NOT_A_RELATION.sub(" ", sql)
    schemas = {m.group(1).lower() for m in _QUALIFIED.finditer(sql)}
    ctes = {m.group(1).lower() for m in _CTE.finditer(sql)}
    return schemas, {m.group(1).lower() for m in _RELATION.finditer(sql)} - ctes


@pytest.mark.parametrize(("tablero", "tarjeta"), CARDS, ids=IDS)
def test_card_reads_only_reporting(demo, tablero, tarjeta):
    sql = tarjeta.sql_para(ejecutivo=True)
    # PostgreSQL's own reading of the query: the relations a view made of it depends on
    with psycopg.connect(roles.role_url(roles.OWNER, demo)) as conn:
        conn.execute(f"CREATE TEMP VIEW tarjeta AS {renderizar(sql, {**RANGO, 'marca': 'gollos'})}")
        usadas = conn.execute("""
            SELECT DISTINCT d.refobjid::regclass::text FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
             WHERE r.ev_class = 'tarjeta'::regclass AND d.refobjid <> 'tarjeta'::regclass
               AND d.refclassid = 'pg_class'::regclass""").fetchall()
        conn.rollback()
    assert usadas and all(u.startswith("reporting.") for (u,) in usadas), usadas
    schemas, bare = _relations(sql)
    assert schemas == {"reporting"}, f"esquemas leídos: {schemas}"
    assert not bare, f"relaciones sin esquema que no son CTE: {bare}"
    assert not re.search(r"\b(crm|resumen|public|pg_catalog|information_schema)\s*\.", sql, re.IGNORECASE)


def test_reporting_check_catches_other_schemas():
    """The check above is not vacuous."""
    sql = (
        "WITH x AS (SELECT extract(epoch FROM a - b) FROM reporting.pedidos), y (n) AS (SELECT 1) "
        "SELECT * FROM x JOIN crm.clientes c ON true JOIN otra ON true, y"
    )
    assert _relations(sql) == ({"reporting", "crm"}, {"otra"})
    assert _relations("SELECT * FROM reporting.a JOIN LATERAL (SELECT 1) z ON true") == ({"reporting"}, set())


def test_four_dashboards_with_unique_card_names():
    assert [t.nombre for t in tableros.TABLEROS] == [
        "Resumen de ingresos",
        "Análisis de clientes",
        "Operaciones",
        "Marketing",
    ]
    for t in tableros.TABLEROS:
        nombres = [c.nombre for c in t.tarjetas]
        assert len(nombres) == len(set(nombres)) >= 4, t.nombre
    todos = [c.nombre for _, c in CARDS]
    assert len(todos) == len(set(todos)), "un nombre de tarjeta se repite entre tableros"


@pytest.mark.parametrize(("tablero", "tarjeta"), CARDS, ids=IDS)
def test_card_tags(tablero, tarjeta):
    usadas = tableros.etiquetas(tarjeta.sql)
    assert set(usadas) <= set(ETIQUETAS)
    assert {"desde", "hasta", "marca"} <= set(usadas), "cada tarjeta filtra por fechas y marca"
    # every tag sits in an optional clause: with no value at all the query still renders
    assert "{{" not in renderizar(tarjeta.sql, {})
    assert 0 < tarjeta.ancho <= 24 and tarjeta.alto > 0


def test_renderizar_does_what_metabase_does():
    sql = "SELECT 1 WHERE true [[AND fecha >= {{desde}}]] [[AND marca = {{marca}}]] [[AND x IN ({{desde}}, {{hasta}})]]"
    assert renderizar(sql, {}) == "SELECT 1 WHERE true   "
    assert renderizar(sql, {"desde": date(2026, 1, 2), "marca": "o'higgins"}) == (
        "SELECT 1 WHERE true AND fecha >= DATE '2026-01-02' AND marca = 'o''higgins' "
    )
    assert renderizar(sql, {"desde": date(2026, 1, 2), "hasta": date(2026, 2, 1), "marca": ""}).endswith(
        "AND x IN (DATE '2026-01-02', DATE '2026-02-01')"
    )
    assert renderizar("coalesce([[{{hasta}},]] current_date)", {}) == "coalesce( current_date)"
    with pytest.raises(ValueError):
        renderizar("SELECT {{desde}}", {})
    assert (
        sin_marca(sql)
        == "SELECT 1 WHERE true [[AND fecha >= {{desde}}]]  [[AND x IN ({{desde}}, {{hasta}})]]"
    )
    with pytest.raises(ValueError):
        sin_marca("SELECT 1 WHERE marca = {{marca}}")


def test_campaigns_are_announced_not_invented():
    marketing = next(t for t in tableros.TABLEROS if t.nombre == "Marketing")
    assert "campañas aún no existen" in marketing.descripcion
    assert any("campañas aún no existen" in c.descripcion for c in marketing.tarjetas)
    assert not any(re.search(r"campanas?\b", c.sql) for c in marketing.tarjetas)


# ---------------------------------------------------------------- the summaries and the grants
def _one(conn, sql):
    return conn.execute(sql).fetchone()


def test_summaries_agree_with_the_live_views(conns):
    ex = conns[roles.EXECUTIVE]
    assert _one(ex, "SELECT sum(ingresos), sum(pedidos) FROM reporting.resumen_ventas_dia") == _one(
        ex, "SELECT sum(total), count(*) FROM reporting.pedidos"
    )
    assert _one(
        ex,
        "SELECT sum(ingresos) FROM reporting.resumen_ventas_dia WHERE canal = 'whatsapp' "
        "AND estado <> 'cancelado' AND fecha >= '2026-01-01'",
    ) == _one(
        ex,
        "SELECT sum(total) FROM reporting.pedidos WHERE canal = 'whatsapp' AND estado <> 'cancelado' "
        "AND fecha >= '2026-01-01'",
    )
    assert _one(ex, "SELECT sum(pedidos) FROM reporting.resumen_pedidos_hora WHERE hora = 13") == _one(
        ex, "SELECT count(*) FROM reporting.pedidos WHERE extract(hour FROM hora_local) = 13"
    )
    assert _one(ex, "SELECT sum(ingresos), sum(unidades) FROM reporting.resumen_categorias_dia") == _one(
        ex, "SELECT sum(subtotal), sum(cantidad) FROM reporting.pedido_items WHERE estado <> 'cancelado'"
    )
    # month 0 of every cohort is every customer who ever bought
    assert _one(
        ex, "SELECT sum(clientes) FROM reporting.resumen_cohortes WHERE meses_desde_primera = 0"
    ) == _one(ex, "SELECT count(*) FROM reporting.resumen_clientes")
    assert _one(ex, "SELECT count(*), sum(valor) FROM reporting.resumen_clientes") == _one(
        ex,
        "SELECT count(DISTINCT (marca_id, cliente_id)), sum(total) FROM reporting.pedidos "
        "WHERE estado <> 'cancelado'",
    )
    assert _one(ex, "SELECT sum(entrantes), sum(salientes) FROM reporting.resumen_mensajes_dia") == _one(
        ex,
        "SELECT count(*) FILTER (WHERE direccion = 'entrante'), count(*) FILTER (WHERE direccion = 'saliente') "
        "FROM reporting.interacciones WHERE canal = 'whatsapp' AND tipo = 'mensaje'",
    )
    # the demo answers its customers: most inbound WhatsApp messages get a reply within a day
    entrantes, respondidos = _one(
        ex, "SELECT sum(entrantes), sum(respondidos) FROM reporting.resumen_mensajes_dia"
    )
    assert 0.5 * entrantes < respondidos <= entrantes
    cambios = _one(ex, "SELECT sum(cambios) FROM reporting.resumen_tiempos_estado")[0]
    assert cambios == _one(ex, "SELECT count(*) FROM reporting.pedido_estados WHERE desde IS NOT NULL")[0]
    medianas = ex.execute(
        "SELECT desde, hacia, mediana_minutos FROM reporting.resumen_tiempos_estado"
    ).fetchall()
    assert all(m >= Decimal(0) for _, _, m in medianas) and {(d, h) for d, h, _ in medianas} >= {
        ("pendiente", "confirmado"),
        ("listo", "entregado"),
    }


def test_summaries_are_isolated_like_tenant_tables(conns, marcas):
    tablas = [
        r[0]
        for r in conns[roles.EXECUTIVE].execute(
            "SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'resumen' AND c.relkind = 'r' AND c.relname <> 'refrescos' ORDER BY 1"
        )
    ]
    assert len(tablas) == 7
    ids = dict(conns[roles.EXECUTIVE].execute("SELECT slug, id FROM crm.marcas").fetchall())
    for slug in marcas:
        c = conns[roles.brand_role(slug)]
        for t in tablas:
            # read directly, not only through reporting: still only this brand
            assert {r[0] for r in c.execute(f"SELECT DISTINCT marca_id FROM {t}")} == {ids[slug]}, t
            for sql in (f"DELETE FROM {t}", f"INSERT INTO {t} SELECT * FROM {t} LIMIT 1"):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    c.execute(sql)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT resumen.refrescar()")
    ex = conns[roles.EXECUTIVE]
    assert {r[0] for r in ex.execute("SELECT DISTINCT marca_id FROM resumen.pedidos_dia")} == set(
        ids.values()
    )
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        ex.execute("SELECT resumen.refrescar()")


def test_executive_sees_no_phone_nor_error_of_the_outbox(conns):
    ex = conns[roles.EXECUTIVE]
    for col in ("telefono", "error"):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            ex.execute(f"SELECT {col} FROM crm.salientes LIMIT 1")
    cols = [d.name for d in ex.execute("SELECT * FROM reporting.salientes LIMIT 0").description]
    assert "telefono" not in cols and "error" not in cols and "respuesta" not in cols
    motivos = {r[0] for r in ex.execute("SELECT DISTINCT motivo FROM reporting.alertas")}
    assert motivos == {
        "selección no reconocida",
        "mensaje sin pedido reconocible",
    }  # not what the customer wrote
