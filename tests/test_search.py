"""Customer search the way staff type: names without accents and with a typo, phones in
any Chilean form, emails in any case, RUTs with or without dots, dash and upper-case K.
Never another brand's customer, exact contact matches first, pages without repeats."""

from __future__ import annotations

import pytest
from conftest import make_brand

MARIA = {"nombre": "María González", "telefono": "+56 9 8765 4321", "email": "Maria.Gonzalez@Correo.cl",
         "documento": "12.345.678-5"}
JUAN = {"nombre": "Juan Pérez", "telefono": "+56 9 5555 1234", "email": "jperez@correo.cl",
        "documento": "10.000.013-K"}
JOSE = {"nombre": "José Rojas", "telefono": "+56 9 6123 4567"}
OTROS = [{"nombre": "Pedro Soto"}, {"nombre": "Ana Muñoz"}, {"nombre": "Cliente 987654321"}]


def _create(client, brand, body) -> dict:
    r = client.post(f"/api/marcas/{brand.slug}/clientes", headers=brand.h(), json=body)
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
def world(client, settings, api_engine):
    a = make_brand(settings, api_engine, "sa")
    b = make_brand(settings, api_engine, "sb")
    people = {"maria": _create(client, a, MARIA), "juan": _create(client, a, JUAN),
              "jose": _create(client, a, JOSE)}
    people["numero"] = None
    for body in OTROS:
        row = _create(client, a, body)
        if body["nombre"] == "Cliente 987654321":
            people["numero"] = row
    # the same people in brand B: same names, same phones, same emails, same RUTs
    twins = {k: _create(client, b, body) for k, body in (("maria", MARIA), ("juan", JUAN), ("jose", JOSE))}
    return a, b, people, twins


def search(client, brand, q: str, **params) -> list[dict]:
    r = client.get("/api/clientes", headers=brand.h("lector"), params={"q": q, **params})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/json")
    return r.json()["datos"]


def assert_only_brand(rows, brand, twins):
    assert all(r["marca_id"] == brand.id for r in rows), rows
    assert not {r["id"] for r in rows} & {t["id"] for t in twins.values()}


@pytest.mark.parametrize("q,who", [
    ("gonzales", "maria"), ("Gonzalez", "maria"), ("GONZÁLEZ", "maria"), ("maria gonzales", "maria"),
    ("peres", "juan"), ("perez", "juan"), ("juan peres", "juan"),
    ("jose", "jose"), ("José", "jose"), ("rojas", "jose"),
])
def test_name_without_accents_and_with_a_typo(client, world, q, who):
    a, _, people, twins = world
    rows = search(client, a, q)
    assert rows, f"{q!r} no encontró a nadie"
    assert rows[0]["id"] == people[who]["id"], f"{q!r}: {[r['nombre'] for r in rows]}"
    assert_only_brand(rows, a, twins)


@pytest.mark.parametrize("q", ["9 8765 4321", "+56 9 8765 4321", "+56987654321", "987654321", "87654321",
                               "+56 (9) 8765-4321", "56987654321"])
def test_phone_in_every_form(client, world, q):
    a, _, people, twins = world
    rows = search(client, a, q)
    assert rows and rows[0]["id"] == people["maria"]["id"], f"{q!r}: {rows}"
    assert rows[0]["telefono"] == "+56987654321"
    assert_only_brand(rows, a, twins)


@pytest.mark.parametrize("q", ["maria.gonzalez@correo.cl", "MARIA.GONZALEZ@CORREO.CL", "Maria.Gonzalez@Correo.cl",
                               " maria.gonzalez@correo.cl "])
def test_email_in_any_case(client, world, q):
    a, _, people, twins = world
    rows = search(client, a, q)
    assert rows and rows[0]["id"] == people["maria"]["id"], f"{q!r}: {rows}"
    assert_only_brand(rows, a, twins)


@pytest.mark.parametrize("q,who", [
    ("12.345.678-5", "maria"), ("12345678-5", "maria"), ("123456785", "maria"), ("12.345.6785", "maria"),
    ("10.000.013-K", "juan"), ("10.000.013-k", "juan"), ("10000013-k", "juan"), ("10000013k", "juan"),
])
def test_rut_in_every_form(client, world, q, who):
    a, _, people, twins = world
    rows = search(client, a, q)
    assert rows and rows[0]["id"] == people[who]["id"], f"{q!r}: {rows}"
    assert rows[0]["documento"] == {"maria": "123456785", "juan": "10000013K"}[who]
    assert_only_brand(rows, a, twins)


@pytest.mark.parametrize("q", ["gonzales", "+56987654321", "maria.gonzalez@correo.cl", "12.345.678-5", "peres"])
def test_never_another_brands_customer(client, world, q):
    a, b, people, twins = world
    rows_a = search(client, a, q)
    rows_b = search(client, b, q)
    assert_only_brand(rows_a, a, twins)
    assert all(r["marca_id"] == b.id for r in rows_b)
    assert not {r["id"] for r in rows_b} & {p["id"] for p in people.values() if p}
    assert rows_b, f"{q!r}: brand B should find its own twin"


def test_same_search_through_brand_path(client, world):
    """GET /api/marcas/{marca}/clientes?q= ranks the same way."""
    a, b, people, _twins = world
    r = client.get(f"/api/marcas/{a.slug}/clientes", headers=a.h(), params={"q": "987654321"})
    assert r.status_code == 200, r.text
    assert r.json()["datos"][0]["id"] == people["maria"]["id"]
    r = client.get(f"/api/marcas/{b.slug}/clientes", headers=a.h(), params={"q": "987654321"})
    assert r.status_code == 404


def test_exact_phone_match_ranks_first(client, world):
    """`987654321` is María's phone and also, word for word, the other customer's name:
    the exact contact match comes first, the name match after it."""
    a, _, people, _twins = world
    rows = search(client, a, "987654321")
    ids = [r["id"] for r in rows]
    assert ids[0] == people["maria"]["id"]
    assert people["numero"]["id"] in ids[1:]


def test_pagination_walks_every_result_once(client, settings, api_engine):
    brand = make_brand(settings, api_engine, "sp")
    created = {_create(client, brand, {"nombre": f"Camila Valenzuela {n:02d}"})["id"] for n in range(17)}
    _create(client, brand, {"nombre": "Rodrigo Fuentes"})  # must not match
    seen: list[int] = []
    cursor, pages = None, 0
    while True:
        params = {"q": "valenzuela", "limite": 5}
        if cursor:
            params["cursor"] = cursor
        r = client.get("/api/clientes", headers=brand.h(), params=params)
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["datos"]) <= 5
        seen += [row["id"] for row in body["datos"]]
        pages += 1
        cursor = body["siguiente"]
        if cursor is None:
            break
        assert pages < 10, "la paginación no termina"
    assert len(seen) == len(set(seen)), "resultados repetidos entre páginas"
    assert set(seen) == created
    assert pages == 4  # 5 + 5 + 5 + 2
