"""What we send: one reply type for every provider, and the contract a provider meets.

Providers: `meta.EnviadorMeta` (Graph API over httpx), `twilio_canal.EnviadorTwilio`
(the twilio SDK), and `grabador.EnviadorGrabador`, used when no credentials are set: it
records instead of sending and says so."""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec


class Opcion(msgspec.Struct, frozen=True):
    id: str  # comes back as Mensaje.seleccion_id when chosen
    titulo: str  # Meta: at most 24 characters for list rows, 20 for buttons
    descripcion: str | None = None


class Respuesta(msgspec.Struct, frozen=True):
    """A reply. `texto` is always set: it is the whole message for `texto`, the body of
    an interactive message, and the fallback where a provider has no interactive kind
    (Twilio's WhatsApp sandbox: options are then listed as numbered text)."""
    tipo: Literal["texto", "lista", "botones", "plantilla"]
    texto: str
    opciones: tuple[Opcion, ...] = ()  # lista: up to 10 rows; botones: up to 3
    boton_lista: str = "Ver opciones"  # label of the button that opens a list
    plantilla: str | None = None  # approved template name (outside the 24-hour window)
    idioma: str = "es"
    parametros: tuple[str, ...] = ()  # template body parameters, in order


class EnvioError(Exception):
    """A send that failed. `reintentable`: a timeout, 429 or 5xx (try again later);
    otherwise the provider refused the message (bad number, template not approved...)."""

    def __init__(self, codigo: str, mensaje: str, reintentable: bool) -> None:
        super().__init__(f"{codigo}: {mensaje}")
        self.codigo, self.mensaje, self.reintentable = codigo, mensaje, reintentable


class Enviador(Protocol):
    nombre: str  # meta | twilio | grabador

    async def enviar(self, origen: str, telefono: str, respuesta: Respuesta) -> str:
        """Send `respuesta` to `telefono` (E.164) from `origen` (Meta phone_number_id or
        our Twilio number). Returns the provider's message id; raises EnvioError."""
        ...
