def test_health(client):
    r = client.get("/api/health")
    assert r.status_code == 200
    assert r.json() == {"estado": "ok", "base_de_datos": "ok"}


def test_brand_fixture_reads_its_customer(client, brand_a):
    r = client.get(f"/api/clientes/{brand_a.ids['cliente']}", headers=brand_a.h())
    assert r.status_code == 200, r.text
    assert r.json()["marca_id"] == brand_a.id
