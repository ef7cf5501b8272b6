"""Twilio's WhatsApp webhooks: signature and parsing.

The forms under tests/data/whatsapp/twilio_*.json carry the fields Twilio documents for
an incoming WhatsApp message (text, media, location, quick-reply button) and for a
status callback (delivered, undelivered with ErrorCode)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from multidict import MultiDict
from twilio.request_validator import RequestValidator

from whatsapp import twilio_canal
from whatsapp.eventos import Estado, Media, Mensaje, Ubicacion

DATOS = Path(__file__).parent / "data" / "whatsapp"
TOKEN = "12345678901234567890123456789012"
URL = "https://crm.ejemplo.cl/api/webhooks/twilio/pollos-don-pepe?canal=whatsapp"
NUESTRO = "+56229876543"
AHORA = datetime(2026, 3, 9, 14, 30, 5, tzinfo=UTC)


def cargar(nombre: str) -> dict[str, str]:
    return json.loads((DATOS / nombre).read_text())


def reloj() -> datetime:
    return AHORA


def firmar(params, url: str = URL, token: str = TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


# ---------------------------------------------------------------- signature


def test_firma_valida():
    params = cargar("twilio_texto.json")
    assert twilio_canal.verificar_firma(TOKEN, URL, params, firmar(params))


def test_firma_valida_de_un_callback_de_estado():
    params = cargar("twilio_estado_entregado.json")
    assert twilio_canal.verificar_firma(TOKEN, URL, params, firmar(params))


def test_firma_cubre_campos_repetidos():
    # A form can repeat a field; Twilio signs each value. The multi-dict as received works.
    params = MultiDict(cargar("twilio_texto.json"))
    params.add("Extra", "b")
    params.add("Extra", "a")
    firma = firmar(params)
    assert twilio_canal.verificar_firma(TOKEN, URL, params, firma)
    solo_uno = MultiDict(cargar("twilio_texto.json"))
    solo_uno.add("Extra", "a")
    assert not twilio_canal.verificar_firma(TOKEN, URL, solo_uno, firma)


@pytest.mark.parametrize("firma", [None, "", "bm9wZQ==", "AAAAAAAAAAAAAAAAAAAAAAAAAAA="])
def test_firma_ausente_o_falsa(firma):
    assert not twilio_canal.verificar_firma(TOKEN, URL, cargar("twilio_texto.json"), firma)


def test_firma_con_otro_token():
    params = cargar("twilio_texto.json")
    assert not twilio_canal.verificar_firma(TOKEN, URL, params, firmar(params, token="otro-token"))


def test_token_vacio_nunca_valida():
    params = cargar("twilio_texto.json")
    assert not twilio_canal.verificar_firma("", URL, params, firmar(params, token=""))


@pytest.mark.parametrize(
    "otra_url",
    [
        "https://crm.ejemplo.cl/api/webhooks/twilio/pollos-don-pepe?canal=sms",  # query string
        "https://crm.ejemplo.cl/api/webhooks/twilio/pollos-don-pepe",  # query string dropped
        "https://crm.ejemplo.cl/api/webhooks/twilio/spa-aurora?canal=whatsapp",  # another brand
        "http://crm.ejemplo.cl/api/webhooks/twilio/pollos-don-pepe?canal=whatsapp",  # scheme
        "https://otro.ejemplo.cl/api/webhooks/twilio/pollos-don-pepe?canal=whatsapp",  # host
    ],
)
def test_firma_con_url_cambiada(otra_url):
    params = cargar("twilio_texto.json")
    assert not twilio_canal.verificar_firma(TOKEN, otra_url, params, firmar(params))


def test_firma_acepta_la_url_con_o_sin_puerto_por_defecto():
    params = cargar("twilio_texto.json")
    con_puerto = "https://crm.ejemplo.cl:443/api/webhooks/twilio/pollos-don-pepe?canal=whatsapp"
    assert twilio_canal.verificar_firma(TOKEN, con_puerto, params, firmar(params))


def test_firma_con_campos_cambiados_agregados_o_quitados():
    params = cargar("twilio_texto.json")
    firma = firmar(params)
    assert not twilio_canal.verificar_firma(TOKEN, URL, params | {"Body": params["Body"] + "!"}, firma)
    assert not twilio_canal.verificar_firma(TOKEN, URL, params | {"From": "whatsapp:+56991234567"}, firma)
    assert not twilio_canal.verificar_firma(TOKEN, URL, params | {"Nuevo": "1"}, firma)
    sin_body = {k: v for k, v in params.items() if k != "Body"}
    assert not twilio_canal.verificar_firma(TOKEN, URL, sin_body, firma)


# ---------------------------------------------------------------- parsing: inbound


def test_texto_entrante():
    assert twilio_canal.interpretar(cargar("twilio_texto.json"), ahora=reloj) == [
        Mensaje(
            proveedor="twilio",
            id_externo="SM5a1f3a7c1b2d4e6f8a9b0c1d2e3f4a5b",
            destino=NUESTRO,
            telefono="+56987654321",
            tipo="texto",
            recibido_en=AHORA,
            nombre_perfil="Camila Rojas",
            texto="Hola! ¿Tienen hora para masaje el sábado?",
        )
    ]


def test_sin_reloj_usa_la_hora_actual_en_utc():
    antes = datetime.now(UTC)
    (m,) = twilio_canal.interpretar(cargar("twilio_texto.json"))
    assert antes <= m.recibido_en <= datetime.now(UTC)
    assert m.recibido_en.utcoffset().total_seconds() == 0


def test_solo_sms_message_sid():
    params = cargar("twilio_texto.json")
    del params["MessageSid"], params["SmsSid"]
    (m,) = twilio_canal.interpretar(params, ahora=reloj)
    assert m.id_externo == "SM5a1f3a7c1b2d4e6f8a9b0c1d2e3f4a5b"


def test_media_entrante():
    assert twilio_canal.interpretar(cargar("twilio_media.json"), ahora=reloj) == [
        Mensaje(
            proveedor="twilio",
            id_externo="MM8c2d0e4b6a1f3c5e7a9b1d3f5a7c9e1b",
            destino=NUESTRO,
            telefono="+56987654321",
            tipo="media",
            recibido_en=AHORA,
            nombre_perfil="Camila Rojas",
            texto="Comprobante de pago",
            media=Media(
                referencia=(
                    "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages/"
                    "MM8c2d0e4b6a1f3c5e7a9b1d3f5a7c9e1b/Media/ME4f6a8c0e2b4d6f8a0c2e4a6b8d0f2a4c"
                ),
                mime="image/jpeg",
                tipo="image",
                leyenda="Comprobante de pago",
            ),
        )
    ]


def test_media_sin_leyenda_ni_message_type_deduce_el_tipo_del_mime():
    params = cargar("twilio_media.json") | {"Body": "", "MediaContentType0": "application/pdf"}
    del params["MessageType"]
    (m,) = twilio_canal.interpretar(params, ahora=reloj)
    assert m.tipo == "media" and m.texto is None
    assert m.media == Media(referencia=params["MediaUrl0"], mime="application/pdf", tipo="document")


def test_ubicacion_entrante():
    assert twilio_canal.interpretar(cargar("twilio_ubicacion.json"), ahora=reloj) == [
        Mensaje(
            proveedor="twilio",
            id_externo="SMb3d5f7a9c1e3a5b7d9f1a3c5e7b9d1f3",
            destino=NUESTRO,
            telefono="+56987654321",
            tipo="ubicacion",
            recibido_en=AHORA,
            nombre_perfil="Camila Rojas",
            ubicacion=Ubicacion(
                latitud=-33.4263,
                longitud=-70.6175,
                nombre="Mi oficina",
                direccion="Av. Providencia 1234, Providencia, Santiago",
            ),
        )
    ]


def test_boton_de_respuesta_rapida():
    assert twilio_canal.interpretar(cargar("twilio_boton.json"), ahora=reloj) == [
        Mensaje(
            proveedor="twilio",
            id_externo="SMc4e6a8b0d2f4a6c8e0b2d4f6a8c0e2b4",
            destino=NUESTRO,
            telefono="+56987654321",
            tipo="boton",
            recibido_en=AHORA,
            nombre_perfil="Camila Rojas",
            texto="Confirmar",
            seleccion_id="confirmar-reserva-77",
        )
    ]


def test_seleccion_de_lista():
    params = cargar("twilio_texto.json") | {
        "MessageType": "interactive",
        "Body": "Masaje descontracturante",
        "ListId": "servicio-masaje-60",
        "ListTitle": "Masaje descontracturante",
    }
    (m,) = twilio_canal.interpretar(params, ahora=reloj)
    assert (m.tipo, m.texto, m.seleccion_id) == ("lista", "Masaje descontracturante", "servicio-masaje-60")


def test_tipo_no_soportado_es_otro():
    params = cargar("twilio_texto.json") | {"MessageType": "unsupported", "Body": ""}
    (m,) = twilio_canal.interpretar(params, ahora=reloj)
    assert m.tipo == "otro" and m.texto is None


# ---------------------------------------------------------------- parsing: status callbacks


def test_estado_entregado():
    assert twilio_canal.interpretar(cargar("twilio_estado_entregado.json"), ahora=reloj) == [
        Estado(
            proveedor="twilio",
            id_externo="SMd5f7b9c1e3a5d7f9b1c3e5a7d9f1b3c5",
            destino=NUESTRO,
            estado="delivered",
            ocurrido_en=AHORA,
            telefono="+56987654321",
        )
    ]


def test_estado_no_entregado_es_fallido_con_error():
    assert twilio_canal.interpretar(cargar("twilio_estado_no_entregado.json"), ahora=reloj) == [
        Estado(
            proveedor="twilio",
            id_externo="SMe6a8c0d2f4b6e8a0c2d4f6b8e0a2c4d6",
            destino=NUESTRO,
            estado="failed",
            ocurrido_en=AHORA,
            telefono="+56932165498",
            error_codigo="63016",
            error_mensaje=(
                "Failed to send freeform message because you are outside the allowed window. "
                "If you are using WhatsApp, please use a Message Template."
            ),
        )
    ]


@pytest.mark.parametrize(("twilio", "nuestro"), [("sent", "sent"), ("read", "read"), ("failed", "failed")])
def test_estados_finales(twilio, nuestro):
    params = cargar("twilio_estado_entregado.json") | {"MessageStatus": twilio, "SmsStatus": twilio}
    (e,) = twilio_canal.interpretar(params, ahora=reloj)
    assert e.estado == nuestro and e.id_externo == "SMd5f7b9c1e3a5d7f9b1c3e5a7d9f1b3c5"


@pytest.mark.parametrize("intermedio", ["queued", "accepted", "sending", "scheduled"])
def test_estados_intermedios_no_generan_eventos(intermedio):
    params = cargar("twilio_estado_entregado.json") | {"MessageStatus": intermedio, "SmsStatus": intermedio}
    assert twilio_canal.interpretar(params, ahora=reloj) == []


# ---------------------------------------------------------------- parsing: not a Twilio WhatsApp webhook


@pytest.mark.parametrize(
    ("cambio", "mensaje"),
    [
        ({"MessageSid": "", "SmsMessageSid": "", "SmsSid": ""}, "MessageSid"),
        ({"From": ""}, "From"),
        ({"To": ""}, "To"),
        ({"From": "whatsapp:56987654321"}, "From"),  # no +
        ({"From": "whatsapp:+56"}, "inválido"),
        ({"Latitude": "norte", "Longitude": "-70.6"}, "latitud"),
        ({"NumMedia": "uno"}, "NumMedia"),
    ],
)
def test_formulario_invalido(cambio, mensaje):
    with pytest.raises(ValueError, match=mensaje):
        twilio_canal.interpretar(cargar("twilio_texto.json") | cambio, ahora=reloj)
