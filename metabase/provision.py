"""Provision Metabase from metabase/tableros.py through its REST API (Metabase v0.50.x).

    METABASE_URL=http://127.0.0.1:3000 METABASE_ADMIN_EMAIL=... METABASE_ADMIN_PASSWORD=... \\
        python -m metabase.provision [--esperar 300] [--sin-refrescar]

Idempotent: every object is found by name and created only when missing; an object that
differs from its definition is updated (PUT), one that matches is left alone, so a second
run makes no change (only GETs, and the login). What it does, in order:

1. Session: on a fresh Metabase, the first admin through `GET /api/session/properties`
   (setup-token) and `POST /api/setup`; otherwise `POST /api/session`.
2. One database connection per brand, logged in as that brand's role (crm_marca_<slug>:
   row-level security shows it one brand), and one for executives (crm_ejecutivo, every
   brand, the `reporting` schema). Host and port come from the CRM's database URL, or
   METABASE_DB_HOST / METABASE_DB_PORT (in docker-compose Metabase reaches PostgreSQL as
   `postgres`). Only the `reporting` schema is synced. Passwords are derived from
   CRM_SECRET_KEY (api.roles); Metabase never shows a stored password back, so the
   connection's description carries a fingerprint of it: a rotated secret updates it.
3. One group and one collection per brand ("Marca <slug>"), and "Ejecutivos".
4. Data permissions (`/api/permissions/graph`): a brand's group may query its brand's
   connection only; "Ejecutivos" the executive connection only; "All Users" none of them.
   Collection permissions (`/api/collection/graph`): a brand's group reads its collection
   only; "Ejecutivos" reads every one; "All Users" none, root collection included.
5. In each collection, the cards and the four dashboards of metabase/tableros.py, over that
   collection's connection; the executives' ones with the brand filter.
6. Unless --sin-refrescar: `resumen.refrescar()` once (as crm_api), so the dashboards have
   figures before the scheduler's first run.

Prints what it created, updated or found; exits 1 with a message when Metabase refuses.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httpx

from api import roles
from api.config import Settings

from .tableros import ETIQUETAS, TABLEROS, TIPO_FILTRO, TIPO_PARAMETRO, Tablero, Tarjeta, id_etiqueta

VERSION = "v0.50.10"  # docker image metabase/metabase:v0.50.10
SESION = "X-Metabase-Session"
REDACTADA = "**MetabasePass**"  # what Metabase returns in place of a stored password
GRUPO_TODOS = "All Users"
GRUPO_ADMIN = "Administrators"
EJECUTIVOS = "Ejecutivos"
ANCHO_GRILLA = 24
PROPIA = {"view-data": "unrestricted", "create-queries": "query-builder-and-native"}
AJENA = {"view-data": "unrestricted", "create-queries": "no"}


class MetabaseError(RuntimeError):
    """Metabase refused or could not be reached; the message says which call and why."""


# ---------------------------------------------------------------- configuration
@dataclass(frozen=True)
class Config:
    url: str
    email: str
    password: str
    db_host: str | None = None  # host Metabase uses to reach PostgreSQL (None: the CRM's)
    db_port: int | None = None
    nombre_sitio: str = "CRM"
    nombre: str = "Administrador"
    apellido: str = "CRM"


def config_desde_entorno(env: dict | None = None) -> Config:
    env = os.environ if env is None else env
    faltan = [v for v in ("METABASE_ADMIN_EMAIL", "METABASE_ADMIN_PASSWORD") if not env.get(v)]
    if faltan:
        raise SystemExit(f"Faltan variables de entorno: {', '.join(faltan)}")
    puerto = env.get("METABASE_DB_PORT") or None
    if puerto is not None and not puerto.isdigit():
        raise SystemExit(f"METABASE_DB_PORT debe ser un número, no {puerto!r}")
    return Config(
        url=(env.get("METABASE_URL") or "http://127.0.0.1:3000").rstrip("/"),
        email=env["METABASE_ADMIN_EMAIL"],
        password=env["METABASE_ADMIN_PASSWORD"],
        db_host=env.get("METABASE_DB_HOST") or None,
        db_port=int(puerto) if puerto else None,
        nombre_sitio=env.get("METABASE_SITE_NAME") or "CRM",
    )


@dataclass(frozen=True)
class Conexion:
    """One Metabase database connection and the group and collection that go with it."""

    nombre: str  # the connection's name in Metabase
    grupo: str
    coleccion: str
    descripcion_coleccion: str
    rol: str
    ejecutivo: bool  # executives' dashboards: brand filter
    detalles: dict = field(hash=False)

    @property
    def descripcion(self) -> str:
        huella = hashlib.sha256(self.detalles["password"].encode()).hexdigest()[:12]
        quien = (
            "todas las marcas, solo lectura del esquema reporting"
            if self.ejecutivo
            else "una sola marca: la seguridad por filas de PostgreSQL filtra el resto"
        )
        return f"CRM como {self.rol}: {quien}. Aprovisionada por metabase/provision.py (clave {huella})."


@dataclass(frozen=True)
class Marca:
    slug: str
    nombre: str


def leer_marcas(s: Settings) -> list[Marca]:
    """The brands, read as the executive role (it reads crm.marcas across brands)."""
    import psycopg

    with psycopg.connect(roles.role_url(roles.EXECUTIVE, s), connect_timeout=10) as conn:
        return [Marca(*r) for r in conn.execute("SELECT slug, nombre FROM crm.marcas ORDER BY id")]


def conexiones(s: Settings, cfg: Config, marcas: Iterable[Marca]) -> list[Conexion]:
    """The executives' connection first, then one per brand."""
    url = urlsplit(roles.admin_url(s))
    base = {
        "host": cfg.db_host or url.hostname or "127.0.0.1",
        "port": cfg.db_port or url.port or 5432,
        "dbname": roles.database_name(s),
    }

    def detalles(rol: str) -> dict:
        return {
            **base,
            "user": rol,
            "password": roles.password_for(rol, s),
            "ssl": False,
            "tunnel-enabled": False,
            "advanced-options": False,
            "schema-filters-type": "inclusion",
            "schema-filters-patterns": "reporting",
        }

    out = [
        Conexion(
            "CRM ejecutivos (todas las marcas)",
            EJECUTIVOS,
            EJECUTIVOS,
            "Tableros del grupo: todas las marcas, con filtro de marca.",
            roles.EXECUTIVE,
            True,
            detalles(roles.EXECUTIVE),
        )
    ]
    for m in marcas:
        rol = roles.brand_role(m.slug)
        out.append(
            Conexion(
                f"CRM {m.slug}",
                f"Marca {m.slug}",
                f"Marca {m.slug}",
                f"Tableros de {m.nombre}: solo sus datos.",
                rol,
                False,
                detalles(rol),
            )
        )
    return out


# ---------------------------------------------------------------- HTTP
class Cliente:
    """A thin JSON client of Metabase's API that carries the session header."""

    def __init__(self, url: str, timeout: float = 60, http: httpx.Client | None = None):
        self.http = http or httpx.Client(base_url=url, timeout=timeout)
        self.sesion: str | None = None

    def close(self) -> None:
        self.http.close()

    def llamar(self, metodo: str, ruta: str, cuerpo=None, params=None):
        headers = {SESION: self.sesion} if self.sesion else {}
        try:
            r = self.http.request(metodo, ruta, json=cuerpo, params=params, headers=headers)
        except httpx.HTTPError as e:
            raise MetabaseError(f"No se pudo llamar a Metabase ({metodo} {ruta}): {e}") from None
        if r.status_code >= 400:
            raise MetabaseError(f"Metabase respondió {r.status_code} a {metodo} {ruta}: {r.text[:500]}")
        return r.json() if r.content else None

    def get(self, ruta, **params):
        return self.llamar("GET", ruta, params=params or None)

    def post(self, ruta, cuerpo):
        return self.llamar("POST", ruta, cuerpo)

    def put(self, ruta, cuerpo):
        return self.llamar("PUT", ruta, cuerpo)


def esperar(cliente: Cliente, segundos: float) -> None:
    """Until `GET /api/health` says ok (Metabase takes a minute or two to start)."""
    limite = time.monotonic() + segundos
    while True:
        try:
            if (cliente.get("/api/health") or {}).get("status") == "ok":
                return
        except MetabaseError:
            pass
        if time.monotonic() > limite:
            raise MetabaseError(f"Metabase no respondió sano en {segundos:.0f} s (GET /api/health)")
        time.sleep(2)


# ---------------------------------------------------------------- comparing
def contiene(actual, deseado) -> bool:
    """Whether `actual` (what Metabase returns) already says everything `deseado` says: dicts
    may carry more keys (Metabase adds its own), lists must match element by element."""
    if isinstance(deseado, dict):
        return isinstance(actual, dict) and all(
            k in actual and contiene(actual[k], v) for k, v in deseado.items()
        )
    if isinstance(deseado, list | tuple):
        return (
            isinstance(actual, list | tuple)
            and len(actual) == len(deseado)
            and all(contiene(a, d) for a, d in zip(actual, deseado, strict=True))
        )
    return actual == deseado


@dataclass
class Informe:
    """What a run did, line by line; printed as it goes."""

    salida: Callable[[str], None] = print
    lineas: list[tuple[str, str, str]] = field(default_factory=list)

    def __call__(self, accion: str, tipo: str, nombre: str) -> None:
        self.lineas.append((accion, tipo, nombre))
        self.salida(f"{accion:<11} {tipo:<22} {nombre}")

    def cuenta(self, accion: str) -> int:
        return sum(1 for a, _, _ in self.lineas if a == accion)

    def resumen(self) -> str:
        return (
            f"Metabase: {self.cuenta('creado')} creados, {self.cuenta('actualizado')} actualizados, "
            f"{self.cuenta('sin cambios')} sin cambios"
        )


# ---------------------------------------------------------------- the steps
def iniciar_sesion(c: Cliente, cfg: Config, informe: Informe) -> None:
    props = c.get("/api/session/properties") or {}
    if not props.get("has-user-setup"):
        token = props.get("setup-token")
        if not token:
            raise MetabaseError("Metabase no tiene usuarios pero no entregó setup-token")
        r = c.post(
            "/api/setup",
            {
                "token": token,
                "user": {
                    "first_name": cfg.nombre,
                    "last_name": cfg.apellido,
                    "email": cfg.email,
                    "password": cfg.password,
                    "site_name": cfg.nombre_sitio,
                },
                "prefs": {"site_name": cfg.nombre_sitio, "site_locale": "es", "allow_tracking": False},
            },
        )
        informe("creado", "administrador", cfg.email)
    else:
        try:
            r = c.post("/api/session", {"username": cfg.email, "password": cfg.password})
        except MetabaseError as e:
            raise MetabaseError(
                f"No se pudo iniciar sesión como {cfg.email} "
                f"(METABASE_ADMIN_EMAIL / METABASE_ADMIN_PASSWORD): {e}"
            ) from None
        informe("sin cambios", "administrador", cfg.email)
    c.sesion = r["id"]


def asegurar_bases(c: Cliente, conns: list[Conexion], informe: Informe) -> dict[str, int]:
    existentes = {d["name"]: d for d in (c.get("/api/database") or {}).get("data", [])}
    ids = {}
    for k in conns:
        visibles = {kk: v for kk, v in k.detalles.items() if kk != "password"}
        d = existentes.get(k.nombre)
        if d is None:
            d = c.post(
                "/api/database",
                {
                    "name": k.nombre,
                    "engine": "postgres",
                    "details": k.detalles,
                    "is_full_sync": True,
                    "is_on_demand": False,
                    "auto_run_queries": True,
                },
            )
            c.put(f"/api/database/{d['id']}", {"description": k.descripcion})
            informe("creado", "conexión", k.nombre)
        elif (
            d.get("engine") != "postgres"
            or not contiene(d.get("details"), visibles)
            or d.get("description") != k.descripcion
        ):
            # the description's fingerprint changes with the password (Metabase never shows it)
            c.put(
                f"/api/database/{d['id']}",
                {"engine": "postgres", "details": k.detalles, "description": k.descripcion},
            )
            informe("actualizado", "conexión", k.nombre)
        else:
            informe("sin cambios", "conexión", k.nombre)
        ids[k.nombre] = d["id"]
    return ids


def asegurar_grupos(c: Cliente, conns: list[Conexion], informe: Informe) -> tuple[dict[str, int], int]:
    lista = c.get("/api/permissions/group") or []
    existentes = {g["name"]: g["id"] for g in lista}
    # "All Users" by its magic type where Metabase says it, else by its (never translated) name
    todos = next(
        (g["id"] for g in lista if g.get("magic_group_type") == "all-internal-users"),
        existentes.get(GRUPO_TODOS),
    )
    if todos is None:
        raise MetabaseError(f"Metabase no tiene el grupo «{GRUPO_TODOS}»")
    ids = {}
    for k in conns:
        if k.grupo in existentes:
            informe("sin cambios", "grupo", k.grupo)
        else:
            existentes[k.grupo] = c.post("/api/permissions/group", {"name": k.grupo})["id"]
            informe("creado", "grupo", k.grupo)
        ids[k.grupo] = existentes[k.grupo]
    return ids, todos


def asegurar_colecciones(c: Cliente, conns: list[Conexion], informe: Informe) -> dict[str, int]:
    existentes = {}
    for col in c.get("/api/collection") or []:
        if (
            isinstance(col.get("id"), int)
            and not col.get("archived")
            and col.get("personal_owner_id") is None
            and col.get("location", "/") == "/"
            and col.get("namespace") is None
        ):
            existentes.setdefault(col["name"], col)
    ids = {}
    for k in conns:
        col = existentes.get(k.coleccion)
        if col is None:
            col = c.post(
                "/api/collection",
                {"name": k.coleccion, "description": k.descripcion_coleccion, "parent_id": None},
            )
            informe("creado", "colección", k.coleccion)
        elif col.get("description") != k.descripcion_coleccion:
            c.put(f"/api/collection/{col['id']}", {"description": k.descripcion_coleccion})
            informe("actualizado", "colección", k.coleccion)
        else:
            informe("sin cambios", "colección", k.coleccion)
        ids[k.coleccion] = col["id"]
    return ids


def asegurar_permisos(
    c: Cliente,
    conns: list[Conexion],
    bases: dict[str, int],
    grupos: dict[str, int],
    todos: int,
    colecciones: dict[str, int],
    informe: Informe,
) -> None:
    # data: a group queries its own connection only; All Users none of ours
    deseado = {todos: {bases[k.nombre]: AJENA for k in conns}}
    for k in conns:
        deseado[grupos[k.grupo]] = {bases[o.nombre]: PROPIA if o is k else AJENA for o in conns}
    grafo = c.get("/api/permissions/graph")
    cambios = {}
    for g, dbs in deseado.items():
        actual = grafo["groups"].get(str(g), {})
        distintos = {str(db): p for db, p in dbs.items() if not contiene(actual.get(str(db)), p)}
        if distintos:
            cambios[str(g)] = distintos
    if cambios:
        c.put("/api/permissions/graph", {"revision": grafo["revision"], "groups": cambios})
        informe(
            "actualizado", "permisos de datos", ", ".join(_nombre_grupo(g, grupos, todos) for g in cambios)
        )
    else:
        informe("sin cambios", "permisos de datos", f"{len(deseado)} grupos")

    # collections: a brand's group reads its own; Ejecutivos read all; All Users none (root included)
    nuestras = [colecciones[k.coleccion] for k in conns]
    deseado_col = {todos: {"root": "none", **{cid: "none" for cid in nuestras}}}
    for k in conns:
        propia = colecciones[k.coleccion]
        deseado_col[grupos[k.grupo]] = {
            "root": "none",
            **{cid: "read" if k.ejecutivo or cid == propia else "none" for cid in nuestras},
        }
    grafo = c.get("/api/collection/graph")
    cambios = {}
    for g, cols in deseado_col.items():
        actual = grafo["groups"].get(str(g), {})
        distintos = {str(cid): p for cid, p in cols.items() if actual.get(str(cid)) != p}
        if distintos:
            cambios[str(g)] = distintos
    if cambios:
        c.put("/api/collection/graph", {"revision": grafo["revision"], "groups": cambios})
        informe(
            "actualizado",
            "permisos de colección",
            ", ".join(_nombre_grupo(g, grupos, todos) for g in cambios),
        )
    else:
        informe("sin cambios", "permisos de colección", f"{len(deseado_col)} grupos")


def _nombre_grupo(g: str, grupos: dict[str, int], todos: int) -> str:
    return GRUPO_TODOS if int(g) == todos else next(n for n, i in grupos.items() if i == int(g))


def cuerpo_tarjeta(tablero: Tablero, t: Tarjeta, base_id: int, coleccion_id: int, ejecutivo: bool) -> dict:
    """The card as POST/PUT /api/card take it: a native query with its template tags."""
    nombres = t.etiquetas(ejecutivo)
    etiquetas = {
        n: {"id": id_etiqueta(tablero.nombre, t.nombre, n), "name": n, **ETIQUETAS[n]} for n in nombres
    }
    parametros = [
        {
            "id": e["id"],
            "type": TIPO_PARAMETRO[e["type"]],
            "target": ["variable", ["template-tag", n]],
            "name": e["display-name"],
            "slug": n,
        }
        for n, e in etiquetas.items()
    ]
    return {
        "name": t.nombre,
        "description": t.descripcion,
        "type": "question",
        "display": t.visualizacion,
        "visualization_settings": t.ajustes,
        "collection_id": coleccion_id,
        "dataset_query": {
            "database": base_id,
            "type": "native",
            "native": {"query": t.sql_para(ejecutivo), "template-tags": etiquetas},
        },
        "parameters": parametros,
    }


def asegurar_tarjetas(
    c: Cliente, conns: list[Conexion], bases: dict[str, int], colecciones: dict[str, int], informe: Informe
) -> dict[tuple[int, str], dict]:
    existentes: dict[tuple[int | None, str], dict] = {}
    for card in c.get("/api/card") or []:
        if not card.get("archived"):
            existentes.setdefault((card.get("collection_id"), card["name"]), card)
    hechas = {}
    for k in conns:
        cid = colecciones[k.coleccion]
        for tablero in TABLEROS:
            for t in tablero.tarjetas:
                cuerpo = cuerpo_tarjeta(tablero, t, bases[k.nombre], cid, k.ejecutivo)
                card = existentes.get((cid, t.nombre))
                etiqueta = f"{k.coleccion} / {t.nombre}"
                if card is None:
                    card = c.post("/api/card", cuerpo)
                    informe("creado", "tarjeta", etiqueta)
                elif not contiene(card, cuerpo):
                    card = c.put(f"/api/card/{card['id']}", cuerpo)
                    informe("actualizado", "tarjeta", etiqueta)
                else:
                    informe("sin cambios", "tarjeta", etiqueta)
                hechas[(cid, t.nombre)] = {**card, "_etiquetas": t.etiquetas(k.ejecutivo)}
    return hechas


def parametros_tablero(ejecutivo: bool, marcas: list[str]) -> list[dict]:
    out = [
        {
            "id": n,
            "name": ETIQUETAS[n]["display-name"],
            "slug": n,
            "type": TIPO_FILTRO["date"],
            "sectionId": "date",
        }
        for n in ("desde", "hasta")
    ]
    if ejecutivo:
        out.append(
            {
                "id": "marca",
                "name": "Marca",
                "slug": "marca",
                "type": TIPO_FILTRO["text"],
                "sectionId": "string",
                "isMultiSelect": False,
                "values_query_type": "list",
                "values_source_type": "static-list",
                "values_source_config": {"values": marcas},
            }
        )
    return out


def disposicion(tarjetas: Iterable[Tarjeta]) -> list[tuple[int, int]]:
    """(row, col) of each card: left to right on a 24-column grid, a new row when one is full."""
    pos, fila, col, alto = [], 0, 0, 0
    for t in tarjetas:
        if col + t.ancho > ANCHO_GRILLA:
            fila, col, alto = fila + alto, 0, 0
        pos.append((fila, col))
        col, alto = col + t.ancho, max(alto, t.alto)
    return pos


def tarjetas_del_tablero(tablero: Tablero, cid: int, cards: dict, parametros: list[dict]) -> list[dict]:
    ids_parametros = {p["id"] for p in parametros}
    out = []
    for t, (fila, col) in zip(tablero.tarjetas, disposicion(tablero.tarjetas), strict=True):
        card = cards[(cid, t.nombre)]
        out.append(
            {
                "card_id": card["id"],
                "row": fila,
                "col": col,
                "size_x": t.ancho,
                "size_y": t.alto,
                "parameter_mappings": [
                    {"parameter_id": e, "card_id": card["id"], "target": ["variable", ["template-tag", e]]}
                    for e in card["_etiquetas"]
                    if e in ids_parametros
                ],
                "visualization_settings": {},
                "series": [],
            }
        )
    return out


def asegurar_tableros(
    c: Cliente,
    conns: list[Conexion],
    colecciones: dict[str, int],
    cards: dict,
    marcas: list[str],
    informe: Informe,
) -> None:
    for k in conns:
        cid = colecciones[k.coleccion]
        items = c.get(f"/api/collection/{cid}/items", models="dashboard") or {}
        existentes = {}
        for d in items.get("data", []):
            if d.get("model") == "dashboard":
                existentes.setdefault(d["name"], d["id"])
        parametros = parametros_tablero(k.ejecutivo, marcas)
        for tablero in TABLEROS:
            etiqueta = f"{k.coleccion} / {tablero.nombre}"
            deseadas = tarjetas_del_tablero(tablero, cid, cards, parametros)
            did = existentes.get(tablero.nombre)
            nuevo = did is None
            if nuevo:
                did = c.post(
                    "/api/dashboard",
                    {
                        "name": tablero.nombre,
                        "description": tablero.descripcion,
                        "collection_id": cid,
                        "parameters": parametros,
                    },
                )["id"]
            actual = c.get(f"/api/dashboard/{did}")
            presentes = sorted(actual.get("dashcards") or [], key=lambda d: (d["row"], d["col"]))
            al_dia = (
                actual.get("description") == tablero.descripcion
                and contiene(actual.get("parameters"), parametros)
                and len(presentes) == len(deseadas)
                and all(
                    contiene(
                        p, {kk: v for kk, v in d.items() if kk not in ("series", "visualization_settings")}
                    )
                    for p, d in zip(presentes, deseadas, strict=False)
                )
            )
            if not al_dia:
                # reuse the ids of dashcards that show the same card; new ones get negative ids
                libres = {}
                for p in presentes:
                    libres.setdefault(p["card_id"], []).append(p["id"])
                dashcards = []
                for i, d in enumerate(deseadas, start=1):
                    reuso = libres.get(d["card_id"])
                    dashcards.append({"id": reuso.pop(0) if reuso else -i, **d})
                c.put(
                    f"/api/dashboard/{did}",
                    {
                        "description": tablero.descripcion,
                        "parameters": parametros,
                        "dashcards": dashcards,
                        "tabs": [],
                    },
                )
            informe(
                "creado" if nuevo else "actualizado" if not al_dia else "sin cambios", "tablero", etiqueta
            )


def refrescar_resumen(s: Settings, informe: Informe) -> None:
    import psycopg

    with psycopg.connect(roles.role_url(roles.API, s), autocommit=True, connect_timeout=10) as conn:
        pasos = [r[0] for r in conn.execute("SELECT resumen.refrescar()")]
    informe("refrescado", "resumen", "; ".join(pasos))


def provisionar(
    cfg: Config,
    s: Settings,
    marcas: list[Marca] | None = None,
    cliente: Cliente | None = None,
    salida: Callable[[str], None] = print,
) -> Informe:
    """Everything the module docstring lists except the summary refresh; returns the report."""
    informe = Informe(salida)
    marcas = leer_marcas(s) if marcas is None else marcas
    conns = conexiones(s, cfg, marcas)
    c = cliente or Cliente(cfg.url)
    try:
        iniciar_sesion(c, cfg, informe)
        bases = asegurar_bases(c, conns, informe)
        grupos, todos = asegurar_grupos(c, conns, informe)
        colecciones = asegurar_colecciones(c, conns, informe)
        asegurar_permisos(c, conns, bases, grupos, todos, colecciones, informe)
        cards = asegurar_tarjetas(c, conns, bases, colecciones, informe)
        asegurar_tableros(c, conns, colecciones, cards, [m.slug for m in marcas], informe)
    finally:
        if cliente is None:
            c.close()
    return informe


def main(argv: list[str] | None = None) -> int:
    import psycopg

    from api.config import settings

    ap = argparse.ArgumentParser(prog="python -m metabase.provision", description=__doc__.split("\n")[0])
    ap.add_argument(
        "--esperar",
        type=float,
        default=0,
        metavar="SEGUNDOS",
        help="esperar hasta que Metabase responda sano (GET /api/health)",
    )
    ap.add_argument("--sin-refrescar", action="store_true", help="no recalcular el resumen de los tableros")
    ap.add_argument("--json", action="store_true", help="al final, lo hecho como JSON")
    args = ap.parse_args(argv)
    s = settings()  # first: it reads .env, where the METABASE_* variables may be too
    cfg = config_desde_entorno()
    try:
        if args.esperar:
            c = Cliente(cfg.url)
            try:
                esperar(c, args.esperar)
            finally:
                c.close()
        informe = provisionar(cfg, s)
        if not args.sin_refrescar:
            refrescar_resumen(s, informe)
    except MetabaseError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except psycopg.Error as e:
        print(f"error: la base de datos del CRM no respondió: {str(e).strip()}", file=sys.stderr)
        return 1
    print(informe.resumen())
    if args.json:
        print(
            json.dumps(
                [{"accion": a, "tipo": t, "nombre": n} for a, t, n in informe.lineas], ensure_ascii=False
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
