"""The outbox of WhatsApp replies: queue one (`encolar`), record what the provider says
happened to it (`aplicar_estado`), and send what is due (`despachar`, run by `crm worker`).

- The 24-hour rule (WhatsApp's customer service window): a free-form reply (texto, lista,
  botones) goes out only while the customer's last inbound WhatsApp message is less than
  24 hours old; outside it, only an approved template (`crm.plantillas`). Anything else is
  recorded as `fallido` at once, with the reason, and never sent.
- Claiming: each batch takes due rows with a session advisory lock per row
  (`pg_try_advisory_lock`, skipping the rows another worker holds), on a connection it
  keeps until the batch is recorded, then reads them again: a row another worker sent
  and released meanwhile is no longer queued. Two workers never send the same row, no
  transaction stays open while a provider answers, and claiming writes nothing (a lease
  column cost every message one more row version and one more audit row). A worker that
  dies takes its connection and its locks with it: its unsent rows are due at once.
  Each result is written as soon as the provider answers (a delivery status may arrive
  seconds later and must find the provider's id); sends that finish together are
  written together (`_Registro`).
- Order per customer: a row is due only when no earlier row to the same customer is still
  queued, so a reply never overtakes the one before it (a retry holds the ones after it).
- Retries: a retryable failure (timeout, 429, 5xx...) waits min(2**intentos, 3600) s and
  is tried again, up to `MAX_INTENTOS`; a refusal is `fallido` at once with its error.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass
from typing import Any

import msgspec
from sqlalchemy import text

from whatsapp.eventos import Estado
from whatsapp.grabador import EnviadorGrabador
from whatsapp.meta import EnviadorMeta
from whatsapp.salida import Enviador, EnvioError, Respuesta
from whatsapp.twilio_canal import EnviadorTwilio

from ..config import Settings
from ..db import Conn, Database

log = logging.getLogger("crm.salientes")

MAX_INTENTOS = 8
MAX_ESPERA = 3600  # seconds: the longest backoff between two attempts
CLASE_BLOQUEO = 7_201  # the outbox's advisory locks: (CLASE_BLOQUEO, row id mod 2**31)
LIMITE = 200  # rows claimed per brand and turn
CONCURRENCIA = 32  # sends in flight at once (always to different customers)
ACTOR = "worker:salientes"
LIBRES = ("texto", "lista", "botones")  # free-form: only inside the 24-hour window
FUERA_DE_VENTANA = "fuera de la ventana de 24 horas: solo plantillas aprobadas"
_MAX_CONTENIDO = 10_000  # crm.interacciones.contenido

_ESTADOS = {"sent": "enviado", "delivered": "entregado", "read": "leido", "failed": "fallido"}
_json = msgspec.json.Encoder()
_respuesta = msgspec.json.Decoder(Respuesta)


# ---------------------------------------------------------------- queueing

_VENTANA = text("""
    SELECT coalesce((SELECT max(created_at) > now() - interval '24 hours' FROM crm.interacciones
                      WHERE cliente_id = :cliente AND canal = 'whatsapp' AND direccion = 'entrante'),
                    false) AS abierta,
           EXISTS (SELECT 1 FROM crm.plantillas WHERE nombre = :plantilla AND aprobada) AS aprobada""")

# The outbox row and, when it will be sent, the outgoing interaction: one statement.
_ENCOLAR = text("""
    WITH saliente AS (
      INSERT INTO crm.salientes (cliente_id, canal_id, telefono, respuesta, estado, error, en_respuesta_a)
      VALUES (:cliente, :canal, :telefono, CAST(:respuesta AS jsonb), :estado, :error, :en_respuesta_a)
      RETURNING id),
    interaccion AS (
      INSERT INTO crm.interacciones (cliente_id, canal, direccion, tipo, contenido)
      SELECT :cliente, 'whatsapp', 'saliente', 'mensaje', :contenido WHERE :estado = 'en_cola')
    SELECT id FROM saliente""")


def _fila(cliente_id: int, canal_id: int, telefono: str, respuesta: Respuesta, en_respuesta_a: int | None,
          error: str | None) -> dict[str, Any]:
    return {"cliente": cliente_id, "canal": canal_id, "telefono": telefono,
            "respuesta": _json.encode(respuesta).decode(), "estado": "fallido" if error else "en_cola",
            "error": error, "en_respuesta_a": en_respuesta_a, "contenido": respuesta.texto[:_MAX_CONTENIDO]}


def motivo_rechazo(respuesta: Respuesta, ventana_abierta: bool, plantilla_aprobada: bool) -> str | None:
    """Why `respuesta` may not be sent now (None: it may). Pure: the 24-hour rule."""
    if ventana_abierta:
        return None
    if respuesta.tipo == "plantilla":
        if plantilla_aprobada:
            return None
        return f"{FUERA_DE_VENTANA} (la plantilla «{respuesta.plantilla or ''}» no existe o no está aprobada)"
    return f"{FUERA_DE_VENTANA} (el cliente no ha escrito en las últimas 24 horas)"


async def encolar(
    db: Conn,
    *,
    cliente_id: int,
    canal_id: int,
    telefono: str,
    respuesta: Respuesta,
    en_respuesta_a: int | None = None,
    ventana_abierta: bool | None = None,
) -> int:
    """Queue `respuesta` for the customer in the transaction's brand; returns the outbox id.

    Also records the outgoing message in `crm.interacciones`. A reply the 24-hour rule
    forbids is recorded as `fallido` with the reason and no interaction (it never reaches
    the customer); the worker never picks it up. `ventana_abierta=True`: the caller knows the
    customer wrote just now (a reply in the webhook), so the window query is skipped."""
    if ventana_abierta:  # the caller answers a message the customer just sent
        error = None
    else:
        ventana = (
            await db.execute(_VENTANA, {"cliente": cliente_id, "plantilla": respuesta.plantilla or ""})
        ).one()
        error = motivo_rechazo(respuesta, ventana.abierta, ventana.aprobada)
    fila = _fila(cliente_id, canal_id, telefono, respuesta, en_respuesta_a, error)
    saliente_id = (await db.execute(_ENCOLAR, fila)).scalar_one()
    if error:
        log.warning("saliente %s al cliente %s no se enviará: %s", saliente_id, cliente_id, error)
    return saliente_id


def encolar_respuesta(db: Conn, *, cliente_id: int, canal_id: int, telefono: str, respuesta: Respuesta,
                      en_respuesta_a: int) -> None:
    """Queue the reply to the inbound message `en_respuesta_a`, recorded in this same
    transaction: the customer's window is open. The write is deferred (`Conn.diferir`):
    it reaches the database with the transaction's next statement or its COMMIT."""
    db.diferir(_ENCOLAR, _fila(cliente_id, canal_id, telefono, respuesta, en_respuesta_a, None))


# ---------------------------------------------------------------- delivery statuses

_ESTADO = text("""
    UPDATE crm.salientes SET estado = :estado,
           error = CASE WHEN :estado = 'fallido' THEN :error ELSE error END
     WHERE id_externo = :id_externo
       AND crm.rango_estado_saliente(estado) < crm.rango_estado_saliente(:estado)""")


def _error_de(estado: Estado) -> str:
    if estado.error_codigo and estado.error_mensaje:
        return f"{estado.error_codigo}: {estado.error_mensaje}"
    return estado.error_codigo or estado.error_mensaje or "el proveedor informó la falla sin detalle"


async def aplicar_estado(db: Conn, estado: Estado) -> int:
    """Record a provider's delivery status of a message we sent (found by the provider's
    message id within the transaction's brand). Returns the rows whose status moved: 0 for
    an unknown id or a status older than the one recorded (read, then a late delivered).
    `fallido` is final and keeps its error (the table's trigger guards this too)."""
    params = {
        "estado": _ESTADOS[estado.estado],
        "error": _error_de(estado) if estado.estado == "failed" else None,
        "id_externo": estado.id_externo,
    }
    return (await db.execute(_ESTADO, params)).rowcount


# ---------------------------------------------------------------- sending

_MARCAS = text("SELECT id FROM crm.marcas ORDER BY id")

# Claim: due rows of the brand, oldest first, at most one per customer (the oldest queued:
# a reply never overtakes an earlier one still waiting, being sent or retried), each
# locked for this worker's session unless another worker holds it. Both lookups are
# partial indexes over the queue alone (salientes_por_enviar, salientes_cola_cliente), so
# a claim costs the same with ten rows sent or ten million. The queue is a few rows in a
# table of millions and its size swings by the second, so this statement is planned
# afresh each time with the brand named (`planificar_cada_vez`). Whatever order the plan
# evaluates the conditions in, a row locked but not returned (not its customer's first,
# or past the LIMIT) is only kept from other workers until this batch ends.
_TOMAR = text("""
    SELECT s.id FROM crm.salientes s
     WHERE s.marca_id = :marca AND s.estado = 'en_cola' AND s.proximo_intento <= now()
       AND s.id = (SELECT min(p.id) FROM crm.salientes p
                    WHERE p.marca_id = s.marca_id AND p.cliente_id = s.cliente_id AND p.estado = 'en_cola')
       AND pg_try_advisory_lock(:clase, CAST(s.id % 2147483648 AS int))
     ORDER BY s.proximo_intento, s.id
     LIMIT :limite""")

# The rows taken, read again under their locks (a later snapshot): one another worker
# sent, or put off for a retry, between the claim's snapshot and its lock is dropped.
_TOMADAS = text("""
    SELECT s.id, s.cliente_id, s.telefono, s.respuesta::text AS respuesta, s.intentos,
           c.proveedor, c.identificador
      FROM crm.salientes s JOIN crm.canales c ON c.marca_id = s.marca_id AND c.id = s.canal_id
     WHERE s.marca_id = :marca AND s.id = ANY(CAST(:ids AS bigint[])) AND s.estado = 'en_cola'
       AND s.proximo_intento <= now()
     ORDER BY s.proximo_intento, s.id""")

_ENVIADOS = text("""
    UPDATE crm.salientes s SET estado = 'enviado', id_externo = x.id_externo, proveedor = x.proveedor,
           enviado_en = now(), intentos = s.intentos + 1, error = NULL
      FROM unnest(CAST(:ids AS bigint[]), CAST(:externos AS text[]), CAST(:proveedores AS text[]))
           AS x(id, id_externo, proveedor)
     WHERE s.id = x.id""")

_REINTENTO = text("""
    UPDATE crm.salientes SET intentos = :intentos, proveedor = :proveedor, error = :error,
           proximo_intento = now() + make_interval(secs => :espera)
     WHERE id = :id AND estado = 'en_cola'""")

_FALLIDO = text("""
    UPDATE crm.salientes SET estado = 'fallido', intentos = :intentos, proveedor = :proveedor, error = :error
     WHERE id = :id""")


@dataclass
class Lote:
    """What one `despachar` call did."""

    enviados: int = 0
    reintentos: int = 0
    fallidos: int = 0
    lleno: bool = False  # some brand had a whole batch due: more may be waiting

    @property
    def intentados(self) -> int:
        return self.enviados + self.reintentos + self.fallidos

    def __str__(self) -> str:
        return f"{self.enviados} enviados, {self.reintentos} para reintentar, {self.fallidos} fallidos"


def espera(intentos: int) -> int:
    """Seconds before the next attempt after `intentos` failed ones (exponential backoff)."""
    return min(2**intentos, MAX_ESPERA)


def enviadores(s: Settings) -> dict[str, Enviador]:
    """The sender of each provider: the real one when its credentials are set, otherwise
    the recorder (replies are marked sent but never leave this machine), said in the log."""
    resultado: dict[str, Enviador] = {}
    sin_credenciales = []
    if s.whatsapp_access_token:
        resultado["meta"] = EnviadorMeta(s.whatsapp_access_token, base_url=s.whatsapp_graph_url)
    else:
        sin_credenciales.append("meta")
    if s.twilio_account_sid and s.twilio_auth_token:
        resultado["twilio"] = EnviadorTwilio(
            s.twilio_account_sid, s.twilio_auth_token, base_url=s.twilio_api_url
        )
    else:
        sin_credenciales.append("twilio")
    if sin_credenciales:
        grabador = grabador_acotado()
        for proveedor in sin_credenciales:
            resultado[proveedor] = grabador
        log.warning(
            "WhatsApp: sin credenciales de %s (%s): sus respuestas se GRABAN y se marcan enviadas, "
            "NO llegan a los clientes",
            " ni de ".join(sin_credenciales),
            ", ".join(
                {"meta": "WHATSAPP_ACCESS_TOKEN", "twilio": "TWILIO_ACCOUNT_SID y TWILIO_AUTH_TOKEN"}[p]
                for p in sin_credenciales
            ),
        )
    for proveedor in ("meta", "twilio"):
        if proveedor not in sin_credenciales:
            log.info("WhatsApp: %s envía de verdad", proveedor)
    return resultado


def grabador_acotado(maximo: int = 1000) -> EnviadorGrabador:
    """A recorder that keeps only its last `maximo` messages (a worker runs for months)."""
    grabador = EnviadorGrabador()
    grabador.enviados = deque(maxlen=maximo)  # type: ignore[assignment]
    return grabador


async def cerrar(envs: dict[str, Enviador]) -> None:
    """Close the senders' connection pools (the Meta sender's httpx client)."""
    for enviador in {id(e): e for e in envs.values()}.values():
        cerrar_uno = getattr(enviador, "cerrar", None)
        if cerrar_uno is not None:
            await cerrar_uno()


async def despachar(database: Database, enviadores: dict[str, Enviador], limite: int = LIMITE) -> int:
    """Send what is due in every brand (at most `limite` per brand); returns how many
    messages were attempted (sent, to retry or failed)."""
    return (await despachar_lote(database, enviadores, limite)).intentados


async def despachar_lote(database: Database, enviadores: dict[str, Enviador], limite: int = LIMITE) -> Lote:
    async with database.connection() as conn:
        marcas = [r.id for r in await conn.execute(_MARCAS)]
    lote = Lote()
    for marca_id in marcas:
        await _despachar_marca(database, marca_id, enviadores, limite, lote)
    return lote


class _Registro:
    """Records sent rows (the provider's id) as soon as they are sent, in batches: what
    finished while one batch was being written goes in the next, so at 500 sends/s the
    worker commits a handful of transactions a second, not 500, and with one send in
    flight each row is still written the moment its provider answers."""

    def __init__(self, database: Database, marca_id: int) -> None:
        self.database, self.marca_id = database, marca_id
        self.pendientes: list[tuple[int, str, str]] = []
        self.hay = asyncio.Event()
        self.cerrado = False

    def agregar(self, saliente_id: int, id_externo: str, proveedor: str) -> None:
        self.pendientes.append((saliente_id, id_externo, proveedor))
        self.hay.set()

    def cerrar(self) -> None:
        self.cerrado = True
        self.hay.set()

    async def correr(self) -> None:
        while True:
            await self.hay.wait()
            self.hay.clear()
            lote, self.pendientes = self.pendientes, []
            if lote:
                ids, externos, proveedores = (list(c) for c in zip(*lote, strict=True))
                async with self.database.transaction(self.marca_id, ACTOR) as db:
                    await db.execute(_ENVIADOS, {"ids": ids, "externos": externos, "proveedores": proveedores})
            if self.cerrado and not self.pendientes:
                return


async def _despachar_marca(
    database: Database, marca_id: int, enviadores: dict[str, Enviador], limite: int, lote: Lote
) -> None:
    async with database.sesion() as sesion:  # holds the rows' locks until all is recorded
        async with database.transaction(marca_id, ACTOR, en=sesion) as db:
            tomadas = [r.id for r in await db.execute(
                _TOMAR, {"marca": marca_id, "limite": limite, "clase": CLASE_BLOQUEO}, planificar_cada_vez=True)]
            filas = (await db.execute(_TOMADAS, {"marca": marca_id, "ids": tomadas})).all() if tomadas else []
        if not filas:
            return
        lote.lleno = lote.lleno or len(tomadas) >= limite

        turnos = asyncio.Semaphore(CONCURRENCIA)
        registro = _Registro(database, marca_id)
        registrando = asyncio.create_task(registro.correr())

        async def uno(fila: Any) -> None:
            async with turnos:
                await _enviar_y_registrar(database, marca_id, fila, enviadores, lote, registro)

        try:
            resultados = await asyncio.gather(*(uno(f) for f in filas), return_exceptions=True)
        finally:
            registro.cerrar()
            await registrando  # a failure to record (the database went away) surfaces here
    for r in resultados:  # e.g. the database went away while recording a result
        if isinstance(r, BaseException):
            raise r


def _enviador(enviadores: dict[str, Enviador], proveedor: str) -> Enviador:
    enviador = enviadores.get(proveedor)
    if enviador is None:  # a provider the caller gave no sender for: record, never send
        enviador = enviadores[proveedor] = grabador_acotado()
        log.warning("WhatsApp: sin enviador para %s: sus respuestas se graban, NO se envían", proveedor)
    return enviador


async def _enviar_y_registrar(
    database: Database, marca_id: int, fila: Any, enviadores: dict[str, Enviador], lote: Lote,
    registro: _Registro,
) -> None:
    enviador = _enviador(enviadores, fila.proveedor)
    intentos = fila.intentos + 1
    try:
        respuesta = _respuesta.decode(fila.respuesta)
        id_externo = await enviador.enviar(fila.identificador, fila.telefono, respuesta)
    except msgspec.ValidationError as e:
        error, reintentable = f"respuesta_invalida: {e}", False
    except EnvioError as e:
        error, reintentable = str(e), e.reintentable
    except Exception as e:  # a bug or an unexpected library error: retried, then failed
        log.exception("saliente %s (marca %s): error inesperado al enviar", fila.id, marca_id)
        error, reintentable = f"interno: {e.__class__.__name__}: {e}", True
    else:
        registro.agregar(fila.id, id_externo, enviador.nombre)
        lote.enviados += 1
        return
    params = {"id": fila.id, "intentos": intentos, "proveedor": enviador.nombre, "error": error}
    async with database.transaction(marca_id, ACTOR) as db:
        if reintentable and intentos < MAX_INTENTOS:
            await db.execute(_REINTENTO, params | {"espera": espera(intentos)})
            lote.reintentos += 1
            log.info(
                "saliente %s (marca %s): intento %s falló (%s); se reintenta en %s s",
                fila.id,
                marca_id,
                intentos,
                error,
                espera(intentos),
            )
            return
        if reintentable:
            params["error"] = f"{error} (tras {intentos} intentos)"
        await db.execute(_FALLIDO, params)
    lote.fallidos += 1
    log.warning("saliente %s (marca %s): fallido: %s", fila.id, marca_id, params["error"])
