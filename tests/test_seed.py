"""The demo data (db/seeds/demo.py, loaded by api/seed.py): complete, valid, deterministic,
and isolated per brand like any other data.

The seed is loaded into databases of its own (the session database is shared with
other tests), at a small scale so the module runs in seconds.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections import Counter, defaultdict
from datetime import timedelta

import phonenumbers
import psycopg
import pytest
from stdnum.cl import rut

from api import installer, roles
from api.seed import SeedError, generator, load_demo

SCALE = 0.05
demo = generator()
TENANT_TABLES = demo.TABLES  # clientes, productos, pedidos, pedido_items, pedido_estados, interacciones
ALLOWED = {(None, "pendiente"), ("pendiente", "confirmado"), ("confirmado", "en_preparacion"),
           ("en_preparacion", "listo"), ("listo", "entregado"), ("pendiente", "cancelado"),
           ("confirmado", "cancelado"), ("en_preparacion", "cancelado"), ("listo", "cancelado")}


def _fresh_database(settings, suffix: str):
    name = f"{settings.db_name}_{suffix}"
    installer.drop_database(settings, name)
    installer.create_database(settings, name)
    installer.install(settings, database=name)
    return name, dataclasses.replace(
        settings, database_url=roles.with_database(roles.admin_url(settings), name), db_name=name)


def _rows(s, query: str, params=None, role: str = roles.OWNER) -> list[tuple]:
    with psycopg.connect(roles.role_url(role, s)) as conn:
        return conn.execute(query, params).fetchall()


def _checksums(s) -> dict[str, tuple]:
    """Row count and md5 of every row's text, per table, in key order."""
    sums = {}
    with psycopg.connect(roles.role_url(roles.OWNER, s)) as conn:
        conn.execute("SET TimeZone = 'UTC'")
        sums["marcas"] = conn.execute(
            "SELECT count(*), md5(string_agg(x::text, E'\\n' ORDER BY x.id)) FROM crm.marcas x").fetchone()
        for t in TENANT_TABLES:
            sums[t] = conn.execute(
                f"SELECT count(*), md5(string_agg(x::text, E'\\n' ORDER BY x.marca_id, x.id)) FROM crm.{t} x"
            ).fetchone()
    return sums


@pytest.fixture(scope="module")
def seeded(settings):
    name, s = _fresh_database(settings, "seed_a")
    summary = load_demo(s, scale=SCALE)
    yield s, summary
    installer.drop_database(settings, name)


@pytest.fixture(scope="module")
def brand_ids(seeded):
    s, _ = seeded
    return dict(_rows(s, "SELECT slug, id FROM crm.marcas ORDER BY id"))


def test_scale_one_is_big_enough():
    c = demo.counts(1.0)
    assert sum(b["clientes"] for b in c.values()) >= 5_000
    assert sum(b["pedidos"] for b in c.values()) >= 50_000
    assert set(c) == {"gollos", "goio", "eco-eterno"}


def test_summary_reports_rows_and_time(seeded):
    _, summary = seeded
    assert "cargados" in summary and " s " in summary
    for t in TENANT_TABLES:
        assert t in summary


def test_counts_match_the_scale(seeded, brand_ids):
    s, _ = seeded
    expected = demo.counts(SCALE)
    catalog = {b["slug"]: len(b["catalogo"]) for b in demo._json("marcas.json")["marcas"]}
    for slug, marca_id in brand_ids.items():
        clientes, pedidos, productos, interacciones = _rows(s, """
            SELECT (SELECT count(*) FROM crm.clientes WHERE marca_id = %(m)s),
                   (SELECT count(*) FROM crm.pedidos WHERE marca_id = %(m)s),
                   (SELECT count(*) FROM crm.productos WHERE marca_id = %(m)s),
                   (SELECT count(*) FROM crm.interacciones WHERE marca_id = %(m)s)""", {"m": marca_id})[0]
        assert clientes == expected[slug]["clientes"]
        assert pedidos == expected[slug]["pedidos"]
        assert productos == catalog[slug]
        assert 1.2 * pedidos <= interacciones <= 6 * pedidos


def test_scale_multiplies_customers_orders_and_interactions():
    ids = {"gollos": 1, "goio": 2, "eco-eterno": 3}
    small, double = demo.generate(SCALE, ids), demo.generate(2 * SCALE, ids)
    for t in ("clientes", "pedidos"):
        assert abs(len(double[t][1]) - 2 * len(small[t][1])) <= 3
    for t in ("pedido_items", "pedido_estados", "interacciones"):
        assert 1.7 <= len(double[t][1]) / len(small[t][1]) <= 2.3
    assert len(double["productos"][1]) == len(small["productos"][1])


def test_second_load_is_a_no_op(seeded):
    s, _ = seeded
    before = _checksums(s)
    message = load_demo(s, scale=SCALE)
    assert "ya existen" in message
    assert _checksums(s) == before


def test_two_fresh_databases_get_identical_data(settings, seeded):
    s, _ = seeded
    name, other = _fresh_database(settings, "seed_b")
    try:
        load_demo(other, scale=SCALE)
        assert _checksums(other) == _checksums(s)
    finally:
        installer.drop_database(settings, name)


def test_order_totals_and_prices(seeded):
    s, _ = seeded
    assert _rows(s, """
        SELECT count(*) FROM crm.pedidos p
         WHERE total <> (SELECT coalesce(sum(cantidad * precio_unitario), 0) FROM crm.pedido_items i
                          WHERE i.marca_id = p.marca_id AND i.pedido_id = p.id)""")[0][0] == 0
    assert _rows(s, """
        SELECT count(*) FROM crm.pedido_items i
          JOIN crm.productos pr ON pr.marca_id = i.marca_id AND pr.id = i.producto_id
         WHERE i.precio_unitario <> pr.precio""")[0][0] == 0
    per_order = _rows(s, """
        SELECT min(n), max(n) FROM (
          SELECT count(i.id) AS n FROM crm.pedidos p
            LEFT JOIN crm.pedido_items i ON i.marca_id = p.marca_id AND i.pedido_id = p.id
           GROUP BY p.marca_id, p.id) x""")[0]
    assert per_order[0] >= 1 and per_order[1] <= 4


def test_status_histories_are_valid_paths(seeded):
    s, _ = seeded
    orders = {(m, i): (estado, created, updated) for m, i, estado, created, updated in
              _rows(s, "SELECT marca_id, id, estado, created_at, updated_at FROM crm.pedidos")}
    history = defaultdict(list)
    for m, pedido, desde, hacia, at in _rows(
            s, "SELECT marca_id, pedido_id, desde, hacia, created_at FROM crm.pedido_estados ORDER BY marca_id, id"):
        history[(m, pedido)].append((desde, hacia, at))
    assert set(history) == set(orders)
    estados = Counter()
    for key, steps in history.items():
        estado, created, updated = orders[key]
        assert steps[0][:2] == (None, "pendiente")
        assert steps[0][2] == created
        for (d0, h0, t0), (d1, h1, t1) in itertools.pairwise(steps):
            assert d1 == h0 and t1 > t0, (key, steps)
        assert all((d, h) in ALLOWED for d, h, _ in steps), (key, steps)
        assert steps[-1][1] == estado
        assert steps[-1][2] == updated
        estados[estado] += 1
    # mostly delivered, some cancelled; the earlier states only near the anchor
    assert estados["entregado"] > 0.85 * len(orders)
    assert 0 < estados["cancelado"] < 0.1 * len(orders)


def test_in_progress_orders_are_the_recent_ones(seeded):
    s, _ = seeded
    oldest = _rows(s, "SELECT min(created_at) FROM crm.pedidos WHERE estado NOT IN ('entregado', 'cancelado')")[0][0]
    if oldest is not None:
        assert oldest > demo.anchor() - timedelta(days=7)


def test_everything_happens_within_the_history(seeded):
    s, _ = seeded
    start, end = demo.anchor() - timedelta(days=demo.HISTORY_DAYS + 1), demo.anchor()
    for t, col in [("clientes", "created_at"), ("clientes", "updated_at"), ("pedidos", "created_at"),
                   ("pedidos", "updated_at"), ("pedido_estados", "created_at"), ("interacciones", "created_at")]:
        lo, hi = _rows(s, f"SELECT min({col}), max({col}) FROM crm.{t}")[0]
        assert start <= lo and hi <= end, (t, col, lo, hi)
    # nobody is written to before they exist
    assert _rows(s, """
        SELECT count(*) FROM crm.interacciones i
          JOIN crm.clientes c ON c.marca_id = i.marca_id AND c.id = i.cliente_id
         WHERE i.created_at < c.created_at""")[0][0] == 0
    assert _rows(s, """
        SELECT count(*) FROM crm.pedidos p
          JOIN crm.clientes c ON c.marca_id = p.marca_id AND c.id = p.cliente_id
         WHERE p.created_at < c.created_at""")[0][0] == 0


def test_phones_ruts_and_emails_are_valid(seeded):
    s, _ = seeded
    rows = _rows(s, "SELECT marca_id, telefono, email, documento FROM crm.clientes")
    phones = [r[1] for r in rows if r[1]]
    assert len(phones) > 0.8 * len(rows)
    for phone in phones:
        parsed = phonenumbers.parse(phone)
        assert phonenumbers.is_valid_number(parsed) and parsed.country_code == 56, phone
        # Chilean +569 numbers: phonenumbers says MOBILE or FIXED_LINE_OR_MOBILE
        assert phonenumbers.number_type(parsed) in (phonenumbers.PhoneNumberType.MOBILE,
                                                    phonenumbers.PhoneNumberType.FIXED_LINE_OR_MOBILE), phone
        assert phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164) == phone
        assert phone.startswith("+569") and len(phone) == 12
    documentos = [r[3] for r in rows if r[3]]
    assert documentos
    for doc in documentos:
        assert rut.is_valid(doc) and rut.compact(doc) == doc, doc
    emails = [r[2] for r in rows if r[2]]
    assert emails and all(e == e.lower() and "@" in e for e in emails)
    for marca in {r[0] for r in rows}:
        mine = [r for r in rows if r[0] == marca]
        assert len({r[1] for r in mine if r[1]}) == len([r for r in mine if r[1]])
        assert len({r[2] for r in mine if r[2]}) == len([r for r in mine if r[2]])


def test_segments_follow_the_order_history(seeded):
    s, _ = seeded
    limit = demo.anchor() - timedelta(days=demo.INACTIVO_DIAS)
    rows = _rows(s, """
        SELECT c.marca_id, c.segmento, c.created_at, max(p.created_at),
               count(p.id) FILTER (WHERE p.estado <> 'cancelado'),
               coalesce(sum(p.total) FILTER (WHERE p.estado <> 'cancelado'), 0)
          FROM crm.clientes c
          LEFT JOIN crm.pedidos p ON p.marca_id = c.marca_id AND p.cliente_id = c.id
         GROUP BY c.marca_id, c.id""")
    by_brand = defaultdict(list)
    for r in rows:
        by_brand[r[0]].append(r)
    for customers in by_brand.values():
        vip_spend = [r[5] for r in customers if r[1] == "vip"]
        assert 0 < len(vip_spend) <= round(demo.VIP_FRACCION * len(customers)) + 1
        for _, segmento, created, last, valid, spend in customers:
            inactive = (last or created) < limit
            assert (segmento == "inactivo") == inactive
            if segmento == "recurrente":
                assert valid >= 2 and spend <= min(vip_spend)
            if segmento == "nuevo":
                assert valid <= 1
        assert {r[1] for r in customers} == {"nuevo", "recurrente", "vip", "inactivo"}


def test_interactions(seeded):
    s, _ = seeded
    rows = _rows(s, "SELECT canal, tipo, id_externo, puntaje_satisfaccion FROM crm.interacciones")
    for canal, tipo, externo, puntaje in rows:
        if canal == "whatsapp" and tipo in ("mensaje", "encuesta"):
            assert externo and externo.startswith("wamid.")
        else:
            assert externo is None
        assert (puntaje is not None) == (tipo == "encuesta")
    tipos = Counter(r[1] for r in rows)
    assert tipos["mensaje"] and tipos["llamada"] and tipos["encuesta"]
    scores = Counter(r[3] for r in rows if r[3] is not None)
    assert (scores[4] + scores[5]) / sum(scores.values()) >= 0.7
    # surveys are never sent to those who opted out before the delivery... nor campaigns
    assert _rows(s, """
        SELECT count(*) FROM crm.interacciones i
          JOIN crm.clientes c ON c.marca_id = i.marca_id AND c.id = i.cliente_id
         WHERE c.opt_out_encuestas AND i.tipo = 'encuesta' AND i.created_at > c.updated_at""")[0][0] == 0


def test_each_brand_role_sees_only_its_rows(seeded, brand_ids):
    s, _ = seeded
    for slug, marca_id in brand_ids.items():
        with psycopg.connect(roles.role_url(roles.brand_role(slug), s)) as conn:
            assert conn.execute("SELECT array_agg(id) FROM crm.marcas").fetchone()[0] == [marca_id]
            for t in TENANT_TABLES:
                seen, foreign = conn.execute(
                    f"SELECT count(*), count(*) FILTER (WHERE marca_id <> %s) FROM crm.{t}", (marca_id,)).fetchone()
                owned = _rows(s, f"SELECT count(*) FROM crm.{t} WHERE marca_id = %s", (marca_id,))[0][0]
                assert foreign == 0 and seen == owned > 0, (slug, t)


def test_triggers_constraints_and_identities_are_back(settings, seeded, brand_ids):
    s, _ = seeded
    disabled = _rows(s, """
        SELECT tgrelid::regclass::text, tgname FROM pg_trigger
         WHERE NOT tgisinternal AND tgenabled <> 'O' AND tgrelid::regclass::text LIKE 'crm.%'""")
    assert disabled == []
    fks = """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint
              WHERE contype = 'f' ORDER BY 1, 2"""
    assert _rows(s, fks) == _rows(settings, fks)
    # a new order through the API's role: identity values continue after the seed's ids,
    # and the triggers compute its total and history again
    with psycopg.connect(roles.role_url(roles.API, s)) as conn:
        conn.execute("SELECT set_config('app.marca_id', %s, true)", (str(brand_ids["gollos"]),))
        top = conn.execute("SELECT max(id) FROM crm.pedidos").fetchone()[0]
        cliente = conn.execute("INSERT INTO crm.clientes (nombre) VALUES ('Cliente Nuevo') RETURNING id").fetchone()[0]
        pedido = conn.execute("INSERT INTO crm.pedidos (cliente_id, canal) VALUES (%s, 'whatsapp') RETURNING id",
                              (cliente,)).fetchone()[0]
        assert pedido > top
        conn.execute("""INSERT INTO crm.pedido_items (pedido_id, producto_id, cantidad)
                        SELECT %s, id, 2 FROM crm.productos WHERE sku = 'GOL-CUARTO-PIE'""", (pedido,))
        assert conn.execute("SELECT total FROM crm.pedidos WHERE id = %s", (pedido,)).fetchone()[0] == 2 * 5990
        assert conn.execute("SELECT count(*) FROM crm.pedido_estados WHERE pedido_id = %s",
                            (pedido,)).fetchone()[0] == 1
        conn.rollback()


def test_rejects_a_bad_scale(settings):
    for bad in (0, -1, float("nan")):
        with pytest.raises(SeedError):
            load_demo(settings, scale=bad)
