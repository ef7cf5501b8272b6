"""RFC 9457 problem+json for every error, with a Spanish `detail` staff can act on and,
for bad input, the offending fields in `errores: [{campo, mensaje}]`."""

from __future__ import annotations

import logging
import re
from typing import Any

import psycopg
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.status_codes import HTTP_500_INTERNAL_SERVER_ERROR
from sqlalchemy.exc import DBAPIError

log = logging.getLogger("crm.api")

TITLES = {
    400: "Solicitud inválida",
    401: "No autenticado",
    403: "Prohibido",
    404: "No encontrado",
    405: "Método no permitido",
    409: "Conflicto",
    413: "Cuerpo demasiado grande",
    415: "Tipo de contenido no soportado",
    422: "Datos inválidos",
    429: "Demasiadas solicitudes",
    500: "Error interno",
    503: "Servicio no disponible",
}


class Problem(HTTPException):
    """An error with a status, a Spanish detail and optionally the fields at fault."""

    def __init__(
        self,
        status: int,
        detail: str,
        errores: list[dict] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(status_code=status, detail=detail, headers=headers)
        self.errores = errores or []


def campo(nombre: str, mensaje: str, status: int = 422) -> Problem:
    return Problem(status, f"{nombre}: {mensaje}", [{"campo": nombre, "mensaje": mensaje}])


def problem_response(
    status: int,
    detail: str,
    errores: list[dict] | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errores:
        body["errores"] = errores
    return Response(body, status_code=status, media_type="application/problem+json", headers=headers)


_MSGSPEC_PATH = re.compile(r"at `\$((?:\.[A-Za-z_][\w]*|\[\d+\])*)`")
_MISSING_PARAM = re.compile(r"Missing required (\w+) parameter '([^']+)'")
_BODY = "cuerpo"


def _validation(exc: ValidationException) -> tuple[int, str, list[dict]]:
    """Status, detail and fields of a request Litestar or msgspec rejected: a bad query,
    path or header parameter or an unreadable body is a 400; a readable body whose fields
    are wrong is a 422. `data` (Litestar's name for the body) is called `cuerpo`."""
    extra = exc.extra if isinstance(exc.extra, list) else ([exc.extra] if exc.extra else [])
    if not extra:
        m = _MISSING_PARAM.search(str(exc.detail))
        if m:
            return (
                400,
                f"{m.group(2)}: falta el parámetro obligatorio",
                [{"campo": m.group(2), "mensaje": "parámetro obligatorio"}],
            )
        return 400, "Solicitud inválida", []
    errores, status = [], 422
    for item in extra:
        if not isinstance(item, dict):
            continue
        msg, key = str(item.get("message", "")), item.get("key") or ""
        source = getattr(item.get("source"), "value", item.get("source"))
        m = _MSGSPEC_PATH.search(msg)
        if m and m.group(1):
            key = m.group(1).lstrip(".")
        elif "unknown field" in msg.lower():
            u = re.search(r"`([^`]+)`", msg)
            key = u.group(1) if u else key
        elif key == "data":
            key = _BODY
            status = 400
            msg = "falta el cuerpo JSON" if msg == "'data'" else msg
        if source in ("query", "path", "header", "cookie"):
            status = 400
        errores.append({"campo": key or _BODY, "mensaje": _traducir(msg)})
    if any("JSON" in e["mensaje"] for e in errores):
        status = 400
    return status, "; ".join(f"{e['campo']}: {e['mensaje']}" for e in errores), errores


_SPANISH = (
    ("Object contains unknown field", "Campo desconocido"),
    ("Object missing required field", "Falta el campo obligatorio"),
    ("JSON is malformed", "JSON mal formado"),
    ("Input data was truncated", "JSON incompleto"),
    ("Invalid RFC3339 encoded date", "fecha inválida; use AAAA-MM-DD"),
    ("Invalid RFC3339 encoded datetime", "fecha y hora inválidas; use ISO 8601"),
    ("Invalid enum value", "valor no permitido:"),
    ("Expected `", "Se esperaba `"),
    ("got `", "llegó `"),
    (" of length ", " de largo "),
    ("Missing required", "Falta el obligatorio"),
)


def _traducir(msg: str) -> str:
    msg = _MSGSPEC_PATH.sub("", msg).strip(" -")
    for en, es in _SPANISH:
        msg = msg.replace(en, es)
    return msg


def _http(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    errores = getattr(exc, "errores", None)
    detail = exc.detail
    if isinstance(exc, ValidationException):
        status, detail, errores = _validation(exc)
    elif "JSON is malformed" in str(detail) or "truncated" in str(detail):
        detail = "El cuerpo no es JSON válido"
        errores = [{"campo": _BODY, "mensaje": "JSON mal formado"}]
    elif status == 413:
        detail = "El cuerpo de la solicitud supera el tamaño máximo permitido"
    elif status == 405:
        detail = f"El método {request.method} no está permitido en {request.url.path}"
    elif status == 404 and (not detail or detail == "Not Found"):
        detail = f"No existe el recurso {request.url.path}"
    return problem_response(status, str(detail), errores, exc.headers, request.url.path)


# SQLSTATEs raised by db/schema.sql triggers and constraints → HTTP status
_SQLSTATE = {
    "CRM01": 409,
    "CRM02": 409,
    "CRM03": 409,
    "CRM04": 422,
    "23505": 409,
    "23503": 422,
    "23514": 422,
    "22P02": 422,
    "23502": 422,
    "22001": 422,
    "22003": 422,
    "22007": 422,
    "22008": 422,
}

_FRIENDLY = {
    "clientes_telefono_unico": ("telefono", "ya existe un cliente con ese teléfono en esta marca"),
    "clientes_email_unico": ("email", "ya existe un cliente con ese email en esta marca"),
    "productos_sku_unico": ("sku", "ya existe un producto con ese SKU en esta marca"),
    "interacciones_id_externo_unico": ("id_externo", "ya se registró una interacción con ese id_externo"),
    "marcas_slug_key": ("slug", "ya existe una marca con ese slug"),
    "clientes_documento_check": ("documento", "RUT inválido (revise el dígito verificador)"),
    "canales_identificador_unico": ("identificador", "ya está registrado en un canal (de esta u otra marca)"),
}


def database_error(exc: psycopg.Error | DBAPIError) -> Problem | None:
    """Translate a constraint or rule violation into a 4xx; None for anything else.
    The API raises psycopg's errors; the CLI's SQLAlchemy engine wraps them."""
    orig = getattr(exc, "orig", None) or exc
    state = getattr(orig, "sqlstate", None)
    if state not in _SQLSTATE:
        return None
    diag = getattr(orig, "diag", None)
    constraint = getattr(diag, "constraint_name", None)
    column = getattr(diag, "column_name", None)
    primary = getattr(diag, "message_primary", None) or str(orig)
    if constraint in _FRIENDLY:
        field, msg = _FRIENDLY[constraint]
        return campo(field, msg, _SQLSTATE[state])
    if state == "23503":
        m = re.search(r"\((?:marca_id, )?(\w+)\)=", getattr(diag, "message_detail", "") or "")
        field = m.group(1) if m else (column or "referencia")
        return campo(field, "hace referencia a un registro que no existe en esta marca", 422)
    if state == "23514" and constraint:
        table = getattr(diag, "table_name", None) or ""
        field = constraint.removeprefix(f"{table}_").removesuffix("_check")
        return campo(field, "valor no permitido", 422)
    if column:
        return campo(column, primary, _SQLSTATE[state])
    return Problem(_SQLSTATE[state], primary)


def _db(request: Request, exc: psycopg.Error | DBAPIError) -> Response:
    problem = database_error(exc)
    if problem is None:
        log.exception("database error on %s %s", request.method, request.url.path, exc_info=exc)
        return problem_response(
            500, "Error interno de la base de datos; el cambio no se guardó", instance=request.url.path
        )
    return _http(request, problem)


def _internal(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        HTTP_500_INTERNAL_SERVER_ERROR, "Error interno; el cambio no se guardó", instance=request.url.path
    )


HANDLERS = {HTTPException: _http, psycopg.Error: _db, DBAPIError: _db, Exception: _internal}
MEDIA = MediaType.JSON
