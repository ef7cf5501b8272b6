"""What a short WhatsApp message wants, before trying to read it as an order.

    intencion("Sí, dale 👍")           → "confirmar"
    intencion("no me manden más")     → "baja"
    intencion("si quiero 2 pollos")   → "otro"  (the caller then tries the order parser)

Pure code, on accent-stripped lowercase text (repeated letters collapsed: "siii" → "si").

Precedence, first match wins:
1. baja: opting out of messages is a legal duty; "sí, pero no me manden más" is still baja.
   Only unambiguous forms: "baja", "stop" or "desuscribir" as the whole message (politeness
   aside), "dar(me) de baja", "no (me) manden/envíen más" with nothing after it but "mensajes",
   "promociones", "publicidad"… ("no me manden más pollo frío" is not baja), "no más mensajes",
   "no quiero recibir más …", "sáquenme de la lista".
2. cancelar: "cancelar/cancela/cancelen/anula/anulen…", "ya no lo quiero", "no gracias", a bare
   "no". In Chile "cancelar" also means "to pay": "¿puedo cancelar con tarjeta?", "cancelo en
   efectivo" and "cancelo al repartidor" are not cancellations.
3. estado: "estado", "¿dónde está mi pedido?", "¿cuánto falta?", "¿cuánto se demora mi pedido?",
   "¿mi pedido?", "aún no llega", "¿ya viene?". A general "¿cuánto se demora el despacho?" (no
   "mi pedido") is a question, not a status request: otro.
4. menu: "menú", "carta", "catálogo", "precios", "¿qué tienen/venden/hay?"; but not with an
   order in it ("del menú quiero 2 pollos": an order verb and a quantity → otro).
5. confirmar: the message is only confirmation words ("sí", "confirmo", "dale", "ok", "ya",
   "listo", "de acuerdo", "perfecto", 👍 👌 ✅) plus politeness ("gracias", "porfa", "po") and
   "el/mi pedido". "sí quiero 2 pollos" and "ok pero sin ají" are otro.
6. saludo: only greeting words ("hola", "buenas", "buenas tardes", "hola qué tal").
7. otro: everything else.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Literal

Intencion = Literal["confirmar", "cancelar", "menu", "estado", "baja", "saludo", "otro"]

_EMOJI_SI = {"👍", "👌", "✅", "✔", "☑", "🆗", "🤝", "👏"}
_MODIFICADORES = re.compile("[\U0001f3fb-\U0001f3ff\ufe0f\u200d]")


def _normalizar(texto: str) -> str:
    s = unicodedata.normalize("NFKD", texto.lower())
    s = "".join(c for c in s if not unicodedata.combining(c))
    words = re.findall(r"[a-z0-9]+", s)
    return " ".join(re.sub(r"([a-z])\1{2,}", r"\1", w) for w in words)


# Politeness and particles that do not change what a short message means.
_CORTESIA = {"gracias", "muchas", "mil", "porfa", "porfis", "por", "favor", "porfavor", "xfa", "plis", "pls",
             "po", "pue", "pues", "entonces", "nomas", "altiro", "al", "tiro", "genial", "bacan", "bkn",
             "super", "gracia", "ah", "oh", "eh", "weno", "bueno", "buena", "oka", "then"}  # fmt: skip

# 1. baja
_BAJA_SOLA = {"baja", "stop", "unsubscribe", "desuscribir", "desuscribirme", "desuscribeme", "basta", "alto",
              "darme", "dar", "de", "me", "quiero", "la", "el", "por", "favor", "porfa"}  # fmt: skip
_BAJA_PALABRA = {"baja", "stop", "unsubscribe", "desuscribir", "desuscribirme", "desuscribeme"}
_BAJA_COSAS = r"(?:mensajes?|msjs?|promociones?|promos?|publicidad|ofertas?|whatsapps?|wsps?|nada|correos?|spam|info|informacion|notificaciones?|cosas)"
_BAJA_RE = re.compile(
    r"\bdar(?:me|nos)? de baja\b|\bdesuscrib|\bunsubscribe\b"
    r"|\bno (?:me |nos )?(?:manden|envien|escriban|mandes|envies|escribas|mande|envie|sigan mandando"
    r"|sigan enviando|manden nunca) mas(?: " + _BAJA_COSAS + r")?(?: (?:por favor|porfa|gracias))*$"
    r"|\bno (?:quiero |deseo |quisiera )?(?:recibir |que me (?:manden|envien|escriban) )(?:mas )?(?:sus )?"
    + _BAJA_COSAS
    + r"|\bno (?:quiero|deseo|quisiera) (?:mas )?"
    + _BAJA_COSAS
    + r"|\bno (?:quiero|deseo) recibir mas\b"
    r"|\bno mas " + _BAJA_COSAS + r"\b"
    r"|\b(?:sacar|saquen|sacame|saquenme|borrar|borren|borrenme|eliminar|eliminen|eliminenme)(?:me)?"
    r" de (?:la |su |sus |esta )?(?:lista|listas|base|difusion)\b"
)

# 2. cancelar
_CANCELAR_RE = re.compile(
    r"\b(?:cancel|anul)(?:ar|a|as|an|en|o|emos|amos)(?:lo|la|los|las|me|nos)?\b"
    r"|\bya no (?:lo |la |los |el pedido |mi pedido )?(?:quiero|queremos|necesito|necesitamos)\b"
    r"|\bno (?:lo |la )?(?:quiero|queremos) (?:el|mi|nuestro) pedido\b"
    r"|^no gracias\b|^mejor no\b|^no(?: po| nada)?(?: gracias)?$|^nop$|^nopo$"
)
# "cancelar" as paying: "cancelo con tarjeta", "¿puedo cancelar en efectivo?", "cancelo al repartidor"
_PAGAR_RE = re.compile(
    r"\b(?:cancel|pag)\w* (?:con|en|por|al|a la|via|mediante) ?(?:el |la )?(?:tarjeta|transferencia|efectivo|debito"
    r"|credito|cash|repartidor|delivery|chofer|motorista|webpay|mercado pago|mach|llegar|entrega)\b"
    r"|\b(?:como|donde|cuanto|cuando) (?:se |le |les )?(?:puedo |podemos |debo |tengo que )?cancel"
)

# 3. estado
_ESTADO_RE = re.compile(
    r"\bestado\b"
    r"|\b(?:donde|dnd|adonde|en que va|por donde) (?:esta|viene|va|anda|quedo) (?:mi|el|nuestro) pedido\b"
    r"|\b(?:que paso|q paso|que pasa|como va|como vamos) con (?:mi|el|nuestro) pedido\b"
    r"|\bcomo va (?:mi|el) pedido\b"
    r"|\bcuanto (?:falta|le falta|les falta|queda|le queda)\b"
    r"|\bcuanto (?:se demora|se demoran|demora|demoran|tarda|tardan|mas) (?:mi|el|nuestro) pedido\b"
    r"|\bcuanto (?:se demora|se demoran|demora|demoran|tarda|tardan) en llegar\b"
    r"|\b(?:mi|el|nuestro) pedido (?:ya )?(?:viene|llega|salio|va|esta listo|esta en camino|va en camino|no llega"
    r"|aun no llega|todavia no llega|no ha llegado)\b"
    r"|\b(?:aun|todavia|y) no (?:me )?(?:llega|ha llegado|han llegado|llegan)\b|\bno (?:me )?ha llegado\b"
    r"|\bya (?:viene|salio|va en camino|lo despacharon|esta en camino)\b|\b(?:viene|va) en camino\b"
    r"|^(?:y )?(?:mi|el) pedido$|^hola (?:y )?mi pedido$"
)

# 4. menu
_MENU_RE = re.compile(
    r"\b(?:menu|carta|catalogo|precios|lista de precios)\b"
    r"|\bque (?:tienen|venden|hay|ofrecen|tienes|vendes|me recomiendan)\b"
)
_PEDIDO_RE = re.compile(
    r"\b(?:quiero|queria|quisiera|pido|pedir|mandame|manda|mandan|dame|deme|traeme|necesito)\b.*"
    r"\b(?:[0-9]+|un|una|uno|dos|tres|cuatro|cinco|seis)\b"
)

# 5. confirmar
_SI = {"si", "sip", "sep", "sipo", "confirmo", "confirmado", "confirmada", "confirmar", "confirma", "confirmamos",
       "dale", "ok", "okay", "okey", "oki", "ya", "yap", "listo", "lista", "perfecto", "perfect", "vale", "claro",
       "obvio", "correcto", "exacto", "eso", "yes", "acuerdo", "va", "sale", "hagale", "hazlo", "mandalo",
       "envialo", "despachalo", "bien", "excelente"}  # fmt: skip
_SI_RELLENO = {"de", "esta", "todo", "el", "mi", "pedido", "es", "asi", "nomas", "nomah", "seria"}

# 6. saludo
_SALUDO = {"hola", "ola", "holi", "holis", "buenas", "buenos", "buen", "wena", "wenas", "hello", "hi", "hey",
           "alo", "saludos", "holaa"}  # fmt: skip
_SALUDO_RELLENO = {"dia", "dias", "tarde", "tardes", "noche", "noches", "que", "q", "tal", "como", "estan", "esta",
                   "estas", "todo", "bien", "a", "todos", "amigos", "chiquillos", "chicos", "equipo", "gollos"}  # fmt: skip


def intencion(texto: str) -> Intencion:
    """Classify a short message; see the module docstring for the precedence."""
    crudo = _MODIFICADORES.sub("", texto or "")
    t = _normalizar(crudo)
    palabras = t.split()

    if _BAJA_RE.search(t) or (
        palabras
        and all(w in _BAJA_SOLA or w in _CORTESIA for w in palabras)
        and any(w in _BAJA_PALABRA for w in palabras)
    ):
        return "baja"
    if _CANCELAR_RE.search(t) and not _PAGAR_RE.search(t):
        return "cancelar"
    if _ESTADO_RE.search(t):
        return "estado"
    if _MENU_RE.search(t) and not _PEDIDO_RE.search(t):
        return "menu"
    if palabras or any(c in _EMOJI_SI for c in crudo):
        solo_si = all(w in _SI or w in _SI_RELLENO or w in _CORTESIA for w in palabras)
        if solo_si and (any(w in _SI for w in palabras) or any(c in _EMOJI_SI for c in crudo)):
            return "confirmar"
    if (
        palabras
        and palabras[0] in _SALUDO
        and all(w in _SALUDO or w in _SALUDO_RELLENO or w in _CORTESIA for w in palabras)
    ):
        return "saludo"
    return "otro"
