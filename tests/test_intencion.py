"""Intent of a short WhatsApp message (whatsapp/intencion.py). Pure tests: no database."""

from __future__ import annotations

import pytest

from whatsapp.intencion import intencion


def _casos(intent: str, textos: list[str]) -> list[tuple[str, str]]:
    return [(t, intent) for t in textos]


@pytest.mark.parametrize(
    "texto, esperado",
    _casos(
        "confirmar",
        [
            "sí",
            "Si",
            "SIII",
            "si!",
            "Sí, confirmo",
            "confirmo",
            "Confirmado",
            "dale",
            "Dale po",
            "ok",
            "OK gracias",
            "okey",
            "ya",
            "ya po",
            "listo",
            "Listo, gracias!",
            "de acuerdo",
            "perfecto",
            "👍",
            "👍🏻",
            "👌",
            "✅",
            "si 👍",
            "sí por favor",
            "si, confirmo el pedido",
            "dale, mándalo nomás",
        ],
    )
    + _casos(
        "cancelar",
        [
            "cancelar",
            "cancela porfa",
            "Cancelen",
            "anula el pedido",
            "Anulen mi pedido por favor",
            "no gracias",
            "No, gracias!",
            "no",
            "Mejor cancélalo, gracias",
            "Ya no lo necesito, cancela porfa",
            "Disculpa, ¿puedo cancelar el pedido? Me surgió algo",
            "Perdón, me equivoqué de pedido, lo anulan?",
            "ya no lo quiero",
        ],
    )
    + _casos(
        "menu",
        [
            "menú",
            "Menu?",
            "la carta por favor",
            "me mandan la carta?",
            "qué tienen?",
            "que venden",
            "hola, qué tienen hoy?",
            "quiero ver el menú",
            "tienen catálogo?",
        ],
    )
    + _casos(
        "estado",
        [
            "estado",
            "estado de mi pedido",
            "mi pedido?",
            "Hola, mi pedido?",
            "dónde está mi pedido",
            "donde viene mi pedido??",
            "cuánto falta?",
            "cuanto le falta",
            "cuánto se demora mi pedido",
            "aún no llega mi pedido",
            "todavía no me llega",
            "ya viene?",
            "¿qué pasó con mi pedido?",
        ],
    )
    + _casos(
        "baja",
        [
            "BAJA",
            "baja",
            "Baja por favor",
            "stop",
            "STOP",
            "no más mensajes",
            "no me manden más",
            "No me manden más promociones",
            "No quiero recibir más promociones",
            "Por favor no me manden más publicidad",
            "desuscribir",
            "quiero darme de baja",
            "Prefiero no recibir mensajes de ofertas, gracias",
            "sáquenme de la lista",
            "si, pero no me manden más mensajes",
        ],
    )
    + _casos(
        "saludo",
        [
            "hola",
            "Hola!",
            "holaaa",
            "buenas",
            "Buenas tardes",
            "buenos días",
            "buenas noches 🙂",
            "hola que tal",
            "Hola, buenas tardes",
            "wena",
        ],
    )
    + _casos(
        "otro",
        [
            "",
            "   ",
            "🍗",
            "5",
            "Gracias!! estaba muy rico",
            "2 pollos y una coca",
            "hola quiero un pollo entero",
        ],
    ),
)
def test_intenciones(texto, esperado):
    assert intencion(texto) == esperado


@pytest.mark.parametrize(
    "texto, esperado",
    [
        # "yes" inside an order is an order: the caller tries the order parser
        ("si quiero 2 pollos", "otro"),
        ("sí, y agrégale una coca", "otro"),
        ("ok pero sin ají", "otro"),
        ("ya, y cuánto falta?", "estado"),  # estado before confirmar
        ("si, cancélalo", "cancelar"),  # cancelar before confirmar
        # "cancelar" is also "to pay" in Chile
        ("puedo cancelar con tarjeta?", "otro"),
        ("cancelo en efectivo al repartidor", "otro"),
        ("¿cómo cancelo?", "otro"),
        # "no" inside a sentence is not a cancellation
        ("no quiero el pollo con ají", "otro"),
        ("no tienen despacho a Maipú?", "otro"),
        # baja only for messages: "no me manden más pollo frío" is a complaint
        ("no me manden más pollo frío", "otro"),
        ("el pollo viene con baja sal?", "otro"),
        ("hola, quiero cancelar y que no me manden más mensajes", "baja"),  # baja first
        # status needs a status question, not just the word "pedido"
        ("mi pedido es 2 pollos y una coca", "otro"),
        ("quiero hacer un pedido", "otro"),
        ("cuánto se demora el despacho a La Reina?", "otro"),
        ("cuánto cuesta el pollo?", "otro"),
        # menu, unless there is an order in it
        ("del menú quiero 2 pollos", "otro"),
        # greetings only when the message is just that
        ("hola quiero un pollo", "otro"),
        ("buenas, tienen delivery?", "otro"),
        ("hola, qué tienen?", "menu"),
        ("Hola! 👋", "saludo"),
        ("hola, cancela mi pedido", "cancelar"),
    ],
)
def test_casi_iguales(texto, esperado):
    assert intencion(texto) == esperado
