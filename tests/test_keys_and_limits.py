"""API keys: who may call, what each role may do, how fast, and how keys are kept.

Routes are taken from the app's route table, so every write route is checked against
the read-only role, not a hand-picked few.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid

import pytest
from conftest import _test_settings, admin, counts, make_brand, make_key
from litestar.testing import TestClient
from sqlalchemy import text

from api import auth, roles
from api.app import create_app

PROBLEM = "application/problem+json"
SAFE = {"GET", "HEAD", "OPTIONS"}






def table_digest(settings, table: str, marca_id: int) -> str:
    with admin(settings) as conn:
        return conn.execute(f"SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY id), '')) FROM crm.{table} t "
                            "WHERE marca_id = %s", (marca_id,)).fetchone()[0]


def assert_problem(r, status: int) -> dict:
    assert r.status_code == status, f"{r.status_code} {r.text[:400]}"
    assert r.headers["content-type"].split(";")[0] == PROBLEM
    body = r.json()
    assert body["status"] == status and body["detail"]
    return body


# ---------------------------------------------------------------- the route table
def _routes():
    out = []
    for route in create_app(_test_settings()).routes:
        # health is public; webhooks authenticate by the provider's signature, not a key
        # (tests/test_whatsapp_webhook.py)
        if not route.path.startswith("/api/") or route.path == "/api/health" or \
                route.path.startswith("/api/webhooks/"):
            continue
        for method, entry in getattr(route, "route_handler_map", {}).items():
            handler = entry[0] if isinstance(entry, tuple) else entry
            if method in ("OPTIONS", "HEAD"):
                continue
            out.append((method, route.path, handler))
    return sorted(out, key=lambda r: (r[1], r[0]))


ROUTES = _routes()
BRAND_ROUTES = [r for r in ROUTES if not r[2].opt.get("grupo")]
GROUP_ROUTES = [r for r in ROUTES if r[2].opt.get("grupo")]


def _url(template: str, brand) -> str:
    values = {"marca": brand.slug, "cliente_id": brand.ids["cliente"], "producto_id": brand.ids["producto"],
              "pedido_id": brand.ids["pedido"]}
    url = re.sub(r"\{(\w+)(?::\w+)?\}", lambda m: str(values[m.group(1)]), template)
    return url + ("?q=cliente" if template == "/api/clientes" else "")


def _body(handler, brand):
    if handler.parsed_data_field is None:
        return None
    name = handler.parsed_data_field.annotation.__name__
    n = uuid.uuid4().hex[:8]
    bodies = {
        "MarcaIn": {"slug": f"k-{n}", "nombre": "Marca nueva"},
        "ClienteIn": {"nombre": f"Cliente {n}"},
        "ClienteCambios": {"nombre": f"Cambiado {n}"},
        "ProductoIn": {"sku": f"K-{n}", "nombre": "Producto", "precio": 990},
        "ProductoCambios": {"precio": 1},
        "PedidoIn": {"cliente_id": brand.ids["cliente"], "items": [{"producto_id": brand.ids["producto"]}]},
        "PedidoCambio": {"estado": "cancelado"},
        "InteraccionIn": {"cliente_id": brand.ids["cliente"], "canal": "web", "direccion": "entrante",
                          "tipo": "nota", "contenido": "escrita por quien no debe"},
        "CanalIn": {"proveedor": "meta", "identificador": str(uuid.uuid4().int)[:15]},
    }
    assert name in bodies, f"falta un cuerpo de ejemplo para {name}"
    return bodies[name]


def test_route_table_is_covered():
    methods = {m for m, _, _ in BRAND_ROUTES}
    assert {"GET", "POST", "PUT", "DELETE"} <= methods
    assert {(m, p) for m, p, _ in GROUP_ROUTES} == {("GET", "/api/marcas"), ("POST", "/api/marcas")}


# ---------------------------------------------------------------- authentication
@pytest.mark.parametrize("method,template,handler", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_no_key_is_401(client, settings, brand_a, method, template, handler):
    before = counts(settings)
    r = client.request(method, _url(template, brand_a), json=_body(handler, brand_a))
    assert_problem(r, 401)
    assert r.headers.get("www-authenticate", "").startswith("ApiKey")
    assert counts(settings) == before


@pytest.mark.parametrize("key", ["crm_deadbeef_" + "x" * 43, "nada", "crm_", " "])
def test_unknown_key_is_401(client, brand_a, key):
    r = client.get(f"/api/clientes/{brand_a.ids['cliente']}", headers={"X-API-Key": key})
    assert_problem(r, 401)
    assert r.headers.get("www-authenticate", "").startswith("ApiKey")


def _revoke(api_engine, key: str) -> None:
    with api_engine.begin() as conn:
        n = conn.execute(text("UPDATE crm.claves_api SET revoked_at = now() WHERE hash = :h"),
                         {"h": hashlib.sha256(key.encode()).digest()}).rowcount
    assert n == 1


def test_revoked_key_is_401(client, settings, api_engine, brand_a):
    key = make_key(api_engine, brand_a.id, "staff")
    url = f"/api/clientes/{brand_a.ids['cliente']}"
    assert client.get(url, headers={"X-API-Key": key}).status_code == 200  # now cached in `client`
    _revoke(api_engine, key)

    # a process that never saw the key refuses it at once
    with TestClient(create_app(settings)) as fresh:
        assert_problem(fresh.get(url, headers={"X-API-Key": key}), 401)

    # the long-lived process refuses it once its cache entry expires
    time.sleep(auth.CACHE_SECONDS + 0.5)
    r = client.get(url, headers={"X-API-Key": key})
    assert_problem(r, 401)
    assert r.headers.get("www-authenticate", "").startswith("ApiKey")


def test_revoked_key_cannot_write(client, settings, api_engine, brand_a):
    key = make_key(api_engine, brand_a.id, "admin")
    _revoke(api_engine, key)
    before = counts(settings)
    with TestClient(create_app(settings)) as fresh:
        r = fresh.post(f"/api/marcas/{brand_a.slug}/clientes", headers={"X-API-Key": key},
                       json={"nombre": "No debe existir"})
    assert_problem(r, 401)
    assert counts(settings) == before


# ---------------------------------------------------------------- roles
@pytest.fixture(scope="module")
def brand(settings, api_engine):
    return make_brand(settings, api_engine, "k")


# Reads narrowed to some roles (opt["roles"], e.g. the admin-only channels) are checked in
# tests of their own (tests/test_canales.py).
READ_ROUTES = [r for r in BRAND_ROUTES if r[0] == "GET" and "lector" in r[2].opt.get("roles", ("lector",))]
WRITE_ROUTES = [r for r in BRAND_ROUTES if r[0] not in SAFE]


@pytest.mark.parametrize("method,template,handler", READ_ROUTES, ids=[f"{m} {p}" for m, p, _ in READ_ROUTES])
def test_lector_can_read(client, brand, method, template, handler):
    r = client.get(_url(template, brand), headers=brand.h("lector"))
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("method,template,handler", WRITE_ROUTES, ids=[f"{m} {p}" for m, p, _ in WRITE_ROUTES])
def test_lector_cannot_write(client, settings, brand, method, template, handler):
    before = counts(settings)
    digests = {t: table_digest(settings, t, brand.id) for t in ("clientes", "productos", "pedidos")}
    r = client.request(method, _url(template, brand), headers=brand.h("lector"), json=_body(handler, brand))
    body = assert_problem(r, 403)
    assert "lector" in body["detail"]
    assert counts(settings) == before
    assert {t: table_digest(settings, t, brand.id) for t in digests} == digests


PRODUCT_WRITES = [r for r in WRITE_ROUTES if "/productos" in r[1]]


@pytest.mark.parametrize("method,template,handler", PRODUCT_WRITES, ids=[f"{m} {p}" for m, p, _ in PRODUCT_WRITES])
def test_integracion_cannot_change_catalog(client, settings, brand, method, template, handler):
    assert len(PRODUCT_WRITES) == 3
    before = counts(settings)
    digest = table_digest(settings, "productos", brand.id)
    r = client.request(method, _url(template, brand), headers=brand.h("integracion"), json=_body(handler, brand))
    body = assert_problem(r, 403)
    assert "integracion" in body["detail"]
    assert counts(settings) == before
    assert table_digest(settings, "productos", brand.id) == digest


def test_integracion_can_create_customers_and_orders(client, settings, brand):
    h = brand.h("integracion")
    r = client.post(f"/api/marcas/{brand.slug}/clientes", headers=h,
                    json={"nombre": "Desde la integración", "telefono": "+56 9 7111 2222"})
    assert r.status_code == 201, r.text
    cliente = r.json()
    r = client.post("/api/pedidos", headers=h, json={"cliente_id": cliente["id"], "canal": "web",
                                                     "items": [{"producto_id": brand.ids["producto"], "cantidad": 3}]})
    assert r.status_code == 201, r.text
    assert r.json()["total"] == 3 * 12990
    with admin(settings) as conn:
        assert conn.execute("SELECT marca_id FROM crm.pedidos WHERE id = %s", (r.json()["id"],)).fetchone() == (brand.id,)
    r = client.put(f"/api/clientes/{cliente['id']}", headers=h, json={"ciudad": "Osorno"})
    assert r.status_code == 200 and r.json()["ciudad"] == "Osorno"


@pytest.mark.parametrize("rol", ["staff", "integracion", "lector"])
def test_forget_customer_needs_admin(client, settings, brand, rol):
    before = table_digest(settings, "clientes", brand.id)
    r = client.delete(f"/api/clientes/{brand.ids['cliente']}", headers=brand.h(rol))
    assert_problem(r, 403)
    assert table_digest(settings, "clientes", brand.id) == before


# ---------------------------------------------------------------- group keys and brands
def test_group_key_lists_and_creates_brands(client, settings, group_key, brand_a, brand_b):
    r = client.get("/api/marcas", headers={"X-API-Key": group_key})
    assert r.status_code == 200, r.text
    slugs = {m["slug"] for m in r.json()}
    assert {brand_a.slug, brand_b.slug} <= slugs

    slug = f"g-{uuid.uuid4().hex[:8]}"
    r = client.post("/api/marcas", headers={"X-API-Key": group_key},
                    json={"slug": slug, "nombre": "Marca del grupo", "zona_horaria": "America/Punta_Arenas"})
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["slug"] == slug and created["rol_db"] == roles.brand_role(slug)
    with admin(settings) as conn:
        assert conn.execute("SELECT slug, zona_horaria FROM crm.marcas WHERE id = %s",
                            (created["id"],)).fetchone() == (slug, "America/Punta_Arenas")
        assert conn.execute("SELECT rolcanlogin, rolbypassrls, rolsuper, pg_has_role(rolname, 'crm_marca', 'MEMBER') "
                            "FROM pg_roles WHERE rolname = %s", (roles.brand_role(slug),)).fetchone() == (
            True, False, False, True)
    r = client.get("/api/marcas", headers={"X-API-Key": group_key})
    assert slug in {m["slug"] for m in r.json()}
    # the new brand is usable at once through X-Tenant
    r = client.post(f"/api/marcas/{slug}/clientes", headers={"X-API-Key": group_key},
                    json={"nombre": "Primer cliente"})
    assert r.status_code == 201 and r.json()["marca_id"] == created["id"]


@pytest.mark.parametrize("rol", ["admin", "staff", "lector", "integracion"])
def test_brand_keys_cannot_manage_brands(client, settings, brand_a, rol):
    before = counts(settings)
    assert_problem(client.get("/api/marcas", headers=brand_a.h(rol)), 403)
    r = client.post("/api/marcas", headers=brand_a.h(rol), json={"slug": f"x-{uuid.uuid4().hex[:8]}",
                                                                   "nombre": "No"})
    assert_problem(r, 403)
    assert counts(settings) == before


def test_group_key_needs_x_tenant(client, group_key, brand_a, brand_b):
    url = f"/api/clientes/{brand_a.ids['cliente']}"
    r = client.get(url, headers={"X-API-Key": group_key})
    body = assert_problem(r, 400)
    assert [e["campo"] for e in body["errores"]] == ["X-Tenant"]

    r = client.get(url, headers={"X-API-Key": group_key, "X-Tenant": "no-existe-esta-marca"})
    assert_problem(r, 404)

    r = client.get(url, headers={"X-API-Key": group_key, "X-Tenant": brand_a.slug})
    assert r.status_code == 200 and r.json()["marca_id"] == brand_a.id
    # brand B does not see brand A's customer, even for the group key
    r = client.get(url, headers={"X-API-Key": group_key, "X-Tenant": brand_b.slug})
    assert_problem(r, 404)


def test_brand_key_on_another_brands_path_is_404(client, brand_a, brand_b):
    for path in (f"/api/marcas/{brand_b.slug}", f"/api/marcas/{brand_b.slug}/clientes",
                 f"/api/marcas/{brand_b.id}/productos", f"/api/marcas/{brand_b.slug}/pedidos"):
        assert_problem(client.get(path, headers=brand_a.h()), 404)
    r = client.get(f"/api/marcas/no-existe-{uuid.uuid4().hex[:6]}/clientes", headers=brand_a.h())
    assert_problem(r, 404)


# ---------------------------------------------------------------- rate limit
def test_rate_limit_per_key(client, settings, api_engine, brand):
    key = make_key(api_engine, brand.id, "staff", limite=5)
    url = f"/api/clientes/{brand.ids['cliente']}"
    for i in range(5):
        r = client.get(url, headers={"X-API-Key": key})
        assert r.status_code == 200, (i, r.text)
    r = client.get(url, headers={"X-API-Key": key})
    assert_problem(r, 429)
    retry = r.headers.get("retry-after")
    assert retry is not None and retry.isdigit() and 1 <= int(retry) <= 60, retry
    # writes are limited too, and the refusal writes nothing
    before = counts(settings)
    assert_problem(client.post(f"/api/marcas/{brand.slug}/clientes", headers={"X-API-Key": key},
                               json={"nombre": "Limitado"}), 429)
    assert counts(settings) == before
    # another key of the same brand is not affected
    assert client.get(url, headers=brand.h("staff")).status_code == 200


# ---------------------------------------------------------------- storage
def test_keys_are_stored_hashed(settings, api_engine, brand_a):
    key = make_key(api_engine, brand_a.id, "staff")
    prefix, secret = re.fullmatch(r"crm_([0-9a-f]{8})_(.+)", key).groups()
    all_keys = [key] + list(brand_a.keys.values())
    with admin(settings) as conn:
        row = conn.execute("SELECT prefijo, hash, to_jsonb(k)::text FROM crm.claves_api k WHERE hash = %s",
                           (hashlib.sha256(key.encode()).digest(),)).fetchone()
        assert row is not None
        assert row[0] == prefix and bytes(row[1]) == hashlib.sha256(key.encode()).digest()
        everything = "\n".join(r[0] for r in conn.execute(
            "SELECT k::text || to_jsonb(k)::text || encode(k.hash, 'escape') FROM crm.claves_api k"))
    for k in all_keys:
        assert k not in everything
        assert k.split("_", 2)[2] not in everything
    assert secret not in row[2]


# ---------------------------------------------------------------- pagination
def test_cursor_pagination_walks_every_customer_once(client, settings, api_engine):
    brand = make_brand(settings, api_engine, "kp")
    for n in range(25):
        r = client.post(f"/api/marcas/{brand.slug}/clientes", headers=brand.h(),
                        json={"nombre": f"Cliente paginado {n:02d}"})
        assert r.status_code == 201, r.text
    with admin(settings) as conn:
        expected = [r[0] for r in conn.execute(
            "SELECT id FROM crm.clientes WHERE marca_id = %s AND deleted_at IS NULL ORDER BY id DESC", (brand.id,))]
    assert len(expected) == 26  # + the fixture's own customer

    seen, sizes, cursor = [], [], None
    while True:
        params = {"limite": 7} | ({"cursor": cursor} if cursor else {})
        r = client.get(f"/api/marcas/{brand.slug}/clientes", headers=brand.h("lector"), params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        sizes.append(len(page["datos"]))
        seen += [c["id"] for c in page["datos"]]
        assert all(c["marca_id"] == brand.id for c in page["datos"])
        cursor = page["siguiente"]
        if cursor is None:
            break
        assert len(sizes) < 10
    assert seen == expected  # newest first, each exactly once
    assert sizes == [7, 7, 7, 5]
