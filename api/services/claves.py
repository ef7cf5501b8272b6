"""API keys: created random, stored as a SHA-256 hash, shown once.

A key is `crm_<prefix>_<secret>`; the prefix (8 chars) is stored in clear so staff can
tell keys apart in listings, the whole key only as its hash. Keys carry 256 bits of
randomness, so a fast hash is the right tool (nothing to brute-force).
"""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import text

ROLES = ("admin", "staff", "lector", "integracion")


def new_key() -> tuple[str, str, bytes]:
    prefix = secrets.token_hex(4)
    key = f"crm_{prefix}_{secrets.token_urlsafe(32)}"
    return key, prefix, digest(key)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def insert_statement(marca_id: int | None, rol: str, nombre: str = "",
                     limite_por_minuto: int | None = None):
    if rol not in ROLES:
        raise ValueError(f"rol debe ser uno de {', '.join(ROLES)}")
    key, prefix, h = new_key()
    stmt = text("INSERT INTO crm.claves_api (marca_id, nombre, prefijo, hash, rol, limite_por_minuto) "
                "VALUES (:marca_id, :nombre, :prefijo, :hash, :rol, :limite) RETURNING id")
    return key, stmt, {"marca_id": marca_id, "nombre": nombre, "prefijo": prefix, "hash": h,
                       "rol": rol, "limite": limite_por_minuto}


LOOKUP = text("""
    SELECT k.id, k.marca_id, k.rol, k.limite_por_minuto, k.revoked_at, k.last_used_at,
           m.slug AS marca_slug
      FROM crm.claves_api k LEFT JOIN crm.marcas m ON m.id = k.marca_id
     WHERE k.hash = :hash""")

TOUCH = text("UPDATE crm.claves_api SET last_used_at = now() WHERE id = :id")

REVOKE = text("UPDATE crm.claves_api SET revoked_at = now() "
              "WHERE (prefijo = :ref OR id::text = :ref) AND revoked_at IS NULL RETURNING id")
