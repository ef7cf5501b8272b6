"""Isolation in PostgreSQL itself, for clients that bypass the API (NocoDB, Metabase):
connected as brand A's login role, every tenant table shows only brand A's rows, and no
write can put a row into brand B or touch B's rows."""

from __future__ import annotations

import psycopg
import pytest
from conftest import connect

from api import roles


def _tables(settings) -> list[str]:
    with connect(settings, roles.OWNER) as conn:
        return [r[0] for r in conn.execute("SELECT crm.tablas_tenant()::text")]


def _insertable_columns(conn, table: str) -> list[str]:
    schema, name = table.split(".")
    return [r[0] for r in conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s "
        "AND is_identity = 'NO' AND is_generated = 'NEVER' ORDER BY ordinal_position", (schema, name))]


def test_tenant_tables_are_known(settings):
    assert {"crm.clientes", "crm.productos", "crm.pedidos", "crm.pedido_items", "crm.pedido_estados",
            "crm.interacciones", "crm.auditoria"} <= set(_tables(settings))


def test_brand_role_reads_only_its_brand(settings, brand_a, brand_b):
    with connect(settings, roles.OWNER) as owner, connect(settings, roles.brand_role(brand_a.slug)) as a:
        for table in _tables(settings):
            mine = owner.execute(f"SELECT count(*) FROM {table} WHERE marca_id = %s", (brand_a.id,)).fetchone()[0]
            assert mine > 0, f"{table}: fixture should have rows of brand A"
            assert owner.execute(f"SELECT count(*) FROM {table} WHERE marca_id = %s",
                                 (brand_b.id,)).fetchone()[0] > 0, table
            seen = a.execute(f"SELECT count(*), count(*) FILTER (WHERE marca_id <> %s) FROM {table}",
                             (brand_a.id,)).fetchone()
            assert seen == (mine, 0), table
        assert [r[0] for r in a.execute("SELECT id FROM crm.marcas")] == [brand_a.id]
        for view in ("clientes", "pedidos", "pedido_items", "interacciones", "marcas"):
            ids = {r[0] for r in a.execute(f"SELECT DISTINCT marca_id FROM reporting.{view}")}
            assert ids == {brand_a.id}, view


def test_brand_role_cannot_write_into_or_over_brand_b(settings, brand_a, brand_b):
    with connect(settings, roles.brand_role(brand_a.slug), autocommit=True) as a:
        for table in _tables(settings):
            cols = _insertable_columns(a, table)
            listed = ", ".join(cols)
            picked = ", ".join("%s" if c == "marca_id" else c for c in cols)
            # Copy one of A's own rows, relabelled as brand B's: refused by the policy (or grant).
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                a.execute(f"INSERT INTO {table} ({listed}) SELECT {picked} FROM {table} LIMIT 1",
                          (brand_b.id,))
            # Move A's rows to B: refused.
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                a.execute(f"UPDATE {table} SET marca_id = %s", (brand_b.id,))
            # B's rows are invisible, so updates and deletes aimed at them touch nothing;
            # where the role has no such grant at all, the attempt is refused outright.
            for action, stmt in (("UPDATE", f"UPDATE {table} SET marca_id = marca_id WHERE marca_id = %s"),
                                 ("DELETE", f"DELETE FROM {table} WHERE marca_id = %s")):
                if a.execute("SELECT has_table_privilege(%s, %s)", (table, action)).fetchone()[0]:
                    assert a.execute(stmt, (brand_b.id,)).rowcount == 0, (table, action)
                else:
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        a.execute(stmt, (brand_b.id,))
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            a.execute("INSERT INTO crm.clientes (marca_id, nombre) VALUES (%s, 'x')", (brand_b.id,))


def test_brand_role_cannot_switch_brand_with_settings(settings, brand_a, brand_b):
    """app.marca_id is honoured only for the API's role: a Metabase SQL editor cannot escape."""
    with connect(settings, roles.brand_role(brand_a.slug)) as a:
        a.execute("SELECT set_config('app.marca_id', %s, false)", (str(brand_b.id),))
        assert a.execute("SELECT crm.marca_actual()").fetchone()[0] == brand_a.id
        assert a.execute("SELECT count(*) FROM crm.clientes WHERE marca_id = %s",
                         (brand_b.id,)).fetchone()[0] == 0


def test_insert_from_a_grid_gets_the_brand_by_default(settings, brand_a):
    with connect(settings, roles.brand_role(brand_a.slug)) as a:
        row = a.execute("INSERT INTO crm.clientes (nombre) VALUES ('Desde NocoDB') RETURNING marca_id").fetchone()
        assert row[0] == brand_a.id
        a.rollback()


def test_brand_role_has_no_access_to_keys(settings, brand_a):
    with connect(settings, roles.brand_role(brand_a.slug)) as a:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            a.execute("SELECT count(*) FROM crm.claves_api")


def test_executive_reads_every_brand_and_writes_nothing(settings, brand_a, brand_b):
    with connect(settings, roles.EXECUTIVE) as ex:
        ids = {r[0] for r in ex.execute("SELECT DISTINCT marca_id FROM reporting.pedidos")}
        assert {brand_a.id, brand_b.id} <= ids
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            ex.execute("SELECT telefono FROM crm.clientes")  # contact data is not for reports
        ex.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            ex.execute("UPDATE crm.pedidos SET nota = 'x'")


@pytest.mark.parametrize("role", [roles.API, roles.EXECUTIVE])
def test_client_roles_are_not_privileged(settings, role):
    with connect(settings, roles.OWNER) as conn:
        row = conn.execute("SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, "
                           "pg_has_role(rolname, 'crm_owner', 'MEMBER') FROM pg_roles WHERE rolname = %s",
                           (role,)).fetchone()
        assert row == (False, False, False, False, False)
        owned = conn.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                             "WHERE n.nspname IN ('crm', 'reporting') AND pg_get_userbyid(c.relowner) = %s",
                             (role,)).fetchone()[0]
        assert owned == 0
