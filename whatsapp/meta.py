"""Meta's WhatsApp Cloud API: verify a webhook, parse a delivery into events, send a reply.

Webhooks: Meta signs the raw body with the app secret (`X-Hub-Signature-256`) and
subscribes the URL with a GET handshake (`hub.mode`, `hub.verify_token`,
`hub.challenge`). One delivery can carry several entries (one per WhatsApp Business
Account), each with several changes, messages and statuses: all of them are parsed.

Sending: POST `/{version}/{phone_number_id}/messages` on the Graph API with a bearer
token (https://developers.facebook.com/docs/whatsapp/cloud-api/messages).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

import httpx
import msgspec

from api.services.normalizacion import telefono
from whatsapp.eventos import Estado, Evento, Media, Mensaje, Reaccion, Ubicacion
from whatsapp.salida import EnvioError, Opcion, Respuesta

_FIRMA = re.compile(r"sha256=([0-9a-fA-F]{64})")
_E164 = re.compile(r"\+[1-9][0-9]{6,14}")
_MEDIA = ("image", "audio", "video", "document", "sticker")
_ESTADOS = ("sent", "delivered", "read", "failed")

# Meta's documented limits for interactive messages.
MAX_FILAS_LISTA, MAX_BOTONES = 10, 3
MAX_TITULO_FILA, MAX_DESCRIPCION_FILA, MAX_TITULO_BOTON, MAX_BOTON_LISTA = 24, 72, 20, 20

# Graph API error codes that mean "later", whatever the HTTP status they come with:
# 1/2 API unknown/service, 4 app rate limit, 80007 account rate limit, 130429 throughput,
# 131000 unknown error, 131016 service unavailable, 131056 pair rate limit, 133004 server unavailable.
_CODIGOS_REINTENTABLES = frozenset({1, 2, 4, 80007, 130429, 131000, 131016, 131056, 133004})


# ---------------------------------------------------------------- webhook: verification


def verificar_firma(app_secret: str, cuerpo: bytes, cabecera: str | None) -> bool:
    """True when `cabecera` (`X-Hub-Signature-256: sha256=<hex>`) is the HMAC-SHA256 of the
    raw `cuerpo` under the app secret. Verify before parsing: the bytes as received."""
    if not app_secret or not cabecera:
        return False
    m = _FIRMA.fullmatch(cabecera.strip())
    if m is None:
        return False
    esperada = hmac.new(app_secret.encode(), cuerpo, hashlib.sha256).hexdigest()
    return hmac.compare_digest(esperada.encode(), m.group(1).lower().encode())


def verificar_suscripcion(params: Mapping[str, str], verify_token: str) -> str | None:
    """The GET handshake: `hub.challenge` to echo back when the mode is `subscribe` and the
    token is ours; None (answer 403) otherwise."""
    if not verify_token or params.get("hub.mode") != "subscribe":
        return None
    token, challenge = params.get("hub.verify_token"), params.get("hub.challenge")
    if token is None or challenge is None:
        return None
    if not hmac.compare_digest(token.encode(), verify_token.encode()):
        return None
    return challenge


# ---------------------------------------------------------------- webhook: parsing


@lru_cache(maxsize=65_536)  # the same customers write again and again; phonenumbers is slow
def telefono_de_proveedor(numero: str) -> str:
    """E.164 for a number WhatsApp gives us (`56987654321`, `+56987654321`). WhatsApp has
    already checked the number exists, so when `phonenumbers`' metadata disagrees (a new
    range, Mexico's legacy `521...` wa_ids) the digits are kept as they came rather than
    dropping the customer's message."""
    digitos = re.sub(r"\D", "", numero)
    if not digitos:
        raise ValueError(f"número de WhatsApp vacío o inválido: {numero!r}")
    try:
        return telefono("+" + digitos)
    except ValueError:
        if _E164.fullmatch("+" + digitos):
            return "+" + digitos
        raise ValueError(f"número de WhatsApp inválido: {numero!r}") from None


def _instante(valor: Any, donde: str) -> datetime:
    try:
        return datetime.fromtimestamp(int(valor), tz=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        raise ValueError(f"{donde}: timestamp inválido {valor!r}") from None


def _dict(valor: Any) -> dict[str, Any]:
    return valor if isinstance(valor, dict) else {}


def _texto_opcional(valor: Any) -> str | None:
    return valor if isinstance(valor, str) and valor != "" else None


def _requerido(obj: dict[str, Any], campo: str, donde: str) -> str:
    valor = obj.get(campo)
    if not isinstance(valor, str) or not valor:
        raise ValueError(f"{donde}: falta '{campo}'")
    return valor


def interpretar(cuerpo: bytes) -> list[Evento]:
    """Every message and status in a webhook delivery, in the order Meta sent them.
    Raises ValueError when the body is not JSON or not a WhatsApp Business delivery.
    Changes other than `messages` (template status, account updates...) are skipped."""
    try:
        datos = msgspec.json.decode(cuerpo)
    except msgspec.DecodeError:
        raise ValueError("el cuerpo no es JSON válido") from None
    if not isinstance(datos, dict) or datos.get("object") != "whatsapp_business_account":
        raise ValueError("no es un webhook de WhatsApp (se esperaba object=whatsapp_business_account)")
    entradas = datos.get("entry")
    if not isinstance(entradas, list):
        raise ValueError("webhook de WhatsApp sin 'entry'")  # noqa: TRY004 (bad input, not a bug)

    eventos: list[Evento] = []
    for entrada in entradas:
        cambios = _dict(entrada).get("changes")
        if not isinstance(cambios, list):
            raise ValueError("entrada del webhook sin 'changes'")  # noqa: TRY004
        for cambio in cambios:
            cambio = _dict(cambio)
            if cambio.get("field", "messages") != "messages":
                continue
            eventos.extend(_interpretar_valor(_dict(cambio.get("value"))))
    return eventos


def _interpretar_valor(valor: dict[str, Any]) -> list[Evento]:
    destino = _requerido(_dict(valor.get("metadata")), "phone_number_id", "metadata")
    nombres: dict[str, str] = {}
    for contacto in valor.get("contacts") or ():
        contacto = _dict(contacto)
        nombre = _texto_opcional(_dict(contacto.get("profile")).get("name"))
        if isinstance(contacto.get("wa_id"), str) and nombre:
            nombres[contacto["wa_id"]] = nombre
    eventos: list[Evento] = [_mensaje(_dict(m), destino, nombres) for m in valor.get("messages") or ()]
    for s in valor.get("statuses") or ():
        estado = _estado(_dict(s), destino)
        if estado is not None:
            eventos.append(estado)
    return eventos


def _mensaje(m: dict[str, Any], destino: str, nombres: dict[str, str]) -> Mensaje:
    id_externo = _requerido(m, "id", "mensaje")
    origen = _requerido(m, "from", f"mensaje {id_externo}")
    base: dict[str, Any] = {
        "proveedor": "meta",
        "id_externo": id_externo,
        "destino": destino,
        "telefono": telefono_de_proveedor(origen),
        "recibido_en": _instante(m.get("timestamp"), f"mensaje {id_externo}"),
        "nombre_perfil": nombres.get(origen),
    }
    tipo = m.get("type")
    cuerpo = _dict(m.get(tipo)) if isinstance(tipo, str) else {}
    if tipo == "text":
        return Mensaje(**base, tipo="texto", texto=cuerpo.get("body"))
    if tipo == "interactive":
        clase = cuerpo.get("type")
        if clase in ("button_reply", "list_reply"):
            eleccion = _dict(cuerpo.get(clase))
            return Mensaje(
                **base,
                tipo="boton" if clase == "button_reply" else "lista",
                texto=_texto_opcional(eleccion.get("title")),
                seleccion_id=_texto_opcional(eleccion.get("id")),
            )
        return Mensaje(**base, tipo="otro")  # e.g. nfm_reply (WhatsApp Flows)
    if tipo == "button":  # quick-reply button of a template
        return Mensaje(
            **base,
            tipo="boton",
            texto=_texto_opcional(cuerpo.get("text")),
            seleccion_id=_texto_opcional(cuerpo.get("payload")),
        )
    if tipo == "location":
        try:
            ubicacion = Ubicacion(
                latitud=float(cuerpo["latitude"]),
                longitud=float(cuerpo["longitude"]),
                nombre=_texto_opcional(cuerpo.get("name")),
                direccion=_texto_opcional(cuerpo.get("address")),
            )
        except (KeyError, TypeError, ValueError):
            raise ValueError(f"mensaje {id_externo}: ubicación sin latitud/longitud") from None
        return Mensaje(**base, tipo="ubicacion", ubicacion=ubicacion)
    if tipo in _MEDIA:
        media = Media(
            referencia=_requerido(cuerpo, "id", f"mensaje {id_externo} ({tipo})"),
            mime=_texto_opcional(cuerpo.get("mime_type")),
            tipo=tipo,
            leyenda=_texto_opcional(cuerpo.get("caption")),
        )
        return Mensaje(**base, tipo="media", texto=media.leyenda, media=media)
    if tipo == "reaction":
        reaccion = Reaccion(
            emoji=cuerpo.get("emoji") or "",  # absent or empty: the reaction was removed
            mensaje_id=_requerido(cuerpo, "message_id", f"mensaje {id_externo} (reaction)"),
        )
        return Mensaje(**base, tipo="reaccion", reaccion=reaccion)
    return Mensaje(**base, tipo="otro")  # unsupported, contacts, order, system...


def _estado(s: dict[str, Any], destino: str) -> Estado | None:
    id_externo = _requerido(s, "id", "estado")
    estado = s.get("status")
    if estado not in _ESTADOS:
        return None  # e.g. "deleted", "played": nothing we track
    errores = s.get("errors")
    error = _dict(errores[0]) if isinstance(errores, list) and errores else {}
    codigo = error.get("code")
    detalle = _texto_opcional(_dict(error.get("error_data")).get("details"))
    titulo = _texto_opcional(error.get("title")) or _texto_opcional(error.get("message"))
    mensaje = titulo
    if detalle and detalle != titulo:
        mensaje = f"{titulo}: {detalle}" if titulo else detalle
    receptor = s.get("recipient_id")
    return Estado(
        proveedor="meta",
        id_externo=id_externo,
        destino=destino,
        estado=estado,
        ocurrido_en=_instante(s.get("timestamp"), f"estado {id_externo}"),
        telefono=telefono_de_proveedor(receptor) if isinstance(receptor, str) and receptor else None,
        error_codigo=str(codigo) if codigo is not None else None,
        error_mensaje=mensaje,
    )


# ---------------------------------------------------------------- sending


def _corto(texto: str, maximo: int) -> str:
    return texto if len(texto) <= maximo else texto[: maximo - 1] + "…"


def _fila(o: Opcion) -> dict[str, str]:
    fila = {"id": o.id, "title": _corto(o.titulo, MAX_TITULO_FILA)}
    if o.descripcion:
        fila["description"] = _corto(o.descripcion, MAX_DESCRIPCION_FILA)
    return fila


def cuerpo_envio(telefono: str, respuesta: Respuesta) -> dict[str, Any]:
    """The Graph API body for `respuesta`. Titles longer than Meta allows are shortened
    (Meta would reject the whole message); too many or no options raise EnvioError."""
    base: dict[str, Any] = {"messaging_product": "whatsapp", "to": telefono}
    if respuesta.tipo == "texto":
        return base | {"type": "text", "text": {"body": respuesta.texto}}
    if respuesta.tipo == "lista":
        _opciones_validas(respuesta, MAX_FILAS_LISTA)
        interactivo = {
            "type": "list",
            "body": {"text": respuesta.texto},
            "action": {
                "button": _corto(respuesta.boton_lista, MAX_BOTON_LISTA),
                "sections": [{"rows": [_fila(o) for o in respuesta.opciones]}],
            },
        }
        return base | {"type": "interactive", "interactive": interactivo}
    if respuesta.tipo == "botones":
        _opciones_validas(respuesta, MAX_BOTONES)
        botones = [
            {"type": "reply", "reply": {"id": o.id, "title": _corto(o.titulo, MAX_TITULO_BOTON)}}
            for o in respuesta.opciones
        ]
        interactivo = {"type": "button", "body": {"text": respuesta.texto}, "action": {"buttons": botones}}
        return base | {"type": "interactive", "interactive": interactivo}
    if respuesta.tipo == "plantilla":
        if not respuesta.plantilla:
            raise EnvioError("respuesta_invalida", "plantilla sin nombre", reintentable=False)
        plantilla: dict[str, Any] = {"name": respuesta.plantilla, "language": {"code": respuesta.idioma}}
        if respuesta.parametros:
            parametros = [{"type": "text", "text": p} for p in respuesta.parametros]
            plantilla["components"] = [{"type": "body", "parameters": parametros}]
        return base | {"type": "template", "template": plantilla}
    raise EnvioError("respuesta_invalida", f"tipo de respuesta desconocido: {respuesta.tipo}", False)


def _opciones_validas(respuesta: Respuesta, maximo: int) -> None:
    n = len(respuesta.opciones)
    if not 1 <= n <= maximo:
        raise EnvioError(
            "respuesta_invalida",
            f"{respuesta.tipo}: {n} opciones; WhatsApp acepta de 1 a {maximo}",
            reintentable=False,
        )


class EnviadorMeta:
    """Sends through the Graph API. Pass `client` to share a connection pool (it is then
    yours to close); otherwise one is created on first use and closed by `cerrar()`."""

    nombre = "meta"

    def __init__(
        self,
        access_token: str,
        base_url: str = "https://graph.facebook.com",
        version: str = "v21.0",
        client: httpx.AsyncClient | None = None,
        timeout: float = 15.0,
    ) -> None:
        self._token = access_token
        self._base = base_url.rstrip("/")
        self._version = version.strip("/")
        self._client = client
        self._propio = client is None
        self._timeout = timeout

    async def cerrar(self) -> None:
        if self._propio and self._client is not None:
            await self._client.aclose()
            self._client = None

    async def enviar(self, origen: str, telefono: str, respuesta: Respuesta) -> str:
        cuerpo = cuerpo_envio(telefono, respuesta)
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
        url = f"{self._base}/{self._version}/{origen}/messages"
        try:
            r = await self._client.post(
                url,
                json=cuerpo,
                headers={"Authorization": f"Bearer {self._token}"},
                timeout=self._timeout,
            )
        except httpx.TimeoutException as e:
            raise EnvioError("timeout", f"Meta no respondió a tiempo ({e.__class__.__name__})", True) from e
        except httpx.TransportError as e:
            raise EnvioError("conexion", f"no se pudo conectar con Meta: {e}", True) from e
        datos = _json_o_nada(r)
        if r.is_success:
            mensajes = datos.get("messages") if isinstance(datos, dict) else None
            if isinstance(mensajes, list) and mensajes and isinstance(mensajes[0], dict):
                id_mensaje = mensajes[0].get("id")
                if isinstance(id_mensaje, str) and id_mensaje:
                    return id_mensaje
            # Accepted but unreadable: retrying could send it twice.
            raise EnvioError("respuesta_invalida", f"Meta respondió {r.status_code} sin id de mensaje", False)
        raise _error_http(r.status_code, datos, r.text)


def _json_o_nada(r: httpx.Response) -> Any:
    try:
        return msgspec.json.decode(r.content)
    except msgspec.DecodeError:
        return None


def _error_http(status: int, datos: Any, texto: str) -> EnvioError:
    error = _dict(_dict(datos).get("error"))
    codigo = error.get("code")
    mensaje = _texto_opcional(error.get("message")) or texto[:300] or f"HTTP {status}"
    detalle = _texto_opcional(_dict(error.get("error_data")).get("details"))
    if detalle and detalle not in mensaje:
        mensaje = f"{mensaje}: {detalle}"
    reintentable = status == 429 or status >= 500 or codigo in _CODIGOS_REINTENTABLES
    return EnvioError(str(codigo) if codigo is not None else f"http_{status}", mensaje, reintentable)
