"""A brand's WhatsApp channels (crm.canales): validation and statements shared by the API
(async) and the CLI (SQLAlchemy, sync), like `services.marcas`.

- Meta: `identificador` is the number's phone_number_id (digits, from Meta's WhatsApp
  Manager); `numero` is the number customers write to, optional.
- Twilio: `identificador` is our WhatsApp number itself, in E.164; `numero` is the same.
One identifier belongs to one brand, across brands: the database refuses a second one
(constraint `canales_identificador_unico`, answered as 409 naming `identificador`).
"""

from __future__ import annotations

import re

from sqlalchemy import text

from . import normalizacion

PROVEEDORES = ("meta", "twilio")
COLUMNS = "id, marca_id, proveedor, identificador, numero, activo, created_at"
_PHONE_NUMBER_ID = re.compile(r"^[0-9]{3,64}$")

INSERT = text(
    f"INSERT INTO crm.canales (proveedor, identificador, numero, activo) "
    f"VALUES (:proveedor, :identificador, :numero, :activo) RETURNING {COLUMNS}"
)
LIST = text(f"SELECT {COLUMNS} FROM crm.canales ORDER BY id")


class CanalInvalido(ValueError):
    """Bad input, with the field at fault."""

    def __init__(self, campo: str, mensaje: str) -> None:
        super().__init__(f"{campo}: {mensaje}")
        self.campo, self.mensaje = campo, mensaje


def _telefono(campo: str, valor: str) -> str:
    try:
        return normalizacion.telefono(valor)
    except ValueError as e:
        raise CanalInvalido(campo, f"{e}; use el formato E.164, p. ej. +56 2 2938 0000") from None


def valores(proveedor: str, identificador: str, numero: str | None = None, activo: bool = True) -> dict:
    """The row to insert, normalized; raises CanalInvalido naming the field."""
    if proveedor not in PROVEEDORES:
        raise CanalInvalido("proveedor", f"debe ser {' o '.join(PROVEEDORES)}")
    identificador = identificador.strip()
    if not identificador:
        raise CanalInvalido("identificador", "no puede estar vacío")
    numero = _telefono("numero", numero) if numero and numero.strip() else None
    if proveedor == "twilio":
        identificador = _telefono("identificador", identificador)
        if numero is not None and numero != identificador:
            raise CanalInvalido("numero", "en Twilio el número es el mismo identificador (o se omite)")
        numero = identificador
    elif not _PHONE_NUMBER_ID.match(identificador):
        raise CanalInvalido(
            "identificador",
            "en Meta es el phone_number_id del número (solo dígitos; está en WhatsApp Manager)",
        )
    return {"proveedor": proveedor, "identificador": identificador, "numero": numero, "activo": activo}
