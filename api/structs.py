"""Helpers for request bodies and parameters."""

from __future__ import annotations

import msgspec
from litestar import Request

from .errors import campo


def given(body: msgspec.Struct) -> dict:
    """The fields a client actually sent: UNSET ones (left out of a partial update) dropped."""
    return {k: v for k, v in msgspec.structs.asdict(body).items() if v is not msgspec.UNSET}


def _nul_path(value, path: str = "") -> str | None:
    if isinstance(value, str):
        return path if "\x00" in value else None
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        if isinstance(k, str) and "\x00" in k:
            return f"{path}.{k!r}".lstrip(".")
        found = _nul_path(v, f"{path}[{k}]" if isinstance(k, int) else f"{path}.{k}".lstrip("."))
        if found is not None:
            return found
    return None


async def reject_nul(request: Request) -> None:
    """PostgreSQL text cannot hold U+0000: refuse it up front, naming the field, rather
    than let the driver fail mid-request (before_request hook of the app)."""
    for key, value in request.query_params.multi_items():
        if "\x00" in value:
            raise campo(key, "contiene el carácter nulo (U+0000), no permitido", 400)
    if request.method in ("POST", "PUT", "PATCH"):
        body = await request.body()
        if b"\\u0000" in body:
            try:
                path = _nul_path(msgspec.json.decode(body))
            except msgspec.DecodeError:
                return  # malformed JSON: the body parser answers it
            if path is not None:
                raise campo(path or "cuerpo", "contiene el carácter nulo (U+0000), no permitido")
