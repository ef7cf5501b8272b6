"""Brands: creation (with their login role) and lookup."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import Connection

from .. import roles
from ..config import Settings

COLUMNS = "id, slug, nombre, zona_horaria, moneda, settings, rol_db, created_at"


def create(conn: Connection, s: Settings, slug: str, nombre: str, zona_horaria: str | None = None,
           moneda: str | None = None, settings: dict[str, Any] | None = None) -> dict:
    """Create a brand and its login role (crm.crear_marca). Works on sync connections;
    the API awaits the same statement through `create_statement`."""
    stmt, params = create_statement(s, slug, nombre, zona_horaria, moneda, settings)
    return dict(conn.execute(stmt, params).mappings().one())


def create_statement(s: Settings, slug: str, nombre: str, zona_horaria: str | None,
                     moneda: str | None, settings: dict[str, Any] | None):
    stmt = text(f"SELECT {COLUMNS} FROM crm.crear_marca(:slug, :nombre, :zona, :moneda, "
                "CAST(:settings AS jsonb), :password)")
    params = {"slug": slug, "nombre": nombre, "zona": zona_horaria, "moneda": moneda,
              "settings": json.dumps(settings or {}),
              "password": roles.password_for(roles.brand_role(slug), s)}
    return stmt, params


def by_slug_statement(slug: str):
    return text(f"SELECT {COLUMNS} FROM crm.marcas WHERE slug = :slug"), {"slug": slug}
