"""The API's transactions (api/db.py): BEGIN and the brand binding travel with the first
statement, deferred writes with the next statement or COMMIT, all in one round trip each,
and nothing of a failed transaction remains, whichever of them failed."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors
from test_salientes import correr

from api import roles

ALERTAS = "SELECT count(*) FROM crm.alertas WHERE motivo = %s"
INSERTAR_ALERTA = "INSERT INTO crm.alertas (cliente_id, interaccion_id, motivo) VALUES (:c, :i, :m)"


def contar(settings, brand, motivo: str) -> int:
    with psycopg.connect(roles.role_url(roles.OWNER, settings)) as conn:
        return conn.execute(ALERTAS + " AND marca_id = %s", (motivo, brand.id)).fetchone()[0]


def alerta(brand, motivo: str, interaccion: int | None = None) -> dict:
    return {"c": brand.ids["cliente"], "i": interaccion or brand.ids["interaccion"], "m": motivo}


def test_the_first_statement_runs_bound_to_the_brand_in_one_transaction(settings, brand_a):
    async def caso(database):
        async with database.transaction(brand_a.id, "prueba:actor") as db:
            row = (await db.execute("SELECT current_setting('app.marca_id') AS marca, "
                                    "current_setting('app.actor') AS actor, pg_current_xact_id()::text AS xid, "
                                    "(SELECT count(*) FROM crm.clientes) AS visibles")).one()
            despues = (await db.execute("SELECT pg_current_xact_id()::text AS xid")).one()
        return row, despues

    row, despues = correr(settings, caso)
    assert (row.marca, row.actor) == (str(brand_a.id), "prueba:actor")
    assert row.visibles >= 1  # the brand's own customers, through row-level security
    assert despues.xid == row.xid  # BEGIN went first: both statements share one transaction


def test_deferred_writes_are_committed_with_the_transaction(settings, brand_a):
    motivo = "diferida confirmada"

    async def caso(database):
        async with database.transaction(brand_a.id, "test") as db:
            db.diferir(INSERTAR_ALERTA, alerta(brand_a, motivo))
            db.diferir(INSERTAR_ALERTA, alerta(brand_a, motivo))

    correr(settings, caso)
    assert contar(settings, brand_a, motivo) == 2


def test_a_deferred_write_is_visible_to_the_next_statement(settings, brand_a):
    motivo = "diferida y leída"

    async def caso(database):
        async with database.transaction(brand_a.id, "test") as db:
            db.diferir(INSERTAR_ALERTA, alerta(brand_a, motivo))
            return (await db.execute("SELECT count(*) AS n FROM crm.alertas WHERE motivo = :m",
                                     {"m": motivo})).one().n

    assert correr(settings, caso) == 1


async def _falla_una_escritura_diferida(db, brand, motivo):
    await db.execute(INSERTAR_ALERTA, alerta(brand, motivo))
    db.diferir(INSERTAR_ALERTA, alerta(brand, motivo))
    db.diferir(INSERTAR_ALERTA, alerta(brand, motivo, interaccion=-1))  # no such interaction


async def _falla_la_sentencia_siguiente(db, brand, motivo):
    db.diferir(INSERTAR_ALERTA, alerta(brand, motivo))
    await db.execute("SELECT 1 / 0")


async def _falla_python(db, brand, motivo):
    db.diferir(INSERTAR_ALERTA, alerta(brand, motivo))
    raise RuntimeError("falla del flujo")


@pytest.mark.parametrize(("falla", "error"), [
    (_falla_una_escritura_diferida, errors.ForeignKeyViolation),  # undoes the statements before it too
    (_falla_la_sentencia_siguiente, errors.DivisionByZero),
    (_falla_python, RuntimeError),  # the deferred write is never sent
])
def test_a_failure_anywhere_leaves_nothing_written(settings, brand_a, falla, error):
    motivo = f"no debe quedar: {falla.__name__}"

    async def caso(database):
        async with database.transaction(brand_a.id, "test") as db:
            await falla(db, brand_a, motivo)

    with pytest.raises(error):
        correr(settings, caso)
    assert contar(settings, brand_a, motivo) == 0


def test_the_connection_goes_back_to_the_pool_clean(settings, brand_a):
    async def caso(database):
        with pytest.raises(errors.DivisionByZero):
            async with database.transaction(brand_a.id, "test") as db:
                db.diferir(INSERTAR_ALERTA, alerta(brand_a, "antes del error"))
                await db.execute("SELECT 1 / 0")
        async with database.transaction(None, "test") as db:  # no brand bound: sees no rows
            sin_marca = (await db.execute("SELECT count(*) AS n FROM crm.clientes")).one().n
        async with database.transaction(brand_a.id, "test") as db:
            pass  # nothing asked: no transaction opened
        return sin_marca

    assert correr(settings, caso, pool=1) == 0
    assert contar(settings, brand_a, "antes del error") == 0
