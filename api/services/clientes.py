"""Customer rules: canonical phone/email/RUT, search across every way staff type them.

Every query runs on a connection bound to one brand: row-level security keeps it there,
so no query here filters by marca_id itself."""

from __future__ import annotations

import re

from sqlalchemy import text

from ..errors import campo
from . import normalizacion

COLUMNS = (
    "id, marca_id, nombre, telefono, email, documento, fecha_nacimiento, ciudad, region, "
    "canal_origen, segmento, opt_out_marketing, opt_out_recordatorios, opt_out_encuestas, "
    "notas, created_at, updated_at"
)
_EDITABLE = (
    "nombre",
    "telefono",
    "email",
    "documento",
    "fecha_nacimiento",
    "ciudad",
    "region",
    "canal_origen",
    "segmento",
    "opt_out_marketing",
    "opt_out_recordatorios",
    "opt_out_encuestas",
    "notas",
)
_CLEANERS = {"telefono": normalizacion.telefono, "email": normalizacion.email, "documento": normalizacion.rut}


def clean(values: dict) -> dict:
    """Canonical values, or a 422 naming the field. Blank optional strings become null."""
    out = {}
    for key, value in values.items():
        if key not in _EDITABLE:
            continue
        if isinstance(value, str):
            value = value.strip()
            if value == "" and key != "nombre":
                value = None
        if key == "nombre" and not value:
            raise campo("nombre", "no puede estar vacío")
        if value is not None and key in _CLEANERS:
            try:
                value = _CLEANERS[key](value)
            except ValueError as e:
                raise campo(key, str(e)) from None
        out[key] = value
    return out


async def insert(db, values: dict):
    cols = ", ".join(values)
    params = ", ".join(f":{k}" for k in values)
    return (
        await db.execute(
            text(f"INSERT INTO crm.clientes ({cols}) VALUES ({params}) RETURNING {COLUMNS}"), values
        )
    ).one()


async def get(db, cliente_id: int):
    return (
        await db.execute(
            text(f"SELECT {COLUMNS} FROM crm.clientes WHERE id = :id AND deleted_at IS NULL"),
            {"id": cliente_id},
        )
    ).first()


async def update(db, cliente_id: int, changes: dict):
    if not changes:
        return await get(db, cliente_id)
    sets = ", ".join(f"{k} = :{k}" for k in changes)
    return (
        await db.execute(
            text(f"UPDATE crm.clientes SET {sets} WHERE id = :id AND deleted_at IS NULL RETURNING {COLUMNS}"),
            {**changes, "id": cliente_id},
        )
    ).first()


async def forget(db, cliente_id: int) -> bool:
    """Right to be forgotten: personal data erased, orders and history kept anonymous."""
    row = (
        await db.execute(
            text(
                "UPDATE crm.clientes SET nombre = 'Cliente eliminado', telefono = NULL, email = NULL, "
                "documento = NULL, fecha_nacimiento = NULL, notas = NULL, deleted_at = now(), "
                "opt_out_marketing = true, opt_out_recordatorios = true, opt_out_encuestas = true "
                "WHERE id = :id AND deleted_at IS NULL RETURNING id"
            ),
            {"id": cliente_id},
        )
    ).first()
    return row is not None


def filters(segmento: str | None, ciudad: str | None) -> tuple[list[str], dict]:
    """Conditions of a customer listing (forgotten customers never listed)."""
    where, params = ["deleted_at IS NULL"], {}
    if segmento:
        where.append("segmento = :segmento")
        params["segmento"] = segmento
    if ciudad:
        where.append("crm.normalizar(ciudad) = crm.normalizar(:ciudad)")
        params["ciudad"] = ciudad
    return where, params


def interpretations(q: str) -> dict:
    """What a search string can be: an email, a phone, a RUT, and always a name."""
    q = q.strip()
    found: dict = {"nombre": q}
    if "@" in q:
        found["email"] = q.lower()
    digits = re.sub(r"\D", "", q)
    if re.fullmatch(r"[\d\s+().-]+", q) and len(digits) >= 8:
        try:
            found["telefono"] = normalizacion.telefono(q)
        except ValueError:
            pass
    if re.fullmatch(r"[\d.\s]+-?\s*[\dkK]", q):
        try:
            found["documento"] = normalizacion.rut(q)
        except ValueError:
            pass
    return found


async def search(db, q: str, limit: int, offset: int, segmento=None, ciudad=None):
    """Exact matches on phone, email or RUT first; then names by accent- and typo-tolerant
    trigram word similarity (pg_trgm over crm.normalizar, which is indexed)."""
    found = interpretations(q)
    where, params = filters(segmento, ciudad)
    exact = [f"{k} = :{k}" for k in ("telefono", "email", "documento") if k in found]
    params.update({k: v for k, v in found.items() if k != "nombre"})
    params.update({"q": found["nombre"], "limit": limit, "offset": offset})
    # Typos cost trigrams: 0.45 keeps "Gonzales" → "González" and "Peres" → "Pérez".
    await db.execute(text("SELECT set_config('pg_trgm.word_similarity_threshold', '0.45', true)"))
    match = "crm.normalizar(:q) <% crm.normalizar(nombre)"
    rank = "word_similarity(crm.normalizar(:q), crm.normalizar(nombre))"
    if exact:
        match = f"({' OR '.join(exact)} OR {match})"
        rank = f"(CASE WHEN {' OR '.join(exact)} THEN 2 ELSE 0 END) + {rank}"
    return (
        await db.execute(
            text(
                f"SELECT {COLUMNS} FROM crm.clientes WHERE {' AND '.join(where)} AND {match} "
                f"ORDER BY {rank} DESC, id DESC LIMIT :limit OFFSET :offset"
            ),
            params,
        )
    ).all()
