"""A brand's WhatsApp channels: `POST/GET /api/marcas/{marca}/canales` (admin keys only)
and `crm channels add|list`, on the real test database.

One phone_number_id (Meta) or number (Twilio) belongs to one brand across brands: the
webhook finds the brand by it before any brand is known.
"""

from __future__ import annotations

import dataclasses
import itertools
import os

import psycopg
import pytest
from conftest import admin, counts, make_brand

from api import cli, installer, roles
from api.config import settings as env_settings
from api.services import canales

_ids = itertools.count(1)


def phone_number_id() -> str:
    return f"1{os.getpid() % 100000:05d}{next(_ids):09d}"


def url(brand) -> str:
    return f"/api/marcas/{brand.slug}/canales"


def canales_de(s, marca_id: int) -> list[tuple]:
    with admin(s) as conn:
        return conn.execute(
            "SELECT proveedor, identificador, numero, activo FROM crm.canales "
            "WHERE marca_id = %s ORDER BY id",
            (marca_id,),
        ).fetchall()


@pytest.fixture(scope="module")
def marca(settings, api_engine):
    return make_brand(settings, api_engine, "can")


@pytest.fixture(scope="module")
def otra(settings, api_engine):
    return make_brand(settings, api_engine, "can")


# ---------------------------------------------------------------- API


def test_crear_y_listar_canal_meta(client, settings, marca):
    pnid = phone_number_id()
    r = client.post(
        url(marca),
        headers=marca.h("admin"),
        json={"proveedor": "meta", "identificador": pnid, "numero": "+56 2 2938 4455"},
    )
    assert r.status_code == 201, r.text
    creado = r.json()
    assert {k: creado[k] for k in ("marca_id", "proveedor", "identificador", "numero", "activo")} == {
        "marca_id": marca.id,
        "proveedor": "meta",
        "identificador": pnid,
        "numero": "+56229384455",
        "activo": True,
    }
    r = client.get(url(marca), headers=marca.h("admin"))
    assert r.status_code == 200
    listados = r.json()
    assert [c["identificador"] for c in listados] == [f"pnid-{marca.slug}", pnid]  # make_brand's, then ours
    assert {c["marca_id"] for c in listados} == {marca.id}
    assert listados[1] == creado


def test_crear_canal_twilio_normaliza_el_numero(client, settings, marca):
    numero = f"2 2938 {next(_ids) % 10000:04d}"
    r = client.post(
        url(marca),
        headers=marca.h("admin"),
        json={"proveedor": "twilio", "identificador": numero, "numero": None, "activo": False},
    )
    assert r.status_code == 201, r.text
    e164 = "+56" + numero.replace(" ", "")
    assert (r.json()["identificador"], r.json()["numero"], r.json()["activo"]) == (e164, e164, False)
    # the webhook finds it only once active
    with psycopg.connect(roles.role_url(roles.API, settings)) as conn:
        assert conn.execute("SELECT * FROM crm.canal_de('twilio', %s)", (e164,)).fetchall() == []


def test_la_clave_del_grupo_gestiona_cualquier_marca(client, group_key, marca):
    pnid = phone_number_id()
    r = client.post(
        url(marca), headers={"X-API-Key": group_key}, json={"proveedor": "meta", "identificador": pnid}
    )
    assert r.status_code == 201 and r.json()["marca_id"] == marca.id
    assert pnid in [
        c["identificador"] for c in client.get(url(marca), headers={"X-API-Key": group_key}).json()
    ]


@pytest.mark.parametrize(
    "cuerpo,campo",
    [
        ({"proveedor": "twilio", "identificador": "pnid-no-es-numero"}, "identificador"),
        ({"proveedor": "twilio", "identificador": "+56 2 123"}, "identificador"),
        ({"proveedor": "twilio", "identificador": "+56229380000", "numero": "+56229380001"}, "numero"),
        ({"proveedor": "meta", "identificador": "phone-number-id"}, "identificador"),
        ({"proveedor": "meta", "identificador": "   "}, "identificador"),
        ({"proveedor": "meta", "identificador": "100000000000999", "numero": "no es un número"}, "numero"),
        ({"proveedor": "whatsapp-web", "identificador": "100000000000999"}, "proveedor"),
        ({"proveedor": "meta"}, "identificador"),
        ({"proveedor": "meta", "identificador": "1" * 65}, "identificador"),
        ({"proveedor": "meta", "identificador": "100000000000999", "webhook": "x"}, "webhook"),
    ],
)
def test_datos_invalidos_nombran_el_campo(client, settings, marca, cuerpo, campo):
    antes = counts(settings)
    r = client.post(url(marca), headers=marca.h("admin"), json=cuerpo)
    assert r.status_code in (400, 422), r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    # the field is named (a missing one in the detail: the existing body-error convention)
    assert campo in [e["campo"] for e in r.json()["errores"]] or f"`{campo}`" in r.json()["detail"], r.json()
    assert counts(settings) == antes


def test_identificador_repetido_es_409_aun_en_otra_marca(client, settings, marca, otra):
    pnid = phone_number_id()
    assert (
        client.post(
            url(marca), headers=marca.h("admin"), json={"proveedor": "meta", "identificador": pnid}
        ).status_code
        == 201
    )
    antes = counts(settings)
    for quien in (otra, marca):
        r = client.post(
            url(quien), headers=quien.h("admin"), json={"proveedor": "meta", "identificador": pnid}
        )
        assert r.status_code == 409, r.text
        assert r.headers["content-type"].startswith("application/problem+json")
        assert [e["campo"] for e in r.json()["errores"]] == ["identificador"]
        assert str(marca.id) not in r.json()["detail"] and marca.slug not in r.json()["detail"]
    assert counts(settings) == antes
    # the same id under the other provider is another channel
    assert (
        client.post(
            url(otra), headers=otra.h("admin"), json={"proveedor": "twilio", "identificador": "+56229387766"}
        ).status_code
        == 201
    )
    r = client.post(
        url(marca), headers=marca.h("admin"), json={"proveedor": "twilio", "identificador": "2 2938 7766"}
    )
    assert r.status_code == 409 and r.json()["errores"][0]["campo"] == "identificador"


def test_la_clave_de_una_marca_no_ve_ni_crea_canales_de_otra(client, settings, marca, otra):
    antes = canales_de(settings, otra.id)
    for ref in (otra.slug, str(otra.id)):
        r = client.get(f"/api/marcas/{ref}/canales", headers=marca.h("admin"))
        assert r.status_code == 404, r.text
        r = client.post(
            f"/api/marcas/{ref}/canales",
            headers=marca.h("admin"),
            json={"proveedor": "meta", "identificador": phone_number_id()},
        )
        assert r.status_code == 404, r.text
    assert canales_de(settings, otra.id) == antes


@pytest.mark.parametrize("rol", ["staff", "lector", "integracion"])
def test_solo_las_claves_admin(client, settings, marca, rol):
    antes = counts(settings)
    r = client.get(url(marca), headers=marca.h(rol))
    assert r.status_code == 403 and "admin" in r.json()["detail"]
    r = client.post(
        url(marca), headers=marca.h(rol), json={"proveedor": "meta", "identificador": phone_number_id()}
    )
    assert r.status_code == 403
    assert counts(settings) == antes


def test_sin_clave_es_401(client, marca):
    assert client.get(url(marca)).status_code == 401
    assert client.post(url(marca), json={"proveedor": "meta", "identificador": "123456"}).status_code == 401


# ---------------------------------------------------------------- service


def test_valores_normaliza_y_valida():
    assert canales.valores("twilio", " +56 2 2938 0000 ") == {
        "proveedor": "twilio",
        "identificador": "+56229380000",
        "numero": "+56229380000",
        "activo": True,
    }
    assert canales.valores("meta", "100000000000001", "9 8765 4321", activo=False) == {
        "proveedor": "meta",
        "identificador": "100000000000001",
        "numero": "+56987654321",
        "activo": False,
    }
    with pytest.raises(canales.CanalInvalido) as e:
        canales.valores("meta", "abc")
    assert e.value.campo == "identificador" and "phone_number_id" in e.value.mensaje
    with pytest.raises(canales.CanalInvalido) as e:
        canales.valores("twilio", "123")
    assert e.value.campo == "identificador" and "E.164" in e.value.mensaje


# ---------------------------------------------------------------- CLI


@pytest.fixture
def cli_env(settings, monkeypatch):
    """`crm` reads its settings from the environment: point it at the test database."""
    monkeypatch.setenv("DATABASE_URL", roles.admin_url(settings))
    monkeypatch.setenv("CRM_SECRET_KEY", settings.secret_key)
    env_settings.cache_clear()
    yield
    env_settings.cache_clear()


def test_cli_channels_add_y_list(cli_env, settings, capsys, marca):
    pnid = phone_number_id()
    assert (
        cli.main(
            [
                "channels",
                "add",
                "--brand",
                marca.slug,
                "--provider",
                "meta",
                "--phone-number-id",
                pnid,
                "--number",
                "+56 2 2938 1111",
            ]
        )
        == 0
    )
    salida = capsys.readouterr()
    canal_id = int(salida.out.strip())
    assert f"canal {canal_id} de {marca.slug} creado: meta {pnid} (+56229381111)" in salida.err

    numero = f"+56 2 2939 {next(_ids) % 10000:04d}"
    assert (
        cli.main(["channels", "add", "--brand", marca.slug, "--provider", "twilio", "--number", numero]) == 0
    )
    capsys.readouterr()
    assert ("meta", pnid, "+56229381111", True) in canales_de(settings, marca.id)
    assert ("twilio", numero.replace(" ", ""), numero.replace(" ", ""), True) in canales_de(
        settings, marca.id
    )

    assert cli.main(["channels", "list", "--brand", marca.slug]) == 0
    lineas = capsys.readouterr().out.splitlines()
    assert f"{canal_id}\t{marca.slug}\tmeta\t{pnid}\t+56229381111\tactivo" in lineas
    assert len(lineas) == len(canales_de(settings, marca.id))

    assert cli.main(["channels", "list"]) == 0  # every brand
    todas = capsys.readouterr().out.splitlines()
    assert set(lineas) <= set(todas) and any(f"\tpnid-{marca.slug}\t" in ln for ln in todas)


def test_cli_channels_errores(cli_env, settings, capsys, marca, otra):
    assert cli.main(["channels", "add", "--brand", marca.slug, "--provider", "twilio"]) == 2
    assert "--number" in capsys.readouterr().err
    assert cli.main(["channels", "add", "--brand", marca.slug, "--provider", "meta"]) == 2
    assert "--phone-number-id" in capsys.readouterr().err
    assert (
        cli.main(["channels", "add", "--brand", marca.slug, "--provider", "meta", "--phone-number-id", "x"])
        == 2
    )
    assert "phone_number_id" in capsys.readouterr().err
    assert (
        cli.main(
            ["channels", "add", "--brand", "no-existe", "--provider", "meta", "--phone-number-id", "1234"]
        )
        == 1
    )
    assert "no existe la marca no-existe" in capsys.readouterr().err
    # an identifier of another brand: the database refuses it, the CLI says so in one line
    assert (
        cli.main(
            [
                "channels",
                "add",
                "--brand",
                otra.slug,
                "--provider",
                "meta",
                "--phone-number-id",
                f"pnid-{marca.slug}",
            ]
        )
        == 2
    )  # not digits: refused before
    capsys.readouterr()
    pnid = phone_number_id()
    assert (
        cli.main(["channels", "add", "--brand", marca.slug, "--provider", "meta", "--phone-number-id", pnid])
        == 0
    )
    capsys.readouterr()
    antes = counts(settings)
    assert (
        cli.main(["channels", "add", "--brand", otra.slug, "--provider", "meta", "--phone-number-id", pnid])
        == 1
    )
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "ya está registrado" in err and len(err.strip().splitlines()) == 1
    assert counts(settings) == antes


# ---------------------------------------------------------------- demo data


def test_seed_demo_da_a_cada_marca_su_canal_y_sus_plantillas(settings):
    """`crm seed demo`: a channel and approved templates per demo brand, also added to demo
    data loaded before channels existed; a third run adds nothing."""
    from api.seed import DEMO_PLANTILLAS, load_demo

    name = f"{settings.db_name}_seed_canales"
    installer.drop_database(settings, name)
    installer.create_database(settings, name)
    installer.install(settings, database=name)
    s = dataclasses.replace(
        settings, database_url=roles.with_database(roles.admin_url(settings), name), db_name=name
    )

    def dueno(q: str) -> list[tuple]:
        with psycopg.connect(roles.role_url(roles.OWNER, s), autocommit=True) as conn:
            cur = conn.execute(q)
            return cur.fetchall() if cur.description else []

    try:
        resumen = load_demo(s, scale=0.01)
        assert "whatsapp: 3 canales de WhatsApp y 6 plantillas" in resumen
        esperado = [
            ("eco-eterno", "twilio", "+56229380000", "+56229380000"),
            ("goio", "meta", "100000000000002", "+56229380002"),
            ("gollos", "meta", "100000000000001", "+56229380001"),
        ]
        canales_demo = """SELECT m.slug, c.proveedor, c.identificador, c.numero FROM crm.canales c
                          JOIN crm.marcas m ON m.id = c.marca_id ORDER BY m.slug"""
        plantillas = """SELECT m.slug, p.nombre, p.aprobada FROM crm.plantillas p
                        JOIN crm.marcas m ON m.id = p.marca_id ORDER BY 1, 2"""
        assert dueno(canales_demo) == esperado
        assert dueno(plantillas) == [
            (m, n, True) for m in ("eco-eterno", "goio", "gollos") for n in sorted(DEMO_PLANTILLAS)
        ]
        # the webhook finds each brand by its number
        with psycopg.connect(roles.role_url(roles.API, s)) as conn:
            assert len(conn.execute("SELECT * FROM crm.canal_de('meta', '100000000000001')").fetchall()) == 1

        # demo data from before channels existed: only what is missing is added
        dueno("DELETE FROM crm.canales; DELETE FROM crm.plantillas WHERE nombre = 'bienvenida'")
        again = load_demo(s, scale=0.01)
        assert "ya existen" in again and "solo se agregó 3 canales de WhatsApp y 3 plantillas" in again
        assert dueno(canales_demo) == esperado and len(dueno(plantillas)) == 6
        third = load_demo(s, scale=0.01)
        assert third.endswith("no se cargó nada")
    finally:
        installer.drop_database(settings, name)
