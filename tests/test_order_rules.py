"""The order lifecycle and its money hold through every door.

Through the API (HTTP) and through plain SQL as a brand's login role (which is how
NocoDB writes): transitions only along the lifecycle, a history row per move naming who
moved it, items frozen once the order leaves `pendiente`, totals always the items' sum,
prices captured when the order is placed.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest
from conftest import admin, connect, counts, make_brand
from sqlalchemy import text

from api import roles
from api.services import claves

LEGAL_PATH = ["confirmado", "en_preparacion", "listo", "entregado"]


# ---------------------------------------------------------------- helpers




def order_row(settings, pedido_id: int) -> dict:
    with admin(settings) as conn:
        cur = conn.execute("SELECT * FROM crm.pedidos WHERE id = %s", (pedido_id,))
        row = cur.fetchone()
        assert row is not None, f"no existe el pedido {pedido_id}"
        return dict(zip([c.name for c in cur.description], row))


def history(settings, pedido_id: int) -> list[tuple]:
    with admin(settings) as conn:
        return conn.execute("SELECT desde, hacia, actor FROM crm.pedido_estados WHERE pedido_id = %s "
                            "ORDER BY created_at, id", (pedido_id,)).fetchall()


def items_sum(settings, pedido_id: int) -> int:
    with admin(settings) as conn:
        return conn.execute("SELECT coalesce(sum(cantidad * precio_unitario), 0) FROM crm.pedido_items "
                            "WHERE pedido_id = %s", (pedido_id,)).fetchone()[0]


def key_id(api_engine, key: str) -> int:
    with api_engine.connect() as conn:
        return conn.execute(text("SELECT id FROM crm.claves_api WHERE hash = :h"),
                            {"h": claves.digest(key)}).scalar_one()


def new_product(client, brand, sku: str, precio: int, activo: bool = True) -> int:
    r = client.post(f"/api/marcas/{brand.slug}/productos", headers=brand.h(),
                    json={"sku": sku, "nombre": f"Producto {sku}", "precio": precio, "activo": activo})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def new_order(client, brand, items, rol: str = "staff") -> dict:
    r = client.post("/api/pedidos", headers=brand.h(rol),
                    json={"cliente_id": brand.ids["cliente"], "canal": "whatsapp",
                          "items": [{"producto_id": p, "cantidad": c} for p, c in items]})
    assert r.status_code == 201, r.text
    return r.json()


def move(client, brand, pedido_id: int, estado: str, rol: str = "staff"):
    return client.put(f"/api/pedidos/{pedido_id}", headers=brand.h(rol), json={"estado": estado})


def walk(client, brand, pedido_id: int, estados: list[str]) -> None:
    for estado in estados:
        r = move(client, brand, pedido_id, estado)
        assert r.status_code == 200, r.text
        assert r.json()["estado"] == estado


@pytest.fixture(scope="module")
def brand(settings, api_engine):
    return make_brand(settings, api_engine, "or")


@pytest.fixture(scope="module")
def products(client, brand):
    return {"pollo": new_product(client, brand, "POLLO", 1000),
            "papas": new_product(client, brand, "PAPAS", 2500),
            "viejo": new_product(client, brand, "VIEJO", 700, activo=False)}


def assert_problem(r, status: int, campo: str | None = None) -> dict:
    assert r.status_code == status, f"{r.status_code} {r.text[:400]}"
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["status"] == status and body["detail"]
    if campo is not None:
        assert campo in [e["campo"] for e in body.get("errores", [])], body
    return body


# ---------------------------------------------------------------- transitions through the API
ILLEGAL = [
    ([], "entregado"),
    ([], "en_preparacion"),
    ([], "listo"),
    (["confirmado"], "pendiente"),
    (["confirmado"], "listo"),
    (["confirmado", "en_preparacion"], "confirmado"),
    (["confirmado", "en_preparacion", "listo"], "en_preparacion"),
    (LEGAL_PATH, "pendiente"),
    (LEGAL_PATH, "cancelado"),
    (["cancelado"], "confirmado"),
    (["cancelado"], "pendiente"),
    (["confirmado", "cancelado"], "en_preparacion"),
]


@pytest.mark.parametrize("path,target", ILLEGAL,
                         ids=[f"{(p[-1] if p else 'pendiente')}->{t}" for p, t in ILLEGAL])
def test_illegal_transition_is_409_and_changes_nothing(client, settings, brand, products, path, target):
    pedido = new_order(client, brand, [(products["pollo"], 1)])
    walk(client, brand, pedido["id"], path)
    row_before, hist_before = order_row(settings, pedido["id"]), history(settings, pedido["id"])
    before = counts(settings)

    r = move(client, brand, pedido["id"], target)

    assert counts(settings) == before  # nothing half-written, whatever the answer
    body = assert_problem(r, 409, "estado")
    assert "no permitida" in body["detail"]
    assert order_row(settings, pedido["id"]) == row_before
    assert history(settings, pedido["id"]) == hist_before


def test_legal_path_records_history_with_the_key_as_actor(client, settings, api_engine, brand, products):
    actor = f"clave_api:{key_id(api_engine, brand.keys['staff'])}"
    pedido = new_order(client, brand, [(products["pollo"], 2)])
    assert pedido["estado"] == "pendiente"
    walk(client, brand, pedido["id"], LEGAL_PATH)

    expected = [(None, "pendiente", actor), ("pendiente", "confirmado", actor),
                ("confirmado", "en_preparacion", actor), ("en_preparacion", "listo", actor),
                ("listo", "entregado", actor)]
    assert history(settings, pedido["id"]) == expected
    assert order_row(settings, pedido["id"])["estado"] == "entregado"
    r = client.get(f"/api/pedidos/{pedido['id']}", headers=brand.h())
    assert r.status_code == 200
    assert [(h["desde"], h["hacia"], h["actor"]) for h in r.json()["historial"]] == expected


def test_cancel_from_every_open_state(client, settings, brand, products):
    for path in ([], ["confirmado"], ["confirmado", "en_preparacion"], LEGAL_PATH[:3]):
        pedido = new_order(client, brand, [(products["pollo"], 1)])
        walk(client, brand, pedido["id"], path + ["cancelado"])
        assert history(settings, pedido["id"])[-1][:2] == ((path or ["pendiente"])[-1], "cancelado")


def test_status_change_of_another_brands_order_is_404(client, settings, brand, brand_b):
    before = order_row(settings, brand_b.ids["pedido"])
    r = move(client, brand, brand_b.ids["pedido"], "cancelado")
    assert_problem(r, 404)
    assert order_row(settings, brand_b.ids["pedido"]) == before


# ---------------------------------------------------------------- bad orders through the API
def _post_order(client, brand, body):
    return client.post("/api/pedidos", headers=brand.h("staff"), json=body)


def test_unknown_product_is_422_and_nothing_written(client, settings, brand, products):
    before = counts(settings)
    r = _post_order(client, brand, {"cliente_id": brand.ids["cliente"],
                                    "items": [{"producto_id": 987654321, "cantidad": 1}]})
    assert counts(settings) == before  # nothing half-written, whatever the answer
    assert_problem(r, 422, "items[0].producto_id")
    r = _post_order(client, brand, {"cliente_id": brand.ids["cliente"],
                                    "items": [{"producto_id": products["pollo"], "cantidad": 1},
                                              {"producto_id": 987654321, "cantidad": 1}]})
    assert counts(settings) == before
    assert_problem(r, 422, "items[1].producto_id")


def test_other_brands_product_is_422_and_nothing_written(client, settings, brand, brand_b):
    before = counts(settings)
    r = _post_order(client, brand, {"cliente_id": brand.ids["cliente"],
                                    "items": [{"producto_id": brand_b.ids["producto"], "cantidad": 1}]})
    assert counts(settings) == before  # nothing half-written, whatever the answer
    body = assert_problem(r, 422, "items[0].producto_id")
    assert brand_b.slug not in body["detail"]


def test_other_brands_customer_is_422_and_nothing_written(client, settings, brand, brand_b, products):
    before = counts(settings)
    r = _post_order(client, brand, {"cliente_id": brand_b.ids["cliente"],
                                    "items": [{"producto_id": products["pollo"], "cantidad": 1}]})
    assert counts(settings) == before  # nothing half-written, whatever the answer
    assert_problem(r, 422, "cliente_id")


def test_inactive_product_is_422(client, settings, brand, products):
    before = counts(settings)
    r = _post_order(client, brand, {"cliente_id": brand.ids["cliente"],
                                    "items": [{"producto_id": products["viejo"], "cantidad": 1}]})
    assert counts(settings) == before  # nothing half-written, whatever the answer
    assert_problem(r, 422, "items[0].producto_id")


@pytest.mark.parametrize("cantidad", [0, -1, -100, 10001])  # the schema allows 1..10000
def test_quantity_out_of_bounds_is_422(client, settings, brand, products, cantidad):
    before = counts(settings)
    r = _post_order(client, brand, {"cliente_id": brand.ids["cliente"],
                                    "items": [{"producto_id": products["pollo"], "cantidad": cantidad}]})
    assert counts(settings) == before  # nothing half-written, whatever the answer
    assert_problem(r, 422, "items[0].cantidad")


def test_order_without_items_is_422(client, settings, brand):
    before = counts(settings)
    r = _post_order(client, brand, {"cliente_id": brand.ids["cliente"], "items": []})
    assert counts(settings) == before  # nothing half-written, whatever the answer
    assert_problem(r, 422, "items")


# ---------------------------------------------------------------- totals and captured prices
def test_total_is_sum_of_items(client, settings, brand, products):
    pedido = new_order(client, brand, [(products["pollo"], 3), (products["papas"], 2)])
    assert pedido["total"] == 3 * 1000 + 2 * 2500
    assert [(i["producto_id"], i["cantidad"], i["precio_unitario"], i["subtotal"]) for i in pedido["items"]] == [
        (products["pollo"], 3, 1000, 3000), (products["papas"], 2, 2500, 5000)]
    assert order_row(settings, pedido["id"])["total"] == items_sum(settings, pedido["id"]) == 8000


def test_price_is_captured_at_order_time(client, settings, brand):
    producto = new_product(client, brand, "CAPTURA", 4000)
    old = new_order(client, brand, [(producto, 2)])
    assert old["total"] == 8000

    r = client.put(f"/api/marcas/{brand.slug}/productos/{producto}", headers=brand.h(),
                   json={"precio": 5500})
    assert r.status_code == 200 and r.json()["precio"] == 5500

    again = client.get(f"/api/pedidos/{old['id']}", headers=brand.h()).json()
    assert again["total"] == 8000
    assert again["items"][0]["precio_unitario"] == 4000
    assert order_row(settings, old["id"])["total"] == 8000
    new = new_order(client, brand, [(producto, 2)])
    assert new["total"] == 11000 and new["items"][0]["precio_unitario"] == 5500


# ---------------------------------------------------------------- the same rules as the brand's role (NocoDB)
@pytest.fixture
def brand_sql(settings, brand):
    conn = connect(settings, roles.brand_role(brand.slug))
    yield conn
    conn.close()


def _sql_order(conn, brand, products, items=((None, 2),)) -> int:
    pedido_id = conn.execute("INSERT INTO crm.pedidos (cliente_id, canal) VALUES (%s, 'telefono') RETURNING id",
                             (brand.ids["cliente"],)).fetchone()[0]
    for producto, cantidad in items:
        conn.execute("INSERT INTO crm.pedido_items (pedido_id, producto_id, cantidad) VALUES (%s, %s, %s)",
                     (pedido_id, producto or products["pollo"], cantidad))
    conn.commit()
    return pedido_id


def _sqlstate(conn, sql: str, params=()) -> str | None:
    try:
        conn.execute(sql, params)
        conn.commit()
        return None
    except psycopg.Error as e:
        conn.rollback()
        return e.sqlstate


def test_brand_role_illegal_transition_is_crm01(settings, brand, products, brand_sql):
    pedido_id = _sql_order(brand_sql, brand, products)
    row, hist, before = order_row(settings, pedido_id), history(settings, pedido_id), counts(settings)
    for target in ("entregado", "listo", "en_preparacion"):
        assert _sqlstate(brand_sql, "UPDATE crm.pedidos SET estado = %s WHERE id = %s",
                         (target, pedido_id)) == "CRM01"
    assert order_row(settings, pedido_id) == row
    assert history(settings, pedido_id) == hist
    assert counts(settings) == before

    # cancelado is final
    assert _sqlstate(brand_sql, "UPDATE crm.pedidos SET estado = 'cancelado' WHERE id = %s", (pedido_id,)) is None
    row, hist = order_row(settings, pedido_id), history(settings, pedido_id)
    assert _sqlstate(brand_sql, "UPDATE crm.pedidos SET estado = 'confirmado' WHERE id = %s",
                     (pedido_id,)) == "CRM01"
    assert order_row(settings, pedido_id) == row and history(settings, pedido_id) == hist


def test_brand_role_new_order_must_start_pending(settings, brand, brand_sql):
    before = counts(settings)
    assert _sqlstate(brand_sql, "INSERT INTO crm.pedidos (cliente_id, canal, estado) "
                                "VALUES (%s, 'web', 'entregado')", (brand.ids["cliente"],)) == "CRM01"
    assert counts(settings) == before


def test_brand_role_cannot_change_customer_of_order(settings, brand, products, brand_sql):
    pedido_id = _sql_order(brand_sql, brand, products)
    otro = brand_sql.execute("INSERT INTO crm.clientes (nombre) VALUES ('Otro cliente') RETURNING id").fetchone()[0]
    brand_sql.commit()
    row = order_row(settings, pedido_id)
    assert _sqlstate(brand_sql, "UPDATE crm.pedidos SET cliente_id = %s WHERE id = %s", (otro, pedido_id)) == "CRM02"
    assert order_row(settings, pedido_id) == row


def test_brand_role_legal_path_history_names_the_role(settings, brand, products, brand_sql):
    rol = roles.brand_role(brand.slug)
    pedido_id = _sql_order(brand_sql, brand, products)
    for estado in LEGAL_PATH:
        assert _sqlstate(brand_sql, "UPDATE crm.pedidos SET estado = %s WHERE id = %s", (estado, pedido_id)) is None
    assert history(settings, pedido_id) == [
        (None, "pendiente", rol), ("pendiente", "confirmado", rol), ("confirmado", "en_preparacion", rol),
        ("en_preparacion", "listo", rol), ("listo", "entregado", rol)]


def test_brand_role_items_of_confirmed_order_are_frozen(settings, brand, products, brand_sql):
    pedido_id = _sql_order(brand_sql, brand, products, ((products["pollo"], 2), (products["papas"], 1)))
    assert _sqlstate(brand_sql, "UPDATE crm.pedidos SET estado = 'confirmado' WHERE id = %s", (pedido_id,)) is None
    with admin(settings) as conn:
        items_before = conn.execute("SELECT * FROM crm.pedido_items WHERE pedido_id = %s ORDER BY id",
                                    (pedido_id,)).fetchall()
    total = order_row(settings, pedido_id)["total"]
    assert total == 2 * 1000 + 2500

    assert _sqlstate(brand_sql, "UPDATE crm.pedido_items SET cantidad = 50 WHERE pedido_id = %s",
                     (pedido_id,)) == "CRM03"
    assert _sqlstate(brand_sql, "UPDATE crm.pedido_items SET precio_unitario = 0 WHERE pedido_id = %s",
                     (pedido_id,)) == "CRM03"
    assert _sqlstate(brand_sql, "INSERT INTO crm.pedido_items (pedido_id, producto_id, cantidad) "
                                "VALUES (%s, %s, 1)", (pedido_id, products["pollo"])) == "CRM03"
    assert _sqlstate(brand_sql, "DELETE FROM crm.pedido_items WHERE pedido_id = %s", (pedido_id,)) == "CRM03"

    with admin(settings) as conn:
        assert conn.execute("SELECT * FROM crm.pedido_items WHERE pedido_id = %s ORDER BY id",
                            (pedido_id,)).fetchall() == items_before
    assert order_row(settings, pedido_id)["total"] == total


def test_brand_role_cannot_set_total_by_hand(settings, brand, products, brand_sql):
    pedido_id = _sql_order(brand_sql, brand, products, ((products["pollo"], 3),))
    assert order_row(settings, pedido_id)["total"] == 3000
    assert _sqlstate(brand_sql, "UPDATE crm.pedidos SET total = 1 WHERE id = %s", (pedido_id,)) is None
    assert order_row(settings, pedido_id)["total"] == items_sum(settings, pedido_id) == 3000
    # also once confirmed, and together with a legal status change
    assert _sqlstate(brand_sql, "UPDATE crm.pedidos SET estado = 'confirmado', total = 999999 WHERE id = %s",
                     (pedido_id,)) is None
    row = order_row(settings, pedido_id)
    assert (row["estado"], row["total"]) == ("confirmado", 3000)


def test_brand_role_item_changes_keep_total(settings, brand, products, brand_sql):
    pedido_id = _sql_order(brand_sql, brand, products, ((products["pollo"], 1),))
    assert order_row(settings, pedido_id)["total"] == 1000

    item = brand_sql.execute("INSERT INTO crm.pedido_items (pedido_id, producto_id, cantidad) "
                             "VALUES (%s, %s, 2) RETURNING id, precio_unitario",
                             (pedido_id, products["papas"])).fetchone()
    brand_sql.commit()
    assert item[1] == 2500  # current catalog price when none is given
    assert order_row(settings, pedido_id)["total"] == items_sum(settings, pedido_id) == 1000 + 5000

    assert _sqlstate(brand_sql, "UPDATE crm.pedido_items SET cantidad = 4 WHERE id = %s", (item[0],)) is None
    assert order_row(settings, pedido_id)["total"] == items_sum(settings, pedido_id) == 1000 + 10000

    assert _sqlstate(brand_sql, "DELETE FROM crm.pedido_items WHERE id = %s", (item[0],)) is None
    assert order_row(settings, pedido_id)["total"] == items_sum(settings, pedido_id) == 1000

    # several items in one statement (the total trigger is per statement)
    assert _sqlstate(brand_sql, "INSERT INTO crm.pedido_items (pedido_id, producto_id, cantidad) "
                                "VALUES (%s, %s, 1), (%s, %s, 1)",
                     (pedido_id, products["pollo"], pedido_id, products["papas"])) is None
    assert order_row(settings, pedido_id)["total"] == items_sum(settings, pedido_id) == 1000 + 1000 + 2500

    assert _sqlstate(brand_sql, "DELETE FROM crm.pedido_items WHERE pedido_id = %s", (pedido_id,)) is None
    assert order_row(settings, pedido_id)["total"] == 0


def _declared(conn, brand, total: int, items) -> int:
    """One statement, as the API writes an order: the order with a declared total, and its items."""
    pedido_id = conn.execute(
        "WITH p AS (INSERT INTO crm.pedidos (cliente_id, canal, total) VALUES (%s, 'web', %s) RETURNING id), "
        "i AS (INSERT INTO crm.pedido_items (pedido_id, producto_id, cantidad) "
        "      SELECT p.id, x.producto, x.cantidad FROM p, unnest(%s::bigint[], %s::int[]) AS x(producto, cantidad)) "
        "SELECT id FROM p", (brand.ids["cliente"], total, [pr for pr, _ in items], [c for _, c in items])).fetchone()[0]
    conn.commit()
    return pedido_id


def _order_versions(settings, pedido_id: int) -> list[str]:
    with admin(settings) as conn:
        return [r[0] for r in conn.execute("SELECT accion FROM crm.auditoria WHERE tabla = 'pedidos' "
                                           "AND registro_id = %s ORDER BY id", (pedido_id,))]


def test_declared_total_is_written_once_when_right_and_recomputed_when_not(settings, brand, products, brand_sql):
    items = [(products["pollo"], 2), (products["papas"], 1)]
    right = _declared(brand_sql, brand, 4500, items)
    assert order_row(settings, right)["total"] == items_sum(settings, right) == 4500
    assert _order_versions(settings, right) == ["INSERT"]

    for declared in (1, 999_999):
        wrong = _declared(brand_sql, brand, declared, items)
        assert order_row(settings, wrong)["total"] == items_sum(settings, wrong) == 4500
        assert _order_versions(settings, wrong) == ["INSERT", "UPDATE"]

    # declared, but without items: the total is theirs, 0; so is a blank or negative one
    # (what a grid may send), without an error
    for declared in (5000, None, -5):
        alone = brand_sql.execute("INSERT INTO crm.pedidos (cliente_id, canal, total) VALUES (%s, 'web', %s) "
                                  "RETURNING id", (brand.ids["cliente"], declared)).fetchone()[0]
        brand_sql.commit()
        assert order_row(settings, alone)["total"] == 0
    blank = _declared(brand_sql, brand, None, items)
    assert order_row(settings, blank)["total"] == items_sum(settings, blank) == 4500

    # items added later in the same transaction as the order (as NocoDB would not, but a
    # script could): the order is this transaction's own, its total is brought up to date
    pedido_id = brand_sql.execute("INSERT INTO crm.pedidos (cliente_id, canal, total) VALUES (%s, 'web', 1000) "
                                  "RETURNING id", (brand.ids["cliente"],)).fetchone()[0]
    for producto, cantidad in items:
        brand_sql.execute("INSERT INTO crm.pedido_items (pedido_id, producto_id, cantidad) VALUES (%s, %s, %s)",
                          (pedido_id, producto, cantidad))
    brand_sql.commit()
    assert order_row(settings, pedido_id)["total"] == items_sum(settings, pedido_id) == 4500


def test_items_added_at_once_by_two_sessions_keep_total(settings, brand, products, brand_sql):
    """Two sessions add an item of the same price to one order at the same moment. The
    second waits for the first's lock on the order; its total must then count both items
    (a check made before that wait, in its older snapshot, would see the totals equal)."""
    pedido_id = _sql_order(brand_sql, brand, products, ((products["pollo"], 1),))
    insert = "INSERT INTO crm.pedido_items (pedido_id, producto_id, cantidad) VALUES (%s, %s, 1)"
    with connect(settings, roles.brand_role(brand.slug)) as otra:
        brand_sql.execute(insert, (pedido_id, products["pollo"]))  # holds the order's row lock
        done = threading.Event()

        def second():
            otra.execute(insert, (pedido_id, products["pollo"]))
            otra.commit()
            done.set()

        t = threading.Thread(target=second)
        t.start()
        with admin(settings) as conn:
            for _ in range(200):
                if conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                "AND query LIKE 'INSERT INTO crm.pedido_items%%'").fetchone()[0]:
                    break
                time.sleep(0.02)
            else:
                pytest.fail("la segunda sesión no llegó a esperar el pedido")
        assert not done.is_set()
        brand_sql.commit()
        t.join(10)
        assert done.is_set()
    assert order_row(settings, pedido_id)["total"] == items_sum(settings, pedido_id) == 3 * 1000


def test_brand_role_inactive_product_is_crm04(settings, brand, products, brand_sql):
    pedido_id = _sql_order(brand_sql, brand, products)
    before = counts(settings)
    assert _sqlstate(brand_sql, "INSERT INTO crm.pedido_items (pedido_id, producto_id, cantidad) "
                                "VALUES (%s, %s, 1)", (pedido_id, products["viejo"])) == "CRM04"
    assert counts(settings) == before


def test_brand_role_cannot_use_other_brands_product(settings, brand, brand_b, products, brand_sql):
    pedido_id = _sql_order(brand_sql, brand, products)
    before = counts(settings)
    state = _sqlstate(brand_sql, "INSERT INTO crm.pedido_items (pedido_id, producto_id, cantidad, precio_unitario) "
                                 "VALUES (%s, %s, 1, 100)", (pedido_id, brand_b.ids["producto"]))
    assert state == "23503"  # the foreign key includes marca_id
    assert counts(settings) == before
