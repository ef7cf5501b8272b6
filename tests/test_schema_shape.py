"""The shape of the schema, read from the catalog: what isolation depends on.

Tenant tables are the ones crm.tablas_tenant() lists (marca_id is their first column),
the same list the schema's own DO block iterates, so a table added later is checked
the day it appears.
"""

from __future__ import annotations

import psycopg
import pytest

from api import roles


@pytest.fixture(scope="module")
def cat(settings):
    """A superuser connection to the test database, for catalog queries."""
    with psycopg.connect(roles.admin_url(settings), autocommit=True) as conn:
        yield conn


@pytest.fixture(scope="module")
def tenant(cat) -> list[str]:
    tables = [r[0] for r in cat.execute("SELECT crm.tablas_tenant()::text")]
    assert {"crm.clientes", "crm.productos", "crm.pedidos", "crm.pedido_items", "crm.pedido_estados",
            "crm.interacciones", "crm.auditoria"} <= set(tables)
    return tables


def _all(cat, sql, params=()):
    return cat.execute(sql, params).fetchall()


def test_tablas_tenant_lists_every_table_with_marca_id(cat, tenant):
    """No table in crm carries marca_id without being a tenant table (marca_id first)."""
    with_marca = {r[0] for r in _all(cat, """
        SELECT c.oid::regclass::text FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
          JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'marca_id' AND NOT a.attisdropped
         WHERE n.nspname = 'crm' AND c.relkind IN ('r', 'p')""")}
    # claves_api has marca_id but is group-wide (NULL for group keys): the one deliberate exception
    assert with_marca - set(tenant) == {"crm.claves_api"}


def test_primary_key_starts_with_marca_id(cat, tenant):
    for t in tenant:
        row = cat.execute("""
            SELECT (SELECT attname FROM pg_attribute WHERE attrelid = i.indrelid AND attnum = i.indkey[0]),
                   i.indnatts
              FROM pg_index i WHERE i.indrelid = %s::regclass AND i.indisprimary""", (t,)).fetchone()
        assert row is not None, f"{t} no tiene clave primaria"
        assert row[0] == "marca_id", f"{t}: la clave primaria empieza por {row[0]}"
        assert row[1] >= 2, f"{t}: la clave primaria es solo marca_id"


def test_row_level_security_enabled_and_forced(cat, tenant):
    for t in tenant:
        rls, force = cat.execute("SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = %s::regclass",
                                 (t,)).fetchone()
        assert rls and force, f"{t}: relrowsecurity={rls} relforcerowsecurity={force}"


def test_isolation_policy_on_marca_actual(cat, tenant):
    for t in tenant:
        schema, name = t.split(".")
        policies = _all(cat, "SELECT policyname, cmd, roles::text[], qual, with_check, permissive FROM pg_policies "
                             "WHERE schemaname = %s AND tablename = %s", (schema, name))
        iso = [p for p in policies if p[3] and "marca_actual()" in p[3]
               and p[1] == "ALL" and p[2] == ["public"] and p[5] == "PERMISSIVE"]
        assert iso, f"{t}: ninguna política para todos con crm.marca_actual(): {policies}"
        assert any(p[3] == "(marca_id = crm.marca_actual())" and p[4] == "(marca_id = crm.marca_actual())"
                   for p in iso), f"{t}: {iso}"
        # any other permissive policy must be read-only and for the executive role only
        for p in policies:
            if p not in iso:
                assert p[1] == "SELECT" and p[2] == [roles.EXECUTIVE], f"{t}: política extra {p}"


def test_marca_id_defaults_to_marca_actual(cat, tenant):
    for t in tenant:
        default, notnull = cat.execute("""
            SELECT pg_get_expr(d.adbin, d.adrelid), a.attnotnull FROM pg_attribute a
              LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
             WHERE a.attrelid = %s::regclass AND a.attname = 'marca_id'""", (t,)).fetchone()
        assert default == "crm.marca_actual()", f"{t}: DEFAULT {default}"
        assert notnull, f"{t}: marca_id admite NULL"


def test_unique_indexes_include_marca_id(cat, tenant):
    for t in tenant:
        for name, has in _all(cat, """
            SELECT c.relname,
                   (SELECT attnum FROM pg_attribute WHERE attrelid = i.indrelid AND attname = 'marca_id')
                     = ANY (i.indkey::int2[])
              FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = %s::regclass AND i.indisunique""", (t,)):
            assert has, f"{t}: el índice único {name} no incluye marca_id"


def test_foreign_keys_include_marca_id(cat, tenant):
    seen = 0
    for t in tenant:
        for name, has, ref, refhas in _all(cat, """
            SELECT con.conname,
                   (SELECT attnum FROM pg_attribute WHERE attrelid = con.conrelid AND attname = 'marca_id')
                     = ANY (con.conkey),
                   con.confrelid::regclass::text,
                   con.confrelid = 'crm.marcas'::regclass OR
                   (SELECT attnum FROM pg_attribute WHERE attrelid = con.confrelid AND attname = 'marca_id')
                     = ANY (con.confkey)
              FROM pg_constraint con WHERE con.conrelid = %s::regclass AND con.contype = 'f'""", (t,)):
            seen += 1
            assert has, f"{t}: la clave foránea {name} no incluye marca_id"
            assert refhas, f"{t}: la clave foránea {name} apunta a {ref} sin su marca_id"
        # foreign keys pointing into this tenant table from anywhere must carry marca_id too
        for name, src, has in _all(cat, """
            SELECT con.conname, con.conrelid::regclass::text,
                   (SELECT attnum FROM pg_attribute WHERE attrelid = con.confrelid AND attname = 'marca_id')
                     = ANY (con.confkey)
              FROM pg_constraint con WHERE con.confrelid = %s::regclass AND con.contype = 'f'""", (t,)):
            assert has, f"{src}.{name} apunta a {t} sin marca_id"
    assert seen >= 10


def _role(cat, name):
    return cat.execute("SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb, rolcanlogin FROM pg_roles "
                       "WHERE rolname = %s", (name,)).fetchone()


def _client_roles(cat) -> list[str]:
    brand_roles = [r[0] for r in _all(cat, "SELECT rol_db FROM crm.marcas ORDER BY id")]
    assert brand_roles, "no hay marcas: el fixture de sesión debería haber creado alguna"
    return [roles.API, roles.EXECUTIVE] + brand_roles


def test_client_roles_are_not_privileged(cat, brand_a, brand_b):
    for name in _client_roles(cat):
        row = _role(cat, name)
        assert row is not None, f"no existe el rol {name}"
        superuser, bypass, createrole, createdb, login = row
        assert not superuser, f"{name} es superusuario"
        assert not bypass, f"{name} tiene BYPASSRLS"
        assert not createrole and not createdb, f"{name} puede crear roles o bases"
        assert login
        for owner_like in (roles.OWNER, "pg_read_all_data", "pg_write_all_data"):
            member = cat.execute("SELECT pg_has_role(%s, %s, 'MEMBER')", (name, owner_like)).fetchone()[0]
            assert not member, f"{name} es miembro de {owner_like}"
        # not a member of anything that bypasses row-level security either
        assert not cat.execute("""
            SELECT array_agg(r.rolname) FROM pg_roles r
             WHERE (r.rolsuper OR r.rolbypassrls) AND pg_has_role(%s, r.oid, 'MEMBER')""",
                               (name,)).fetchone()[0], f"{name} hereda superusuario o BYPASSRLS"


def test_client_roles_own_nothing(cat, brand_a):
    for name in _client_roles(cat):
        owned = _all(cat, """
            SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname IN ('crm', 'reporting') AND pg_has_role(%s, c.relowner, 'MEMBER')""", (name,))
        assert owned == [], f"{name} es dueño de {owned}"
        funcs = _all(cat, """
            SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
             WHERE n.nspname IN ('crm', 'reporting') AND pg_has_role(%s, p.proowner, 'MEMBER')""", (name,))
        assert funcs == [], f"{name} es dueño de {funcs}"
        schemas = _all(cat, "SELECT nspname FROM pg_namespace WHERE nspname IN ('crm', 'reporting') "
                            "AND pg_has_role(%s, nspowner, 'MEMBER')", (name,))
        assert schemas == [], f"{name} es dueño de {schemas}"


def test_everything_in_crm_and_reporting_is_owned_by_crm_owner(cat):
    wrong = _all(cat, """
        SELECT c.oid::regclass::text, pg_get_userbyid(c.relowner) FROM pg_class c
          JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('crm', 'reporting') AND pg_get_userbyid(c.relowner) <> %s""", (roles.OWNER,))
    assert wrong == []


def test_executive_cannot_write_any_crm_table(cat):
    tables = [r[0] for r in _all(cat, """
        SELECT c.oid::regclass::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname IN ('crm', 'reporting') AND c.relkind IN ('r', 'p', 'v', 'm')""")]
    assert "crm.clientes" in tables
    for t in tables:
        for priv in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"):
            assert not cat.execute("SELECT has_table_privilege(%s, %s, %s)",
                                   (roles.EXECUTIVE, t, priv)).fetchone()[0], f"{roles.EXECUTIVE} tiene {priv} en {t}"
        for priv in ("INSERT", "UPDATE"):
            assert not cat.execute("SELECT has_any_column_privilege(%s, %s, %s)",
                                   (roles.EXECUTIVE, t, priv)).fetchone()[0], f"{roles.EXECUTIVE}: {priv} en columnas de {t}"


def test_executive_cannot_read_customer_contact_data(cat):
    for col in ("nombre", "telefono", "email", "documento", "notas"):
        assert not cat.execute("SELECT has_column_privilege(%s, 'crm.clientes', %s, 'SELECT')",
                               (roles.EXECUTIVE, col)).fetchone()[0], col


def test_reporting_views_are_security_invoker(cat):
    views = _all(cat, """
        SELECT c.relname, c.reloptions FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'reporting' AND c.relkind IN ('v', 'm')""")
    assert len(views) >= 6
    for name, options in views:
        assert options and "security_invoker=true" in options, f"reporting.{name}: {options}"


def test_reporting_has_only_views(cat):
    """A table in reporting would escape the tenant policies."""
    kinds = {r[0] for r in _all(cat, """
        SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = 'reporting'""")}
    assert kinds == {"v"}


def test_security_definer_functions_pin_search_path(cat):
    """A definer function runs as crm_owner (BYPASSRLS): its search_path must be fixed."""
    bad = _all(cat, """
        SELECT p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
         WHERE n.nspname = 'crm' AND p.prosecdef
           AND NOT EXISTS (SELECT FROM unnest(p.proconfig) c WHERE c LIKE 'search_path=%%')""")
    assert bad == []
