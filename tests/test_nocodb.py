"""NocoDB, for real: isolation and the business rules hold for what staff do in its grids.

One NocoDB for the module, started from nocodb/ (npm install, see nocodb/README.md) on a
free port, its metadata in a database of its own on the test cluster; about 10-40 s to
start. Two brands are provisioned; brand A's staff user works through NocoDB's REST API
(the same calls its grids make) and the database is checked as the superuser.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import psycopg
import pytest
from psycopg import sql

from api import roles
from api.config import ROOT

if str(ROOT) not in sys.path:  # nocodb/ is a package of the repository, not of the install
    sys.path.insert(0, str(ROOT))

from conftest import admin, make_brand

from nocodb import provision, server

pytestmark = pytest.mark.skipif(
    not server.installed(),
    reason="NocoDB no está instalado: scripts/setup.sh test lo instala (npm en nocodb/)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Noco:
    settings: object
    url: str
    log: object


@pytest.fixture(scope="module")
def noco(settings, tmp_path_factory):
    port = _free_port()
    meta_db = f"nocodb_test_{os.getpid()}"
    s = dataclasses.replace(settings, nocodb_port=port, nocodb_url="", nocodb_meta_db=meta_db,
                            nc_admin_email="admin@crm.test", nc_admin_password="", nc_auth_jwt_secret="",
                            nocodb_meta_password="")
    admin_db = roles.with_database(roles.admin_url(s), "postgres")
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(meta_db))
    with psycopg.connect(admin_db, autocommit=True) as conn:
        conn.execute(drop)
    server.ensure_meta_database(s)
    tmp = tmp_path_factory.mktemp("nocodb")
    log_path = tmp / "nocodb.log"
    log = open(log_path, "w")
    proc = subprocess.Popen(server.command(), cwd=server.HERE, env=server.environment(s, tool_dir=tmp / "tool"),
                            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        started = time.monotonic()
        while True:
            if proc.poll() is not None:
                pytest.fail(f"NocoDB terminó al iniciar:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=3).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > 120:
                pytest.fail(f"NocoDB no respondió en 120 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        print(f"NocoDB listo en {time.monotonic() - started:.1f} s", file=sys.stderr)
        yield Noco(s, url, log_path)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()
        with psycopg.connect(admin_db, autocommit=True) as conn:
            conn.execute(drop)


@pytest.fixture(scope="module")
def two(noco, settings, api_engine):
    """Brands A and B, provisioned; the first provisioning's result."""
    a, b = make_brand(settings, api_engine, "nca"), make_brand(settings, api_engine, "ncb")
    with admin(settings) as conn:  # a second customer for A, with a name B's also matches
        conn.execute("INSERT INTO crm.clientes (marca_id, nombre, ciudad, segmento) VALUES "
                     "(%s, 'Otra Cliente Temuco', 'Temuco', 'vip')", (a.id,))
    result = provision.provision(noco.settings, only={a.slug, b.slug}, log=lambda m: None)
    return a, b, result


def _client(noco, token: str | None = None, **headers) -> httpx.Client:
    h = dict(headers)
    if token:
        h["xc-token"] = token
    return httpx.Client(base_url=noco.url, headers=h, timeout=60)


@pytest.fixture(scope="module")
def staff_a(noco, two):
    """Brand A's staff user: signs in and makes an API token, as a person would in NocoDB."""
    a, _, result = two
    email, password = result.credentials[a.slug]
    with _client(noco) as c:
        jwt = c.post("/api/v1/auth/user/signin", json={"email": email, "password": password})
        assert jwt.status_code == 200, jwt.text
        r = c.post("/api/v1/tokens", json={"description": "pruebas"}, headers={"xc-auth": jwt.json()["token"]})
        assert r.status_code == 200, r.text
    with _client(noco, r.json()["token"]) as c:
        yield c


def _tables(client, base_id) -> dict[str, dict]:
    r = client.get(f"/api/v2/meta/bases/{base_id}/tables")
    assert r.status_code == 200, r.text
    return {t["table_name"]: t for t in r.json()["list"]}


def _admin_api(noco) -> httpx.Client:
    r = httpx.post(f"{noco.url}/api/v1/auth/user/signin", timeout=60,
                   json={"email": noco.settings.nc_admin_email, "password": server.admin_password(noco.settings)})
    assert r.status_code == 200, r.text
    return _client(noco, **{"xc-auth": r.json()["token"]})


def test_provisioning_makes_one_base_per_brand_with_spanish_titles_and_views(noco, two):
    a, b, result = two
    assert set(result.bases) == {a.slug, b.slug} and result.bases[a.slug] != result.bases[b.slug]
    for slug in (a.slug, b.slug):
        assert f"{slug}: usuario {provision.staff_email(noco.settings, slug)} (editor)" in result.created
    with _admin_api(noco) as c:
        tables = _tables(c, result.bases[a.slug])
        assert tables["clientes"]["title"] == "Clientes"
        assert tables["salientes"]["title"] == "Mensajes enviados"
        assert "claves_api" not in tables  # the brand role has no grant on it
        views = {}
        for name in ("clientes", "pedidos", "interacciones", "alertas", "salientes", "productos"):
            for v in c.get(f"/api/v2/meta/tables/{tables[name]['id']}/views").json()["list"]:
                views[v["title"]] = (name, v)
        assert {"Gestión Clientes", "Pipeline Pedidos", "Centro Interacciones", "Alertas (abiertas primero)",
                "Campañas", "Catálogo"} <= set(views)
        pedidos = c.get(f"/api/v2/meta/tables/{tables['pedidos']['id']}").json()
        estado = next(col for col in pedidos["columns"] if col.get("column_name") == "estado")
        assert estado["title"] == "Estado" and estado["uidt"] == "SingleSelect"
        assert [o["title"] for o in estado["colOptions"]["options"]] == [
            "pendiente", "confirmado", "en_preparacion", "listo", "entregado", "cancelado"]
        kanban = c.get(f"/api/v2/meta/kanbans/{views['Pipeline Pedidos'][1]['id']}").json()
        assert kanban["fk_grp_col_id"] == estado["id"]
        clientes = c.get(f"/api/v2/meta/tables/{tables['clientes']['id']}").json()
        titles = {col["title"] for col in clientes["columns"]}
        assert {"Nombre", "Teléfono", "Segmento", "Ciudad", "Pedidos"} <= titles
        # no link built from marca_id alone (it would pair every order with any customer)
        assert not [col for col in pedidos["columns"] if col["uidt"] == "LinkToAnotherRecord"
                    and col["title"] != "Cliente"]
        users = c.get(f"/api/v2/meta/bases/{result.bases[b.slug]}/users").json()["users"]["list"]
        roles_in_b = {u["email"]: u.get("roles") for u in users}  # lists every user of the install
        assert roles_in_b[provision.staff_email(noco.settings, b.slug)] == "editor"
        assert roles_in_b[provision.staff_email(noco.settings, a.slug)] in (None, "", "no-access"), roles_in_b


def test_staff_of_a_lists_counts_and_searches_only_brand_a(noco, two, staff_a, settings):
    a, b, result = two
    bases = {x["id"] for x in staff_a.get("/api/v2/meta/bases/").json()["list"]}
    assert bases == {result.bases[a.slug]}  # invited to its own base only
    tables = _tables(staff_a, result.bases[a.slug])
    with admin(settings) as conn:
        own = {r[0] for r in conn.execute("SELECT id FROM crm.clientes WHERE marca_id = %s", (a.id,))}
        own_orders = {r[0] for r in conn.execute("SELECT id FROM crm.pedidos WHERE marca_id = %s", (a.id,))}
        both = conn.execute("SELECT count(*) FROM crm.clientes WHERE marca_id IN (%s, %s) "
                            "AND nombre ILIKE '%%cliente%%'", (a.id, b.id)).fetchone()[0]
    clientes, pedidos = tables["clientes"]["id"], tables["pedidos"]["id"]

    rows = staff_a.get(f"/api/v2/tables/{clientes}/records", params={"limit": 1000}).json()["list"]
    assert {r["ID"] for r in rows} == own and len(own) == 2
    assert staff_a.get(f"/api/v2/tables/{clientes}/records/count").json()["count"] == len(own)
    found = staff_a.get(f"/api/v2/tables/{clientes}/records", params={"where": "(Nombre,like,%cliente%)"})
    assert found.status_code == 200, found.text
    assert {r["ID"] for r in found.json()["list"]} == own and both == 3  # B's customer matches too, in SQL
    orders = staff_a.get(f"/api/v2/tables/{pedidos}/records", params={"limit": 1000}).json()["list"]
    assert {r["ID"] for r in orders} == own_orders
    assert staff_a.get(f"/api/v2/tables/{pedidos}/records/count").json()["count"] == len(own_orders)
    # the view staff open, with its filter (not deleted) and sort
    view = next(v for v in staff_a.get(f"/api/v2/meta/tables/{clientes}/views").json()["list"]
                if v["title"] == "Gestión Clientes")
    listed = staff_a.get(f"/api/v2/tables/{clientes}/records", params={"viewId": view["id"]}).json()["list"]
    assert [r["Nombre"] for r in listed] == sorted(r["Nombre"] for r in rows)
    vip = staff_a.get(f"/api/v2/tables/{clientes}/records",
                      params={"viewId": view["id"], "where": "(Segmento,eq,vip)~and(Ciudad,like,%temu%)"})
    assert [r["Nombre"] for r in vip.json()["list"]] == ["Otra Cliente Temuco"]

    # B's base is not A's staff's to read, even knowing its table ids
    with _admin_api(noco) as c:
        b_clientes = _tables(c, result.bases[b.slug])["clientes"]["id"]
    r = staff_a.get(f"/api/v2/tables/{b_clientes}/records")
    assert r.status_code in (401, 403, 404), r.text


def test_customer_created_through_nocodb_lands_in_brand_a(noco, two, staff_a, settings):
    a, _, result = two
    clientes = _tables(staff_a, result.bases[a.slug])["clientes"]["id"]
    r = staff_a.post(f"/api/v2/tables/{clientes}/records",
                     json={"Nombre": "Creada en NocoDB", "Teléfono": "+56977770001", "Ciudad": "Valdivia"})
    assert r.status_code == 200, r.text
    with admin(settings) as conn:
        row = conn.execute("SELECT marca_id, id FROM crm.clientes WHERE nombre = 'Creada en NocoDB'").fetchall()
        assert row == [(a.id, r.json()["ID"])]
        actor = conn.execute("SELECT actor FROM crm.auditoria WHERE tabla = 'clientes' AND accion = 'INSERT' "
                             "AND registro_id = %s AND marca_id = %s", (row[0][1], a.id)).fetchone()
        assert actor == (roles.brand_role(a.slug),)


def test_writing_brand_b_rows_is_refused(noco, two, staff_a, settings):
    a, b, result = two
    tables = _tables(staff_a, result.bases[a.slug])
    clientes = tables["clientes"]["id"]
    with admin(settings) as conn:
        before = conn.execute("SELECT count(*) FROM crm.clientes WHERE marca_id = %s", (b.id,)).fetchone()[0]
    for body in ({"Nombre": "Intrusa", "Marca": b.id}, {"Nombre": "Intrusa", "marca_id": b.id}):
        r = staff_a.post(f"/api/v2/tables/{clientes}/records", json=body)
        assert r.status_code >= 400, r.text
    # A's own customer cannot be moved to B
    r = staff_a.patch(f"/api/v1/db/data/noco/{result.bases[a.slug]}/{clientes}/{a.id}___{a.ids['cliente']}",
                      json={"Marca": b.id})
    assert r.status_code >= 400 or r.json().get("Marca") == a.id, r.text
    # B's customer, addressed by its key through A's base, is not there to change
    r = staff_a.patch(f"/api/v1/db/data/noco/{result.bases[a.slug]}/{clientes}/{b.id}___{b.ids['cliente']}",
                      json={"Nombre": "Cambiada por A"})
    assert r.status_code >= 400, r.text
    with admin(settings) as conn:
        assert conn.execute("SELECT count(*) FROM crm.clientes WHERE marca_id = %s", (b.id,)).fetchone()[0] == before
        assert conn.execute("SELECT count(*) FROM crm.clientes WHERE nombre IN ('Intrusa', 'Cambiada por A')"
                            ).fetchone()[0] == 0
        assert conn.execute("SELECT marca_id FROM crm.clientes WHERE id = %s", (a.ids["cliente"],)
                            ).fetchone() == (a.id,)


def test_order_rules_hold_for_edits_in_nocodb(noco, two, staff_a, settings):
    a, _, result = two
    pedidos = _tables(staff_a, result.bases[a.slug])["pedidos"]["id"]
    row = f"/api/v1/db/data/noco/{result.bases[a.slug]}/{pedidos}/{a.id}___{a.ids['pedido']}"  # the grid's call

    r = staff_a.patch(row, json={"Estado": "entregado"})
    assert r.status_code in (400, 422), r.text
    assert r.json()["code"] == "CRM01"
    assert "Transición de estado no permitida: pendiente → entregado" in r.json()["message"]

    r = staff_a.patch(row, json={"Estado": "confirmado", "Total": 1})  # total is the items' sum
    assert r.status_code == 200, r.text
    with admin(settings) as conn:
        estado, total, items = conn.execute(
            "SELECT p.estado, p.total, (SELECT sum(subtotal) FROM crm.pedido_items i WHERE i.marca_id = p.marca_id "
            "AND i.pedido_id = p.id) FROM crm.pedidos p WHERE marca_id = %s AND id = %s",
            (a.id, a.ids["pedido"])).fetchone()
        assert (estado, total) == ("confirmado", items)
        audit = conn.execute("SELECT actor, antes->>'estado', despues->>'estado' FROM crm.auditoria "
                             "WHERE marca_id = %s AND tabla = 'pedidos' AND registro_id = %s AND accion = 'UPDATE' "
                             "ORDER BY id DESC LIMIT 1", (a.id, a.ids["pedido"])).fetchone()
        assert audit == (roles.brand_role(a.slug), "pendiente", "confirmado")
        history = conn.execute("SELECT desde, hacia, actor FROM crm.pedido_estados WHERE marca_id = %s "
                               "AND pedido_id = %s ORDER BY id DESC LIMIT 1", (a.id, a.ids["pedido"])).fetchone()
        assert history == ("pendiente", "confirmado", roles.brand_role(a.slug))


def test_provisioning_twice_creates_nothing(noco, two):
    a, b, first = two
    again = provision.provision(noco.settings, only={a.slug, b.slug}, log=lambda m: None)
    assert again.created == [] and again.changed == []
    assert again.bases == first.bases
    assert sorted(again.found) == sorted([a.slug, b.slug])
