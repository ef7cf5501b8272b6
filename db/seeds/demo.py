"""Deterministic demo data: three brands with two years of customers, orders and chats.

Pure Python, no database. `generate(scale, marca_ids, id_base)` returns the rows of every
table in load order, ready for COPY; `api/seed.py` creates the brands (and their login
roles) and loads the rows. The brands, catalogs, opening hours, seasonality and message
templates live in `data/marcas.json`; names in `data/nombres.json`; cities in
`data/ciudades.json`.

Determinism: the same scale (and the same brand ids and id bases, which a fresh database
always gives) produces the same rows, byte for byte. Every random choice comes from a
`random.Random` seeded from a constant and a purpose ("personas", "gollos:pedidos", ...),
times are relative to ANCHOR (the demo's "now", not the clock), and nothing iterates
over a set or depends on hash order.

The story the rows tell:
- customers are drawn from one pool of people, so some buy from more than one brand
  (same phone, same email); names are Chilean (given names and two surnames), mobiles
  +569XXXXXXXX valid for `phonenumbers`, RUTs valid for `stdnum.cl.rut` and stored
  compact (12345678K), some emails (name-derived, counter on collision), city/region;
- each customer has a first order, an activity level (log-normal) and maybe churns;
  their other orders fall on days weighted by weekday, month, growth and events
  (Cyber days, Black Friday, December for the stores; weekends, lunch and dinner
  hours, rainy days for the restaurant); store staff and the restaurant work within
  the opening hours in the brand's settings, web orders come at any hour;
- Eco Eterno's subscribers get one order a month, on the anniversary of their start;
- each order walks pendiente → confirmado → en_preparacion → listo → entregado (or is
  cancelled from a non-final state) with increasing times; the walk stops at ANCHOR,
  so the most recent orders are still in progress; `pedido_estados` holds every step;
- WhatsApp messages around orders (the customer's order written with the catalog's
  aliases, the confirmation, the dispatch notice, thanks), calls, e-mails for web
  orders, surveys after deliveries (mostly 4 and 5), questions, staff notes, a few
  campaigns (never to a customer after their marketing opt-out, whose "BAJA" message
  is there too);
- segmento comes from that history: inactivo (no order in INACTIVO_DIAS days), else vip
  (top VIP_FRACCION of the brand's customers by spend), else recurrente (2+ orders),
  else nuevo.
"""

from __future__ import annotations

import base64
import bisect
import itertools
import json
import math
import random
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache
from pathlib import Path
from zoneinfo import ZoneInfo

import phonenumbers
from stdnum.cl import rut as rut_cl

DATA_DIR = Path(__file__).resolve().parent / "data"
SEED = 20261101
ANCHOR_DATE = date(2026, 11, 1)  # a Sunday (and All Saints' Day)
ANCHOR_TIME = time(20, 30)  # the demo's "now", in each brand's time zone: Sunday dinner rush
HISTORY_DAYS = 730  # two years of history ending at ANCHOR
START_DATE = ANCHOR_DATE - timedelta(days=HISTORY_DAYS)
BRAND_CREATED = datetime(2024, 10, 15, 10, 0)  # brands and catalogs exist before the history
INACTIVO_DIAS = 180
VIP_FRACCION = 0.05
POOL_FACTOR = 2.0  # people in the pool per customer of all brands: some are shared

FLUJO = ("pendiente", "confirmado", "en_preparacion", "listo", "entregado")
DIAS = ("lun", "mar", "mie", "jue", "vie", "sab", "dom")

# Load order (foreign keys) and the columns COPY gets (never the generated `subtotal`).
COLUMNS: dict[str, tuple[str, ...]] = {
    "clientes": ("marca_id", "id", "nombre", "telefono", "email", "documento", "fecha_nacimiento",
                 "ciudad", "region", "canal_origen", "segmento", "opt_out_marketing",
                 "opt_out_recordatorios", "opt_out_encuestas", "notas", "created_at", "updated_at"),
    "productos": ("marca_id", "id", "sku", "nombre", "categoria", "precio", "stock", "activo", "alias",
                  "created_at", "updated_at"),
    "pedidos": ("marca_id", "id", "cliente_id", "canal", "estado", "total", "nota", "created_at",
                "updated_at"),
    "pedido_items": ("marca_id", "id", "pedido_id", "producto_id", "cantidad", "precio_unitario"),
    "pedido_estados": ("marca_id", "id", "pedido_id", "desde", "hacia", "actor", "created_at"),
    "interacciones": ("marca_id", "id", "cliente_id", "canal", "direccion", "tipo", "contenido",
                      "id_externo", "puntaje_satisfaccion", "created_at"),
}
TABLES = tuple(COLUMNS)

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


# ---------------------------------------------------------------- data files
@cache
def _json(name: str):
    return json.loads((DATA_DIR / name).read_text(encoding="utf-8"))


def brands() -> list[dict]:
    """The demo brands as crm.crear_marca takes them: slug, nombre, zona_horaria, moneda, settings."""
    return [{k: m[k] for k in ("slug", "nombre", "zona_horaria", "moneda", "settings")}
            for m in _json("marcas.json")["marcas"]]


def _scaled(base: int, scale: float) -> int:
    return max(1, round(base * scale))


def counts(scale: float = 1.0) -> dict[str, dict[str, int]]:
    """Customers and orders per brand at `scale` (exact: generate() produces these)."""
    return {m["slug"]: {"clientes": _scaled(m["volumen"]["clientes"], scale),
                        "pedidos": _scaled(m["volumen"]["pedidos"], scale)}
            for m in _json("marcas.json")["marcas"]}


def brand_created_at(zona: str) -> datetime:
    return BRAND_CREATED.replace(tzinfo=ZoneInfo(zona)).astimezone(UTC)


def anchor(zona: str = "America/Santiago") -> datetime:
    """The demo's "now": no row is later than this."""
    return datetime.combine(ANCHOR_DATE, ANCHOR_TIME, ZoneInfo(zona)).astimezone(UTC)


# ---------------------------------------------------------------- small helpers
def _dt(ts: int) -> datetime:
    return _EPOCH + timedelta(seconds=ts)


def _cum(weights) -> list[float]:
    return list(itertools.accumulate(weights))


def _pick(rng: random.Random, items, cum) -> object:
    return items[bisect.bisect_right(cum, rng.random() * cum[-1])]


def _weighted(d: dict) -> tuple[list, list[float]]:
    keys = list(d)
    return keys, _cum(float(d[k]) for k in keys)


def _zipf(n: int, s: float = 0.85) -> list[float]:
    return _cum(1.0 / (i + 1) ** s for i in range(n))


def _ascii(text: str) -> str:
    norm = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in norm if c.isascii() and c.isalnum())


def clp(n: int) -> str:
    return "$" + f"{n:,}".replace(",", ".")


def _between(rng: random.Random, a: int, b: int) -> int:
    """rng.randint(a, b) at a third of the cost: it runs hundreds of thousands of times."""
    return a + int(rng.random() * (b - a + 1))


def _geometric(rng: random.Random, mean: float) -> int:
    """0, 1, 2... with the given mean."""
    p, n = mean / (1.0 + mean), 0
    while rng.random() < p:
        n += 1
    return n


def _local_epoch(naive: datetime, zona: ZoneInfo) -> int:
    return int(naive.replace(tzinfo=zona).timestamp())


# ---------------------------------------------------------------- time
class _Calendar:
    """Day d (0..HISTORY_DAYS) of the history in one time zone, as UTC epoch seconds.

    base[d] is local midnight of day d using that day's noon offset: Chile changes its
    clocks at midnight, so every hour a business is open maps exactly."""

    def __init__(self, zona: str):
        self.zona = ZoneInfo(zona)
        self.base = []
        for d in range(HISTORY_DAYS + 1):
            day = START_DATE + timedelta(days=d)
            off = self.zona.utcoffset(datetime.combine(day, time(12)))
            self.base.append((day - date(1970, 1, 1)).days * 86400 - int(off.total_seconds()))
        self.anchor_secs = ANCHOR_TIME.hour * 3600 + ANCHOR_TIME.minute * 60
        self.anchor = self.base[HISTORY_DAYS] + self.anchor_secs


def _hhmm(s: str) -> int:
    h, m = s.split(":")
    return int(h) * 3600 + int(m) * 60


class _Hours:
    """Time of day for an order or message: an hourly profile, bounded by the opening
    hours of the brand's settings unless the profile is 24 h (web, automatic charges)."""

    UNBOUNDED = ("web", "suscripcion")

    def __init__(self, perfiles: dict, horario: dict):
        self.perfiles = {k: {int(h): float(w) for h, w in v.items()} for k, v in perfiles.items()}
        self.horario = [(_hhmm(horario[d][0]), _hhmm(horario[d][1])) for d in DIAS]
        self._tables: dict = {}

    def _table(self, perfil: str, weekday: int, limit: int | None):
        key = (perfil, weekday, limit)
        t = self._tables.get(key)
        if t is None:
            prof = self.perfiles.get(perfil) or self.perfiles["default"]
            lo, hi = (0, 86400) if perfil in self.UNBOUNDED else self.horario[weekday]
            if limit is not None:
                hi = min(hi, limit)
            spans, weights = [], []
            for h, w in sorted(prof.items()):
                a, b = max(lo, h * 3600), min(hi, (h + 1) * 3600)
                if b > a and w > 0:
                    spans.append((a, b))
                    weights.append(w * (b - a) / 3600)
            if not spans:  # closed, or nothing before the limit: any time before it
                spans, weights = [(0, min(limit or 86400, 86400))], [1.0]
            t = self._tables[key] = (spans, _cum(weights))
        return t

    def secs(self, rng: random.Random, perfil: str, weekday: int, limit: int | None = None) -> int:
        spans, cum = self._table(perfil, weekday, limit)
        a, b = _pick(rng, spans, cum)
        return a + int(rng.random() * (b - a))

    def fraction_before(self, perfil: str, weekday: int, limit: int) -> float:
        full = self._table(perfil, weekday, None)[1][-1]
        part = self._table(perfil, weekday, limit)[1][-1]
        return min(1.0, part / full)


def _day_weights(perfil: dict, hours: _Hours) -> list[float]:
    semana, meses = perfil["semana"], perfil["meses"]
    g0, g1 = perfil["crecimiento"]
    eventos = []
    for ev in perfil.get("eventos", []):
        eventos.append((ev["desde"], ev["hasta"], float(ev["factor"])))
    weights = []
    for d in range(HISTORY_DAYS + 1):
        day = START_DATE + timedelta(days=d)
        w = semana[day.weekday()] * meses[day.month - 1] * (g0 + (g1 - g0) * d / HISTORY_DAYS)
        md, iso = day.strftime("%m-%d"), day.isoformat()
        for desde, hasta, factor in eventos:
            if (len(desde) == 5 and desde <= md <= hasta) or (len(desde) == 10 and desde <= iso <= hasta):
                w *= factor
        weights.append(w)
    last = START_DATE + timedelta(days=HISTORY_DAYS)
    anchor_secs = ANCHOR_TIME.hour * 3600 + ANCHOR_TIME.minute * 60
    weights[-1] *= hours.fraction_before("default", last.weekday(), anchor_secs)
    return weights


# ---------------------------------------------------------------- people
@dataclass(slots=True)
class _Persona:
    pila: str  # the given name used to greet them
    nombre: str
    telefono: str
    email: str
    documento: str
    nacimiento: date
    ciudad: str
    region: str


_RUT_BY_YEAR = [(1930, 2_000_000), (1950, 4_500_000), (1960, 6_500_000), (1970, 9_000_000),
                (1980, 12_500_000), (1990, 17_000_000), (2000, 20_000_000), (2010, 23_500_000)]


def _rut_body(rng: random.Random, year: int) -> int:
    if rng.random() < 0.08:  # residents born abroad get recent numbers
        return rng.randrange(22_000_000, 27_000_000)
    for (y0, b0), (y1, b1) in itertools.pairwise(_RUT_BY_YEAR):
        if year <= y1:
            base = b0 + (b1 - b0) * (max(year, y0) - y0) / (y1 - y0)
            break
    else:
        base = _RUT_BY_YEAR[-1][1]
    return max(1_000_000, int(base + rng.uniform(-500_000, 500_000)))


def _personas(n: int) -> list[_Persona]:
    rng = random.Random(f"{SEED}:personas")
    nombres, ciudades = _json("nombres.json"), _json("ciudades.json")
    fem, mas, ape = nombres["femeninos"], nombres["masculinos"], nombres["apellidos"]
    fem_cum, mas_cum, ape_cum = _zipf(len(fem), 0.6), _zipf(len(mas), 0.6), _zipf(len(ape), 0.7)
    dominios = [d for d, _ in nombres["dominios_email"]]
    dominios_cum = _cum(w for _, w in nombres["dominios_email"])
    nacional = ciudades["nacional"]
    nacional_cum = _cum(c[2] for c in nacional)
    phones: set[str] = set()
    emails: set[str] = set()
    ruts: set[int] = set()
    out = []
    for _ in range(n):
        female = rng.random() < 0.52
        lista, cum = (fem, fem_cum) if female else (mas, mas_cum)
        pila = _pick(rng, lista, cum)
        given = [pila]
        if " " not in pila and rng.random() < 0.3:
            segundo = _pick(rng, lista, cum)
            if segundo != pila and " " not in segundo:
                given.append(segundo)
        paterno = _pick(rng, ape, ape_cum)
        materno = _pick(rng, ape, ape_cum)
        if materno == paterno and rng.random() < 0.9:
            materno = _pick(rng, ape, ape_cum)
        nombre = " ".join(given + [paterno, materno])

        age = int(rng.triangular(18, 80, 33))
        nacimiento = date(ANCHOR_DATE.year - age, 1, 1) + timedelta(days=rng.randrange(365))

        while True:
            telefono = f"+569{rng.randrange(10 ** 8):08d}"
            if telefono not in phones and phonenumbers.is_valid_number(phonenumbers.parse(telefono)):
                phones.add(telefono)
                break

        a, b, c = _ascii(given[0].split()[0]), _ascii(paterno), _ascii(materno)
        forma = rng.random()
        if forma < 0.35:
            local = f"{a}.{b}"
        elif forma < 0.55:
            local = f"{a}{b}"
        elif forma < 0.65:
            local = f"{a}_{b}"
        elif forma < 0.8:
            local = f"{a[0]}{b}"
        elif forma < 0.9:
            local = f"{a}.{b}{c[0]}"
        else:
            local = f"{a}{b}{nacimiento.year % 100:02d}"
        dominio = _pick(rng, dominios, dominios_cum)
        email, k = f"{local}@{dominio}", 1
        while email in emails:
            k += 1
            email = f"{local}{k}@{dominio}"
        emails.add(email)

        body = _rut_body(rng, nacimiento.year)
        while body in ruts:
            body += 1
        ruts.add(body)
        documento = f"{body}{rut_cl.calc_check_digit(str(body))}"

        ciudad, region, _ = _pick(rng, nacional, nacional_cum)
        out.append(_Persona(given[0].split()[0], nombre, telefono, email, documento, nacimiento,
                            ciudad, region))
    return out


# ---------------------------------------------------------------- brand model
@dataclass(slots=True, eq=False)
class _Producto:
    id: int
    sku: str
    nombre: str
    precio: int
    alias: list
    maximo: int
    desde: int | None  # epoch seconds it was first sold
    hasta: int | None  # epoch seconds it stopped being sold (inactive now)

    def vendible(self, ts: int) -> bool:
        return (self.desde is None or ts >= self.desde) and (self.hasta is None or ts < self.hasta)


@dataclass(slots=True, eq=False)
class _Cliente:
    marca: _Marca
    persona: _Persona
    telefono: str | None
    email: str | None
    ciudad: str | None
    region: str | None
    canal_origen: str
    created_at: int = 0
    id: int = 0
    gasto: int = 0
    pedidos_validos: int = 0
    ultimo_pedido: int | None = None
    documento: str | None = None
    nacimiento: date | None = None
    notas: str | None = None
    segmento: str = "nuevo"
    opt_out: dict = field(default_factory=dict)  # kind -> epoch seconds of the opt-out
    updated_at: int = 0


@dataclass(slots=True, eq=False)
class _Pedido:
    marca: _Marca
    cliente: _Cliente
    ts: int
    canal: str
    suscripcion: _Producto | None = None
    id: int = 0


class _Marca:
    def __init__(self, idx: int, conf: dict, marca_id: int, scale: float):
        self.idx, self.conf, self.marca_id = idx, conf, marca_id
        self.slug = conf["slug"]
        self.staff = "crm_marca_" + self.slug.replace("-", "_")  # their NocoDB login role
        self.perfil, self.cc, self.conv = conf["perfil"], conf["clientes"], conf["conversacion"]
        self.mensajes = conf["settings"]["mensajes"]
        self.cal = _Calendar(conf["zona_horaria"])
        self.hours = _Hours(self.perfil["horas"], conf["settings"]["horario"])
        self.day_cum = list(itertools.accumulate(_day_weights(self.perfil, self.hours), initial=0.0))
        self.n_clientes = _scaled(conf["volumen"]["clientes"], scale)
        self.n_pedidos = _scaled(conf["volumen"]["pedidos"], scale)
        self.created = _local_epoch(BRAND_CREATED, self.cal.zona)
        self.order_channels = _weighted(self.perfil["canales_pedido"])
        self.n_items_cum = _cum(self.perfil["items"])  # 1, 2, 3 or 4 items
        self.qty_cum = _cum(self.perfil["cantidades"])  # 1, 2, 3 or 4 of each
        self.cancel_from = _weighted(self.perfil["cancelacion_desde"])
        self.scores = _weighted(self.perfil["puntajes"])
        # (products, cumulative weights) for an order's first item, its other items, subscriptions
        self.cat_first = self.cat_extra = self.cat_sub = ([], [])
        self.productos: list[_Producto] = []
        self.clientes: list[_Cliente] = []
        self.pedidos: list[_Pedido] = []

    def rng(self, purpose: str) -> random.Random:
        return random.Random(f"{SEED}:{self.slug}:{purpose}")

    def day(self, rng: random.Random, first: int = 0, last: int = HISTORY_DAYS) -> int:
        cum = self.day_cum
        u = cum[first] + rng.random() * (cum[last + 1] - cum[first])
        return max(first, min(last, bisect.bisect_right(cum, u) - 1))

    def instant(self, rng: random.Random, d: int, perfil: str) -> int:
        weekday = (START_DATE + timedelta(days=d)).weekday()
        limit = self.cal.anchor_secs if d == HISTORY_DAYS else None
        return self.cal.base[d] + self.hours.secs(rng, perfil, weekday, limit)

    def perfil_hora(self, canal: str) -> str:
        return canal if canal in self.hours.perfiles else "default"


# ---------------------------------------------------------------- catalog
def _catalogo(m: _Marca, next_id) -> list[tuple]:
    rows = []
    first, extra, sub = [], [], []
    for p in m.conf["catalogo"]:
        desde = _local_epoch(datetime.fromisoformat(p["desde"]), m.cal.zona) if "desde" in p else None
        hasta = _local_epoch(datetime.fromisoformat(p["hasta"]) + timedelta(days=1), m.cal.zona) \
            if "hasta" in p else None
        prod = _Producto(next_id(), p["sku"], p["nombre"], int(p["precio"]), list(p.get("alias", [])),
                         int(p.get("max", 10)), desde, hasta)
        m.productos.append(prod)
        w_first, w_extra = p["peso"]
        if w_first > 0:
            first.append((prod, w_first))
        if w_extra > 0:
            extra.append((prod, w_extra))
        if p.get("suscripcion"):
            sub.append((prod, p["suscripcion"]))
        created = desde - 7 * 86400 if desde else m.created + 1800
        updated = hasta if hasta else created
        rows.append((m.marca_id, prod.id, prod.sku, prod.nombre, p["categoria"], prod.precio,
                     p.get("stock"), hasta is None, prod.alias, _dt(created), _dt(updated)))
    m.cat_first, m.cat_extra, m.cat_sub = (([p for p, _ in pairs], _cum(w for _, w in pairs))
                                           for pairs in (first, extra, sub))
    return rows


def _product(rng: random.Random, m: _Marca, which: str, ts: int, exclude) -> _Producto | None:
    items, cum = getattr(m, which)
    for _ in range(30):
        p = _pick(rng, items, cum)
        if p.vendible(ts) and p not in exclude:
            return p
    for p in items:  # unlucky draws: the first one on sale
        if p.vendible(ts) and p not in exclude:
            return p
    return None


# ---------------------------------------------------------------- customers and orders
def _clientes(m: _Marca, personas: list[_Persona]) -> None:
    rng = m.rng("clientes_datos")
    cc = m.cc
    origenes, origenes_cum = _weighted(cc["canal_origen"])
    ciudades = _json("ciudades.json")[cc["ciudades"]]
    ciudades_cum = _cum(c[2] for c in ciudades)
    local = cc["ciudades"] != "nacional"
    for p in personas:
        origen = _pick(rng, origenes, origenes_cum)
        tiene_tel = origen in ("whatsapp", "telefono") or rng.random() < cc["telefono"]
        tiene_email = origen == "web" or rng.random() < cc["email"]
        if local:
            ciudad, region, _ = _pick(rng, ciudades, ciudades_cum)
        else:
            ciudad, region = p.ciudad, p.region
        if rng.random() >= cc["ciudad"]:
            ciudad = region = None
        c = _Cliente(m, p, p.telefono if tiene_tel else None, p.email if tiene_email else None,
                     ciudad, region, origen)
        c.documento = p.documento if rng.random() < cc["documento"] else None
        c.nacimiento = p.nacimiento if rng.random() < cc["nacimiento"] else None
        if rng.random() < cc["notas"]:
            c.notas = rng.choice(m.conv["notas_cliente"])
        m.clientes.append(c)


def _canal_pedido(rng: random.Random, m: _Marca, c: _Cliente) -> str:
    canales, cum = m.order_channels
    if c.canal_origen in canales and rng.random() < m.perfil["fidelidad_canal"]:
        canal = c.canal_origen
    else:
        canal = _pick(rng, canales, cum)
    if canal in ("whatsapp", "telefono") and not c.telefono:
        canal = "web"
    return canal


def _pedidos(m: _Marca) -> None:
    """Who ordered when: first orders, subscriptions, then the rest by activity."""
    rng = m.rng("pedidos")
    cc = m.cc
    import_ts = m.cal.base[0] + 10 * 3600
    compradores = [c for c in m.clientes if rng.random() >= cc["sin_pedidos"]]
    if not compradores:
        compradores = m.clientes[:1]
    compradores = compradores[:m.n_pedidos]
    ventanas = []
    for c in compradores:
        # already a customer when the brand started using the CRM, or a new one on day s
        base = c.canal_origen == "importacion" or rng.random() < cc["base_inicial"]
        s = 0 if base else m.day(rng)
        end = HISTORY_DAYS
        if rng.random() < cc["abandono"]:
            end = min(HISTORY_DAYS, s + int(rng.expovariate(1.0 / cc["abandono_media_dias"])))
        canal = _canal_pedido(rng, m, c)
        first = m.day(rng, s, end) if base else s
        m.pedidos.append(_Pedido(m, c, m.instant(rng, first, m.perfil_hora(canal)), canal))
        ventanas.append((c, s, end, rng.lognormvariate(0.0, cc["actividad_sigma"]) * (end - s + 10)))

    disponibles = m.n_pedidos - len(compradores)
    if m.cat_sub[0] and cc.get("suscripcion"):
        subs = []
        for c, s, end, _ in ventanas:
            if rng.random() >= cc["suscripcion"]:
                continue
            prod = _pick(rng, *m.cat_sub)
            first_day = START_DATE + timedelta(days=s)
            dom = min(first_day.day, 28)
            y, mo = first_day.year, first_day.month
            while True:
                mo += 1
                if mo == 13:
                    y, mo = y + 1, 1
                d = (date(y, mo, dom) - START_DATE).days
                if d > end:
                    break
                subs.append(_Pedido(m, c, m.instant(rng, d, "suscripcion"), "web", prod))
        if len(subs) > disponibles // 2:  # keep room for ordinary orders
            subs = sorted(subs, key=lambda p: p.ts)[:disponibles // 2]
        m.pedidos.extend(subs)
        disponibles -= len(subs)

    cum = _cum(w for *_, w in ventanas)
    for _ in range(disponibles):
        c, s, end, _w = _pick(rng, ventanas, cum)
        canal = _canal_pedido(rng, m, c)
        d = m.day(rng, s, end)
        m.pedidos.append(_Pedido(m, c, m.instant(rng, d, m.perfil_hora(canal)), canal))

    first_seen: dict[int, int] = {}
    for p in m.pedidos:
        k = id(p.cliente)
        if k not in first_seen or p.ts < first_seen[k]:
            first_seen[k] = p.ts
    for c in m.clientes:
        first = first_seen.get(id(c))
        if c.canal_origen == "importacion":
            c.created_at = import_ts if first is None else min(import_ts, first - 600)
        elif first is not None:
            c.created_at = first - _between(rng, 300, 1800)  # first message, then the order
        else:  # asked something, never ordered
            c.created_at = m.instant(rng, m.day(rng), "default")
        c.updated_at = c.created_at


# ---------------------------------------------------------------- interactions
class _Chat:
    """Accumulates interactions; wamids are unique across the whole load."""

    def __init__(self):
        self.rows: list[list] = []
        self.seq = 0

    def wamid(self, telefono: str) -> str:
        self.seq += 1
        digits = telefono.lstrip("+").encode()
        msg = b"3EB0%016X" % ((self.seq * 0x9E3779B97F4A7C15 + SEED) & 0xFFFFFFFFFFFFFFFF)
        raw = b"\x18" + bytes([len(digits)]) + digits + b"\x15\x02\x00\x12\x18\x14" + msg + b"\x00"
        return "wamid." + base64.b64encode(raw).decode()

    def add(self, c: _Cliente, canal: str, direccion: str, tipo: str, contenido: str, ts: int,
            puntaje: int | None = None) -> bool:
        if ts > c.marca.cal.anchor:
            return False
        if canal == "whatsapp" and not c.telefono:
            if not c.email:
                return False
            canal = "email"
        ext = self.wamid(c.telefono) if canal == "whatsapp" and tipo in ("mensaje", "encuesta") else None
        self.rows.append([c.marca.marca_id, 0, c.id, canal, direccion, tipo, contenido[:10000], ext,
                          puntaje, ts])
        return True


def _items_texto(rng: random.Random, items) -> str:
    parts = []
    for prod, qty in items:
        alias = rng.choice(prod.alias) if prod.alias else prod.nombre.lower()
        parts.append(alias if qty == 1 else f"{qty} {alias}")
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " y " + parts[-1]


def _fmt(template: str, **kw) -> str:
    return template.format(**kw)


def _ciclo(rng: random.Random, m: _Marca, p: _Pedido) -> tuple[list[str], list[int]]:
    """The order's walk through the lifecycle, cut at the anchor."""
    tiempos = m.perfil["tiempos"].get(p.canal) or m.perfil["tiempos"]["default"]
    times = [p.ts]
    for lo, hi in tiempos:
        times.append(times[-1] + max(30, int(rng.uniform(lo, hi) * 60)))
    path = list(FLUJO)
    if rng.random() < m.perfil["cancelacion"]:
        k = FLUJO.index(_pick(rng, *m.cancel_from))
        gap = times[k + 1] - times[k]
        path = path[:k + 1] + ["cancelado"]
        times = times[:k + 1] + [times[k] + max(1, int(gap * rng.uniform(0.1, 0.9)))]
    n = bisect.bisect_right(times, m.cal.anchor)
    return path[:n], times[:n]


def _historia(m: _Marca, p: _Pedido, rng: random.Random, chat: _Chat, items_rows: list,
              estados_rows: list, next_item_id) -> tuple:
    c = p.cliente
    n_items = 1 if p.suscripcion else 1 + bisect.bisect_right(m.n_items_cum, rng.random() * m.n_items_cum[-1])
    chosen: list[tuple[_Producto, int]] = []
    used: list[_Producto] = []
    for i in range(n_items):
        if p.suscripcion and i == 0:
            prod = p.suscripcion
        else:
            prod = _product(rng, m, "cat_first" if i == 0 else "cat_extra", p.ts, used)
        if prod is None:
            continue
        qty = 1 + bisect.bisect_right(m.qty_cum, rng.random() * m.qty_cum[-1])
        qty = min(qty, prod.maximo)
        chosen.append((prod, qty))
        used.append(prod)
    if p.suscripcion and rng.random() < 0.2:  # an add-on with this month's box
        prod = _product(rng, m, "cat_extra", p.ts, used)
        if prod is not None:
            chosen.append((prod, 1))
    total = 0
    for prod, qty in chosen:
        items_rows.append((m.marca_id, next_item_id(), p.id, prod.id, qty, prod.precio))
        total += qty * prod.precio

    path, times = _ciclo(rng, m, p)
    for i, (estado, ts) in enumerate(zip(path, times)):
        if i == 0:
            actor = "crm_api" if p.canal in ("whatsapp", "web") else m.staff
        elif estado == "confirmado" and p.canal == "web":
            actor = "crm_api"  # the payment confirmation
        else:
            actor = m.staff
        estados_rows.append([m.marca_id, 0, p.id, path[i - 1] if i else None, estado, actor, ts])

    estado = path[-1]
    if estado != "cancelado":
        c.gasto += total
        c.pedidos_validos += 1
    if c.ultimo_pedido is None or p.ts > c.ultimo_pedido:
        c.ultimo_pedido = p.ts

    # conversation around the order
    conv, msg = m.conv, m.mensajes
    kw = {"nombre": c.persona.pila, "pedido": p.id, "total": clp(total),
          "ciudad": c.ciudad or "Santiago"}
    reached = dict(zip(path, times))
    if p.suscripcion:
        if c.email:
            chat.add(c, "email", "saliente", "mensaje",
                     _fmt(conv.get("suscripcion_email", conv["confirmacion_email"]), **kw), p.ts + 45)
    elif p.canal == "whatsapp":
        texto = _fmt(rng.choice(conv["pedido_entrante"]), items=_items_texto(rng, chosen), **kw)
        chat.add(c, "whatsapp", "entrante", "mensaje", texto, p.ts - _between(rng, 20, 240))
    elif p.canal == "telefono":
        chat.add(c, "telefono", "entrante", "llamada",
                 _fmt(conv["llamada_pedido"], items=_items_texto(rng, chosen), **kw), p.ts - _between(rng, 30, 300))
    elif p.canal == "web" and c.email:
        chat.add(c, "email", "saliente", "mensaje", _fmt(conv["confirmacion_email"], **kw), p.ts + 40)
    notify = p.canal in ("whatsapp", "web") and c.telefono is not None
    if notify and "confirmado" in reached and p.canal == "whatsapp":
        chat.add(c, "whatsapp", "saliente", "mensaje", _fmt(msg["pedido_confirmado"], **kw),
                 reached["confirmado"] + _between(rng, 1, 30))
    if notify and "listo" in reached:
        chat.add(c, "whatsapp", "saliente", "mensaje", _fmt(msg["pedido_listo"], **kw),
                 reached["listo"] + _between(rng, 5, 120))
    if estado == "cancelado":
        tc = reached["cancelado"]
        if p.canal == "whatsapp" and rng.random() < 0.6:
            chat.add(c, "whatsapp", "entrante", "mensaje", rng.choice(conv["cancelado_cliente"]),
                     tc - min(_between(rng, 30, 300), (tc - p.ts) // 2))
            chat.add(c, "whatsapp", "saliente", "mensaje", _fmt(msg["pedido_cancelado"], **kw),
                     tc + _between(rng, 5, 60))
        elif c.telefono:
            chat.add(c, "whatsapp", "saliente", "mensaje", _fmt(rng.choice(conv["cancelado_marca"]), **kw),
                     tc + _between(rng, 5, 120))
    elif estado == "entregado":
        te = reached["entregado"]
        if p.canal == "whatsapp" and rng.random() < 0.2:
            chat.add(c, "whatsapp", "entrante", "mensaje", rng.choice(conv["gracias"]),
                     te + _between(rng, 120, 3600))
        oo = c.opt_out.get("encuestas")
        if rng.random() < m.perfil["encuesta"] and (oo is None or oo > te):
            lo, hi = m.perfil["encuesta_demora_min"]
            ask = te + _between(rng, lo * 60, hi * 60)
            canal = "whatsapp" if c.telefono else "email"
            if chat.add(c, canal, "saliente", "mensaje", _fmt(msg["encuesta"], **kw), ask) \
                    and rng.random() < m.perfil["encuesta_respuesta"]:
                score = int(_pick(rng, *m.scores))
                chat.add(c, canal, "entrante", "encuesta",
                         rng.choice(conv["encuesta_respuesta"][str(score)]),
                         ask + _between(rng, 60, 6 * 3600), puntaje=score)
    nota = rng.choice(conv["notas_pedido"]) if rng.random() < m.perfil["nota_pedido"] else None
    return (m.marca_id, p.id, c.id, p.canal, estado, total, nota, p.ts, times[-1])


def _opt_outs(m: _Marca) -> None:
    rng = m.rng("opt_out")
    anchor = m.cal.anchor
    for c in m.clientes:
        for kind, prob in m.cc["opt_out"].items():
            if rng.random() < prob:
                c.opt_out[kind] = c.created_at + int(rng.random() * (anchor - c.created_at))


def _conversaciones_cliente(m: _Marca, chat: _Chat) -> None:
    """What is not about one order: questions, notes, calls, opt-outs, campaigns."""
    rng = m.rng("conversaciones")
    conv, anchor = m.conv, m.cal.anchor
    activos = [p for p in m.productos if p.hasta is None]
    for c in m.clientes:
        kw = {"nombre": c.persona.pila, "ciudad": c.ciudad or "Santiago"}
        n = _geometric(rng, m.perfil["consultas_por_cliente"])
        if c.pedidos_validos == 0 and c.ultimo_pedido is None:
            n += 1  # why they are in the CRM at all
        for i in range(n):
            ts = c.created_at + 30 if i == 0 and c.ultimo_pedido is None else \
                c.created_at + int(rng.random() * (anchor - c.created_at))
            q, a = rng.choice(conv["consultas"])
            kw["producto"] = rng.choice(activos).nombre
            canal = "whatsapp" if c.telefono else "email"
            if chat.add(c, canal, "entrante", "mensaje", _fmt(q, **kw), ts):
                chat.add(c, canal, "saliente", "mensaje", _fmt(a, **kw), ts + _between(rng, 60, 1800))
        if rng.random() < 0.05:
            ts = c.created_at + int(rng.random() * (anchor - c.created_at))
            chat.add(c, "presencial", "saliente", "nota", rng.choice(conv["notas"]), ts)
        if c.telefono and rng.random() < 0.04:
            ts = c.created_at + int(rng.random() * (anchor - c.created_at))
            chat.add(c, "telefono", "entrante", "llamada", rng.choice(conv["llamadas"]), ts)
        ts = c.opt_out.get("marketing")
        if ts is not None and c.telefono:
            chat.add(c, "whatsapp", "entrante", "mensaje", rng.choice(conv["opt_out"]), ts)
        if c.opt_out:
            c.updated_at = max([c.updated_at, *c.opt_out.values()])

    by_creation = sorted(m.clientes, key=lambda c: c.created_at)
    created = [c.created_at for c in by_creation]
    for camp in conv.get("campanas", []):
        ts = _local_epoch(datetime.fromisoformat(camp["fecha"]), m.cal.zona)
        if ts > anchor:
            continue
        for c in by_creation[:bisect.bisect_left(created, ts)]:
            oo = c.opt_out.get("marketing")
            if c.telefono and (oo is None or oo > ts) and rng.random() < 0.35:
                chat.add(c, "whatsapp", "saliente", "mensaje", camp["texto"], ts + _between(rng, 0, 1800))


def _segmentos(m: _Marca) -> None:
    limite = m.cal.anchor - INACTIVO_DIAS * 86400
    ranked = sorted((c for c in m.clientes if c.gasto > 0), key=lambda c: (-c.gasto, c.id))
    vip = {id(c) for c in ranked[:max(1, round(VIP_FRACCION * len(m.clientes)))]}
    for c in m.clientes:
        ultimo = c.ultimo_pedido if c.ultimo_pedido is not None else c.created_at
        if ultimo < limite:
            c.segmento = "inactivo"
        elif id(c) in vip:
            c.segmento = "vip"
        elif c.pedidos_validos >= 2:
            c.segmento = "recurrente"
        else:
            c.segmento = "nuevo"


# ---------------------------------------------------------------- the whole load
def generate(scale: float, marca_ids: dict[str, int], id_base: dict[str, int] | None = None
             ) -> dict[str, tuple[tuple[str, ...], list[tuple]]]:
    """Every row of the demo, table by table in load order: {table: (columns, rows)}.

    marca_ids: slug -> crm.marcas.id of the brands already created.
    id_base: table -> the highest id already used (0 in a fresh database); ids continue
    from there, so the rows can carry explicit ids and still never collide."""
    if not scale > 0:
        raise ValueError("scale must be positive")
    base = {t: 0 for t in TABLES} | dict(id_base or {})
    counters = {t: itertools.count(base[t] + 1) for t in TABLES}
    confs = _json("marcas.json")["marcas"]
    marcas = [_Marca(i, conf, marca_ids[conf["slug"]], scale) for i, conf in enumerate(confs)]

    productos_rows = []
    next_producto = counters["productos"].__next__
    for m in marcas:
        productos_rows += _catalogo(m, next_producto)

    # one pool of people; each brand draws its customers from it, so some are shared
    pool_size = math.ceil(POOL_FACTOR * sum(m.n_clientes for m in marcas))
    picks = [m.rng("clientes").sample(range(pool_size), m.n_clientes) for m in marcas]
    needed = sorted(set(itertools.chain.from_iterable(picks)))
    pool = dict(zip(needed, _personas(len(needed))))
    for m, pick in zip(marcas, picks):
        _clientes(m, [pool[i] for i in pick])
        _pedidos(m)
        _opt_outs(m)

    # ids follow creation time, as an identity column would have given them
    clientes = sorted((c for m in marcas for c in m.clientes), key=lambda c: (c.created_at, c.marca.idx))
    for c in clientes:
        c.id = next(counters["clientes"])
    pedidos = sorted((p for m in marcas for p in m.pedidos), key=lambda p: (p.ts, p.marca.idx))
    for p in pedidos:
        p.id = next(counters["pedidos"])

    chat = _Chat()
    rngs = {m.idx: m.rng("historia") for m in marcas}
    pedidos_rows, items_rows, estados = [], [], []
    next_item = counters["pedido_items"].__next__
    for p in pedidos:
        m = p.marca
        pedidos_rows.append(_historia(m, p, rngs[m.idx], chat, items_rows, estados, next_item))
    for m in marcas:
        _conversaciones_cliente(m, chat)
        _segmentos(m)

    clientes_rows = []
    for c in clientes:
        clientes_rows.append((c.marca.marca_id, c.id, c.persona.nombre, c.telefono, c.email, c.documento,
                              c.nacimiento, c.ciudad, c.region, c.canal_origen, c.segmento,
                              "marketing" in c.opt_out, "recordatorios" in c.opt_out,
                              "encuestas" in c.opt_out, c.notas, _dt(c.created_at), _dt(c.updated_at)))
    pedidos_rows = [r[:7] + (_dt(r[7]), _dt(r[8])) for r in pedidos_rows]
    estados.sort(key=lambda r: r[6])
    for r in estados:
        r[1] = next(counters["pedido_estados"])
        r[6] = _dt(r[6])
    chat.rows.sort(key=lambda r: r[9])
    for r in chat.rows:
        r[1] = next(counters["interacciones"])
        r[9] = _dt(r[9])
    rows = {"clientes": clientes_rows, "productos": productos_rows, "pedidos": pedidos_rows,
            "pedido_items": items_rows, "pedido_estados": estados, "interacciones": chat.rows}
    return {t: (COLUMNS[t], rows[t]) for t in TABLES}
