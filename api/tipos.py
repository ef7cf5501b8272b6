"""Constrained types for request bodies and parameters: msgspec rejects an out-of-range
value with the field's name before anything reaches the database."""

from __future__ import annotations

from typing import Annotated

from msgspec import Meta

BIGINT_MAX = 2**63 - 1

Id = Annotated[int, Meta(ge=1, le=BIGINT_MAX)]
Pesos = Annotated[int, Meta(ge=0, le=10**12, description="pesos enteros (CLP no tiene centavos)")]
Cantidad = Annotated[int, Meta(ge=1, le=10_000)]
Stock = Annotated[int, Meta(ge=0, le=2**31 - 1)]
Puntaje = Annotated[int, Meta(ge=1, le=5)]
Nombre = Annotated[str, Meta(min_length=1, max_length=200)]
Nota = Annotated[str, Meta(max_length=2000)]
Contenido = Annotated[str, Meta(max_length=10_000)]
