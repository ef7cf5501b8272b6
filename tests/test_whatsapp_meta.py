"""Meta's WhatsApp Cloud API webhooks: signature, subscription handshake, parsing.

The payloads under tests/data/whatsapp/meta_*.json follow the examples of Meta's
"messages" webhook reference (text, interactive button_reply/list_reply, template
quick-reply button, location, image, reaction, statuses sent/delivered/read/failed)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from whatsapp import meta
from whatsapp.eventos import Estado, Media, Mensaje, Reaccion, Ubicacion

DATOS = Path(__file__).parent / "data" / "whatsapp"
SECRETO = "d3b07384d113edec49eaa6238ad5ff00"
PHONE_ID = "106540352242922"


def cargar(nombre: str) -> bytes:
    return (DATOS / nombre).read_bytes()


def firmar(secreto: str, cuerpo: bytes) -> str:
    return "sha256=" + hmac.new(secreto.encode(), cuerpo, hashlib.sha256).hexdigest()


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# ---------------------------------------------------------------- signature


def test_firma_valida():
    cuerpo = cargar("meta_texto.json")
    assert meta.verificar_firma(SECRETO, cuerpo, firmar(SECRETO, cuerpo))


def test_firma_en_mayusculas_y_con_espacios_se_acepta():
    cuerpo = cargar("meta_texto.json")
    cabecera = firmar(SECRETO, cuerpo)
    assert meta.verificar_firma(SECRETO, cuerpo, "sha256=" + cabecera[7:].upper())
    assert meta.verificar_firma(SECRETO, cuerpo, f" {cabecera} ")


@pytest.mark.parametrize(
    "cabecera",
    [
        None,
        "",
        "sha256=",
        "sha256=" + "0" * 64,  # forged
        "sha256=" + "z" * 64,  # not hex
        "sha256=abc123",  # too short
        "sha1=" + "0" * 40,  # the old X-Hub-Signature
        "sha256=ñ" + "0" * 63,  # not ASCII
    ],
)
def test_firma_ausente_malformada_o_falsa(cabecera):
    assert not meta.verificar_firma(SECRETO, cargar("meta_texto.json"), cabecera)


def test_firma_sin_el_prefijo_sha256():
    cuerpo = cargar("meta_texto.json")
    assert not meta.verificar_firma(SECRETO, cuerpo, firmar(SECRETO, cuerpo)[7:])


def test_firma_con_otro_secreto():
    cuerpo = cargar("meta_texto.json")
    assert not meta.verificar_firma(SECRETO, cuerpo, firmar("otro-secreto", cuerpo))


def test_firma_secreto_vacio_nunca_valida():
    cuerpo = cargar("meta_texto.json")
    assert not meta.verificar_firma("", cuerpo, firmar("", cuerpo))


def test_firma_cuerpo_cambiado_en_un_byte():
    cuerpo = cargar("meta_texto.json")
    cabecera = firmar(SECRETO, cuerpo)
    i = cuerpo.index(b"pollo")
    cambiado = cuerpo[:i] + b"P" + cuerpo[i + 1 :]
    assert len(cambiado) == len(cuerpo)
    assert not meta.verificar_firma(SECRETO, cambiado, cabecera)
    assert not meta.verificar_firma(SECRETO, cuerpo + b" ", cabecera)


def test_firma_es_del_cuerpo_crudo_no_del_json_reserializado():
    cuerpo = cargar("meta_texto.json")
    reserializado = json.dumps(json.loads(cuerpo)).encode()
    assert reserializado != cuerpo
    assert not meta.verificar_firma(SECRETO, reserializado, firmar(SECRETO, cuerpo))


# ---------------------------------------------------------------- subscription handshake


def test_suscripcion_devuelve_el_challenge():
    params = {"hub.mode": "subscribe", "hub.verify_token": "token-de-la-marca", "hub.challenge": "1158201444"}
    assert meta.verificar_suscripcion(params, "token-de-la-marca") == "1158201444"


@pytest.mark.parametrize(
    "params",
    [
        {"hub.mode": "subscribe", "hub.verify_token": "otro", "hub.challenge": "1"},
        {"hub.mode": "unsubscribe", "hub.verify_token": "token-de-la-marca", "hub.challenge": "1"},
        {"hub.verify_token": "token-de-la-marca", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.challenge": "1"},
        {"hub.mode": "subscribe", "hub.verify_token": "token-de-la-marca"},
        {"hub.mode": "subscribe", "hub.verify_token": "tóken", "hub.challenge": "1"},
    ],
)
def test_suscripcion_rechazada(params):
    assert meta.verificar_suscripcion(params, "token-de-la-marca") is None


def test_suscripcion_con_token_configurado_vacio():
    params = {"hub.mode": "subscribe", "hub.verify_token": "", "hub.challenge": "1"}
    assert meta.verificar_suscripcion(params, "") is None


# ---------------------------------------------------------------- parsing: messages


def test_texto():
    assert meta.interpretar(cargar("meta_texto.json")) == [
        Mensaje(
            proveedor="meta",
            id_externo="wamid.HBgLNTY5ODc2NTQzMjEVAgASGBQzQTRBNjU5OUFFRTAzODEwMTQ0RgA=",
            destino=PHONE_ID,
            telefono="+56987654321",
            tipo="texto",
            recibido_en=utc(2025, 6, 8, 20, 59, 43),
            nombre_perfil="Camila Rojas",
            texto="Hola! Quiero 1 pollo entero y 2 bebidas",
        )
    ]


def test_recibido_en_es_utc_con_zona():
    (m,) = meta.interpretar(cargar("meta_texto.json"))
    assert m.recibido_en.tzinfo is not None and m.recibido_en.utcoffset().total_seconds() == 0
    assert m.recibido_en.timestamp() == 1749416383


def test_boton_interactivo():
    assert meta.interpretar(cargar("meta_boton.json")) == [
        Mensaje(
            proveedor="meta",
            id_externo="wamid.HBgLNTY5ODc2NTQzMjEVAgASGBQzRUIwNDdBQkM5QkM3Q0VCMzRBRgA=",
            destino=PHONE_ID,
            telefono="+56987654321",
            tipo="boton",
            recibido_en=utc(2025, 6, 8, 21, 0, 1),
            nombre_perfil="Camila Rojas",
            texto="Confirmar",
            seleccion_id="confirmar-pedido-8812",
        )
    ]


def test_fila_de_lista():
    assert meta.interpretar(cargar("meta_lista.json")) == [
        Mensaje(
            proveedor="meta",
            id_externo="wamid.HBgLNTY5ODc2NTQzMjEVAgASGBQzRUIwQjFCODI0RjA4RTg2MjdBQwA=",
            destino=PHONE_ID,
            telefono="+56987654321",
            tipo="lista",
            recibido_en=utc(2025, 6, 8, 21, 0, 20),
            nombre_perfil="Camila Rojas",
            texto="Pollo entero",
            seleccion_id="prod-pollo-entero",
        )
    ]


def test_ubicacion():
    assert meta.interpretar(cargar("meta_ubicacion.json")) == [
        Mensaje(
            proveedor="meta",
            id_externo="wamid.HBgLNTY5ODc2NTQzMjEVAgASGBQzRUIwRjhBMjBDQTQ5RTU0NTQ3NAA=",
            destino=PHONE_ID,
            telefono="+56987654321",
            tipo="ubicacion",
            recibido_en=utc(2025, 6, 8, 21, 0, 55),
            nombre_perfil="Camila Rojas",
            ubicacion=Ubicacion(
                latitud=-33.4263,
                longitud=-70.6175,
                nombre="Mi oficina",
                direccion="Av. Providencia 1234, Providencia, Santiago",
            ),
        )
    ]


def test_imagen_guarda_id_mime_y_leyenda():
    assert meta.interpretar(cargar("meta_imagen.json")) == [
        Mensaje(
            proveedor="meta",
            id_externo="wamid.HBgLNTY5ODc2NTQzMjEVAgASGBQzRUIwMkM4QjI5NEE0QjE4RTMyQwA=",
            destino=PHONE_ID,
            telefono="+56987654321",
            tipo="media",
            recibido_en=utc(2025, 6, 8, 21, 1, 50),
            nombre_perfil="Camila Rojas",
            texto="Este es el comprobante de la transferencia",
            media=Media(
                referencia="1003383421387256",
                mime="image/jpeg",
                tipo="image",
                leyenda="Este es el comprobante de la transferencia",
            ),
        )
    ]


def test_reaccion():
    assert meta.interpretar(cargar("meta_reaccion.json")) == [
        Mensaje(
            proveedor="meta",
            id_externo="wamid.HBgLNTY5ODc2NTQzMjEVAgASGBQzRUIwRDc0RjY1QTM0OTU2QkRGQwA=",
            destino=PHONE_ID,
            telefono="+56987654321",
            tipo="reaccion",
            recibido_en=utc(2025, 6, 8, 21, 2, 10),
            nombre_perfil="Camila Rojas",
            reaccion=Reaccion(
                emoji="👍", mensaje_id="wamid.HBgLNTY5ODc2NTQzMjEVAgARGBI0QzI3QjY5QjA0QTk2OUNBRkUA"
            ),
        )
    ]


def test_reaccion_quitada_tiene_emoji_vacio():
    datos = json.loads(cargar("meta_reaccion.json"))
    del datos["entry"][0]["changes"][0]["value"]["messages"][0]["reaction"]["emoji"]
    (m,) = meta.interpretar(json.dumps(datos).encode())
    assert m.reaccion == Reaccion(
        emoji="", mensaje_id="wamid.HBgLNTY5ODc2NTQzMjEVAgARGBI0QzI3QjY5QjA0QTk2OUNBRkUA"
    )


def test_sin_contactos_no_hay_nombre_de_perfil():
    datos = json.loads(cargar("meta_texto.json"))
    del datos["entry"][0]["changes"][0]["value"]["contacts"]
    (m,) = meta.interpretar(json.dumps(datos).encode())
    assert m.nombre_perfil is None and m.telefono == "+56987654321"


def test_numero_que_phonenumbers_no_reconoce_se_conserva():
    # Mexico's wa_ids keep the legacy mobile "1" (521...), which phonenumbers rejects.
    datos = json.loads(cargar("meta_texto.json"))
    datos["entry"][0]["changes"][0]["value"]["messages"][0]["from"] = "5215512345678"
    (m,) = meta.interpretar(json.dumps(datos).encode())
    assert m.telefono == "+5215512345678"


# ---------------------------------------------------------------- parsing: statuses


def test_estados_enviado_entregado_leido():
    wamid = "wamid.HBgLNTY5ODc2NTQzMjEVAgARGBI0QzI3QjY5QjA0QTk2OUNBRkUA"
    comun = {"proveedor": "meta", "id_externo": wamid, "destino": PHONE_ID, "telefono": "+56987654321"}
    assert meta.interpretar(cargar("meta_estados.json")) == [
        Estado(**comun, estado="sent", ocurrido_en=utc(2025, 6, 8, 21, 3, 20)),
        Estado(**comun, estado="delivered", ocurrido_en=utc(2025, 6, 8, 21, 3, 32)),
        Estado(**comun, estado="read", ocurrido_en=utc(2025, 6, 8, 21, 5, 0)),
    ]


def test_estado_fallido_con_error():
    assert meta.interpretar(cargar("meta_estado_fallido.json")) == [
        Estado(
            proveedor="meta",
            id_externo="wamid.HBgLNTY5MzIxNjU0OTgVAgARGBJDQjZCMzlEQUE4OTJBMTE4RTUA",
            destino=PHONE_ID,
            estado="failed",
            ocurrido_en=utc(2025, 6, 8, 21, 5, 20),
            telefono="+56932165498",
            error_codigo="131047",
            error_mensaje=(
                "Re-engagement message: Message failed to send because more than 24 hours have "
                "passed since the customer last replied to this number."
            ),
        )
    ]


def test_estado_desconocido_se_omite():
    datos = json.loads(cargar("meta_estados.json"))
    datos["entry"][0]["changes"][0]["value"]["statuses"][1]["status"] = "deleted"
    assert [e.estado for e in meta.interpretar(json.dumps(datos).encode())] == ["sent", "read"]


# ---------------------------------------------------------------- parsing: one delivery, many events


def test_lote_con_dos_entradas_varios_mensajes_y_estados():
    eventos = meta.interpretar(cargar("meta_lote.json"))
    marca_a, marca_b = PHONE_ID, "118822334455667"
    assert eventos == [
        Mensaje(
            proveedor="meta",
            id_externo="wamid.LOTE-A1",
            destino=marca_a,
            telefono="+56987654321",
            tipo="texto",
            recibido_en=utc(2025, 6, 8, 21, 5, 0),
            nombre_perfil="Camila Rojas",
            texto="¿Tienen delivery a Ñuñoa?",
        ),
        Mensaje(  # a template's quick-reply button
            proveedor="meta",
            id_externo="wamid.LOTE-A2",
            destino=marca_a,
            telefono="+56991234567",
            tipo="boton",
            recibido_en=utc(2025, 6, 8, 21, 5, 20),
            nombre_perfil="Jorge Muñoz",
            texto="Sí, confirmo",
            seleccion_id="confirmar-reserva-77",
        ),
        Mensaje(
            proveedor="meta",
            id_externo="wamid.LOTE-A3",
            destino=marca_a,
            telefono="+56991234567",
            tipo="otro",
            recibido_en=utc(2025, 6, 8, 21, 5, 21),
            nombre_perfil="Jorge Muñoz",
        ),
        Estado(
            proveedor="meta",
            id_externo="wamid.ENVIADO-A",
            destino=marca_a,
            estado="delivered",
            ocurrido_en=utc(2025, 6, 8, 21, 5, 10),
            telefono="+56987654321",
        ),
        Mensaje(
            proveedor="meta",
            id_externo="wamid.LOTE-B1",
            destino=marca_b,
            telefono="+56945678912",
            tipo="media",
            recibido_en=utc(2025, 6, 8, 21, 6, 40),
            nombre_perfil="Valentina Soto",
            media=Media(referencia="2400123456789012", mime="audio/ogg; codecs=opus", tipo="audio"),
        ),
        Mensaje(
            proveedor="meta",
            id_externo="wamid.LOTE-B2",
            destino=marca_b,
            telefono="+56945678912",
            tipo="media",
            recibido_en=utc(2025, 6, 8, 21, 6, 41),
            nombre_perfil="Valentina Soto",
            texto="Boleta",
            media=Media(
                referencia="2400123456789013", mime="application/pdf", tipo="document", leyenda="Boleta"
            ),
        ),
        Estado(
            proveedor="meta",
            id_externo="wamid.ENVIADO-B",
            destino=marca_b,
            estado="read",
            ocurrido_en=utc(2025, 6, 8, 21, 6, 30),
            telefono="+56945678912",
        ),
        Estado(
            proveedor="meta",
            id_externo="wamid.ENVIADO-C",
            destino=marca_b,
            estado="failed",
            ocurrido_en=utc(2025, 6, 8, 21, 6, 35),
            telefono="+56932165498",
            error_codigo="131026",
            error_mensaje=(
                "Message undeliverable: Unable to deliver message. Reasons can include: the recipient "
                "phone number is not a WhatsApp phone number."
            ),
        ),
        # the entry's second change (message_template_status_update) is skipped
    ]


def test_solo_cambios_que_no_son_mensajes_da_lista_vacia():
    cuerpo = {
        "object": "whatsapp_business_account",
        "entry": [
            {
                "id": "102290129340398",
                "time": 1749416800,
                "changes": [
                    {
                        "value": {"phone_number": "56229876543", "event": "VERIFIED_ACCOUNT"},
                        "field": "account_update",
                    }
                ],
            }
        ],
    }
    assert meta.interpretar(json.dumps(cuerpo).encode()) == []


# ---------------------------------------------------------------- parsing: not a WhatsApp delivery


@pytest.mark.parametrize(
    ("cuerpo", "mensaje"),
    [
        (b"", "JSON"),
        (b"no soy json", "JSON"),
        (b"\xff\xfe", "JSON"),
        (b"[]", "whatsapp_business_account"),
        (b'{"object": "page", "entry": []}', "whatsapp_business_account"),
        (b'{"object": "instagram", "entry": []}', "whatsapp_business_account"),
        (b'{"object": "whatsapp_business_account"}', "entry"),
        (b'{"object": "whatsapp_business_account", "entry": [{"id": "1"}]}', "changes"),
    ],
)
def test_no_es_un_webhook_de_whatsapp(cuerpo, mensaje):
    with pytest.raises(ValueError, match=mensaje):
        meta.interpretar(cuerpo)


def test_mensaje_sin_remitente_es_un_error_claro():
    datos = json.loads(cargar("meta_texto.json"))
    del datos["entry"][0]["changes"][0]["value"]["messages"][0]["from"]
    with pytest.raises(ValueError, match="falta 'from'"):
        meta.interpretar(json.dumps(datos).encode())


def test_mensaje_con_timestamp_invalido_es_un_error_claro():
    datos = json.loads(cargar("meta_texto.json"))
    datos["entry"][0]["changes"][0]["value"]["messages"][0]["timestamp"] = "ayer"
    with pytest.raises(ValueError, match="timestamp"):
        meta.interpretar(json.dumps(datos).encode())
