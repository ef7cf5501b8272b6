"""The provider used when no WhatsApp credentials are set: it records each reply in
memory instead of sending it, and says so once, loudly, when it is created."""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime

import msgspec

from whatsapp.salida import Respuesta

log = logging.getLogger(__name__)


class Grabado(msgspec.Struct, frozen=True):
    id: str
    origen: str
    telefono: str
    respuesta: Respuesta
    grabado_en: datetime


class EnviadorGrabador:
    nombre = "grabador"

    def __init__(self) -> None:
        self.enviados: list[Grabado] = []
        log.warning(
            "WhatsApp: no provider credentials are set (Meta or Twilio); replies are recorded "
            "in memory, NOT sent to customers"
        )

    async def enviar(self, origen: str, telefono: str, respuesta: Respuesta) -> str:
        grabado = Grabado(
            id=f"grabado-{uuid.uuid4().hex}",
            origen=origen,
            telefono=telefono,
            respuesta=respuesta,
            grabado_en=datetime.now(UTC),
        )
        self.enviados.append(grabado)
        return grabado.id
