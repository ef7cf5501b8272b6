"""Brand A's keys never read, list, count, change or delete brand B's rows.

Generated from the application's route table: every route and method is exercised with
brand B's ids in the path and in the body. A new route whose path parameter or body type
is not known here fails `test_every_route_is_covered` until this file learns it, so no
route can be added without its isolation being tested.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import text

from api.app import create_app
from api.routes import clientes, interacciones, marcas, pedidos, productos

# Webhooks carry no API key: their signature is the credential and the channel picks the
# brand (tests/test_whatsapp_webhook.py shows one brand's number never reaches another).
SKIP_PATHS = ("/docs", "/api/health", "/api/webhooks")
ROLES_TRIED = ("admin", "staff", "lector", "integracion")


def _bodies(b) -> dict:
    """A plausible body per request type, aimed at brand B's rows."""
    from api.routes import canales

    return {
        clientes.ClienteIn: {"nombre": "Intruso", "telefono": "+56911112222"},
        clientes.ClienteCambios: {"nombre": "Cambiado por A"},
        productos.ProductoIn: {"sku": "INTRUSO", "nombre": "Intruso", "precio": 1},
        productos.ProductoCambios: {"precio": 1},
        pedidos.PedidoIn: {"cliente_id": b.ids["cliente"],
                           "items": [{"producto_id": b.ids["producto"], "cantidad": 1}]},
        pedidos.PedidoCambio: {"estado": "cancelado"},
        interacciones.InteraccionIn: {"cliente_id": b.ids["cliente"], "canal": "web",
                                      "direccion": "entrante", "tipo": "nota", "contenido": "x"},
        marcas.MarcaIn: {"slug": "intrusa", "nombre": "Intrusa"},
        canales.CanalIn: {"proveedor": "meta", "identificador": "999000111222333"},
    }


def _path_values(b) -> dict:
    return {"marca": [b.slug, str(b.id)], "cliente_id": [b.ids["cliente"]],
            "producto_id": [b.ids["producto"]], "pedido_id": [b.ids["pedido"]]}


def _requests(settings, b):
    """(method, concrete path, body, handler) for every route and method of the app."""
    app = create_app(settings)
    bodies, values = _bodies(b), _path_values(b)
    for route in app.routes:
        if route.path.startswith(SKIP_PATHS):
            continue
        params = re.findall(r"\{(\w+):\w+\}", route.path)
        for method, entry in route.route_handler_map.items():
            handler = entry[0] if isinstance(entry, tuple) else entry
            if method == "OPTIONS":
                continue
            body = None
            if handler.parsed_data_field is not None:
                body = bodies.get(handler.parsed_data_field.annotation)
                if body is None:
                    raise AssertionError(f"{method} {route.path}: body type "
                                         f"{handler.parsed_data_field.annotation} unknown to this test")
            combos = [{}]
            for p in params:
                if p not in values:
                    raise AssertionError(f"{route.path}: path parameter {p} unknown to this test")
                combos = [{**c, p: v} for c in combos for v in values[p]]
            for combo in combos:
                path = re.sub(r"\{(\w+):\w+\}", lambda m: str(combo[m.group(1)]), route.path)
                yield method, path, body, handler


def snapshot(settings, marca_id) -> dict:
    """Every row of brand B in every tenant table, read as the owner (no RLS)."""
    import psycopg

    from api import roles

    out = {}
    with psycopg.connect(roles.role_url(roles.OWNER, settings)) as conn:
        tables = [r[0] for r in conn.execute("SELECT crm.tablas_tenant()::text")]
        for t in tables:
            out[t] = conn.execute(f"SELECT md5(coalesce(string_agg(x::text, '|' ORDER BY x.id), '')), "
                                  f"count(*) FROM {t} x WHERE marca_id = %s", (marca_id,)).fetchone()
        out["marcas"] = conn.execute("SELECT md5(m::text) FROM crm.marcas m WHERE id = %s",
                                     (marca_id,)).fetchone()
    return out


def test_every_route_is_covered(settings, brand_b):
    seen = list(_requests(settings, brand_b))
    paths = {p for _, p, _, _ in seen}
    assert any("/api/clientes/" in p for p in paths) and any("/api/pedidos/" in p for p in paths)
    assert len(seen) >= 20


@pytest.mark.parametrize("rol", ROLES_TRIED)
def test_brand_a_cannot_touch_brand_b(client, settings, brand_a, brand_b, rol):
    before = snapshot(settings, brand_b.id)
    for method, path, body, handler in _requests(settings, brand_b):
        r = client.request(method, path, json=body, headers=brand_a.h(rol),
                           params={"q": f"Cliente {brand_b.slug}"} if method == "GET" else None)
        where = f"{rol} {method} {path} → {r.status_code} {r.text[:200]}"
        assert r.status_code < 500, where
        if r.status_code < 300:
            # Only routes that act on A's own brand can succeed: nothing of B may show up.
            assert "{marca" not in path and not re.search(r"/\d+(/|$)", path), where
            assert str(brand_b.ids["cliente"]) not in _ids_in(r), where
            assert f"Cliente {brand_b.slug}" not in r.text, where
            assert f'"marca_id":{brand_b.id}' not in r.text.replace(" ", ""), where
        else:
            assert r.status_code in (400, 403, 404, 409, 422), where
            if method == "GET" and re.search(r"/\d+(/|$)", path):
                assert r.status_code in (403, 404), where
        if r.status_code == 404:
            assert r.headers["content-type"].startswith("application/problem+json"), where
    assert snapshot(settings, brand_b.id) == before


def _ids_in(response) -> set[str]:
    try:
        data = response.json()
    except ValueError:
        return set()
    rows = data.get("datos", [data]) if isinstance(data, dict) else data
    return {str(r.get("id")) for r in rows if isinstance(r, dict)}


def test_brand_path_of_b_is_404_like_a_missing_brand(client, brand_a, brand_b):
    """Existence is never confirmed: B's real slug and a slug that exists nowhere answer alike."""
    real = client.get(f"/api/marcas/{brand_b.slug}/clientes", headers=brand_a.h())
    missing = client.get("/api/marcas/no-existe-nunca/clientes", headers=brand_a.h())
    assert real.status_code == missing.status_code == 404
    assert set(real.json()) == set(missing.json())


def test_lists_and_search_of_a_hold_only_a(client, brand_a, brand_b, api_engine):
    for path in (f"/api/marcas/{brand_a.slug}/clientes", f"/api/marcas/{brand_a.slug}/productos",
                 f"/api/marcas/{brand_a.slug}/pedidos", f"/api/clientes/{brand_a.ids['cliente']}/interacciones"):
        r = client.get(path, headers=brand_a.h("lector"), params={"limite": 200})
        assert r.status_code == 200, r.text
        assert r.json()["datos"], path
        assert {row["marca_id"] for row in r.json()["datos"]} == {brand_a.id}, path
    # The same name exists in both brands: A's search finds only A's.
    r = client.get("/api/clientes", headers=brand_a.h(), params={"q": "Cliente"})
    assert r.status_code == 200
    assert {row["marca_id"] for row in r.json()["datos"]} == {brand_a.id}


def test_group_key_acts_on_the_brand_it_names(client, group_key, brand_a, brand_b):
    h = {"X-API-Key": group_key}
    assert client.get(f"/api/clientes/{brand_b.ids['cliente']}", headers={**h, "X-Tenant": brand_a.slug}
                      ).status_code == 404
    r = client.get(f"/api/clientes/{brand_b.ids['cliente']}", headers={**h, "X-Tenant": brand_b.slug})
    assert r.status_code == 200 and r.json()["marca_id"] == brand_b.id


def test_api_transaction_is_bound_to_one_brand(api_engine, brand_a, brand_b):
    """Even a query that forgets every filter sees one brand: the policy, not Python, filters."""
    with api_engine.begin() as conn:
        conn.execute(text("SELECT set_config('app.marca_id', :m, true)"), {"m": str(brand_a.id)})
        brands = {r[0] for r in conn.execute(text("SELECT DISTINCT marca_id FROM crm.clientes"))}
        assert brands == {brand_a.id}
    with api_engine.begin() as conn:  # unbound: sees nothing at all
        assert conn.execute(text("SELECT count(*) FROM crm.clientes")).scalar() == 0
