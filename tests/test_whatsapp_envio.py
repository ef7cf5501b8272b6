"""Sending replies: Meta's Graph API, Twilio's Messages API and the recorder.

Meta's and Twilio's servers cannot be reached from the tests: a small HTTP server on
127.0.0.1 (a free port, in a thread) stands in for each of them. It records every
request exactly as received and answers the way the real API documents (Graph API:
`{"messaging_product": "whatsapp", "contacts": [...], "messages": [{"id": "wamid..."}]}`;
Twilio: 201 with the Message resource as JSON). The senders make real HTTP requests.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from whatsapp.grabador import EnviadorGrabador
from whatsapp.meta import EnviadorMeta
from whatsapp.salida import Enviador, EnvioError, Opcion, Respuesta
from whatsapp.twilio_canal import EnviadorTwilio

CLIENTE = "+56987654321"
PHONE_ID = "106540352242922"  # Meta: our phone_number_id
NUESTRO = "+56229876543"  # Twilio: our WhatsApp number
TOKEN_META = "EAAG-token-de-prueba"
ACCOUNT_SID = "AC0123456789abcdef0123456789abcdef"
AUTH_TOKEN = "token-de-autenticacion-de-prueba"


class Peticion:
    def __init__(self, metodo: str, ruta: str, cabeceras: dict[str, str], cuerpo: bytes) -> None:
        self.metodo, self.ruta, self.cabeceras, self.cuerpo = metodo, ruta, cabeceras, cuerpo

    def json(self) -> Any:
        return json.loads(self.cuerpo)

    def formulario(self) -> dict[str, list[str]]:
        return parse_qs(self.cuerpo.decode(), keep_blank_values=True, strict_parsing=True)


class ServidorFalso:
    """A stand-in for Meta's or Twilio's API on 127.0.0.1. Answers are queued with
    `responder()`; with none queued it answers `por_defecto(peticion)`."""

    def __init__(self, por_defecto) -> None:
        self.peticiones: list[Peticion] = []
        self.respuestas: deque[tuple[int, Any, float]] = deque()
        self.por_defecto = por_defecto
        falso = self

        class Manejador(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                largo = int(self.headers.get("Content-Length") or 0)
                p = Peticion(
                    "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, self.rfile.read(largo)
                )
                falso.peticiones.append(p)
                estado, cuerpo, demora = (
                    falso.respuestas.popleft() if falso.respuestas else falso.por_defecto(p)
                )
                if demora:
                    time.sleep(demora)
                datos = cuerpo if isinstance(cuerpo, bytes) else json.dumps(cuerpo).encode()
                try:
                    self.send_response(estado)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(datos)))
                    self.end_headers()
                    self.wfile.write(datos)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args) -> None:
                pass

        self.http = ThreadingHTTPServer(("127.0.0.1", 0), Manejador)
        self.url = f"http://127.0.0.1:{self.http.server_address[1]}"
        self.hilo = threading.Thread(
            target=self.http.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.hilo.start()

    def limpiar(self) -> None:
        self.peticiones.clear()
        self.respuestas.clear()

    def responder(self, estado: int, cuerpo: Any, demora: float = 0.0) -> None:
        self.respuestas.append((estado, cuerpo, demora))

    def cerrar(self) -> None:
        self.http.shutdown()
        self.http.server_close()


def puerto_cerrado() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens once closed


def enviar(enviador: Enviador, origen: str, respuesta: Respuesta, telefono: str = CLIENTE) -> str:
    return asyncio.run(enviador.enviar(origen, telefono, respuesta))


# ================================================================ Meta (Graph API)


def respuesta_graph(p: Peticion) -> tuple[int, Any, float]:
    """Graph API's answer to POST /{version}/{phone_number_id}/messages."""
    cuerpo = {
        "messaging_product": "whatsapp",
        "contacts": [{"input": p.json()["to"], "wa_id": p.json()["to"].lstrip("+")}],
        "messages": [{"id": "wamid.HBgLNTY5ODc2NTQzMjEVAgARGBI1"}],
    }
    return 200, cuerpo, 0.0


@pytest.fixture(scope="module")
def _graph():
    servidor = ServidorFalso(respuesta_graph)
    yield servidor
    servidor.cerrar()


@pytest.fixture
def graph(_graph):
    _graph.limpiar()
    return _graph


@pytest.fixture
def meta(graph):
    return EnviadorMeta(TOKEN_META, base_url=graph.url, version="v21.0", timeout=2.0)


def una_peticion(servidor: ServidorFalso) -> Peticion:
    assert len(servidor.peticiones) == 1
    return servidor.peticiones[0]


def test_meta_texto(graph, meta):
    assert meta.nombre == "meta"
    wamid = enviar(meta, PHONE_ID, Respuesta(tipo="texto", texto="¡Hola Camila! Tu pedido va en camino 🛵"))
    assert wamid == "wamid.HBgLNTY5ODc2NTQzMjEVAgARGBI1"
    p = una_peticion(graph)
    assert (p.metodo, p.ruta) == ("POST", f"/v21.0/{PHONE_ID}/messages")
    assert p.cabeceras["authorization"] == f"Bearer {TOKEN_META}"
    assert p.cabeceras["content-type"] == "application/json"
    assert p.json() == {
        "messaging_product": "whatsapp",
        "to": CLIENTE,
        "type": "text",
        "text": {"body": "¡Hola Camila! Tu pedido va en camino 🛵"},
    }


def test_meta_lista(graph, meta):
    respuesta = Respuesta(
        tipo="lista",
        texto="¿Qué te gustaría pedir?",
        boton_lista="Ver menú",
        opciones=(
            Opcion(id="pollo-entero", titulo="Pollo entero", descripcion="Con papas fritas, $12.990"),
            Opcion(id="medio-pollo", titulo="Medio pollo"),
            Opcion(
                id="combo-familiar",
                titulo="Combo familiar para cuatro personas",  # 35 characters: over the 24 allowed
                descripcion="Dos pollos enteros, papas fritas familiares, ensalada chilena y bebida de 3 litros",
            ),
        ),
    )
    enviar(meta, PHONE_ID, respuesta)
    assert una_peticion(graph).json() == {
        "messaging_product": "whatsapp",
        "to": CLIENTE,
        "type": "interactive",
        "interactive": {
            "type": "list",
            "body": {"text": "¿Qué te gustaría pedir?"},
            "action": {
                "button": "Ver menú",
                "sections": [
                    {
                        "rows": [
                            {
                                "id": "pollo-entero",
                                "title": "Pollo entero",
                                "description": "Con papas fritas, $12.990",
                            },
                            {"id": "medio-pollo", "title": "Medio pollo"},
                            {
                                "id": "combo-familiar",
                                "title": "Combo familiar para cua…",
                                "description": (
                                    "Dos pollos enteros, papas fritas familiares, ensalada chilena y bebida …"
                                ),
                            },
                        ]
                    }
                ],
            },
        },
    }
    filas = una_peticion(graph).json()["interactive"]["action"]["sections"][0]["rows"]
    assert all(len(f["title"]) <= 24 and len(f.get("description", "")) <= 72 for f in filas)


def test_meta_botones(graph, meta):
    respuesta = Respuesta(
        tipo="botones",
        texto="¿Confirmas tu reserva del sábado a las 11:00?",
        opciones=(
            Opcion(id="si", titulo="Sí, confirmo"),
            Opcion(id="cambiar", titulo="Quiero cambiar la hora"),  # 22: over the 20 allowed
            Opcion(id="no", titulo="Cancelar"),
        ),
    )
    enviar(meta, PHONE_ID, respuesta)
    assert una_peticion(graph).json() == {
        "messaging_product": "whatsapp",
        "to": CLIENTE,
        "type": "interactive",
        "interactive": {
            "type": "button",
            "body": {"text": "¿Confirmas tu reserva del sábado a las 11:00?"},
            "action": {
                "buttons": [
                    {"type": "reply", "reply": {"id": "si", "title": "Sí, confirmo"}},
                    {"type": "reply", "reply": {"id": "cambiar", "title": "Quiero cambiar la h…"}},
                    {"type": "reply", "reply": {"id": "no", "title": "Cancelar"}},
                ]
            },
        },
    }


def test_meta_plantilla_con_parametros(graph, meta):
    respuesta = Respuesta(
        tipo="plantilla",
        texto="Hola Camila, te recordamos tu reserva del 14/03 a las 11:00",
        plantilla="recordatorio_reserva",
        idioma="es_CL",
        parametros=("Camila", "14/03", "11:00"),
    )
    enviar(meta, PHONE_ID, respuesta)
    assert una_peticion(graph).json() == {
        "messaging_product": "whatsapp",
        "to": CLIENTE,
        "type": "template",
        "template": {
            "name": "recordatorio_reserva",
            "language": {"code": "es_CL"},
            "components": [
                {
                    "type": "body",
                    "parameters": [
                        {"type": "text", "text": "Camila"},
                        {"type": "text", "text": "14/03"},
                        {"type": "text", "text": "11:00"},
                    ],
                }
            ],
        },
    }


def test_meta_plantilla_sin_parametros(graph, meta):
    enviar(
        meta, PHONE_ID, Respuesta(tipo="plantilla", texto="¡Hola!", plantilla="hello_world", idioma="en_US")
    )
    assert una_peticion(graph).json()["template"] == {"name": "hello_world", "language": {"code": "en_US"}}


def test_meta_con_cliente_httpx_propio(graph):
    async def caso() -> str:
        async with httpx.AsyncClient() as cliente:
            enviador = EnviadorMeta(TOKEN_META, base_url=graph.url + "/", version="v22.0", client=cliente)
            return await enviador.enviar(PHONE_ID, CLIENTE, Respuesta(tipo="texto", texto="hola"))

    assert asyncio.run(caso()).startswith("wamid.")
    assert una_peticion(graph).ruta == f"/v22.0/{PHONE_ID}/messages"


def test_meta_500_es_reintentable(graph, meta):
    graph.responder(
        500, {"error": {"message": "An unknown error occurred", "type": "OAuthException", "code": 1}}
    )
    with pytest.raises(EnvioError) as e:
        enviar(meta, PHONE_ID, Respuesta(tipo="texto", texto="hola"))
    assert e.value.reintentable and e.value.codigo == "1"


def test_meta_502_sin_json_es_reintentable(graph, meta):
    graph.responder(502, b"<html>Bad Gateway</html>")
    with pytest.raises(EnvioError) as e:
        enviar(meta, PHONE_ID, Respuesta(tipo="texto", texto="hola"))
    assert e.value.reintentable and e.value.codigo == "http_502"


def test_meta_429_es_reintentable(graph, meta):
    graph.responder(
        429, {"error": {"message": "(#80007) Rate limit hit", "type": "OAuthException", "code": 80007}}
    )
    with pytest.raises(EnvioError) as e:
        enviar(meta, PHONE_ID, Respuesta(tipo="texto", texto="hola"))
    assert e.value.reintentable and e.value.codigo == "80007"


def test_meta_400_por_limite_de_envio_es_reintentable(graph, meta):
    # Meta reports throughput limits with a 400 and code 130429.
    graph.responder(
        400, {"error": {"message": "(#130429) Rate limit hit", "type": "OAuthException", "code": 130429}}
    )
    with pytest.raises(EnvioError) as e:
        enviar(meta, PHONE_ID, Respuesta(tipo="texto", texto="hola"))
    assert e.value.reintentable and e.value.codigo == "130429"


def test_meta_400_131026_no_es_reintentable(graph, meta):
    graph.responder(
        400,
        {
            "error": {
                "message": "(#131026) Message Undeliverable.",
                "type": "OAuthException",
                "code": 131026,
                "error_data": {
                    "messaging_product": "whatsapp",
                    "details": "Unable to deliver message. The recipient phone number is not a WhatsApp number.",
                },
                "fbtrace_id": "AZ3yGq8FZ2Ukpq4Nf-E1Qyh",
            }
        },
    )
    with pytest.raises(EnvioError) as e:
        enviar(meta, PHONE_ID, Respuesta(tipo="texto", texto="hola"))
    assert not e.value.reintentable
    assert e.value.codigo == "131026"
    assert e.value.mensaje == (
        "(#131026) Message Undeliverable.: Unable to deliver message. "
        "The recipient phone number is not a WhatsApp number."
    )


def test_meta_401_token_invalido_no_es_reintentable(graph, meta):
    graph.responder(
        401,
        {
            "error": {
                "message": "Error validating access token: Session has expired.",
                "type": "OAuthException",
                "code": 190,
                "error_subcode": 463,
            }
        },
    )
    with pytest.raises(EnvioError) as e:
        enviar(meta, PHONE_ID, Respuesta(tipo="texto", texto="hola"))
    assert not e.value.reintentable and e.value.codigo == "190"


def test_meta_200_sin_id_no_es_reintentable(graph, meta):
    graph.responder(200, {"messaging_product": "whatsapp", "messages": []})
    with pytest.raises(EnvioError) as e:
        enviar(meta, PHONE_ID, Respuesta(tipo="texto", texto="hola"))
    assert not e.value.reintentable  # it may have gone out: do not send it twice


def test_meta_timeout_es_reintentable(graph):
    graph.responder(200, {"messages": [{"id": "wamid.TARDE"}]}, demora=1.0)
    lento = EnviadorMeta(TOKEN_META, base_url=graph.url, timeout=0.2)
    with pytest.raises(EnvioError) as e:
        enviar(lento, PHONE_ID, Respuesta(tipo="texto", texto="hola"))
    assert e.value.reintentable and e.value.codigo == "timeout"


def test_meta_sin_conexion_es_reintentable():
    with pytest.raises(EnvioError) as e:
        enviar(
            EnviadorMeta(TOKEN_META, base_url=puerto_cerrado()), PHONE_ID, Respuesta(tipo="texto", texto="x")
        )
    assert e.value.reintentable and e.value.codigo == "conexion"


@pytest.mark.parametrize(
    "respuesta",
    [
        Respuesta(
            tipo="botones", texto="x", opciones=tuple(Opcion(id=str(i), titulo=str(i)) for i in range(4))
        ),
        Respuesta(tipo="botones", texto="x"),
        Respuesta(
            tipo="lista", texto="x", opciones=tuple(Opcion(id=str(i), titulo=str(i)) for i in range(11))
        ),
        Respuesta(tipo="plantilla", texto="x"),
    ],
)
def test_meta_respuesta_imposible_falla_sin_llamar_a_meta(graph, meta, respuesta):
    with pytest.raises(EnvioError) as e:
        enviar(meta, PHONE_ID, respuesta)
    assert e.value.codigo == "respuesta_invalida" and not e.value.reintentable
    assert graph.peticiones == []


# ================================================================ Twilio (Messages API)

RUTA_TWILIO = f"/2010-04-01/Accounts/{ACCOUNT_SID}/Messages.json"


def respuesta_twilio(p: Peticion) -> tuple[int, Any, float]:
    """Twilio's answer to POST /2010-04-01/Accounts/{sid}/Messages.json: 201 + the Message."""
    f = {k: v[0] for k, v in p.formulario().items()}
    return (
        201,
        {
            "account_sid": ACCOUNT_SID,
            "api_version": "2010-04-01",
            "body": f.get("Body", ""),
            "date_created": "Mon, 09 Mar 2026 14:30:05 +0000",
            "date_sent": None,
            "date_updated": "Mon, 09 Mar 2026 14:30:05 +0000",
            "direction": "outbound-api",
            "error_code": None,
            "error_message": None,
            "from": f["From"],
            "messaging_service_sid": None,
            "num_media": "0",
            "num_segments": "1",
            "price": None,
            "price_unit": None,
            "sid": "SM0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a",
            "status": "queued",
            "subresource_uris": {
                "media": f"{RUTA_TWILIO[:-5]}/SM0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a/Media.json"
            },
            "to": f["To"],
            "uri": f"{RUTA_TWILIO[:-5]}/SM0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a.json",
        },
        0.0,
    )


@pytest.fixture(scope="module")
def _api_twilio():
    servidor = ServidorFalso(respuesta_twilio)
    yield servidor
    servidor.cerrar()


@pytest.fixture
def api_twilio(_api_twilio):
    _api_twilio.limpiar()
    return _api_twilio


@pytest.fixture
def twilio(api_twilio):
    return EnviadorTwilio(ACCOUNT_SID, AUTH_TOKEN, base_url=api_twilio.url, timeout=2.0)


def formulario(servidor: ServidorFalso) -> dict[str, str]:
    p = una_peticion(servidor)
    assert (p.metodo, p.ruta) == ("POST", RUTA_TWILIO)
    basica = base64.b64encode(f"{ACCOUNT_SID}:{AUTH_TOKEN}".encode()).decode()
    assert p.cabeceras["authorization"] == f"Basic {basica}"
    assert p.cabeceras["content-type"] == "application/x-www-form-urlencoded"
    f = p.formulario()
    assert all(len(v) == 1 for v in f.values())
    return {k: v[0] for k, v in f.items()}


def test_twilio_texto(api_twilio, twilio):
    assert twilio.nombre == "twilio"
    sid = enviar(twilio, NUESTRO, Respuesta(tipo="texto", texto="¡Hola Camila! Te esperamos el sábado 🌿"))
    assert sid == "SM0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a"
    assert formulario(api_twilio) == {
        "From": "whatsapp:+56229876543",
        "To": "whatsapp:+56987654321",
        "Body": "¡Hola Camila! Te esperamos el sábado 🌿",
    }


def test_twilio_origen_con_prefijo_no_se_duplica(api_twilio, twilio):
    enviar(twilio, "whatsapp:+56229876543", Respuesta(tipo="texto", texto="hola"))
    assert formulario(api_twilio)["From"] == "whatsapp:+56229876543"


def test_twilio_lista_como_texto_numerado(api_twilio, twilio):
    respuesta = Respuesta(
        tipo="lista",
        texto="¿Qué servicio quieres reservar?",
        opciones=(
            Opcion(id="masaje-60", titulo="Masaje descontracturante", descripcion="60 min, $35.000"),
            Opcion(id="facial", titulo="Limpieza facial"),
        ),
    )
    enviar(twilio, NUESTRO, respuesta)
    assert formulario(api_twilio) == {
        "From": "whatsapp:+56229876543",
        "To": "whatsapp:+56987654321",
        "Body": (
            "¿Qué servicio quieres reservar?\n\n1. Masaje descontracturante (60 min, $35.000)\n2. Limpieza facial"
        ),
    }


def test_twilio_botones_como_texto_numerado(api_twilio, twilio):
    respuesta = Respuesta(
        tipo="botones",
        texto="¿Confirmas tu reserva?",
        opciones=(Opcion(id="si", titulo="Sí"), Opcion(id="no", titulo="No")),
    )
    enviar(twilio, NUESTRO, respuesta)
    assert formulario(api_twilio)["Body"] == "¿Confirmas tu reserva?\n\n1. Sí\n2. No"


def test_twilio_plantilla_de_content_api(api_twilio, twilio):
    respuesta = Respuesta(
        tipo="plantilla",
        texto="Hola Camila, te recordamos tu reserva del 14/03 a las 11:00",
        plantilla="HX350d429d32e64a552466cafecbe95f3c",
        parametros=("Camila", "14/03", "11:00"),
    )
    enviar(twilio, NUESTRO, respuesta)
    f = formulario(api_twilio)
    assert f == {
        "From": "whatsapp:+56229876543",
        "To": "whatsapp:+56987654321",
        "ContentSid": "HX350d429d32e64a552466cafecbe95f3c",
        "ContentVariables": f.get("ContentVariables"),
    }
    assert json.loads(f["ContentVariables"]) == {"1": "Camila", "2": "14/03", "3": "11:00"}


def test_twilio_plantilla_sin_variables(api_twilio, twilio):
    enviar(
        twilio,
        NUESTRO,
        Respuesta(tipo="plantilla", texto="x", plantilla="HX350d429d32e64a552466cafecbe95f3c"),
    )
    assert formulario(api_twilio) == {
        "From": "whatsapp:+56229876543",
        "To": "whatsapp:+56987654321",
        "ContentSid": "HX350d429d32e64a552466cafecbe95f3c",
    }


def test_twilio_plantilla_sin_content_sid_manda_su_texto(api_twilio, twilio):
    respuesta = Respuesta(
        tipo="plantilla",
        texto="Hola Camila, te recordamos tu reserva del 14/03",
        plantilla="recordatorio_reserva",
        parametros=("Camila", "14/03"),
    )
    enviar(twilio, NUESTRO, respuesta)
    assert formulario(api_twilio) == {
        "From": "whatsapp:+56229876543",
        "To": "whatsapp:+56987654321",
        "Body": "Hola Camila, te recordamos tu reserva del 14/03",
    }


def test_twilio_400_no_es_reintentable(api_twilio, twilio):
    api_twilio.responder(
        400,
        {
            "code": 21211,
            "message": "The 'To' number whatsapp:+56987654321 is not a valid phone number.",
            "more_info": "https://www.twilio.com/docs/errors/21211",
            "status": 400,
        },
    )
    with pytest.raises(EnvioError) as e:
        enviar(twilio, NUESTRO, Respuesta(tipo="texto", texto="hola"))
    assert not e.value.reintentable and e.value.codigo == "21211"
    assert "is not a valid phone number" in e.value.mensaje


def test_twilio_error_rfc9457_no_es_reintentable(api_twilio, twilio):
    # Newer Twilio APIs answer errors as problem+json (the SDK's TwilioServiceException).
    api_twilio.responder(
        400,
        {
            "type": "https://www.twilio.com/docs/errors/63007",
            "title": "Twilio could not find a Channel with the specified From address",
            "status": 400,
            "code": 63007,
            "detail": "The From address whatsapp:+56229876543 is not a WhatsApp sender of this account.",
        },
    )
    with pytest.raises(EnvioError) as e:
        enviar(twilio, NUESTRO, Respuesta(tipo="texto", texto="hola"))
    assert not e.value.reintentable and e.value.codigo == "63007"
    assert (
        e.value.mensaje == "The From address whatsapp:+56229876543 is not a WhatsApp sender of this account."
    )


def test_twilio_500_es_reintentable(api_twilio, twilio):
    api_twilio.responder(500, {"code": 20500, "message": "Internal Server Error", "status": 500})
    with pytest.raises(EnvioError) as e:
        enviar(twilio, NUESTRO, Respuesta(tipo="texto", texto="hola"))
    assert e.value.reintentable and e.value.codigo == "20500"


def test_twilio_429_es_reintentable(api_twilio, twilio):
    api_twilio.responder(429, {"code": 20429, "message": "Too Many Requests", "status": 429})
    with pytest.raises(EnvioError) as e:
        enviar(twilio, NUESTRO, Respuesta(tipo="texto", texto="hola"))
    assert e.value.reintentable and e.value.codigo == "20429"


def test_twilio_timeout_es_reintentable(api_twilio):
    api_twilio.responder(201, {"sid": "SMtarde"}, demora=1.0)
    lento = EnviadorTwilio(ACCOUNT_SID, AUTH_TOKEN, base_url=api_twilio.url, timeout=0.2)
    with pytest.raises(EnvioError) as e:
        enviar(lento, NUESTRO, Respuesta(tipo="texto", texto="hola"))
    assert e.value.reintentable and e.value.codigo == "timeout"


def test_twilio_sin_conexion_es_reintentable():
    caido = EnviadorTwilio(ACCOUNT_SID, AUTH_TOKEN, base_url=puerto_cerrado(), timeout=2.0)
    with pytest.raises(EnvioError) as e:
        enviar(caido, NUESTRO, Respuesta(tipo="texto", texto="hola"))
    assert e.value.reintentable and e.value.codigo == "conexion"


def test_twilio_sin_base_url_apunta_a_api_twilio_com():
    enviador = EnviadorTwilio(ACCOUNT_SID, AUTH_TOKEN)
    assert enviador._client.api.base_url == "https://api.twilio.com"


# ================================================================ recorder


def test_grabador_graba_y_no_envia(caplog):
    with caplog.at_level(logging.WARNING, logger="whatsapp.grabador"):
        grabador = EnviadorGrabador()
        texto = Respuesta(tipo="texto", texto="hola")
        lista = Respuesta(tipo="lista", texto="elige", opciones=(Opcion(id="a", titulo="A"),))
        id1 = enviar(grabador, PHONE_ID, texto)
        id2 = enviar(grabador, NUESTRO, lista, telefono="+56991234567")
    assert grabador.nombre == "grabador"
    assert id1.startswith("grabado-") and len(id1) == len("grabado-") + 32 and id1 != id2
    assert [(g.id, g.origen, g.telefono, g.respuesta) for g in grabador.enviados] == [
        (id1, PHONE_ID, CLIENTE, texto),
        (id2, NUESTRO, "+56991234567", lista),
    ]
    assert all(g.grabado_en.tzinfo is not None for g in grabador.enviados)
    avisos = [r for r in caplog.records if r.name == "whatsapp.grabador"]
    assert len(avisos) == 1 and "NOT sent" in avisos[0].getMessage()
