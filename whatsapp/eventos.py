"""One inbound event type for both providers (Meta Cloud API, Twilio).

A webhook delivery becomes a list of `Mensaje` (something a customer sent) and `Estado`
(what happened to something we sent). Parsing is pure: no database, no network.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

Proveedor = Literal["meta", "twilio"]
TipoMensaje = Literal["texto", "boton", "lista", "ubicacion", "media", "reaccion", "otro"]
EstadoEntrega = Literal["sent", "delivered", "read", "failed"]


class Ubicacion(msgspec.Struct, frozen=True):
    latitud: float
    longitud: float
    nombre: str | None = None
    direccion: str | None = None


class Media(msgspec.Struct, frozen=True):
    """The provider's reference to the file (Meta media id, Twilio media URL), never the bytes."""
    referencia: str
    mime: str | None = None
    tipo: str | None = None  # image, audio, video, document, sticker
    leyenda: str | None = None


class Reaccion(msgspec.Struct, frozen=True):
    emoji: str  # empty when the customer removed the reaction
    mensaje_id: str  # the provider id of the message reacted to


class Mensaje(msgspec.Struct, frozen=True):
    proveedor: Proveedor
    id_externo: str  # Meta wamid / Twilio MessageSid: the dedupe key
    destino: str  # our side: Meta phone_number_id, or our E.164 number on Twilio
    telefono: str  # the customer's number, E.164
    tipo: TipoMensaje
    recibido_en: datetime  # timezone-aware, UTC
    nombre_perfil: str | None = None
    texto: str | None = None  # text body; for buttons and lists, the title chosen
    seleccion_id: str | None = None  # id of the button or list row chosen
    ubicacion: Ubicacion | None = None
    media: Media | None = None
    reaccion: Reaccion | None = None


class Estado(msgspec.Struct, frozen=True):
    proveedor: Proveedor
    id_externo: str  # provider id of the message WE sent
    destino: str  # as in Mensaje
    estado: EstadoEntrega
    ocurrido_en: datetime
    telefono: str | None = None  # the recipient, E.164, when the provider says
    error_codigo: str | None = None
    error_mensaje: str | None = None


Evento = Mensaje | Estado
