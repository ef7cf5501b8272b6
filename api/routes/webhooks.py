"""WhatsApp webhooks: Meta Cloud API (`/api/webhooks/whatsapp`) and Twilio
(`/api/webhooks/twilio`).

No API key here: the provider's signature is the authentication (Meta: HMAC-SHA256 of
the raw body with the app secret; Twilio: RequestValidator over the URL and every field),
checked before anything is read or written; unsigned or forged → 401/403, nothing written.
The brand comes from the channel the message was sent to (crm.canal_de); an unknown
number is acknowledged and logged, not processed. Each status is handled in its own
transaction bound to that brand; each inbound message too, or, under load, in a batch of
other customers' messages that shares one (api/services/whatsapp_lotes.py), with the same
outcome. A redelivery is a no-op that still answers 200. If one fails, the answer is 500
so the provider retries the delivery: what was done already is deduplicated on the retry.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter

from litestar import MediaType, Request, Response, get, post
from sqlalchemy import text

from whatsapp import meta, twilio_canal
from whatsapp.eventos import Estado, Evento, Mensaje

from ..errors import problem_response
from ..services import salientes
from ..services.whatsapp_flujo import Canal

log = logging.getLogger("crm.whatsapp")

_CANAL = text("""
    SELECT c.marca_id, c.canal_id, m.nombre, m.zona_horaria, m.settings
      FROM crm.canal_de(:proveedor, :identificador) c JOIN crm.marcas m ON m.id = c.marca_id""")


class Canales:
    """Channel lookups by provider identifier, cached briefly (channels rarely change).
    An unknown number is not cached, so a channel works as soon as it is registered.
    Concurrent lookups of one number share one query: when the entry expires under load,
    one request reads it again and the others wait for that answer."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._cache: dict[tuple[str, str], tuple[float, Canal]] = {}
        self._leyendo: dict[tuple[str, str], asyncio.Future] = {}

    async def de(self, database, proveedor: str, identificador: str) -> Canal | None:
        clave = (proveedor, identificador)
        hit = self._cache.get(clave)
        if hit and hit[0] > time.monotonic():
            return hit[1]
        en_curso = self._leyendo.get(clave)
        if en_curso is not None and en_curso.get_loop() is asyncio.get_running_loop():
            return await asyncio.shield(en_curso)
        futuro = asyncio.get_running_loop().create_future()
        self._leyendo[clave] = futuro
        try:
            canal = await self._leer(database, proveedor, identificador)
        except Exception as e:
            futuro.set_exception(e)
            futuro.exception()  # retrieved: no "never retrieved" warning when nobody else waited
            raise
        except BaseException:  # cancelled: so are those waiting for this reading
            futuro.cancel()
            raise
        finally:
            del self._leyendo[clave]
        futuro.set_result(canal)
        if canal is not None:
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[clave] = (time.monotonic() + self.ttl, canal)
        return canal

    @staticmethod
    async def _leer(database, proveedor: str, identificador: str) -> Canal | None:
        async with database.connection() as conn:
            row = (await conn.execute(_CANAL, {"proveedor": proveedor, "identificador": identificador})).first()
        return Canal(row.marca_id, row.canal_id, row.nombre, row.zona_horaria, row.settings) if row else None


async def procesar_eventos(request: Request, proveedor: str, eventos: list[Evento]) -> Counter:
    state = request.app.state
    database = state.tenancy.database
    resultado: Counter = Counter()
    for evento in eventos:
        canal = await state.canales.de(database, proveedor, evento.destino)
        if canal is None:
            log.warning("%s: número %s sin canal registrado; evento %s ignorado",
                        proveedor, evento.destino, evento.id_externo)
            resultado["ignorados"] += 1
            continue
        if isinstance(evento, Mensaje):
            resultado[await state.lotes.procesar(canal, proveedor, evento)] += 1
        elif isinstance(evento, Estado):
            async with database.transaction(canal.marca_id, f"whatsapp:{proveedor}") as db:
                resultado["estados"] += 1 if await salientes.aplicar_estado(db, evento) else 0
    return resultado


@get("/api/webhooks/whatsapp", media_type=MediaType.TEXT, summary="Meta: verificación del webhook",
     tags=["webhooks"])
async def meta_verificacion(request: Request) -> Response:
    challenge = meta.verificar_suscripcion(request.query_params, request.app.state.settings.whatsapp_verify_token)
    if challenge is None:
        return Response("verificación rechazada", status_code=403, media_type=MediaType.TEXT)
    return Response(challenge, media_type=MediaType.TEXT)


@post("/api/webhooks/whatsapp", summary="Meta: mensajes y estados de entrega", tags=["webhooks"])
async def meta_webhook(request: Request) -> Response:
    cuerpo = await request.body()
    secreto = request.app.state.settings.whatsapp_app_secret
    if not meta.verificar_firma(secreto, cuerpo, request.headers.get("x-hub-signature-256")):
        log.warning("meta: firma ausente o inválida desde %s", request.client.host if request.client else "?")
        return problem_response(401, "Firma X-Hub-Signature-256 ausente o inválida", instance=request.url.path)
    try:
        eventos = meta.interpretar(cuerpo)
    except ValueError as e:
        return problem_response(400, f"Entrega de webhook inválida: {e}", instance=request.url.path)
    return Response(dict(await procesar_eventos(request, "meta", eventos)), status_code=200)


def _url_publica(request: Request) -> str:
    """The URL Twilio signed: the configured public base (behind a proxy) or the request's."""
    base = request.app.state.settings.public_base_url
    if not base:
        return str(request.url)
    query = request.url.query
    return f"{base}{request.url.path}" + (f"?{query}" if query else "")


@post("/api/webhooks/twilio", summary="Twilio: mensajes y estados de entrega", tags=["webhooks"])
async def twilio_webhook(request: Request) -> Response:
    formulario = await request.form()
    params = {k: v for k, v in formulario.items() if isinstance(v, str)}
    token = request.app.state.settings.twilio_auth_token
    if not twilio_canal.verificar_firma(token, _url_publica(request), params,
                                        request.headers.get("x-twilio-signature")):
        log.warning("twilio: firma ausente o inválida desde %s", request.client.host if request.client else "?")
        return problem_response(403, "Firma X-Twilio-Signature ausente o inválida", instance=request.url.path)
    try:
        eventos = twilio_canal.interpretar(params)
    except ValueError as e:
        return problem_response(400, f"Solicitud de Twilio inválida: {e}", instance=request.url.path)
    await procesar_eventos(request, "twilio", eventos)
    # Replies go through the outbox, never in the webhook's answer: an empty TwiML response.
    return Response('<?xml version="1.0" encoding="UTF-8"?><Response></Response>', status_code=200,
                    media_type="application/xml")


ROUTES = [meta_verificacion, meta_webhook, twilio_webhook]
