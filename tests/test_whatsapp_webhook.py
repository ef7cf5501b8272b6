"""The WhatsApp webhooks end to end: real HTTP through Litestar's test client, payloads
shaped like Meta's and Twilio's documented webhooks, signed with their real algorithms
(Meta's and Twilio's servers cannot run here; nothing else is faked), a real PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from itertools import count

import httpx
import pytest
from conftest import admin, counts, servidor_http
from twilio.request_validator import RequestValidator

from api.app import create_app

_wamid = count(1)


def wamid() -> str:
    return f"wamid.TEST{time.time_ns()}{next(_wamid)}"


def texto(telefono: str, cuerpo: str, id_: str | None = None, nombre: str = "Valentina Rojas") -> tuple:
    return ({"from": telefono.lstrip("+"), "id": id_ or wamid(), "timestamp": str(int(time.time())),
             "type": "text", "text": {"body": cuerpo}}, {"profile": {"name": nombre}, "wa_id": telefono.lstrip("+")})


def seleccion(telefono: str, opcion_id: str, titulo: str) -> tuple:
    return ({"from": telefono.lstrip("+"), "id": wamid(), "timestamp": str(int(time.time())),
             "type": "interactive",
             "interactive": {"type": "list_reply", "list_reply": {"id": opcion_id, "title": titulo}}},
            {"profile": {"name": "Valentina Rojas"}, "wa_id": telefono.lstrip("+")})


def entrega(pnid: str, mensajes=(), estados=()) -> bytes:
    value = {"messaging_product": "whatsapp",
             "metadata": {"display_phone_number": "56222222222", "phone_number_id": pnid}}
    if mensajes:
        value["contacts"] = [c for _, c in mensajes]
        value["messages"] = [m for m, _ in mensajes]
    if estados:
        value["statuses"] = list(estados)
    return json.dumps({"object": "whatsapp_business_account",
                       "entry": [{"id": "WABA", "changes": [{"value": value, "field": "messages"}]}]}).encode()


def firma(cuerpo: bytes, secreto: str = "test-app-secret") -> str:
    return "sha256=" + hmac.new(secreto.encode(), cuerpo, hashlib.sha256).hexdigest()


def enviar(client, cuerpo: bytes, cabecera: str | None = "firmar"):
    headers = {"Content-Type": "application/json"}
    if cabecera is not None:
        headers["X-Hub-Signature-256"] = firma(cuerpo) if cabecera == "firmar" else cabecera
    return client.post("/api/webhooks/whatsapp", content=cuerpo, headers=headers)


def filas(settings, marca_id, sql, *params):
    with admin(settings) as conn:
        return conn.execute(sql.replace("{m}", str(marca_id)), params).fetchall()


def salientes(settings, marca_id, telefono):
    return filas(settings, marca_id, "SELECT respuesta, estado FROM crm.salientes WHERE marca_id = {m} "
                 "AND telefono = %s ORDER BY id", telefono)


def test_handshake(client):
    ok = client.get("/api/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token":
                                                      "test-verify-token", "hub.challenge": "1158201444"})
    assert ok.status_code == 200 and ok.text == "1158201444"
    bad = client.get("/api/webhooks/whatsapp", params={"hub.mode": "subscribe", "hub.verify_token": "otro",
                                                       "hub.challenge": "1"})
    assert bad.status_code == 403


@pytest.mark.parametrize("cabecera", [None, "sha256=" + "0" * 64, "sha1=abc", "firma-de-otra-app", "vieja"])
def test_unsigned_forged_or_stale_deliveries_write_nothing(client, settings, tienda, cabecera):
    cuerpo = entrega(tienda.pnid, [texto("+56987650001", "hola")])
    if cabecera == "firma-de-otra-app":
        cabecera = firma(cuerpo, "otro-secreto")
    elif cabecera == "vieja":  # a valid signature of an earlier delivery, replayed on a new body
        cabecera = firma(entrega(tienda.pnid, [texto("+56987650001", "hola", id_="wamid.VIEJO")]))
    antes = counts(settings)
    r = enviar(client, cuerpo, cabecera)
    assert r.status_code == 401
    assert r.headers["content-type"].startswith("application/problem+json")
    assert counts(settings) == antes


def test_unknown_number_is_acknowledged_not_processed(client, settings):
    antes = counts(settings)
    r = enviar(client, entrega("pnid-que-no-existe", [texto("+56987650002", "hola")]))
    assert r.status_code == 200 and r.json() == {"ignorados": 1}
    assert counts(settings) == antes


def test_full_conversation(client, settings, tienda):
    fono = "+56987650003"
    pasos = [("hola", "saludo"), ("menú", "menu"), ("quiero 2 cuartos de pollo y unas papas", "pedido"),
             ("sí", "confirmado"), ("estado", "estado"), ("baja", "baja")]
    for mensaje, esperado in pasos:
        r = enviar(client, entrega(tienda.pnid, [texto(fono, mensaje)]))
        assert r.status_code == 200, r.text
        assert r.json() == {esperado: 1}, (mensaje, r.json())

    cliente = filas(settings, tienda.id, "SELECT id, nombre, canal_origen, opt_out_marketing FROM crm.clientes "
                    "WHERE marca_id = {m} AND telefono = %s", fono)
    assert len(cliente) == 1
    cid, nombre, origen, baja = cliente[0]
    assert (nombre, origen, baja) == ("Valentina Rojas", "whatsapp", True)
    pedidos = filas(settings, tienda.id, "SELECT id, estado, canal, total FROM crm.pedidos WHERE marca_id = {m} "
                    "AND cliente_id = %s", cid)
    assert [(p[1], p[2], p[3]) for p in pedidos] == [("confirmado", "whatsapp", 2 * 5990 + 2990)]
    respuestas = salientes(settings, tienda.id, fono)
    assert [r[0]["tipo"] for r in respuestas] == ["texto", "lista", "botones", "texto", "texto", "texto"]
    assert all(r[1] == "en_cola" for r in respuestas)
    assert "Bienvenido" in respuestas[0][0]["texto"]
    assert {o["id"] for o in respuestas[1][0]["opciones"]} >= {f"producto:{tienda.ids['CUARTO']}"}
    resumen = respuestas[2][0]
    assert "$14.970" in resumen["texto"] and f"#{pedidos[0][0]}" in resumen["texto"]
    assert [o["id"] for o in resumen["opciones"]] == [f"confirmar:{pedidos[0][0]}", f"cancelar:{pedidos[0][0]}"]
    assert "confirmado" in respuestas[3][0]["texto"] and "confirmado" in respuestas[4][0]["texto"]
    inter = filas(settings, tienda.id, "SELECT direccion, count(*) FROM crm.interacciones WHERE marca_id = {m} "
                  "AND cliente_id = %s GROUP BY 1 ORDER BY 1", cid)
    assert inter == [("entrante", 6), ("saliente", 6)]
    # the flow's writes are audited with the webhook as actor (all but the status history's
    # rows and the outbox's delivery progress, which are their own record: test_audit.py)
    actores = filas(settings, tienda.id, "SELECT DISTINCT tabla FROM crm.auditoria WHERE marca_id = {m} "
                    "AND actor = 'whatsapp:meta'")
    assert {"clientes", "interacciones", "pedidos", "pedido_items", "salientes"} <= {a[0] for a in actores}


def test_same_delivery_five_times_concurrently_is_processed_once(settings, tienda):
    fono = "+56987650004"
    cuerpo = entrega(tienda.pnid, [texto(fono, "2 cuartos de pollo", id_=wamid())])

    async def cinco():  # a real server: the five requests are in flight together
        async with servidor_http(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as c:
            headers = {"Content-Type": "application/json", "X-Hub-Signature-256": firma(cuerpo)}
            return await asyncio.gather(*[c.post("/api/webhooks/whatsapp", content=cuerpo, headers=headers)
                                          for _ in range(5)])

    respuestas = asyncio.run(cinco())
    assert [r.status_code for r in respuestas] == [200] * 5
    assert sorted(next(iter(r.json())) for r in respuestas) == ["duplicado"] * 4 + ["pedido"]
    assert filas(settings, tienda.id, "SELECT count(*) FROM crm.clientes WHERE marca_id = {m} AND telefono = %s",
                 fono) == [(1,)]
    assert filas(settings, tienda.id, "SELECT count(*) FROM crm.interacciones i JOIN crm.clientes c ON "
                 "c.marca_id = i.marca_id AND c.id = i.cliente_id WHERE i.marca_id = {m} AND c.telefono = %s "
                 "AND i.direccion = 'entrante'", fono) == [(1,)]
    assert filas(settings, tienda.id, "SELECT count(*) FROM crm.pedidos p JOIN crm.clientes c ON "
                 "c.marca_id = p.marca_id AND c.id = p.cliente_id WHERE p.marca_id = {m} AND c.telefono = %s",
                 fono) == [(1,)]
    assert len(salientes(settings, tienda.id, fono)) == 1


def test_two_messages_of_one_customer_at_once_create_one_customer(settings, tienda):
    fono = "+56987650005"
    cuerpos = [entrega(tienda.pnid, [texto(fono, "hola")]), entrega(tienda.pnid, [texto(fono, "menú")])]

    async def juntos():
        async with servidor_http(create_app(settings)) as url, httpx.AsyncClient(base_url=url) as c:
            return await asyncio.gather(*[c.post("/api/webhooks/whatsapp", content=b, headers={
                "Content-Type": "application/json", "X-Hub-Signature-256": firma(b)}) for b in cuerpos])

    assert [r.status_code for r in asyncio.run(juntos())] == [200, 200]
    assert filas(settings, tienda.id, "SELECT count(*) FROM crm.clientes WHERE marca_id = {m} AND telefono = %s",
                 fono) == [(1,)]
    assert len(salientes(settings, tienda.id, fono)) == 2


def test_one_delivery_with_several_entries_messages_and_statuses(client, settings, tienda):
    a, b = "+56987650006", "+56987650007"
    value_1 = json.loads(entrega(tienda.pnid, [texto(a, "hola"), texto(b, "menú")]))["entry"][0]
    value_2 = json.loads(entrega(tienda.pnid, [texto(a, "estado")],
                                 [{"id": "wamid.DESCONOCIDO", "status": "delivered", "timestamp": "1700000000",
                                   "recipient_id": a.lstrip("+")}]))["entry"][0]
    cuerpo = json.dumps({"object": "whatsapp_business_account", "entry": [value_1, value_2]}).encode()
    r = enviar(client, cuerpo)
    assert r.status_code == 200
    assert r.json() == {"saludo": 1, "menu": 1, "estado": 1, "estados": 0}
    assert len(salientes(settings, tienda.id, a)) == 2 and len(salientes(settings, tienda.id, b)) == 1


def test_statuses_out_of_order_end_at_the_most_advanced(client, settings, tienda):
    fono = "+56987650008"
    enviar(client, entrega(tienda.pnid, [texto(fono, "hola")]))
    with admin(settings) as conn:
        sid = conn.execute("UPDATE crm.salientes SET estado = 'enviado', id_externo = 'wamid.OUT8' "
                           "WHERE marca_id = %s AND telefono = %s RETURNING id", (tienda.id, fono)).fetchone()[0]

    def estado(s, extra=None):
        return {"id": "wamid.OUT8", "status": s, "timestamp": str(int(time.time())),
                "recipient_id": fono.lstrip("+"), **(extra or {})}

    for s in ("read", "delivered", "sent"):
        assert enviar(client, entrega(tienda.pnid, estados=[estado(s)])).status_code == 200
    assert filas(settings, tienda.id, "SELECT estado FROM crm.salientes WHERE marca_id = {m} AND id = %s",
                 sid) == [("leido",)]
    falla = {"errors": [{"code": 131047, "title": "Re-engagement message", "message": "Re-engagement message"}]}
    enviar(client, entrega(tienda.pnid, estados=[estado("failed", falla)]))
    enviar(client, entrega(tienda.pnid, estados=[estado("delivered")]))
    estado_final, error = filas(settings, tienda.id, "SELECT estado, error FROM crm.salientes "
                                "WHERE marca_id = {m} AND id = %s", sid)[0]
    assert estado_final == "fallido" and "131047" in error


def test_ambiguous_item_is_asked_then_resolved_by_a_list_reply(client, settings, tienda):
    fono = "+56987650009"
    r = enviar(client, entrega(tienda.pnid, [texto(fono, "quiero un pollo")]))
    assert r.json() == {"aclaracion": 1}
    pregunta = salientes(settings, tienda.id, fono)[-1][0]
    assert pregunta["tipo"] == "lista"
    opciones = {o["id"] for o in pregunta["opciones"]}
    assert {f"producto:{tienda.ids['ENTERO']}", f"producto:{tienda.ids['MEDIO']}"} <= opciones
    r = enviar(client, entrega(tienda.pnid, [seleccion(fono, f"producto:{tienda.ids['MEDIO']}", "Medio pollo")]))
    assert r.json() == {"pedido": 1}
    assert filas(settings, tienda.id, "SELECT p.total FROM crm.pedidos p JOIN crm.clientes c ON c.marca_id = "
                 "p.marca_id AND c.id = p.cliente_id WHERE p.marca_id = {m} AND c.telefono = %s", fono) == [(8990,)]


def test_unknown_item_offers_the_menu_and_anything_else_alerts_a_person(client, settings, tienda):
    fono = "+56987650010"
    r = enviar(client, entrega(tienda.pnid, [texto(fono, "quiero sushi")]))
    assert r.json() == {"menu": 1}
    assert "sushi" in salientes(settings, tienda.id, fono)[-1][0]["texto"]
    r = enviar(client, entrega(tienda.pnid, [texto(fono, "¿hacen despacho a Peñalolén los domingos?")]))
    assert r.json() == {"alerta": 1}
    alerta = filas(settings, tienda.id, "SELECT a.estado FROM crm.alertas a JOIN crm.clientes c ON c.marca_id = "
                   "a.marca_id AND c.id = a.cliente_id WHERE a.marca_id = {m} AND c.telefono = %s", fono)
    assert alerta == [("abierta",)]


def test_one_brands_number_never_reaches_another_brand(client, settings, tienda, brand_b):
    fono = "+56987650011"
    antes_b = filas(settings, brand_b.id, "SELECT count(*) FROM crm.interacciones WHERE marca_id = {m}")
    enviar(client, entrega(tienda.pnid, [texto(fono, "hola")]))
    assert filas(settings, brand_b.id, "SELECT count(*) FROM crm.interacciones WHERE marca_id = {m}") == antes_b
    assert filas(settings, brand_b.id, "SELECT count(*) FROM crm.clientes WHERE marca_id = {m} AND telefono = %s",
                 fono) == [(0,)]


def test_twilio_signed_message_is_processed_and_forged_is_refused(client, settings, tienda):
    numero = f"+5622{tienda.id:07d}"
    with admin(settings) as conn:
        conn.execute("INSERT INTO crm.canales (marca_id, proveedor, identificador) VALUES (%s, 'twilio', %s)",
                     (tienda.id, numero))
    fono = "+56987650012"
    params = {"From": f"whatsapp:{fono}", "To": f"whatsapp:{numero}", "Body": "hola", "NumMedia": "0",
              "MessageSid": f"SM{time.time_ns()}", "ProfileName": "Tomás", "WaId": fono.lstrip("+")}
    url = "http://testserver.local/api/webhooks/twilio"
    valid = RequestValidator("test-twilio-token").compute_signature(url, params)
    antes = counts(settings)
    forged = client.post("/api/webhooks/twilio", data=params, headers={"X-Twilio-Signature": "AAAA" + valid[4:]})
    assert forged.status_code == 403 and counts(settings) == antes
    ok = client.post("/api/webhooks/twilio", data=params, headers={"X-Twilio-Signature": valid})
    assert ok.status_code == 200, ok.text
    assert "<Response>" in ok.text
    assert filas(settings, tienda.id, "SELECT nombre FROM crm.clientes WHERE marca_id = {m} AND telefono = %s",
                 fono) == [("Tomás",)]


def test_dashboard_counts_the_whatsapp_channel(client, settings, tienda):
    """make_brand left one inbound WhatsApp message nobody answered and one web order."""
    fono = "+56987650013"
    for mensaje in ("hola", "2 cuartos de pollo", "sí"):
        assert enviar(client, entrega(tienda.pnid, [texto(fono, mensaje)])).status_code == 200
    r = client.get(f"/api/marcas/{tienda.slug}/metricas/dashboard", headers=tienda.h())
    assert r.status_code == 200, r.text
    wa = r.json()["whatsapp"]
    assert sum(p["valor"] for p in wa["mensajes_entrantes_por_dia"]) == 4
    assert sum(p["valor"] for p in wa["mensajes_salientes_por_dia"]) == 3
    assert wa["pedidos"] == 1
    assert wa["conversion"] == 0.5  # two customers wrote, one ordered through WhatsApp
    assert 0 <= wa["mediana_primera_respuesta_segundos"] < 5
