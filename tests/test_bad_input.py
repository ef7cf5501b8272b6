"""Bad input never reaches the database half-way and never becomes a 5xx.

Every POST/PUT route that takes a JSON body is found in the app's own route table, so
a new route is covered the day it is added (and this file fails until it knows how to
build a valid body for it). Each rejected request must answer a 4xx problem+json with
a `detail`, name the field at fault in `errores[].campo`, and leave every crm table with
exactly the rows it had before.
"""

from __future__ import annotations

import itertools
import json
import re
import uuid

import msgspec
import pytest
from conftest import _test_settings, counts, make_brand
from msgspec import inspect as mi

from api.app import create_app

PROBLEM = "application/problem+json"
_n = itertools.count(1)


# ---------------------------------------------------------------- the route table
def _body_routes():
    """(method, path template, handler, body struct) of every route with a JSON body."""
    found = []
    for route in create_app(_test_settings()).routes:
        for method, entry in getattr(route, "route_handler_map", {}).items():
            handler = entry[0] if isinstance(entry, tuple) else entry
            if method in ("POST", "PUT") and handler.parsed_data_field is not None:
                found.append((method, route.path, handler, handler.parsed_data_field.annotation))
    return sorted(found, key=lambda r: (r[1], r[0]))


BODY_ROUTES = _body_routes()
ROUTE_IDS = [f"{m} {p}" for m, p, _, _ in BODY_ROUTES]


def _list_routes():
    """GET routes that page with ?limite= and ?cursor=."""
    found = []
    for route in create_app(_test_settings()).routes:
        for method, entry in getattr(route, "route_handler_map", {}).items():
            handler = entry[0] if isinstance(entry, tuple) else entry
            params = handler.parsed_fn_signature.parameters
            if method == "GET" and "limite" in params and "cursor" in params:
                found.append((route.path, handler))
    return sorted(found, key=lambda r: r[0])


LIST_ROUTES = _list_routes()


def test_route_table_is_what_we_think():
    """Guards the generators above: if the app grows, these lists grow with it."""
    assert {p for _, p, _, _ in BODY_ROUTES} >= {
        "/api/marcas", "/api/marcas/{marca:str}/clientes", "/api/clientes/{cliente_id:int}",
        "/api/marcas/{marca:str}/productos", "/api/marcas/{marca:str}/productos/{producto_id:int}",
        "/api/pedidos", "/api/pedidos/{pedido_id:int}", "/api/interacciones"}
    assert len(BODY_ROUTES) >= 8
    assert {p for p, _ in LIST_ROUTES} >= {
        "/api/marcas/{marca:str}/clientes", "/api/clientes", "/api/marcas/{marca:str}/productos",
        "/api/marcas/{marca:str}/pedidos", "/api/clientes/{cliente_id:int}/interacciones"}


# ---------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="module")
def brand(settings, api_engine):
    return make_brand(settings, api_engine, "bi")


def _url(template: str, brand) -> str:
    values = {"marca": brand.slug, "cliente_id": brand.ids["cliente"],
              "producto_id": brand.ids["producto"], "pedido_id": brand.ids["pedido"]}

    def sub(m):
        name = m.group(1)
        assert name in values, f"no sé qué valor poner en {{{name}}} de {template}"
        return str(values[name])
    return re.sub(r"\{(\w+)(?::\w+)?\}", sub, template)


def _headers(handler, brand, group_key) -> dict[str, str]:
    key = group_key if handler.opt.get("grupo") else brand.keys["admin"]
    return {"X-API-Key": key, "Content-Type": "application/json"}


def _valid_body(struct, brand) -> dict:
    """A body the route accepts; keyed by struct name so a new body type fails loudly."""
    n = next(_n)
    bodies = {
        "MarcaIn": lambda: {"slug": f"bi-{uuid.uuid4().hex[:10]}", "nombre": "Marca válida"},
        "ClienteIn": lambda: {"nombre": f"Cliente válido {n}"},
        "ClienteCambios": lambda: {"nombre": f"Cliente cambiado {n}"},
        "ProductoIn": lambda: {"sku": f"VAL-{n}", "nombre": "Producto válido", "precio": 1000},
        "ProductoCambios": lambda: {"nombre": "Pollo asado"},
        "PedidoIn": lambda: {"cliente_id": brand.ids["cliente"],
                             "items": [{"producto_id": brand.ids["producto"], "cantidad": 1}]},
        "PedidoCambio": lambda: {"estado": "pendiente"},
        "InteraccionIn": lambda: {"cliente_id": brand.ids["cliente"], "canal": "web",
                                  "direccion": "entrante", "tipo": "nota"},
        "CanalIn": lambda: {"proveedor": "meta", "identificador": str(uuid.uuid4().int)[:15]},
    }
    assert struct.__name__ in bodies, f"falta un cuerpo válido de ejemplo para {struct.__name__}"
    body = bodies[struct.__name__]()
    msgspec.convert(body, struct)  # the sample itself must be valid
    return body


def _field_paths(struct):
    """(json path, msgspec type info) of every field, one level into lists of structs."""
    for f in mi.type_info(struct).fields:
        t = f.type
        yield f.encode_name, t
        if isinstance(t, mi.ListType) and isinstance(t.item_type, mi.StructType):
            for sub in t.item_type.fields:
                yield f"{f.encode_name}[0].{sub.encode_name}", sub.type


def _set(body: dict, path: str, value) -> dict:
    body = json.loads(json.dumps(body))
    m = re.fullmatch(r"(\w+)\[0\]\.(\w+)", path)
    if m:
        outer, inner = m.groups()
        body.setdefault(outer, [{}])
        body[outer][0][inner] = value
    else:
        body[path] = value
    return body


def _kinds(t) -> list:
    return list(t.types) if isinstance(t, mi.UnionType) else [t]


def _wrong_value(struct, path, body):
    """A JSON value of the wrong type for `path`, checked against the struct itself."""
    for candidate in ({"x": [1]}, 12345, "abc", [1], True):
        try:
            msgspec.convert(_set(body, path, candidate), struct)
        except msgspec.ValidationError as e:
            if f"$.{path}" in str(e):
                return candidate
    raise AssertionError(f"no encontré un valor de tipo incorrecto para {path}")




def assert_problem(r, status: int | tuple[int, ...], campo: str | None = None):
    statuses = (status,) if isinstance(status, int) else status
    assert r.status_code in statuses, f"{r.status_code} {r.text[:500]}"
    assert r.headers["content-type"].split(";")[0] == PROBLEM, r.headers["content-type"]
    body = r.json()
    assert body["status"] == r.status_code
    assert isinstance(body.get("detail"), str) and body["detail"].strip(), body
    if campo is not None:
        campos = [e["campo"] for e in body.get("errores", [])]
        # the field itself, or a path inside it (settings.clave, items[0].cantidad)
        named = any(c == campo or c.startswith((campo + ".", campo + "[")) for c in campos)
        assert named, f"se esperaba errores[].campo = {campo!r}; llegó {body}"
    return body


def _send(client, method, url, headers, content: bytes):
    return client.request(method, url, headers=headers, content=content)


# ---------------------------------------------------------------- body-level faults
@pytest.mark.parametrize("method,template,handler,struct", BODY_ROUTES, ids=ROUTE_IDS)
def test_malformed_json(client, settings, brand, group_key, method, template, handler, struct):
    before = counts(settings)
    r = _send(client, method, _url(template, brand), _headers(handler, brand, group_key),
              b'{"nombre": "sin cerrar", ')
    assert counts(settings) == before  # nothing half-written, whatever the answer
    assert_problem(r, 400, "cuerpo")


@pytest.mark.parametrize("method,template,handler,struct", BODY_ROUTES, ids=ROUTE_IDS)
def test_array_instead_of_object(client, settings, brand, group_key, method, template, handler, struct):
    """The body as a whole is wrong: 400, and no invented field name (such as Litestar's
    internal parameter name `data`) in errores."""
    before = counts(settings)
    body = json.dumps([_valid_body(struct, brand)]).encode()
    r = _send(client, method, _url(template, brand), _headers(handler, brand, group_key), body)
    assert counts(settings) == before  # nothing half-written, whatever the answer
    problem = assert_problem(r, 400)
    assert {e["campo"] for e in problem.get("errores", [])} <= {"cuerpo"}, problem


@pytest.mark.parametrize("method,template,handler,struct", BODY_ROUTES, ids=ROUTE_IDS)
def test_empty_body(client, settings, brand, group_key, method, template, handler, struct):
    """No body at all is a malformed request (400), with a detail staff can read
    (not a Python KeyError repr such as "data: 'data'")."""
    before = counts(settings)
    r = _send(client, method, _url(template, brand), _headers(handler, brand, group_key), b"")
    assert counts(settings) == before  # nothing half-written, whatever the answer
    problem = assert_problem(r, 400)
    assert {e["campo"] for e in problem.get("errores", [])} <= {"cuerpo"}, problem
    assert "'data'" not in problem["detail"], problem


@pytest.mark.parametrize("method,template,handler,struct", BODY_ROUTES, ids=ROUTE_IDS)
def test_oversized_body(client, settings, brand, group_key, method, template, handler, struct):
    before = counts(settings)
    body = _valid_body(struct, brand)
    padding = "x" * (settings.max_body_bytes + 1024)
    body = json.dumps({**body, "relleno": padding}).encode()
    assert len(body) > settings.max_body_bytes
    r = _send(client, method, _url(template, brand), _headers(handler, brand, group_key), body)
    assert counts(settings) == before  # nothing half-written, whatever the answer
    assert_problem(r, 413)


@pytest.mark.parametrize("method,template,handler,struct", BODY_ROUTES, ids=ROUTE_IDS)
def test_unknown_field(client, settings, brand, group_key, method, template, handler, struct):
    before = counts(settings)
    body = {**_valid_body(struct, brand), "campo_inventado": 1}
    r = _send(client, method, _url(template, brand), _headers(handler, brand, group_key),
              json.dumps(body).encode())
    assert counts(settings) == before  # nothing half-written, whatever the answer
    assert_problem(r, 422, "campo_inventado")


def _field_cases():
    for method, template, handler, struct in BODY_ROUTES:
        for path, t in _field_paths(struct):
            yield pytest.param(method, template, handler, struct, path, t,
                               id=f"{method} {template} {path}")


FIELD_CASES = list(_field_cases())


@pytest.mark.parametrize("method,template,handler,struct,path,t", FIELD_CASES)
def test_wrong_type_for_each_field(client, settings, brand, group_key, method, template, handler,
                                   struct, path, t):
    before = counts(settings)
    base = _valid_body(struct, brand)
    body = _set(base, path, _wrong_value(struct, path, base))
    r = _send(client, method, _url(template, brand), _headers(handler, brand, group_key),
              json.dumps(body).encode())
    assert counts(settings) == before  # nothing half-written, whatever the answer
    assert_problem(r, 422, path)


def _accepts(t, kind) -> bool:
    return any(isinstance(k, kind) for k in _kinds(t))


NUL_CASES = [c for c in FIELD_CASES
             if _accepts(c.values[5], (mi.StrType, mi.LiteralType, mi.DictType, mi.ListType))
             and not _accepts(c.values[5], mi.StructType)
             and not (isinstance(c.values[5], mi.ListType) and isinstance(c.values[5].item_type, mi.StructType))]


@pytest.mark.parametrize("method,template,handler,struct,path,t", NUL_CASES)
def test_nul_character_in_text(client, settings, brand, group_key, method, template, handler,
                               struct, path, t):
    """PostgreSQL text cannot hold U+0000; JSON can. The answer must be a 422 naming the
    field, never a 500 from the driver."""
    before = counts(settings)
    base = _valid_body(struct, brand)
    if _accepts(t, mi.DictType):
        value = {"clave": "a\u0000b"}
    elif _accepts(t, mi.ListType):
        value = ["a\u0000b"]
    else:
        value = "a\u0000b"
    body = _set(base, path, value)
    r = _send(client, method, _url(template, brand), _headers(handler, brand, group_key),
              json.dumps(body).encode())
    assert counts(settings) == before  # nothing half-written, whatever the answer
    assert r.status_code < 500, f"{r.status_code} {r.text[:300]}"
    assert_problem(r, 422, path)


INT_CASES = [c for c in FIELD_CASES if _accepts(c.values[5], mi.IntType)]


@pytest.mark.parametrize("method,template,handler,struct,path,t", INT_CASES)
def test_integer_out_of_range(client, settings, brand, group_key, method, template, handler,
                              struct, path, t):
    """An integer JSON accepts but bigint cannot hold: 422 naming the field."""
    before = counts(settings)
    body = _set(_valid_body(struct, brand), path, 2**63)
    r = _send(client, method, _url(template, brand), _headers(handler, brand, group_key),
              json.dumps(body).encode())
    assert counts(settings) == before  # nothing half-written, whatever the answer
    assert r.status_code < 500, f"{r.status_code} {r.text[:300]}"
    assert_problem(r, 422, path)


# ---------------------------------------------------------------- customers: phone, RUT, email
BAD_CUSTOMER_VALUES = [
    ("telefono", "123"),
    ("telefono", "+56 9 8765 43"),
    ("telefono", "no tengo"),
    ("documento", "12.345.678-9"),  # check digit of 12.345.678 is 5
    ("documento", "11111111-2"),
    ("documento", "abc"),
    ("email", "sin-arroba.cl"),
    ("email", "dos@@arrobas.cl"),
    ("email", "espacio en@medio.cl"),
]


@pytest.mark.parametrize("campo,valor", BAD_CUSTOMER_VALUES)
def test_customer_create_rejects_invalid_contact(client, settings, brand, campo, valor):
    before = counts(settings)
    r = client.post(f"/api/marcas/{brand.slug}/clientes", headers=brand.h(),
                    json={"nombre": "Cliente inválido", campo: valor})
    assert counts(settings) == before  # nothing half-written, whatever the answer
    assert_problem(r, 422, campo)


@pytest.mark.parametrize("campo,valor", BAD_CUSTOMER_VALUES)
def test_customer_update_rejects_invalid_contact(client, settings, brand, campo, valor):
    url = f"/api/clientes/{brand.ids['cliente']}"
    original = client.get(url, headers=brand.h()).json()
    before = counts(settings)
    r = client.put(url, headers=brand.h(), json={"nombre": "Nombre que no debe quedar", campo: valor})
    assert counts(settings) == before  # nothing half-written, whatever the answer
    assert_problem(r, 422, campo)
    assert client.get(url, headers=brand.h()).json() == original


def test_valid_contact_is_stored_canonical(client, settings, brand):
    """The positive control for the cases above: the same fields, valid, are accepted."""
    r = client.post(f"/api/marcas/{brand.slug}/clientes", headers=brand.h(),
                    json={"nombre": "Cliente Canónico", "telefono": "9 5555 1234",
                          "documento": "12.345.678-5", "email": "  Canonico@Ejemplo.CL "})
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["telefono"], body["documento"], body["email"]) == (
        "+56955551234", "123456785", "canonico@ejemplo.cl")


# ---------------------------------------------------------------- query parameters
def _query_cases():
    for template, handler in LIST_ROUTES:
        base = "?q=perez&" if template == "/api/clientes" else "?"
        for param, value in (("limite", "0"), ("limite", "201"), ("limite", "abc"),
                             ("cursor", "garbage"), ("cursor", "djE6LTE")):  # djE6LTE = "v1:-1"
            yield pytest.param(template, base + f"{param}={value}", param, id=f"{template} {param}={value}")
    pedidos = "/api/marcas/{marca:str}/pedidos"
    for param, value in (("desde", "not-a-date"), ("hasta", "2024-13-40"), ("estado", "unknown"),
                         ("canal", "paloma"), ("cliente_id", "abc")):
        yield pytest.param(pedidos, f"?{param}={value}", param, id=f"{pedidos} {param}={value}")
    yield pytest.param(pedidos, "?desde=2024-05-02&hasta=2024-05-01", "hasta", id="pedidos hasta<desde")
    yield pytest.param("/api/marcas/{marca:str}/clientes", "?segmento=platino", "segmento",
                       id="clientes segmento=platino")
    yield pytest.param("/api/marcas/{marca:str}/productos", "?activo=quizas", "activo",
                       id="productos activo=quizas")
    yield pytest.param("/api/clientes", "", "q", id="buscar sin q")
    yield pytest.param("/api/clientes", "?q=", "q", id="buscar q vacío")
    yield pytest.param("/api/clientes", "?q=" + "x" * 201, "q", id="buscar q de 201 caracteres")
    # U+0000 cannot reach PostgreSQL text: the parameter is at fault, not the server
    yield pytest.param("/api/clientes", "?q=a%00b", "q", id="buscar q con NUL")
    yield pytest.param("/api/marcas/{marca:str}/clientes", "?ciudad=a%00b", "ciudad", id="clientes ciudad con NUL")
    yield pytest.param("/api/marcas/{marca:str}/productos", "?categoria=a%00b", "categoria",
                       id="productos categoria con NUL")
    # a hand-made search cursor whose offset does not fit in bigint
    yield pytest.param("/api/clientes", "?q=perez&cursor=bzE6OTk5OTk5OTk5OTk5OTk5OTk5OTk", "cursor",
                       id="buscar cursor o1 fuera de rango")


@pytest.mark.parametrize("template,query,param", list(_query_cases()))
def test_bad_query_parameter(client, settings, brand, template, query, param):
    """A bad query parameter is the client's request at fault: 400 naming the parameter."""
    before = counts(settings)
    r = client.get(_url(template, brand) + query, headers=brand.h())
    assert counts(settings) == before  # nothing half-written, whatever the answer
    assert_problem(r, 400, param)


@pytest.mark.parametrize("query", ["?desde=0001-01-01", "?hasta=9999-12-31", "?desde=0001-01-01&hasta=9999-12-31"])
def test_extreme_but_valid_dates(client, brand, query):
    """The first and last days the calendar allows are valid filters: 200 with the
    brand's orders, never a 500 from date arithmetic."""
    r = client.get(f"/api/marcas/{brand.slug}/pedidos{query}", headers=brand.h())
    assert r.status_code == 200, f"{r.status_code} {r.text[:300]}"
    assert brand.ids["pedido"] in [p["id"] for p in r.json()["datos"]]
