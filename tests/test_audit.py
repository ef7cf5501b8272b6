"""Every write to a tenant table leaves one audit row naming who did it.

The tables come from the database itself (crm.tablas_tenant()), so a new tenant table
makes this file fail until its writes are exercised here. `actor` is `clave_api:<id>`
through the API and the login role's name through NocoDB/Metabase (a brand role). Brand
roles read the trail but can never write it, nor the order status history.
"""

from __future__ import annotations

import re

import psycopg
import pytest
from conftest import admin, connect, make_brand
from sqlalchemy import text

from api import roles
from api.services import claves


def tenant_tables(settings) -> list[str]:
    with admin(settings) as conn:
        return [r[0] for r in conn.execute("SELECT crm.tablas_tenant()::text")]


def audited_tables(settings) -> set[str]:
    return {t.removeprefix("crm.") for t in tenant_tables(settings) if t != "crm.auditoria"}


def mark(settings) -> int:
    with admin(settings) as conn:
        return conn.execute("SELECT coalesce(max(id), 0) FROM crm.auditoria").fetchone()[0]


def audit_since(settings, since: int, marca_id: int | None = None) -> list[dict]:
    with admin(settings) as conn:
        cur = conn.execute(
            "SELECT marca_id, tabla, registro_id, accion, antes, despues, actor FROM crm.auditoria "
            "WHERE id > %s AND (%s::bigint IS NULL OR marca_id = %s) ORDER BY id", (since, marca_id, marca_id))
        cols = [c.name for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall()]


def snapshot(settings, tabla: str, registro_id: int) -> dict | None:
    with admin(settings) as conn:
        row = conn.execute(f"SELECT to_jsonb(t) FROM crm.{tabla} t WHERE id = %s", (registro_id,)).fetchone()
        return row[0] if row else None


def key_actor(api_engine, key: str) -> str:
    with api_engine.connect() as conn:
        kid = conn.execute(text("SELECT id FROM crm.claves_api WHERE hash = :h"),
                           {"h": claves.digest(key)}).scalar_one()
    return f"clave_api:{kid}"


def one(rows: list[dict], tabla: str, registro_id: int, accion: str) -> dict:
    found = [r for r in rows if (r["tabla"], r["registro_id"], r["accion"]) == (tabla, registro_id, accion)]
    assert len(found) == 1, f"se esperaba una fila de auditoría {accion} {tabla} {registro_id}; hay {found}"
    return found[0]


def check(row: dict, marca_id: int, actor: str, antes: dict | None, despues: dict | None) -> None:
    assert row["marca_id"] == marca_id
    assert row["actor"] == actor
    assert row["antes"] == antes
    assert row["despues"] == despues


def test_tenant_tables_listed_by_the_database(settings):
    tables = tenant_tables(settings)
    assert "crm.auditoria" in tables
    assert audited_tables(settings) >= {"clientes", "productos", "pedidos", "pedido_items",
                                        "pedido_estados", "interacciones"}


# ---------------------------------------------------------------- as a brand's login role
@pytest.fixture(scope="module")
def brand(settings, api_engine):
    return make_brand(settings, api_engine, "au")


@pytest.fixture
def brand_sql(settings, brand):
    conn = connect(settings, roles.brand_role(brand.slug), autocommit=True)
    yield conn
    conn.close()


def _brand_role_ops(conn, brand):
    """For each table, how a brand role (NocoDB) inserts, updates and deletes a row.
    Each op returns the ids it touched in that table."""
    ids: dict[str, int] = {}

    def ins(sql, params=()):
        return conn.execute(sql, params).fetchone()[0]

    def cliente_ins():
        ids["cliente"] = ins("INSERT INTO crm.clientes (nombre, telefono) VALUES ('Auditada Uno', '+56955500001') "
                             "RETURNING id")
        return [ids["cliente"]]

    def producto_ins():
        ids["producto"] = ins("INSERT INTO crm.productos (sku, nombre, precio) VALUES ('AUD1', 'Empanada', 1500) "
                              "RETURNING id")
        return [ids["producto"]]

    def pedido_ins():
        ids["pedido"] = ins("INSERT INTO crm.pedidos (cliente_id, canal) VALUES (%s, 'telefono') RETURNING id",
                            (ids["cliente"],))
        return [ids["pedido"]]

    def item_ins():
        ids["item"] = ins("INSERT INTO crm.pedido_items (pedido_id, producto_id, cantidad) VALUES (%s, %s, 2) "
                          "RETURNING id", (ids["pedido"], ids["producto"]))
        return [ids["item"]]

    def estado_ins():
        # the history is written by the order's trigger, never by hand
        before = {r[0] for r in conn.execute("SELECT id FROM crm.pedido_estados WHERE pedido_id = %s",
                                             (ids["pedido"],))}
        conn.execute("UPDATE crm.pedidos SET estado = 'cancelado' WHERE id = %s", (ids["pedido"],))
        new = {r[0] for r in conn.execute("SELECT id FROM crm.pedido_estados WHERE pedido_id = %s",
                                          (ids["pedido"],))} - before
        assert len(new) == 1
        ids["estado"] = new.pop()
        return [ids["estado"]]

    def plantilla_ins():
        ids["plantilla"] = ins("INSERT INTO crm.plantillas (nombre, cuerpo) VALUES ('aviso_auditado', 'Hola') "
                               "RETURNING id")
        return [ids["plantilla"]]

    ids["alerta"] = conn.execute("SELECT min(id) FROM crm.alertas").fetchone()[0]

    def interaccion_ins():
        ids["interaccion"] = ins("INSERT INTO crm.interacciones (cliente_id, canal, direccion, tipo, contenido) "
                                 "VALUES (%s, 'sms', 'saliente', 'mensaje', 'hola') RETURNING id", (ids["cliente"],))
        return [ids["interaccion"]]

    def upd(table, sets, key):
        def op():
            conn.execute(f"UPDATE crm.{table} SET {sets} WHERE id = %s", (ids[key],))
            return [ids[key]]
        return op

    def dele(table, key):
        def op():
            conn.execute(f"DELETE FROM crm.{table} WHERE id = %s", (ids[key],))
            return [ids[key]]
        return op

    ids["cancelar"] = estado_ins
    return ids, [
        ("clientes", "INSERT", cliente_ins),
        ("productos", "INSERT", producto_ins),
        ("pedidos", "INSERT", pedido_ins),
        ("pedido_items", "INSERT", item_ins),
        ("interacciones", "INSERT", interaccion_ins),
        ("clientes", "UPDATE", upd("clientes", "ciudad = 'Temuco', notas = 'editado en NocoDB'", "cliente")),
        ("productos", "UPDATE", upd("productos", "precio = 1700", "producto")),
        ("pedido_items", "UPDATE", upd("pedido_items", "cantidad = 3", "item")),
        ("pedidos", "UPDATE", upd("pedidos", "nota = 'sin cebolla'", "pedido")),
        ("interacciones", "UPDATE", upd("interacciones", "contenido = 'hola de nuevo'", "interaccion")),
        ("pedido_items", "DELETE", dele("pedido_items", "item")),
        ("interacciones", "DELETE", dele("interacciones", "interaccion")),
        ("plantillas", "INSERT", plantilla_ins),
        ("plantillas", "UPDATE", upd("plantillas", "aprobada = true", "plantilla")),
        ("plantillas", "DELETE", dele("plantillas", "plantilla")),
        ("alertas", "UPDATE", upd("alertas", "estado = 'asignada', asignada_a = 'Camila'", "alerta")),
    ]


def test_every_write_as_brand_role_is_audited(settings, brand, brand_sql):
    rol = roles.brand_role(brand.slug)
    ids, ops = _brand_role_ops(brand_sql, brand)
    covered = set()
    for tabla, accion, op in ops:
        since = mark(settings)
        # what the rows were before (for UPDATE/DELETE, the ids are known already)
        key_of = {"clientes": "cliente", "productos": "producto", "pedidos": "pedido",
                  "pedido_items": "item", "pedido_estados": "estado", "interacciones": "interaccion",
                  "plantillas": "plantilla", "alertas": "alerta"}[tabla]
        antes = snapshot(settings, tabla, ids[key_of]) if accion != "INSERT" else None
        touched = op()
        rows = audit_since(settings, since)
        for registro_id in touched:
            despues = snapshot(settings, tabla, registro_id) if accion != "DELETE" else None
            check(one(rows, tabla, registro_id, accion), brand.id, rol, antes, despues)
        assert all(r["actor"] == rol and r["marca_id"] == brand.id for r in rows), rows
        covered.add((tabla, accion))

    # A status change: the order's own audit row records it. The history row the order's
    # trigger writes names the same actor and is not copied into the trail.
    since = mark(settings)
    antes = snapshot(settings, "pedidos", ids["pedido"])
    (estado,) = ids["cancelar"]()
    rows = audit_since(settings, since)
    check(one(rows, "pedidos", ids["pedido"], "UPDATE"), brand.id, rol, antes,
          snapshot(settings, "pedidos", ids["pedido"]))
    assert [r["tabla"] for r in rows] == ["pedidos"]
    assert snapshot(settings, "pedido_estados", estado)["actor"] == rol

    # Only a pending order can be deleted (the cancelled one is refused, nothing written);
    # deleting a pending one cascades to its history; UPDATE of the history is owner-only.
    since = mark(settings)
    with pytest.raises(psycopg.DatabaseError, match="no se puede eliminar") as refused:
        with brand_sql.transaction():
            brand_sql.execute("DELETE FROM crm.pedidos WHERE id = %s", (ids["pedido"],))
    assert refused.value.sqlstate == "CRM06"
    assert audit_since(settings, since) == []
    borrador = brand_sql.execute("INSERT INTO crm.pedidos (cliente_id, canal) VALUES (%s, 'web') RETURNING id",
                                 (ids["cliente"],)).fetchone()[0]
    since = mark(settings)
    hist = {r[0]: snapshot(settings, "pedido_estados", r[0]) for r in admin(settings).execute(
        "SELECT id FROM crm.pedido_estados WHERE pedido_id = %s", (borrador,))}
    pedido_antes = snapshot(settings, "pedidos", borrador)
    assert len(hist) == 1
    brand_sql.execute("DELETE FROM crm.pedidos WHERE id = %s", (borrador,))
    rows = audit_since(settings, since)
    check(one(rows, "pedidos", borrador, "DELETE"), brand.id, rol, pedido_antes, None)
    for hid, before in hist.items():
        check(one(rows, "pedido_estados", hid, "DELETE"), brand.id, rol, before, None)
    covered |= {("pedidos", "DELETE"), ("pedido_estados", "DELETE")}

    # the cancelled order keeps its customer and product: delete fresh, unreferenced ones
    sueltos = {
        "productos": "INSERT INTO crm.productos (sku, nombre, precio) VALUES ('SUELTO', 'x', 1) RETURNING id",
        "clientes": "INSERT INTO crm.clientes (nombre) VALUES ('Suelto') RETURNING id",
    }
    for tabla, insert in sueltos.items():
        suelto = brand_sql.execute(insert).fetchone()[0]
        since = mark(settings)
        antes = snapshot(settings, tabla, suelto)
        brand_sql.execute(f"DELETE FROM crm.{tabla} WHERE id = %s", (suelto,))
        check(one(audit_since(settings, since), tabla, suelto, "DELETE"), brand.id, rol, antes, None)
        covered.add((tabla, "DELETE"))

    # Every write the brand role is granted leaves its audit row. Tables it may not write
    # (the WhatsApp outbox, channels, conversations) are written by the API: audited by the
    # same trigger, checked in the catalog by test_schema_shape.
    with admin(settings) as conn:
        granted = {(t, a) for t in audited_tables(settings) for a in ("INSERT", "UPDATE", "DELETE")
                   if conn.execute("SELECT has_table_privilege(%s, %s, %s)", (rol, f"crm.{t}", a)).fetchone()[0]}
    assert granted - covered == set()
    # pedido_estados is written only by triggers (insert, cascade delete) and updated only by
    # the owner (maintenance): its deletes are audited here, its updates below
    assert ("pedido_estados", "DELETE") in covered


def test_history_update_by_owner_is_audited(settings, brand):
    """Nobody but the owner can UPDATE pedido_estados; even then it leaves a trace."""
    with admin(settings) as conn:
        hid = conn.execute("SELECT id FROM crm.pedido_estados WHERE marca_id = %s ORDER BY id LIMIT 1",
                           (brand.id,)).fetchone()[0]
    antes = snapshot(settings, "pedido_estados", hid)
    since = mark(settings)
    with connect(settings, roles.OWNER, autocommit=True) as conn:
        conn.execute("UPDATE crm.pedido_estados SET actor = actor || ' (corregido)' WHERE id = %s", (hid,))
    despues = snapshot(settings, "pedido_estados", hid)
    assert despues["actor"].endswith(" (corregido)")
    check(one(audit_since(settings, since), "pedido_estados", hid, "UPDATE"), brand.id, roles.OWNER,
          antes, despues)


def test_brand_role_cannot_forge_actor(settings, brand, brand_sql):
    """app.actor is honoured only for the API's role: a brand role setting it (Metabase
    SQL, psql) is still audited under its own name."""
    since = mark(settings)
    brand_sql.execute("SELECT set_config('app.actor', 'clave_api:1', false), "
                      "set_config('app.marca_id', '1', false)")
    cid = brand_sql.execute("INSERT INTO crm.clientes (nombre) VALUES ('Falsificador') RETURNING id").fetchone()[0]
    row = one(audit_since(settings, since), "clientes", cid, "INSERT")
    assert row["actor"] == roles.brand_role(brand.slug)
    assert row["marca_id"] == brand.id


# ---------------------------------------------------------------- through the API
def test_every_write_through_the_api_is_audited(client, settings, api_engine, brand):
    staff, adm = key_actor(api_engine, brand.keys["staff"]), key_actor(api_engine, brand.keys["admin"])
    since_all = mark(settings)
    covered = set()

    def call(method, url, rol, json=None, status=200):
        r = client.request(method, url, headers=brand.h(rol), json=json)
        assert r.status_code == status, r.text
        return r

    def expect(since, tabla, registro_id, accion, actor, antes):
        despues = snapshot(settings, tabla, registro_id) if accion != "DELETE" else None
        check(one(audit_since(settings, since, brand.id), tabla, registro_id, accion), brand.id, actor,
              antes, despues)
        covered.add((tabla, accion))
        return despues

    # customers: create, update, forget (an UPDATE that erases personal data)
    s = mark(settings)
    cid = call("POST", f"/api/marcas/{brand.slug}/clientes", "staff",
               {"nombre": "Auditado API", "telefono": "+56955500002"}, 201).json()["id"]
    antes = expect(s, "clientes", cid, "INSERT", staff, None)
    s = mark(settings)
    call("PUT", f"/api/clientes/{cid}", "staff", {"ciudad": "Valdivia"})
    antes = expect(s, "clientes", cid, "UPDATE", staff, antes)
    assert antes["ciudad"] == "Valdivia"

    # products: create, update, delete
    s = mark(settings)
    pid = call("POST", f"/api/marcas/{brand.slug}/productos", "admin",
               {"sku": "AUD-API", "nombre": "Completo", "precio": 2000}, 201).json()["id"]
    p_antes = expect(s, "productos", pid, "INSERT", adm, None)
    s = mark(settings)
    call("PUT", f"/api/marcas/{brand.slug}/productos/{pid}", "admin", {"precio": 2100})
    p_antes = expect(s, "productos", pid, "UPDATE", adm, p_antes)
    pid2 = call("POST", f"/api/marcas/{brand.slug}/productos", "admin",
                {"sku": "AUD-API-2", "nombre": "Italiano", "precio": 2500}, 201).json()["id"]
    p2_antes = snapshot(settings, "productos", pid2)
    s = mark(settings)
    call("DELETE", f"/api/marcas/{brand.slug}/productos/{pid2}", "admin", status=204)
    expect(s, "productos", pid2, "DELETE", adm, p2_antes)

    # an order: the order, written once with its total, and its item
    s = mark(settings)
    pedido = call("POST", "/api/pedidos", "staff",
                  {"cliente_id": cid, "items": [{"producto_id": pid, "cantidad": 2}]}, 201).json()
    rows = audit_since(settings, s, brand.id)
    assert {r["actor"] for r in rows} == {staff}
    assert sorted(r["tabla"] for r in rows) == ["pedido_items", "pedidos"]
    expect(s, "pedidos", pedido["id"], "INSERT", staff, None)
    assert pedido["total"] == 4200
    item_id = pedido["items"][0]["id"]
    expect(s, "pedido_items", item_id, "INSERT", staff, None)
    # its history row names the key itself and is not copied into the trail
    assert [(h["hacia"], h["actor"]) for h in pedido["historial"]] == [("pendiente", staff)]
    assert not [r for r in rows if r["tabla"] == "pedido_estados"]

    o_antes = snapshot(settings, "pedidos", pedido["id"])
    s = mark(settings)
    hist = call("PUT", f"/api/pedidos/{pedido['id']}", "admin", {"estado": "confirmado"}).json()["historial"]
    expect(s, "pedidos", pedido["id"], "UPDATE", adm, o_antes)
    assert [(h["desde"], h["hacia"], h["actor"]) for h in hist[1:]] == [("pendiente", "confirmado", adm)]
    assert not [r for r in audit_since(settings, s, brand.id) if r["tabla"] == "pedido_estados"]

    # interactions
    s = mark(settings)
    iid = call("POST", "/api/interacciones", "staff",
               {"cliente_id": cid, "canal": "whatsapp", "direccion": "entrante", "tipo": "mensaje",
                "contenido": "¿tienen delivery?"}, 201).json()["id"]
    expect(s, "interacciones", iid, "INSERT", staff, None)

    # forgetting the customer is audited as an UPDATE by the admin key
    c_antes = snapshot(settings, "clientes", cid)
    s = mark(settings)
    call("DELETE", f"/api/clientes/{cid}", "admin", status=204)
    despues = expect(s, "clientes", cid, "UPDATE", adm, c_antes)
    assert despues["nombre"] == "Cliente eliminado" and despues["telefono"] is None

    # every audit row these requests produced names one of the two keys, in this brand
    assert {r["actor"] for r in audit_since(settings, since_all, brand.id)} == {staff, adm}
    assert not [r for r in audit_since(settings, since_all) if r["marca_id"] != brand.id]
    # every tenant table the REST routes write got an audited INSERT through the API (the
    # WhatsApp tables are written by the webhook: tests/test_whatsapp_flujo.py checks them;
    # the status history's inserts are the order's own record, checked above)
    whatsapp = {"canales", "conversaciones", "alertas", "plantillas", "salientes"}
    assert {t for t, a in covered if a == "INSERT"} == audited_tables(settings) - whatsapp - {"pedido_estados"}


# ---------------------------------------------------------------- the outbox
# A reply's delivery progress, written by the worker and the providers' status callbacks
# and kept on the row itself; every other column is what is sent, and to whom.
PROGRESO = {"estado", "intentos", "proximo_intento", "proveedor", "id_externo", "error", "enviado_en",
            "updated_at"}


def test_outbox_update_trigger_names_every_column_but_the_delivery_progress(settings):
    """A column added to crm.salientes is audited on update unless named progress here."""
    with admin(settings) as conn:
        columnas = {r[0] for r in conn.execute(
            "SELECT attname FROM pg_attribute WHERE attrelid = 'crm.salientes'::regclass "
            "AND attnum > 0 AND NOT attisdropped")}
        definicion = conn.execute("SELECT pg_get_triggerdef(oid) FROM pg_trigger WHERE "
                                  "tgrelid = 'crm.salientes'::regclass AND tgname = 'auditoria_contenido'"
                                  ).fetchone()[0]
    assert PROGRESO < columnas
    assert set(re.findall(r"old\.(\w+)", definicion)) == set(re.findall(r"new\.(\w+)", definicion)) \
        == columnas - PROGRESO


def test_outbox_audits_what_is_sent_not_its_delivery(settings, brand):
    with admin(settings) as conn:
        sid = conn.execute(
            "INSERT INTO crm.salientes (marca_id, cliente_id, canal_id, telefono, respuesta) "
            "VALUES (%s, %s, %s, '+56955500009', '{\"texto\": \"hola\"}') RETURNING id",
            (brand.id, brand.ids["cliente"], brand.ids["canal"])).fetchone()[0]
    since = mark(settings)
    with connect(settings, roles.OWNER, autocommit=True) as conn:
        enviado = "estado = 'enviado', intentos = 1, proveedor = 'meta', id_externo = 'wamid.x', enviado_en = now()"
        for sets in (enviado, "estado = 'leido'", "estado = 'fallido', error = '131047'"):
            conn.execute(f"UPDATE crm.salientes SET {sets} WHERE id = %s", (sid,))
    assert audit_since(settings, since) == []
    antes = snapshot(settings, "salientes", sid)
    with connect(settings, roles.OWNER, autocommit=True) as conn:
        conn.execute("UPDATE crm.salientes SET respuesta = '{\"texto\": \"chao\"}' WHERE id = %s", (sid,))
    check(one(audit_since(settings, since), "salientes", sid, "UPDATE"), brand.id, roles.OWNER,
          antes, snapshot(settings, "salientes", sid))
    since = mark(settings)
    with connect(settings, roles.OWNER, autocommit=True) as conn:
        conn.execute("DELETE FROM crm.salientes WHERE id = %s", (sid,))
    assert one(audit_since(settings, since), "salientes", sid, "DELETE")["despues"] is None


# ---------------------------------------------------------------- nobody writes the trail by hand
def _denied(conn, sql, params=()) -> str | None:
    try:
        conn.execute(sql, params)
        return None
    except psycopg.Error as e:
        return e.sqlstate


@pytest.mark.parametrize("sql", [
    "INSERT INTO crm.auditoria (tabla, registro_id, accion, actor) VALUES ('clientes', 1, 'INSERT', 'yo')",
    "UPDATE crm.auditoria SET actor = 'otro'",
    "DELETE FROM crm.auditoria",
    "INSERT INTO crm.pedido_estados (pedido_id, desde, hacia, actor) VALUES ({pedido}, 'pendiente', 'entregado', 'yo')",
    "UPDATE crm.pedido_estados SET hacia = 'entregado'",
    "DELETE FROM crm.pedido_estados",
])
def test_brand_role_cannot_write_audit_or_history(settings, brand, brand_sql, sql):
    with admin(settings) as conn:
        before = [conn.execute("SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) "
                               f"FROM crm.{t} t").fetchone() for t in ("auditoria", "pedido_estados")]
    assert _denied(brand_sql, sql.format(pedido=brand.ids["pedido"])) == "42501"  # insufficient_privilege
    with admin(settings) as conn:
        after = [conn.execute("SELECT count(*), md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) "
                              f"FROM crm.{t} t").fetchone() for t in ("auditoria", "pedido_estados")]
    assert after == before
    # reading it is allowed, and only its own brand's rows
    marcas = {r[0] for r in brand_sql.execute("SELECT DISTINCT marca_id FROM crm.auditoria")}
    assert marcas == {brand.id}


@pytest.mark.parametrize("sql", [
    "INSERT INTO crm.auditoria (tabla, registro_id, accion, actor) VALUES ('clientes', 1, 'INSERT', 'yo')",
    "UPDATE crm.auditoria SET actor = 'otro'",
    "DELETE FROM crm.auditoria",
    "INSERT INTO crm.pedido_estados (pedido_id, desde, hacia, actor) VALUES (1, 'pendiente', 'entregado', 'yo')",
])
def test_api_role_cannot_write_audit_or_history(settings, brand, sql):
    with connect(settings, roles.API, autocommit=True) as conn:
        conn.execute("SELECT set_config('app.marca_id', %s, false)", (str(brand.id),))
        assert _denied(conn, sql) == "42501"
