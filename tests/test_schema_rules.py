"""Rules that live in the database, so writers that bypass the API (NocoDB) obey them."""

from __future__ import annotations

import random

import psycopg
import pytest
from conftest import connect
from psycopg import sql
from sqlalchemy import text
from stdnum.cl import rut as stdrut

from api import roles
from api.services import marcas


def test_rut_check_digit_is_enforced_for_every_writer(settings, brand_a):
    with connect(settings, roles.brand_role(brand_a.slug)) as a:
        row = a.execute("INSERT INTO crm.clientes (nombre, documento) VALUES ('Con RUT', '123456785') "
                        "RETURNING documento").fetchone()
        assert row == ("123456785",)
        with pytest.raises(psycopg.errors.CheckViolation, match="clientes_documento_check"):
            a.execute("INSERT INTO crm.clientes (nombre, documento) VALUES ('RUT malo', '123456789')")
        a.rollback()


def test_the_database_and_the_api_agree_on_every_rut(settings, brand_a):
    """crm.rut_valido() (what NocoDB's writes obey) and python-stdnum (what the API
    checks) accept exactly the same compact RUTs: every check digit of 2,000 bodies of 7
    and 8 digits, and malformed values."""
    rnd = random.Random(6)
    bodies = {str(rnd.randrange(10**6, 10**8)) for _ in range(2000)}
    candidates = [b + d for b in bodies for d in "0123456789K"] + [
        "", "K", "123456785", "12345678-5", "12.345.678-5", "1234567", "k23456785", "0000000K", "123456789012"]
    with connect(settings, roles.brand_role(brand_a.slug)) as a:
        db = dict(a.execute("SELECT c, crm.rut_valido(c) FROM unnest(%s::text[]) c", (candidates,)).fetchall())
    for c in candidates:
        assert db[c] is (stdrut.is_valid(c) and stdrut.compact(c) == c), c
    assert all(sum(db[b + d] for d in "0123456789K") == 1 for b in bodies)  # one check digit each


def test_rut_error_through_the_api_names_the_field(client, brand_a):
    r = client.post(f"/api/marcas/{brand_a.slug}/clientes", headers=brand_a.h(),
                    json={"nombre": "RUT malo", "documento": "12.345.678-9"})
    assert r.status_code == 422
    assert [e["campo"] for e in r.json()["errores"]] == ["documento"]


def test_brand_creation_never_takes_over_a_foreign_role(settings, api_engine, admin_url):
    slug = "ajena-x"
    role = roles.brand_role(slug)
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
        try:
            with pytest.raises(Exception, match="no pertenece al CRM"):
                with api_engine.begin() as conn:
                    marcas.create(conn, settings, slug, "Ajena")
            with api_engine.connect() as conn:
                assert conn.execute(text("SELECT count(*) FROM crm.marcas WHERE slug = :s"),
                                    {"s": slug}).scalar() == 0
        finally:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_only_a_pending_order_can_be_deleted(settings, brand_a):
    with connect(settings, roles.brand_role(brand_a.slug)) as a:
        cliente = brand_a.ids["cliente"]
        borrador = a.execute("INSERT INTO crm.pedidos (cliente_id, canal) VALUES (%s, 'web') RETURNING id",
                             (cliente,)).fetchone()[0]
        assert a.execute("DELETE FROM crm.pedidos WHERE id = %s", (borrador,)).rowcount == 1
        confirmado = a.execute("INSERT INTO crm.pedidos (cliente_id, canal) VALUES (%s, 'web') RETURNING id",
                               (cliente,)).fetchone()[0]
        a.execute("UPDATE crm.pedidos SET estado = 'confirmado' WHERE id = %s", (confirmado,))
        with pytest.raises(psycopg.DatabaseError, match="no se puede eliminar") as refused:
            a.execute("DELETE FROM crm.pedidos WHERE id = %s", (confirmado,))
        assert refused.value.sqlstate == "CRM06"
        a.rollback()
