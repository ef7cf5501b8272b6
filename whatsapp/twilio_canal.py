"""Twilio's WhatsApp channel: verify a webhook, parse it into events, send a reply.

Twilio posts one form (application/x-www-form-urlencoded) per event: an inbound message
(`From=whatsapp:+569...`, `Body`, `MessageSid`...) or a status callback of a message we
sent (`MessageStatus`). It signs them with `X-Twilio-Signature`: HMAC-SHA1 of the full
URL it called (query string included) followed by every POST field, sorted, under the
account's auth token. `twilio.request_validator.RequestValidator` does exactly that.

Sending goes through the `twilio` SDK (sync: run in a worker thread).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import requests
from twilio.base.exceptions import TwilioException
from twilio.http.http_client import TwilioHttpClient
from twilio.request_validator import RequestValidator
from twilio.rest import Client

from whatsapp.eventos import Estado, Evento, Media, Mensaje, Ubicacion
from whatsapp.meta import telefono_de_proveedor
from whatsapp.salida import EnvioError, Respuesta

PREFIJO = "whatsapp:"
_CONTENT_SID = re.compile(r"HX[0-9a-fA-F]{32}")
_ESTADOS = {
    "sent": "sent",
    "delivered": "delivered",
    "read": "read",
    "failed": "failed",
    "undelivered": "failed",
}
_MEDIA = ("image", "audio", "video", "document", "sticker")


def _ahora() -> datetime:
    return datetime.now(UTC)


# ---------------------------------------------------------------- webhook: verification


def verificar_firma(auth_token: str, url: str, params: Mapping[str, str], firma: str | None) -> bool:
    """True when `firma` (`X-Twilio-Signature`) signs `url` (exactly as Twilio called it:
    scheme, host, path and query string; behind a proxy, the public URL) and every field of
    the POST form `params`. Pass the form as received (a multi-dict is fine: repeated
    fields are signed value by value), never a subset: Twilio adds fields without notice."""
    if not auth_token or not firma:
        return False
    return bool(RequestValidator(auth_token).validate(url, params, firma))


# ---------------------------------------------------------------- webhook: parsing


def _numero(valor: str | None, campo: str) -> str:
    if not valor:
        raise ValueError(f"webhook de Twilio sin '{campo}'")
    crudo = valor.removeprefix(PREFIJO)
    if not crudo.startswith("+"):
        raise ValueError(f"'{campo}' no es un número de WhatsApp: {valor!r}")
    return telefono_de_proveedor(crudo)


def _opcional(params: Mapping[str, str], campo: str) -> str | None:
    valor = params.get(campo)
    return valor if valor else None


def interpretar(params: Mapping[str, str], ahora: Callable[[], datetime] = _ahora) -> list[Evento]:
    """One webhook form → [Mensaje], [Estado] or [] (intermediate statuses such as queued,
    accepted, sending). Twilio sends no event time: `ahora()` (UTC) stands for it.
    Raises ValueError when the form is not a Twilio WhatsApp webhook."""
    sid = params.get("MessageSid") or params.get("SmsMessageSid") or params.get("SmsSid")
    if not sid:
        raise ValueError("webhook de Twilio sin 'MessageSid'")
    if "MessageStatus" in params:
        return _estado(params, sid, ahora)
    return [_mensaje(params, sid, ahora)]


def _estado(params: Mapping[str, str], sid: str, ahora: Callable[[], datetime]) -> list[Evento]:
    estado = _ESTADOS.get(params["MessageStatus"])
    if estado is None:
        return []  # queued, accepted, sending, scheduled, canceled...: nothing to record
    return [
        Estado(
            proveedor="twilio",
            id_externo=sid,
            destino=_numero(params.get("From"), "From"),  # our number sent it
            estado=estado,  # type: ignore[arg-type]
            ocurrido_en=ahora(),
            telefono=_numero(params["To"], "To") if params.get("To") else None,
            error_codigo=_opcional(params, "ErrorCode"),
            error_mensaje=_opcional(params, "ErrorMessage"),
        )
    ]


def _mensaje(params: Mapping[str, str], sid: str, ahora: Callable[[], datetime]) -> Mensaje:
    base: dict[str, Any] = {
        "proveedor": "twilio",
        "id_externo": sid,
        "destino": _numero(params.get("To"), "To"),
        "telefono": _numero(params.get("From"), "From"),
        "recibido_en": ahora(),
        "nombre_perfil": _opcional(params, "ProfileName"),
    }
    cuerpo = _opcional(params, "Body")
    tipo_twilio = params.get("MessageType")
    if params.get("ButtonPayload") or params.get("ButtonText"):  # quick reply (Content API / template)
        return Mensaje(
            **base,
            tipo="boton",
            texto=_opcional(params, "ButtonText") or cuerpo,
            seleccion_id=_opcional(params, "ButtonPayload"),
        )
    if params.get("ListId"):  # list picker (Content API)
        return Mensaje(
            **base,
            tipo="lista",
            texto=_opcional(params, "ListTitle") or cuerpo,
            seleccion_id=params["ListId"],
        )
    if params.get("Latitude") and params.get("Longitude"):
        try:
            ubicacion = Ubicacion(
                latitud=float(params["Latitude"]),
                longitud=float(params["Longitude"]),
                nombre=_opcional(params, "Label"),
                direccion=_opcional(params, "Address"),
            )
        except ValueError:
            raise ValueError(f"mensaje {sid}: latitud/longitud inválidas") from None
        return Mensaje(**base, tipo="ubicacion", ubicacion=ubicacion)
    try:
        num_media = int(params.get("NumMedia") or "0")
    except ValueError:
        raise ValueError(f"mensaje {sid}: NumMedia inválido") from None
    if num_media > 0 and params.get("MediaUrl0"):
        # WhatsApp carries one file per message: MediaUrl0 is the one.
        mime = _opcional(params, "MediaContentType0")
        if tipo_twilio in _MEDIA:
            clase = tipo_twilio
        elif mime and mime.split("/")[0] in ("image", "audio", "video"):
            clase = mime.split("/")[0]
        else:
            clase = "document"
        media = Media(referencia=params["MediaUrl0"], mime=mime, tipo=clase, leyenda=cuerpo)
        return Mensaje(**base, tipo="media", texto=cuerpo, media=media)
    if tipo_twilio in (None, "", "text") and cuerpo is not None:
        return Mensaje(**base, tipo="texto", texto=cuerpo)
    return Mensaje(**base, tipo="otro", texto=cuerpo)


# ---------------------------------------------------------------- sending


def texto_con_opciones(respuesta: Respuesta) -> str:
    """A list or buttons as plain text: the body, then one numbered line per option."""
    lineas = [respuesta.texto, ""] if respuesta.opciones else [respuesta.texto]
    for i, o in enumerate(respuesta.opciones, 1):
        lineas.append(f"{i}. {o.titulo}" + (f" ({o.descripcion})" if o.descripcion else ""))
    return "\n".join(lineas)


def _con_prefijo(numero: str) -> str:
    return numero if numero.startswith(PREFIJO) else PREFIJO + numero


class EnviadorTwilio:
    """Sends with the twilio SDK. `base_url` replaces `https://api.twilio.com` (the domain
    of the Messages resource), e.g. to point at a local stand-in in tests."""

    nombre = "twilio"

    def __init__(
        self,
        account_sid: str,
        auth_token: str,
        base_url: str | None = None,
        timeout: float = 15.0,
        http_client: TwilioHttpClient | None = None,
    ) -> None:
        self._client = Client(
            account_sid, auth_token, http_client=http_client or TwilioHttpClient(timeout=timeout)
        )
        if base_url:
            # Every REST domain of the SDK is a `twilio.base.domain.Domain` whose public
            # `base_url` builds its absolute URLs; Messages live on the `api` domain.
            self._client.api.base_url = base_url.rstrip("/")

    def _argumentos(self, origen: str, telefono: str, respuesta: Respuesta) -> dict[str, str]:
        args = {"from_": _con_prefijo(origen), "to": _con_prefijo(telefono)}
        if respuesta.tipo == "texto":
            return args | {"body": respuesta.texto}
        if respuesta.tipo in ("lista", "botones"):
            # Twilio sends WhatsApp lists and buttons only as Content API templates
            # (twilio/list-picker, twilio/quick-reply) created beforehand, each with its
            # own HX sid: a free-form reply goes as numbered text instead.
            return args | {"body": texto_con_opciones(respuesta)}
        if respuesta.tipo == "plantilla":
            if respuesta.plantilla and _CONTENT_SID.fullmatch(respuesta.plantilla):
                args["content_sid"] = respuesta.plantilla
                if respuesta.parametros:
                    variables = {str(i): p for i, p in enumerate(respuesta.parametros, 1)}
                    args["content_variables"] = json.dumps(variables, ensure_ascii=False)
                return args
            return args | {"body": respuesta.texto}
        raise EnvioError("respuesta_invalida", f"tipo de respuesta desconocido: {respuesta.tipo}", False)

    def _crear(self, args: dict[str, str]) -> str:
        return self._client.messages.create(**args).sid

    async def enviar(self, origen: str, telefono: str, respuesta: Respuesta) -> str:
        args = self._argumentos(origen, telefono, respuesta)
        try:
            sid = await asyncio.to_thread(self._crear, args)
        except requests.Timeout as e:
            raise EnvioError("timeout", f"Twilio no respondió a tiempo ({e.__class__.__name__})", True) from e
        except requests.RequestException as e:
            raise EnvioError("conexion", f"no se pudo conectar con Twilio: {e}", True) from e
        except TwilioException as e:
            # TwilioRestException (msg) or, on newer SDKs, TwilioServiceException for
            # RFC 9457 answers (title, detail): both carry the HTTP status and Twilio's code.
            status = getattr(e, "status", None)
            if not isinstance(status, int):
                raise EnvioError("twilio", str(e), False) from e
            mensaje = getattr(e, "detail", None) or getattr(e, "msg", None) or getattr(e, "title", None)
            raise _error(status, getattr(e, "code", None), mensaje or "") from e
        if not sid:
            raise EnvioError("respuesta_invalida", "Twilio aceptó el mensaje sin devolver su sid", False)
        return sid


def _error(status: int, codigo: object, mensaje: str) -> EnvioError:
    reintentable = status == 429 or status >= 500
    return EnvioError(str(codigo) if codigo else f"http_{status}", mensaje or f"HTTP {status}", reintentable)
