"""Provision NocoDB for the brands' staff: one base per brand, on that brand's login role.

    python -m nocodb.provision [SLUG...]    create or update every brand's base (idempotent)
    python -m nocodb.provision credentials  the staff users' emails and passwords

For every row of crm.marcas, idempotently:
  - a base titled with the brand's name (tagged crm_marca=<slug> in its meta), whose
    source connects as the brand's login role (crm_marca_<slug>) and reads schema `crm`.
    Row-level security does the rest: the role sees and writes only its brand's rows;
  - its tables synced with the database (meta-diff): new tables and columns appear;
  - tables and fields titled in Spanish for staff, columns limited by a CHECK (... IN ...)
    shown as single selects with those options, and the relations NocoDB infers from the
    `marca_id` half of the composite foreign keys removed (they join every row of a brand
    with every other: a pedido would show an arbitrary cliente of the brand);
  - the views: Gestión Clientes, Pipeline Pedidos (kanban by estado), Centro Interacciones,
    Alertas (abiertas primero), Campañas (on crm.salientes, titled "Mensajes enviados":
    campaigns have no table yet) and Catálogo. Existing views are left as staff left them;
  - one staff user, staff-<slug>@<domain of NC_ADMIN_EMAIL>, editor of that base only,
    with a password derived from CRM_SECRET_KEY (`credentials` prints it again). NocoDB
    refuses "+" in sign-up emails, hence the hyphen. The super admin sees every base.

Why some edits go to NocoDB's metadata database and not through its REST API: NocoDB
0.301 applies a table's new title by renaming the real table, and a field's new type by
ALTER TABLE on the real column (both as the brand's role, which owns nothing and may not).
Titles, single-select options and the removed relations are presentation only, so they
are written to NocoDB's own metadata database (owned by crm_nocodb_meta), followed by a
cache flush (DELETE /api/v2/meta/cache). Everything else uses the REST API.
"""

from __future__ import annotations

import json
import re
import secrets
import string
import sys
import time
from dataclasses import dataclass, field

import httpx
import psycopg

from api import roles
from api.config import Settings, settings

from . import server

SCHEMA = "crm"

# Table title and description for staff.
TABLES = {
    "clientes": ("Clientes", "Clientes de la marca. Los eliminados tienen fecha en «Eliminado»."),
    "pedidos": ("Pedidos", ("El estado avanza pendiente → confirmado → en preparación → listo → "
                            "entregado, o se cancela; el total lo calculan los ítems.")),
    "pedido_items": ("Ítems de pedido", "Productos de cada pedido; el subtotal se calcula solo."),
    "pedido_estados": ("Historial de estados", "Cada cambio de estado de un pedido (solo lectura)."),
    "productos": ("Productos", "Catálogo de la marca."),
    "interacciones": ("Interacciones", "Mensajes, llamadas, notas y encuestas de los clientes."),
    "alertas": ("Alertas", "Mensajes que el bot no pudo responder: los atiende una persona."),
    "salientes": ("Mensajes enviados", ("Mensajes de WhatsApp enviados y en cola (solo lectura). "
                                        "Las campañas aún no tienen tabla propia.")),
    "plantillas": ("Plantillas", ("Plantillas de WhatsApp aprobadas: las únicas que se envían fuera "
                                  "de la ventana de 24 horas.")),
    "canales": ("Canales WhatsApp", "Números de WhatsApp de la marca (solo lectura)."),
    "conversaciones": ("Conversaciones", "Estado interno del bot por cliente (solo lectura)."),
    "auditoria": ("Auditoría", "Quién cambió qué (solo lectura)."),
    "marcas": ("Marca", "Datos de la marca (solo lectura)."),
    "migraciones": ("Migraciones", "Versiones del esquema instaladas (solo lectura)."),
    "campanas": ("Campañas", None),
}

# Field titles by column name (any table); TABLE_COLUMNS overrides one table's.
COLUMNS = {
    "id": "ID", "marca_id": "Marca", "nombre": "Nombre", "telefono": "Teléfono", "email": "Email",
    "documento": "RUT", "fecha_nacimiento": "Fecha de nacimiento", "ciudad": "Ciudad",
    "region": "Región", "canal_origen": "Canal de origen", "segmento": "Segmento",
    "opt_out_marketing": "Sin marketing", "opt_out_recordatorios": "Sin recordatorios",
    "opt_out_encuestas": "Sin encuestas", "notas": "Notas", "nota": "Nota", "created_at": "Creado",
    "updated_at": "Actualizado", "deleted_at": "Eliminado", "sku": "SKU", "categoria": "Categoría",
    "precio": "Precio", "stock": "Stock", "activo": "Activo", "alias": "Alias",
    "cliente_id": "N° cliente", "canal": "Canal", "estado": "Estado", "total": "Total",
    "pedido_id": "N° pedido", "producto_id": "N° producto", "cantidad": "Cantidad",
    "precio_unitario": "Precio unitario", "subtotal": "Subtotal", "desde": "Desde", "hacia": "Hacia",
    "actor": "Actor", "direccion": "Dirección", "tipo": "Tipo", "contenido": "Contenido",
    "id_externo": "ID externo", "puntaje_satisfaccion": "Satisfacción (1-5)",
    "interaccion_id": "N° interacción", "motivo": "Motivo", "asignada_a": "Asignada a",
    "cerrada_en": "Cerrada el", "proveedor": "Proveedor", "identificador": "Identificador",
    "numero": "Número", "pendiente": "Pendiente del bot", "idioma": "Idioma", "cuerpo": "Texto",
    "aprobada": "Aprobada", "canal_id": "N° canal", "respuesta": "Respuesta", "intentos": "Intentos",
    "proximo_intento": "Próximo intento", "error": "Error", "en_respuesta_a": "En respuesta a (N°)",
    "enviado_en": "Enviado el", "tabla": "Tabla", "registro_id": "N° registro", "accion": "Acción",
    "antes": "Antes", "despues": "Después", "slug": "Identificador corto",
    "zona_horaria": "Zona horaria", "moneda": "Moneda", "settings": "Configuración",
    "rol_db": "Rol de base de datos", "version": "Versión", "aplicada_en": "Aplicada el",
}
TABLE_COLUMNS = {"salientes": {"telefono": "Teléfono destino", "created_at": "Creado"}}

# Title of a "belongs to" link, by its foreign-key column.
BELONGS_TO = {"cliente_id": "Cliente", "pedido_id": "Pedido", "producto_id": "Producto",
              "interaccion_id": "Interacción", "canal_id": "Canal WhatsApp",
              "en_respuesta_a": "Responde a"}

# Field shown as the record's name (NocoDB's display value).
DISPLAY = {"clientes": "nombre", "productos": "nombre", "plantillas": "nombre", "marcas": "nombre"}

COLORS = ["#cfdffe", "#d0f1fd", "#ffeab6", "#c2f5e9", "#d1f7c4", "#ffdaf6", "#fee2d5", "#ede2fe",
          "#eeeeee", "#ffdce5"]


@dataclass(frozen=True)
class ViewSpec:
    table: str
    kind: str  # grids | kanbans
    title: str
    sorts: tuple[tuple[str, str], ...] = ()
    filters: tuple[tuple[str, str, str | None], ...] = ()  # column, comparison_op, value
    hidden: tuple[str, ...] = ()  # columns
    hidden_links: tuple[str, ...] = ()  # links to these tables
    group_by: str | None = None  # kanban stacks


VIEWS = (
    ViewSpec("clientes", "grids", "Gestión Clientes", sorts=(("nombre", "asc"),),
             filters=(("deleted_at", "blank", None),), hidden=("deleted_at", "updated_at"),
             # counts staff do not need in a customer list, and costly: one subquery per row each
             hidden_links=("alertas", "conversaciones", "salientes")),
    ViewSpec("pedidos", "kanbans", "Pipeline Pedidos", group_by="estado", sorts=(("created_at", "desc"),)),
    ViewSpec("interacciones", "grids", "Centro Interacciones", sorts=(("created_at", "desc"),)),
    ViewSpec("alertas", "grids", "Alertas (abiertas primero)",
             sorts=(("estado", "asc"), ("created_at", "desc"))),
    ViewSpec("salientes", "grids", "Campañas", sorts=(("created_at", "desc"),)),
    ViewSpec("productos", "grids", "Catálogo", sorts=(("categoria", "asc"), ("nombre", "asc"))),
)


class NocoError(RuntimeError):
    pass


# ---------------------------------------------------------------- REST client

class Api:
    def __init__(self, url: str, timeout: float = 60):
        self.url = url.rstrip("/")
        self.http = httpx.Client(base_url=self.url, timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def wait_healthy(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if self.http.get("/api/v1/health", timeout=5).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise NocoError(f"NocoDB no responde en {self.url}/api/v1/health")
            time.sleep(1)

    def signin(self, email: str, password: str) -> str:
        token = self.call("POST", "/api/v1/auth/user/signin", json={"email": email, "password": password},
                          auth=False)["token"]
        self.http.headers["xc-auth"] = token
        return token

    def call(self, method: str, path: str, auth: bool = True, **kw):
        headers = None if auth else {"xc-auth": ""}
        r = self.http.request(method, path, headers=headers, **kw)
        if r.status_code >= 400:
            raise NocoError(f"NocoDB {method} {path} -> {r.status_code}: {r.text[:500]}")
        return r.json() if r.content else None

    def get(self, path: str, **kw):
        return self.call("GET", path, **kw)

    def post(self, path: str, body=None, **kw):
        return self.call("POST", path, json=body if body is not None else {}, **kw)

    def patch(self, path: str, body, **kw):
        return self.call("PATCH", path, json=body, **kw)

    def wait_job(self, base_id: str, job_id: str, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            for job in self.post(f"/api/v2/jobs/{base_id}"):
                if job["id"] == job_id and job["status"] in ("completed", "failed"):
                    if job["status"] == "failed":
                        raise NocoError(f"NocoDB: el trabajo {job['job']} falló: {job.get('result')}")
                    return job
            if time.monotonic() > deadline:
                raise NocoError(f"NocoDB: el trabajo {job_id} no terminó en {timeout:.0f} s")
            time.sleep(0.5)


# ---------------------------------------------------------------- helpers

def staff_email(s: Settings, slug: str) -> str:
    domain = s.nc_admin_email.rsplit("@", 1)[-1]
    return f"staff-{slug}@{domain}"


def staff_password(s: Settings, slug: str) -> str:
    return server.secret_for(s, f"staff:{slug}")


def source_config(s: Settings, slug: str) -> dict:
    """Connection of a brand's base: the brand's login role, schema crm."""
    url = roles.role_url(roles.brand_role(slug), s)
    parts = httpx.URL(url)
    return {"client": "pg",
            "connection": {"host": parts.host or "127.0.0.1", "port": parts.port or 5432,
                           "user": roles.brand_role(slug), "password": roles.password_for(roles.brand_role(slug), s),
                           "database": roles.database_name(s)},
            "searchPath": [SCHEMA]}


def brands(s: Settings) -> list[tuple[str, str]]:
    with psycopg.connect(roles.role_url(roles.OWNER, s)) as conn:
        return conn.execute("SELECT slug, nombre FROM crm.marcas ORDER BY id").fetchall()


_CHECK_IN = re.compile(r"^CHECK \(\(\(?(\w+)\)?(?:::text)? = ANY \(\(?ARRAY\[(.*)\]\)?(?:::text\[\])?\)\)\)$")


def select_options(s: Settings) -> dict[tuple[str, str], list[str]]:
    """(table, column) -> allowed values, from CHECK (column IN (...)) constraints of schema crm."""
    found = {}
    with psycopg.connect(roles.role_url(roles.OWNER, s)) as conn:
        rows = conn.execute(
            "SELECT c.conrelid::regclass::text, pg_get_constraintdef(c.oid) FROM pg_constraint c "
            "WHERE c.contype = 'c' AND c.connamespace = %s::regnamespace AND cardinality(c.conkey) = 1",
            (SCHEMA,)).fetchall()
    for table, definition in rows:
        m = _CHECK_IN.match(definition)
        if m:
            values = re.findall(r"'((?:[^']|'')*)'", m.group(2))
            found[(table.split(".")[-1], m.group(1))] = [v.replace("''", "'") for v in values]
    return found


def _meta(obj: dict) -> dict:
    meta = obj.get("meta") or {}
    if isinstance(meta, str):
        try:
            meta = json.loads(meta)
        except ValueError:
            meta = {}
    return meta if isinstance(meta, dict) else {}


def _humanize(name: str) -> str:
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _new_id(prefix: str) -> str:
    alphabet = string.ascii_lowercase + string.digits
    return prefix + "".join(secrets.choice(alphabet) for _ in range(18 - len(prefix)))


# ---------------------------------------------------------------- presentation (metadata database)

def present(conn: psycopg.Connection, base_id: str, options: dict) -> list[str]:
    """Spanish titles, single selects and no marca_id relations in one base's metadata.
    Returns what changed (empty when everything was already so)."""
    changes: list[str] = []
    models = {r[0]: {"table": r[1], "title": r[2], "description": r[3], "ws": r[4]} for r in conn.execute(
        "SELECT id, table_name, title, description, fk_workspace_id FROM nc_models_v2 "
        "WHERE base_id = %s AND coalesce(deleted, false) = false", (base_id,))}
    cols = {r[0]: {"model": r[1], "title": r[2], "name": r[3], "uidt": r[4], "pv": bool(r[5]),
                   "dtxp": r[6], "pk": bool(r[7])} for r in conn.execute(
        "SELECT id, fk_model_id, title, column_name, uidt, pv, dtxp, pk FROM nc_columns_v2 "
        "WHERE base_id = %s AND coalesce(deleted, false) = false", (base_id,))}
    rels = {r[0]: {"type": r[1], "child": r[2], "parent": r[3], "related": r[4]} for r in conn.execute(
        "SELECT fk_column_id, type, fk_child_column_id, fk_parent_column_id, fk_related_model_id "
        "FROM nc_col_relations_v2 WHERE base_id = %s", (base_id,))}

    # 1. Relations NocoDB infers from marca_id, the first half of every composite foreign key.
    drop = [cid for cid, rel in rels.items()
            if cid in cols and cols.get(rel["child"], {}).get("name") == "marca_id"]
    if drop:
        for table in ("nc_grid_view_columns_v2", "nc_kanban_view_columns_v2", "nc_gallery_view_columns_v2",
                      "nc_form_view_columns_v2", "nc_calendar_view_columns_v2", "nc_list_view_columns_v2",
                      "nc_map_view_columns_v2", "nc_sort_v2", "nc_filter_exp_v2"):
            if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0]:
                conn.execute(f"DELETE FROM {table} WHERE base_id = %s AND fk_column_id = ANY(%s)",
                             (base_id, drop))
        conn.execute("DELETE FROM nc_col_relations_v2 WHERE base_id = %s AND fk_column_id = ANY(%s)",
                     (base_id, drop))
        conn.execute("DELETE FROM nc_columns_v2 WHERE base_id = %s AND id = ANY(%s)", (base_id, drop))
        for cid in drop:
            cols.pop(cid)
        changes.append(f"{len(drop)} relaciones por marca_id quitadas")

    # 2. Table titles and descriptions.
    for mid, m in models.items():
        title, description = TABLES.get(m["table"], (_humanize(m["table"]), None))
        if m["title"] != title or (description and m["description"] != description):
            conn.execute("UPDATE nc_models_v2 SET title = %s, description = coalesce(%s, description), "
                         "updated_at = now() WHERE base_id = %s AND id = %s", (title, description, base_id, mid))
            changes.append(f"tabla {m['table']}: «{title}»")
            m["title"] = title

    # 3. Field titles, unique within each table.
    titles = 0
    by_model: dict[str, list[str]] = {}
    for cid, c in cols.items():
        by_model.setdefault(c["model"], []).append(cid)
    for mid, cids in by_model.items():
        if mid not in models:
            continue
        table = models[mid]["table"]
        used: set[str] = set()
        wanted = {}
        # physical columns first, so links never take a column's title
        for cid in sorted(cids, key=lambda i: (cols[i]["name"] is None, cols[i]["name"] or "", i)):
            c = cols[cid]
            if c["name"]:
                title = TABLE_COLUMNS.get(table, {}).get(c["name"]) or COLUMNS.get(c["name"]) or _humanize(c["name"])
            else:
                rel = rels.get(cid)
                if rel is None:
                    continue
                related = models.get(rel["related"], {}).get("title") or c["title"]
                child = cols.get(rel["child"], {}).get("name")
                title = BELONGS_TO.get(child, related) if rel["type"] == "bt" else related
            base_title, n = title, 2
            while title.lower() in used:
                suffix = cols.get(rels.get(cid, {}).get("child"), {}).get("name") if not c["name"] else c["name"]
                title = f"{base_title} ({suffix})" if n == 2 and suffix else f"{base_title} {n}"
                n += 1
            used.add(title.lower())
            wanted[cid] = title
        for cid, title in wanted.items():
            if cols[cid]["title"] != title:
                conn.execute("UPDATE nc_columns_v2 SET title = %s, updated_at = now() "
                             "WHERE base_id = %s AND id = %s", (title, base_id, cid))
                titles += 1
    if titles:
        changes.append(f"{titles} títulos de campos")

    # 4. Single selects from CHECK (... IN ...) constraints.
    for cid, c in cols.items():
        m = models.get(c["model"])
        values = options.get((m["table"], c["name"])) if m and c["name"] else None
        if not values or c["uidt"] not in ("LongText", "SingleLineText", "SingleSelect"):
            continue
        current = [r[0] for r in conn.execute(
            'SELECT title FROM nc_col_select_options_v2 WHERE base_id = %s AND fk_column_id = %s ORDER BY "order"',
            (base_id, cid))]
        if c["uidt"] == "SingleSelect" and current == values:
            continue
        conn.execute("DELETE FROM nc_col_select_options_v2 WHERE base_id = %s AND fk_column_id = %s",
                     (base_id, cid))
        for i, value in enumerate(values):
            conn.execute('INSERT INTO nc_col_select_options_v2 (id, fk_column_id, title, color, "order", '
                         "base_id, fk_workspace_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                         (_new_id("sl"), cid, value, COLORS[i % len(COLORS)], i + 1, base_id, m["ws"]))
        dtxp = ",".join("'" + v.replace("'", "''") + "'" for v in values)
        conn.execute("UPDATE nc_columns_v2 SET uidt = 'SingleSelect', dtxp = %s, updated_at = now() "
                     "WHERE base_id = %s AND id = %s", (dtxp, base_id, cid))
        changes.append(f"{m['table']}.{c['name']}: selección ({', '.join(values)})")

    # 5. Display value (the record's name in links and kanban cards).
    for mid, m in models.items():
        name = DISPLAY.get(m["table"])
        if name is None:
            continue
        target = next((cid for cid in by_model.get(mid, []) if cols[cid]["name"] == name), None)
        if target is None or cols[target]["pv"]:
            continue
        conn.execute("UPDATE nc_columns_v2 SET pv = (id = %s) WHERE base_id = %s AND fk_model_id = %s",
                     (target, base_id, mid))
        changes.append(f"{m['table']}: se muestra por «{cols[target]['title']}»")
    return changes


# ---------------------------------------------------------------- provisioning

@dataclass
class Result:
    created: list[str] = field(default_factory=list)  # what did not exist before
    changed: list[str] = field(default_factory=list)  # what existed and was corrected
    found: list[str] = field(default_factory=list)
    credentials: dict[str, tuple[str, str]] = field(default_factory=dict)  # slug -> (email, password)
    bases: dict[str, str] = field(default_factory=dict)  # slug -> base id


def _relevant(changes: list[dict], tables: set[str]) -> list[str]:
    """Schema changes worth a sync. Relations on marca_id (removed on purpose) and relations
    with tables the brand's role cannot see (crm.claves_api) are not."""
    out = []
    for t in changes:
        for ch in t.get("detectedChanges") or []:
            if ch.get("type", "").startswith("TABLE_RELATION") and (
                    ch.get("cn") == "marca_id" or ch.get("tn") not in tables or ch.get("rtn") not in tables):
                continue
            out.append(f"{t.get('table_name')}: {ch.get('msg') or ch.get('type')}")
    return out


def _meta_diff(api: Api, base_id: str, sync: bool) -> dict:
    job = api.call("POST" if sync else "GET", f"/api/v2/meta/bases/{base_id}/meta-diff")
    return api.wait_job(base_id, job["id"])


def provision(s: Settings | None = None, url: str | None = None, meta_db: str | None = None,
              only: set[str] | None = None, log=lambda msg: print(msg, file=sys.stderr)) -> Result:
    """Provision every brand (or only the slugs in `only`)."""
    s = s or settings()
    res = Result()
    api = Api(url or server.url(s))
    try:
        api.wait_healthy()
        api.signin(s.nc_admin_email, server.admin_password(s))
        options = select_options(s)
        existing = api.get("/api/v2/meta/bases/", params={"limit": 1000})["list"]
        with psycopg.connect(server.meta_url(s, meta_db)) as meta:
            for slug, nombre in brands(s):
                if only is not None and slug not in only:
                    continue
                _brand(api, s, meta, slug, nombre, existing, options, res, log)
    finally:
        api.close()
    return res


def _brand(api: Api, s: Settings, meta: psycopg.Connection, slug: str, nombre: str, existing: list[dict],
           options: dict, res: Result, log) -> None:
    created, changed = [], []
    base = next((b for b in existing if _meta(b).get("crm_marca") == slug), None)
    config = source_config(s, slug)
    title = nombre[:50]
    new_base = base is None
    if new_base:
        base = api.post("/api/v2/meta/bases/", {
            "title": title, "external": True, "meta": {"crm_marca": slug, "iconColor": "#36BFFF"},
            "sources": [{"alias": SCHEMA, "type": "pg", "config": config,
                         "inflection_column": "none", "inflection_table": "none"}]})
        created.append(f"base «{title}» ({base['id']})")
    base_id = base["id"]
    res.bases[slug] = base_id
    sources = [x for x in api.get(f"/api/v2/meta/bases/{base_id}/sources")["list"] if not x.get("is_meta")]
    if not sources:
        raise NocoError(f"la base {base_id} de {slug} no tiene fuente de datos")
    source = api.get(f"/api/v2/meta/bases/{base_id}/sources/{sources[0]['id']}")
    have = source.get("config") or {}
    want = {k: v for k, v in config["connection"].items() if k != "password"}
    have_conn = {k: v for k, v in (have.get("connection") or {}).items() if k != "password"}
    if new_base or have_conn != want or have.get("searchPath") != config["searchPath"]:
        # The source made with the base ignores searchPath: PATCH the whole config, then sync.
        api.patch(f"/api/v2/meta/bases/{base_id}/sources/{source['id']}",
                  {"alias": SCHEMA, "type": "pg", "config": config,
                   "inflection_column": "none", "inflection_table": "none"})
        if not new_base:
            changed.append(f"conexión: rol {config['connection']['user']}, esquema {SCHEMA}")
        sync = ["conexión nueva"]
    else:
        tables = {t["table_name"] for t in api.get(f"/api/v2/meta/bases/{base_id}/tables")["list"]}
        sync = _relevant(_meta_diff(api, base_id, sync=False).get("result") or [], tables)
    if sync:
        _meta_diff(api, base_id, sync=True)
        if not new_base:
            changed.append("esquema sincronizado: " + "; ".join(sync[:10]) + ("…" if len(sync) > 10 else ""))
    with meta.transaction():
        shown = present(meta, base_id, options)
    if shown:
        api.call("DELETE", "/api/v2/meta/cache")
        if not new_base:
            changed.extend(shown)
    tables = {t["table_name"]: t for t in api.get(f"/api/v2/meta/bases/{base_id}/tables")["list"]}
    for spec in VIEWS:
        if spec.table in tables:
            made = _view(api, tables[spec.table]["id"], spec, {t["id"]: n for n, t in tables.items()})
            if made:
                created.append(f"vista «{spec.title}»")
    email, password, state = _staff(api, s, base_id, slug)
    res.credentials[slug] = (email, password)
    if state == "created":
        created.append(f"usuario {email} (editor)")
    elif state == "invited":
        created.append(f"usuario {email} invitado a la base (editor)")
    elif state:
        changed.append(state)

    res.created += [f"{slug}: {x}" for x in created]
    res.changed += [f"{slug}: {x}" for x in changed]
    if created or changed:
        log(f"marca {slug}: base «{base.get('title', title)}» ({base_id})")
        for x in created:
            log(f"  creado: {x}")
        for x in changed:
            log(f"  actualizado: {x}")
        if state == "created":
            log(f"  acceso del personal: {email} / {password}")
    else:
        res.found.append(slug)
        log(f"marca {slug}: base «{base.get('title', title)}» ({base_id}) ya estaba al día")


def _view(api: Api, table_id: str, spec: ViewSpec, table_names: dict[str, str]) -> bool:
    """Create the view when missing; an existing view is left as staff left it."""
    if any(v["title"] == spec.title for v in api.get(f"/api/v2/meta/tables/{table_id}/views")["list"]):
        return False
    table = api.get(f"/api/v2/meta/tables/{table_id}")
    by_name = {c["column_name"]: c for c in table["columns"] if c.get("column_name")}
    body = {"title": spec.title}
    if spec.group_by:
        body["fk_grp_col_id"] = by_name[spec.group_by]["id"]
    view = api.post(f"/api/v2/meta/tables/{table_id}/{spec.kind}", body)
    vid = view["id"]
    for name, direction in spec.sorts:
        if name in by_name:
            api.post(f"/api/v2/meta/views/{vid}/sorts", {"fk_column_id": by_name[name]["id"], "direction": direction})
    for name, op, value in spec.filters:
        if name in by_name:
            f = {"fk_column_id": by_name[name]["id"], "comparison_op": op, "logical_op": "and"}
            if value is not None:
                f["value"] = value
            api.post(f"/api/v2/meta/views/{vid}/filters", f)
    hide = {by_name[n]["id"] for n in spec.hidden if n in by_name}
    hide |= {c["id"] for c in table["columns"] if c["uidt"] in ("Links", "LinkToAnotherRecord")
             and table_names.get((c.get("colOptions") or {}).get("fk_related_model_id")) in spec.hidden_links}
    if hide:
        for vc in api.get(f"/api/v2/meta/views/{vid}/columns")["list"]:
            if vc["fk_column_id"] in hide:
                api.patch(f"/api/v2/meta/views/{vid}/columns/{vc['id']}", {"show": False})
    return True


def _staff(api: Api, s: Settings, base_id: str, slug: str) -> tuple[str, str, str | None]:
    """The brand's staff user, editor of its base. Returns (email, password, what was done)."""
    email, password = staff_email(s, slug), staff_password(s, slug)

    def member():
        users = api.get(f"/api/v2/meta/bases/{base_id}/users", params={"limit": 1000})["users"]["list"]
        return next((u for u in users if u["email"] == email), None)

    user, state = member(), None
    if user is None or not user.get("roles"):
        api.post(f"/api/v2/meta/bases/{base_id}/users", {"email": email, "roles": "editor"})
        user, state = member(), "invited"
    elif user["roles"] != "editor":
        api.patch(f"/api/v2/meta/bases/{base_id}/users/{user['id']}", {"email": email, "roles": "editor"})
        state = f"usuario {email}: rol {user['roles']} → editor"
    if user and user.get("invite_token"):
        # Invited, never signed up: sign up with the derived password.
        api.call("POST", "/api/v1/auth/user/signup", auth=False,
                 json={"email": email, "password": password, "token": user["invite_token"],
                       "ignore_subscribe": True})
        state = "created"
    return email, password, state


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    s = settings()
    if argv[:1] == ["credentials"]:
        for slug, _ in brands(s):
            print(f"{slug}\t{staff_email(s, slug)}\t{staff_password(s, slug)}")
        return 0
    if any(a.startswith("-") for a in argv):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        res = provision(s, only=set(argv) or None)
    except (NocoError, httpx.HTTPError, psycopg.Error) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"NocoDB: {len(res.bases)} marcas; {len(res.created)} elementos creados, "
          f"{len(res.changed)} actualizados, {len(res.found)} bases ya al día", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
