"""What happens to one inbound WhatsApp message, in one transaction bound to its brand.

1. A per-customer advisory lock (`bloqueo()`, taken by the caller with BEGIN): two
   messages of one customer never interleave (nor create the customer twice); different
   customers proceed in parallel.
2. The customer by phone (E.164), created with the WhatsApp profile name if new.
3. The interaction, deduplicated on the provider's message id (a unique constraint):
   a redelivery stops here and changes nothing.
4. By intent: an order (parsed against the brand's active catalog) created pending and
   summarized with a request to confirm; confirm / cancel; the menu; the status of the
   latest order; opt-out; anything else → an alert for a person and an acknowledgement
   (a different one outside the brand's opening hours).
Replies are queued in the outbox (api/services/salientes.py); the worker sends them.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from sqlalchemy import text

from whatsapp.eventos import Mensaje
from whatsapp.intencion import intencion
from whatsapp.pedido_texto import Catalogo, Producto
from whatsapp.salida import Opcion, Respuesta

from . import pedidos, salientes

_DIAS = ("lun", "mar", "mie", "jue", "vie", "sab", "dom")
ESTADOS_LEGIBLES = {"pendiente": "pendiente de confirmación", "confirmado": "confirmado",
                    "en_preparacion": "en preparación", "listo": "listo para retiro o despacho",
                    "entregado": "entregado", "cancelado": "cancelado"}
MENSAJES = {  # defaults; a brand overrides them in marcas.settings -> mensajes
    "acuse": "¡Gracias por escribirnos! Una persona de nuestro equipo te responderá pronto.",
    "fuera_de_horario": "¡Gracias por escribirnos! Estamos fuera de horario; te responderemos apenas "
                        "abramos.",
    "saludo": "¡Hola! Bienvenido a {marca}. Escribe tu pedido (por ejemplo: «2 cuartos de pollo y "
              "una bebida») o «menú» para ver la carta.",
    "baja": "Listo: no te enviaremos más mensajes promocionales. Seguirás recibiendo las respuestas "
            "sobre tus pedidos.",
}


@dataclass(frozen=True)
class Canal:
    marca_id: int
    canal_id: int
    marca_nombre: str
    zona_horaria: str
    settings: dict


@dataclass(frozen=True)
class Cliente:
    id: int
    telefono: str


class Catalogos:
    """Each brand's parser over its active catalog, rebuilt at most every `ttl` seconds."""

    def __init__(self, ttl: float = 30.0) -> None:
        self.ttl = ttl
        self._cache: dict[int, tuple[float, Catalogo, dict[int, Producto]]] = {}

    async def de(self, db, marca_id: int) -> tuple[Catalogo, dict[int, Producto]]:
        hit = self._cache.get(marca_id)
        if hit and hit[0] > time.monotonic():
            return hit[1], hit[2]
        rows = await db.execute(text(
            "SELECT id, nombre, alias, precio, categoria FROM crm.productos WHERE activo "
            "ORDER BY categoria, nombre, id"))
        productos = {r.id: Producto(r.id, r.nombre, tuple(r.alias), r.precio, r.categoria) for r in rows}
        catalogo = Catalogo(productos.values())
        self._cache[marca_id] = (time.monotonic() + self.ttl, catalogo, productos)
        return catalogo, productos


def bloqueo(canal: Canal, m: Mensaje) -> str:
    """The advisory lock `procesar` must run under: one per customer of a brand."""
    return f"whatsapp:{canal.marca_id}:{m.telefono}"


# The customer by phone (created with the profile name if new), the inbound interaction
# deduplicated on the provider's id, and any clarification pending in the conversation:
# one statement. Under the customer's lock, taken before this statement's snapshot, a
# customer created by an earlier message is visible to `existente`. Only a new customer
# reaches the INSERT: an insert that conflicts still costs its sequence value and the
# rebuilding of the table's CHECK constraints, for every message of every known customer.
# The conflict clause stays for a customer created meanwhile outside the lock (a grid).
_ENTRANTE = text("""
    WITH existente AS (SELECT id FROM crm.clientes WHERE telefono = :t),
    nuevo AS (
      INSERT INTO crm.clientes (nombre, telefono, canal_origen)
      SELECT :n, :t, 'whatsapp' WHERE NOT EXISTS (SELECT FROM existente)
      ON CONFLICT ON CONSTRAINT clientes_telefono_unico DO NOTHING RETURNING id),
    cliente AS (SELECT id FROM existente UNION ALL SELECT id FROM nuevo LIMIT 1),
    entrante AS (
      INSERT INTO crm.interacciones (cliente_id, canal, direccion, tipo, contenido, id_externo, created_at)
      SELECT id, 'whatsapp', 'entrante', 'mensaje', :contenido, :id, :en FROM cliente
      ON CONFLICT (marca_id, canal, id_externo) DO NOTHING RETURNING id)
    SELECT cliente.id AS cliente_id, (SELECT id FROM entrante) AS interaccion_id,
           (SELECT pendiente FROM crm.conversaciones v WHERE v.cliente_id = cliente.id) AS pendiente
      FROM cliente""")


async def procesar(db, canal: Canal, m: Mensaje, catalogos: Catalogos) -> str:
    """Handle one inbound message, in a transaction that holds `bloqueo(canal, m)`.
    Returns what happened (for logs and the webhook's answer): duplicado, pedido,
    aclaracion, confirmado, cancelado, menu, estado, baja, saludo, alerta, reaccion,
    desconocido."""
    nombre = (m.nombre_perfil or "").strip() or f"Cliente WhatsApp {m.telefono}"
    row = (await db.execute(_ENTRANTE, {"n": nombre[:200], "t": m.telefono, "contenido": _contenido(m),
                                        "id": m.id_externo, "en": m.recibido_en})).one()
    if row.interaccion_id is None:
        return "duplicado"
    flujo = _Conversacion(db, canal, Cliente(row.cliente_id, m.telefono), row.interaccion_id, catalogos,
                          row.pendiente)
    return await flujo.responder(m)


def _contenido(m: Mensaje) -> str:
    if m.texto:
        return m.texto
    if m.ubicacion:
        u = m.ubicacion
        return f"[ubicación] {u.nombre or ''} {u.direccion or ''} ({u.latitud}, {u.longitud})".strip()
    if m.media:
        return f"[{m.media.tipo or 'archivo'}] {m.media.leyenda or ''}".strip()
    if m.reaccion:
        return f"[reacción] {m.reaccion.emoji}"
    return f"[{m.tipo}]"


def abierto(settings: dict, zona_horaria: str, ahora: datetime) -> bool:
    """Within the brand's opening hours (settings.horario: {"lun": ["11:00", "23:00"], ...}).
    A brand with no hours set counts as always open; a day missing from them, closed."""
    horario = settings.get("horario")
    if not horario:
        return True
    local = ahora.astimezone(ZoneInfo(zona_horaria))
    tramo = horario.get(_DIAS[local.weekday()])
    if not tramo:
        return False
    desde, hasta = tramo
    hora = local.strftime("%H:%M")
    return desde <= hora < hasta if desde <= hasta else (hora >= desde or hora < hasta)


def _pesos(n: int) -> str:
    return "$" + f"{n:,}".replace(",", ".")


class _Conversacion:
    """The reply to one message. Writes whose result the flow does not read (the reply in
    the outbox, an alert, the opt-out, the clarification state) are deferred: they reach
    the database with the next statement or with COMMIT, in the same round trip."""

    def __init__(self, db, canal: Canal, cliente: Cliente, interaccion_id: int, catalogos: Catalogos,
                 pendiente: dict | None) -> None:
        self.db, self.canal, self.cliente = db, canal, cliente
        self.interaccion_id, self.catalogos = interaccion_id, catalogos
        self.pendiente = pendiente  # the clarification awaiting an answer, as read under the lock

    async def responder(self, m: Mensaje) -> str:
        if m.tipo == "reaccion":
            return "reaccion"
        if m.seleccion_id:
            return await self._seleccion(m.seleccion_id)
        if not m.texto or m.tipo in ("ubicacion", "media"):
            return await self._alerta(f"mensaje de tipo {m.tipo} sin respuesta automática")
        que = intencion(m.texto)
        if que == "confirmar":
            return await self._confirmar(None)
        if que == "cancelar":
            return await self._cancelar(None)
        if que == "menu":
            return await self._menu()
        if que == "estado":
            return await self._estado()
        if que == "baja":
            return await self._baja()
        if que == "saludo":
            await self._enviar(Respuesta("texto", self._mensaje("saludo")))
            return "saludo"
        return await self._pedido(m.texto)

    # ------------------------------------------------------------ replies
    def _mensaje(self, clave: str) -> str:
        propios = self.canal.settings.get("mensajes") or {}
        return (propios.get(clave) or MENSAJES[clave]).format(marca=self.canal.marca_nombre)

    async def _enviar(self, respuesta: Respuesta) -> None:
        # A reply to the message just recorded: the customer's 24-hour window is open.
        salientes.encolar_respuesta(self.db, cliente_id=self.cliente.id, canal_id=self.canal.canal_id,
                                    telefono=self.cliente.telefono, respuesta=respuesta,
                                    en_respuesta_a=self.interaccion_id)

    async def _alerta(self, motivo: str) -> str:
        self.db.diferir(text("INSERT INTO crm.alertas (cliente_id, interaccion_id, motivo) VALUES (:c, :i, :m)"),
                        {"c": self.cliente.id, "i": self.interaccion_id, "m": motivo})
        clave = "acuse" if abierto(self.canal.settings, self.canal.zona_horaria, datetime.now().astimezone()) \
            else "fuera_de_horario"
        await self._enviar(Respuesta("texto", self._mensaje(clave)))
        return "alerta"

    async def _menu(self, intro: str = "Esta es nuestra carta:") -> str:
        """Up to 10 products: an interactive list (a text list where the provider has none).
        More: the whole carta as text, in messages under WhatsApp's length limits."""
        _, productos = await self.catalogos.de(self.db, self.canal.marca_id)
        lista = list(productos.values())
        if not lista:
            await self._enviar(Respuesta("texto", "Por ahora no tenemos productos disponibles."))
            return "menu"
        ejemplo = f"Escribe tu pedido, por ejemplo «2 {lista[0].nombre.lower()}»."
        if len(lista) <= 10:
            opciones = tuple(Opcion(f"producto:{p.id}", p.nombre, _pesos(p.precio)) for p in lista)
            await self._enviar(Respuesta("lista", f"{intro}\n{ejemplo}", opciones, "Ver carta"))
            return "menu"
        paginas, actual = [], intro
        for p in lista:
            linea = f"\n• {p.nombre}: {_pesos(p.precio)}"
            if len(actual) + len(linea) > 1000:
                paginas.append(actual)
                actual = ""
            actual += linea
        paginas.append(f"{actual}\n\n{ejemplo}")
        for pagina in paginas:
            await self._enviar(Respuesta("texto", pagina.strip()))
        return "menu"

    async def _estado(self) -> str:
        row = (await self.db.execute(text(
            "SELECT id, estado, total FROM crm.pedidos WHERE cliente_id = :c ORDER BY created_at DESC, id DESC "
            "LIMIT 1"), {"c": self.cliente.id})).first()
        texto = (f"Tu pedido #{row.id} ({_pesos(row.total)}) está {ESTADOS_LEGIBLES[row.estado]}." if row
                 else "No encontramos pedidos tuyos. Escribe «menú» para ver la carta.")
        await self._enviar(Respuesta("texto", texto))
        return "estado"

    async def _baja(self) -> str:
        self.db.diferir(text("UPDATE crm.clientes SET opt_out_marketing = true WHERE id = :c"),
                        {"c": self.cliente.id})
        await self._enviar(Respuesta("texto", self._mensaje("baja")))
        return "baja"

    # ------------------------------------------------------------ orders
    async def _pendiente_whatsapp(self, pedido_id: int | None):
        """The order a confirm/cancel refers to: the given one if it is this customer's and
        still pending, else the customer's latest pending WhatsApp order."""
        sql = ("SELECT id, total FROM crm.pedidos WHERE cliente_id = :c AND estado = 'pendiente' "
               "AND canal = 'whatsapp'" + (" AND id = :p" if pedido_id else "") +
               " ORDER BY created_at DESC, id DESC LIMIT 1")
        return (await self.db.execute(text(sql), {"c": self.cliente.id, "p": pedido_id})).first()

    async def _confirmar(self, pedido_id: int | None) -> str:
        row = await self._pendiente_whatsapp(pedido_id)
        if row is None:
            await self._enviar(Respuesta("texto", "No tienes pedidos por confirmar. Escribe tu pedido o «menú»."))
            return "desconocido"
        await pedidos.change_status(self.db, row.id, "confirmado")
        await self._enviar(Respuesta("texto", f"¡Pedido #{row.id} confirmado! Total {_pesos(row.total)}. "
                                              "Te avisaremos cuando esté listo."))
        return "confirmado"

    async def _cancelar(self, pedido_id: int | None) -> str:
        had_pending = self._olvidar_aclaracion()
        row = await self._pendiente_whatsapp(pedido_id)
        if row is None:
            texto = "Listo, descartamos ese pedido." if had_pending else "No tienes pedidos por cancelar."
            await self._enviar(Respuesta("texto", texto))
            return "cancelado" if had_pending else "desconocido"
        await pedidos.change_status(self.db, row.id, "cancelado")
        await self._enviar(Respuesta("texto", f"Pedido #{row.id} cancelado. ¡Esperamos verte pronto!"))
        return "cancelado"

    async def _seleccion(self, seleccion: str) -> str:
        tipo, _, valor = seleccion.partition(":")
        if tipo in ("confirmar", "cancelar") and valor.isdigit():
            return await (self._confirmar if tipo == "confirmar" else self._cancelar)(int(valor))
        if tipo == "producto" and valor.isdigit():
            pendiente = self.pendiente
            if pendiente and pendiente["ambiguos"]:
                primero, *resto = pendiente["ambiguos"]
                lineas = [*pendiente["lineas"], [int(valor), primero["cantidad"]]]
                return await self._seguir(lineas, resto, pendiente.get("desconocidos", []))
            return await self._seguir([[int(valor), 1]], [], [])
        return await self._alerta(f"selección no reconocida: {seleccion}")

    async def _pedido(self, texto: str) -> str:
        catalogo, _ = await self.catalogos.de(self.db, self.canal.marca_id)
        r = catalogo.interpretar(texto)
        if not r.lineas and not r.ambiguos:
            if r.desconocidos:
                return await self._menu(f"No tenemos {', '.join(r.desconocidos)} en nuestra carta. "
                                        "Esto es lo que ofrecemos:")
            return await self._alerta("mensaje sin pedido reconocible")
        ambiguos = [{"fragmento": a.fragmento, "cantidad": a.cantidad, "candidatos": list(a.candidatos)}
                    for a in r.ambiguos]
        return await self._seguir([[ln.producto_id, ln.cantidad] for ln in r.lineas], ambiguos,
                                  list(r.desconocidos))

    async def _seguir(self, lineas: list, ambiguos: list, desconocidos: list) -> str:
        """Ask about the next ambiguous item, or create the order when none is left."""
        if ambiguos:
            self._guardar_aclaracion({"lineas": lineas, "ambiguos": ambiguos, "desconocidos": desconocidos})
            _, productos = await self.catalogos.de(self.db, self.canal.marca_id)
            a = ambiguos[0]
            opciones = tuple(Opcion(f"producto:{pid}", productos[pid].nombre, _pesos(productos[pid].precio))
                             for pid in a["candidatos"][:10] if pid in productos)
            await self._enviar(Respuesta("lista", f"¿Cuál «{a['fragmento']}» quieres?", opciones, "Elegir"))
            return "aclaracion"
        self._olvidar_aclaracion()
        juntas: dict[int, int] = {}
        for producto_id, cantidad in lineas:
            juntas[producto_id] = juntas.get(producto_id, 0) + cantidad
        row = await pedidos.insertar(self.db, self.cliente.id, "whatsapp", list(juntas.items()))
        detalle = "\n".join(f"• {i['cantidad']} x {i['producto']}: {_pesos(i['subtotal'])}" for i in row.items)
        aviso = f"\n(No tenemos: {', '.join(desconocidos)})" if desconocidos else ""
        texto = (f"Tu pedido #{row.id}:\n{detalle}\nTotal: {_pesos(row.total)}{aviso}\n\n"
                 "¿Lo confirmas? Responde «sí» para confirmar o «cancelar».")
        await self._enviar(Respuesta("botones", texto, (Opcion(f"confirmar:{row.id}", "Confirmar"),
                                                        Opcion(f"cancelar:{row.id}", "Cancelar"))))
        return "pedido"

    def _guardar_aclaracion(self, pendiente: dict) -> None:
        self.db.diferir(text(
            "INSERT INTO crm.conversaciones (cliente_id, pendiente) VALUES (:c, CAST(:p AS jsonb)) "
            "ON CONFLICT ON CONSTRAINT conversaciones_cliente_unico DO UPDATE SET pendiente = EXCLUDED.pendiente"),
            {"c": self.cliente.id, "p": json.dumps(pendiente)})
        self.pendiente = pendiente

    def _olvidar_aclaracion(self) -> bool:
        """Drop the pending clarification; whether there was one."""
        if self.pendiente is None:
            return False
        self.db.diferir(text("UPDATE crm.conversaciones SET pendiente = NULL WHERE cliente_id = :c"),
                        {"c": self.cliente.id})
        self.pendiente = None
        return True
