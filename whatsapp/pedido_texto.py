"""Order text → catalog lines: what a customer wrote on WhatsApp, against one brand's catalog.

Pure code (no database, no network). Build one `Catalogo` per brand from its active products
and reuse it for every message: everything that depends only on the catalog (normalized
names and aliases, token weights, protected phrases, the typo index) is computed once.

    cat = Catalogo([Producto(1, "Pollo asado entero", ("pollo entero", "pollo")), ...])
    cat.interpretar("hola! 2 pollos enteros y unas papitas porfa 🙏")
    → Interpretacion(lineas=(Linea(1, 2, "pollos enteros"), Linea(11, 1, "papitas")), ...)

How a message is read:
1. Fold: lowercase, accents stripped (ñ → n), emojis and most punctuation become separators;
   offsets are kept so every fragment is reported as the customer wrote it.
2. Tokens: numbers ("2", "1,5", "1/2" → medio), "2x"/"x2" markers, number + unit
   ("350 ml", "1.5 lt", "litro y medio" → a size, never a quantity), times ("a las 8 y media",
   "20:30"), prices and street numbers (> 50) are not quantities either. A word is reduced to a
   canonical form (plural and diminutive endings off: "papitas" → "papa", "coquita" → "coca")
   and, when it is not a catalog word nor a known filler, corrected to the closest catalog word
   (rapidfuzz ratio on a phonetic spelling, same first letter, similar length: "poyo" → "pollo",
   "entreo" → "entero") or completed when it is the unique prefix of one ("papas fam").
   Catalog phrases that contain a number or a separator word ("combo para dos", "2x1",
   "iphone 13", "agua sin gas") are recognised first and glued into one token.
3. Items: separators (comma, newline, "+", emoji, "y", "con", "más", "o", ...) cut the message;
   quantities cut it again ("2 pollos 3 cocas"). A quantity goes with the words after it
   ("2 pollos", "dos", "2x"), or with the words before it when written after them ("pollo x2",
   "papas 2", "pollos 3 papas 2", or alone after a question: "¿tienen nuggets? mándeme 2").
   "un par de" = 2, "media docena" = 6, "una docena" = 12. Greetings, order verbs and
   politeness are dropped, and so is the rest of a clause after "a nombre de", "sin", an address
   marker or a payment word; "para …" (para llevar, para la once) ends at a quantity.
4. Matching: an item's words are covered by catalog spans (dynamic programming). A span scores
   each product by how much of the span the product explains (IDF-weighted words of its name,
   aliases and category; words of a parenthesised description count half) times how much of
   one of its names or aliases the span names. An exact name or alias wins; otherwise products
   within `MARGEN` of the best are an `Ambiguo` ("bebida" → every drink, via the category).
   Unknown words after a product are modifiers ("pollo bien dorado", "jugo de frambuesa"); an
   unknown word before it is the head of something else ("pizza familiar", "empanada de pollo")
   and the item goes to `desconocidos` when it was asked for (a quantity, an article, an order
   verb, or a list of items around it).
5. Details, not lines: "con X" / "de X" right after a product whose description offers X
   ("Combo familiar (…, bebida 1,5 L)" con coca; "combo individual de pechuga"), or that is the
   same product ("agua con gas"). "2 cuartos, uno de pierna y otro de pechuga" replaces the
   2 cuartos; "de postre una leche asada" is one leche asada; "una coca o una fanta" is one
   `Ambiguo`.
6. The same product twice → one line, quantities summed, in order of first mention.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from rapidfuzz import fuzz, process


@dataclass(frozen=True)
class Producto:
    id: int
    nombre: str
    alias: tuple[str, ...] = ()
    precio: int = 0
    # Optional: the product's category ("bebidas"). A word that names a category and no
    # product ("una bebida") makes the category's products the candidates of an `Ambiguo`.
    categoria: str = ""


@dataclass(frozen=True)
class Linea:
    producto_id: int
    cantidad: int
    fragmento: str


@dataclass(frozen=True)
class Ambiguo:
    fragmento: str
    cantidad: int
    candidatos: tuple[int, ...]  # product ids, best first


@dataclass(frozen=True)
class Interpretacion:
    lineas: tuple[Linea, ...]
    ambiguos: tuple[Ambiguo, ...]
    desconocidos: tuple[str, ...]


# ---------------------------------------------------------------- text folding
_KEEP = set(",;+.!?:[]{}*|&/-'$#%\"<>=_~")


class _FoldTable(dict):
    """str.translate table: one character in, one character out (offsets survive)."""

    def __missing__(self, o: int) -> str:
        ch = chr(o)
        low = ch.lower()
        if len(low) != 1:
            low = ch
        base = unicodedata.normalize("NFKD", low)[:1] or low
        if ch in "½¼":
            r = ch
        elif base.isascii() and base.isalnum():
            r = base
        elif ch in "\n\r\u2028\u2029":
            r = "\n"
        elif ch.isspace():
            r = " "
        elif ch in _KEEP:
            r = ch
        elif ch in "¡¿()":
            r = " "  # "un pollo (entero)": the parenthesis belongs to the item
        else:
            r = "|"  # emoji and other symbols separate items
        self[o] = r
        return r


_FOLD = _FoldTable()


def plegar(texto: str) -> str:
    """Lowercase, accents stripped, same length as the input (emojis become '|')."""
    return texto.translate(_FOLD)


_TOKEN_RE = re.compile(r"[0-9]+(?:[.,/][0-9]+)*[a-z0-9]*|[a-z½¼]+[a-z0-9]*")
_HORA_RE = re.compile(
    r"\b\d{1,2}:\d{2}(?:\s*(?:hrs?|h|pm|am)\b)?|\b\d{1,2}\s*(?:hrs|hr|pm|am)\b"
    r"|\ba\s+las?\s+(?:\d{1,2}|una|dos|tres|cuatro|cinco|seis|siete|ocho|nueve|diez|once|doce)"
    r"(?:\s+y\s+(?:media|cuarto|\d{1,2}))?\b"
)
_REPETIDAS_RE = re.compile(r"([a-z])\1{2,}")

# ---------------------------------------------------------------- vocabulary
_NUMEROS = {
    "un": 1, "uno": 1, "una": 1, "unos": 1, "unas": 1, "dos": 2, "tres": 3, "cuatro": 4, "cinco": 5,
    "seis": 6, "siete": 7, "ocho": 8, "nueve": 9, "diez": 10, "once": 11, "doce": 12, "trece": 13,
    "catorce": 14, "quince": 15, "veinte": 20,
}  # fmt: skip
_ARTICULOS = {"un", "uno", "una", "unos", "unas"}
_MULTIPLICADORES = {"par": 2, "pares": 2, "docena": 12, "docenas": 12}
_UNIDADES_LITRO = {"l": 1.0, "lt": 1.0, "lts": 1.0, "ltr": 1.0, "ltrs": 1.0, "litro": 1.0, "litros": 1.0,
                   "ml": 0.001, "cc": 0.001, "mls": 0.001}  # fmt: skip
_UNIDADES_OTRAS = {"g", "gr", "grs", "gramos", "kg", "kgs", "kilo", "kilos", "cm", "mt", "mts", "m",
                   "metro", "metros", "w", "mah", "gb", "tb"}  # fmt: skip
_UNIDADES_CONTEO = {"u", "un", "und", "unid", "unidad", "unidades", "uds"}
_TIEMPO = {"min", "mins", "minuto", "minutos", "hr", "hrs", "hora", "horas", "h", "pm", "am", "dias", "dia"}

# Words that separate items. "con" may introduce a detail of the item before (_es_eleccion);
# "o" offers alternatives ("una coca o una fanta" is one drink: an Ambiguo).
_SEPARADORES = {"y", "e", "mas", "con", "cn", "ademas", "tambien", "tb", "tmb", "tbn", "aparte", "o", "pero",
                "luego", "despues"}  # fmt: skip
_STOP = {"de", "del", "d", "el", "la", "los", "las", "lo", "en", "al", "a", "para", "pa", "pal", "por"}
# Drop the rest of the clause (up to the next separator) after these.
_CORTAR = {"nombre", "soy", "llamo", "direccion", "dir", "depto", "dpto", "departamento", "calle", "pasaje",
           "psje", "avenida", "av", "avda", "block", "torre", "villa", "poblacion", "condominio", "piso",
           "comuna", "referencia", "pago", "pagar", "pagamos", "pagaria", "pagare", "cancelo", "rut",
           "sin", "fono", "telefono", "celular", "numero", "n", "nro", "casa", "timbre", "conserjeria",
           "porteria", "llegar", "llegas", "llegue", "lleguen", "horario"}  # fmt: skip
# "para" also starts a clause, but it ends at a quantity or a catalog word
# ("para despacho 2 pollos", "para la once: 2 leches asadas").
_PARA = {"para", "pa", "pal"}
# Greetings, politeness, order verbs, people, occasions, cooking words, payment: never a product
# unless the catalog uses the word (catalog words are checked first).
_RELLENO_TEXTO = """
hola ola holi holis holaa wena wenas sal buena buenas buenos buen dia dias tarde tardes noche noches
saludo saludos que q k ke tal como estan esta estas estan bien gracias grax graciass muchas mucha
porfa porfavor porfis plis pls please xfa xfavor favor fa x disculpa disculpe perdon
quiero queria quisiera quisieramos kiero qiero keria queremos quiere quieren pido pedir pedimos pedido pedidos
necesito necesitamos necesitaria gustaria gustaria podria podrian podrias puede pueden puedes pueda
me nos te le les se mi mis su sus tu yo nosotros
manda mandas mandan mande mandame mandeme mandenme mandarme mandar mandan
envia envian envie enviame envien envienme enviar enviarme
trae traen traes traeme traigan traiganme traer
dame deme denme da das dan dar
agrega agregame agregale agregar agregue sumale suma sumar ponle pone poner echale
encargar encargo reservar reserva comprar compro llevar llevo retirar retiro retira paso pasar
hacer hago haga hacerme tener tienen tiene tienes tendran tendria hay habra habria sera seria es son va van
vale valen sale salen cuesta cuanto cuantos cuanta cuantas costo precio precios total
despacho delivery domicilio envio local sucursal tienda ahora hoy manana altiro tiro rapido urgente
ojala si no nop ok oka okey dale ya listo igual tambien
orden ordenar porcion porciones plato platos caja cajas bolsa unidad unidades
algo alguno alguna algun algunos algunas cualquier cualquiera todo toda todos todas
mismo misma vez veces solo sola nada nomas mas menos harto harta hartos hartas poco poca
rico rica ricos ricas buen buena buenisimo gran grandote porfis po pue oe wn
almuerzo almorzar cena cenar once desayuno comer comida cumpleanos celebracion familia oficina gente
persona personas nino ninos nina ninas hijo hijos hija hijas senora senor esposa esposo marido polola
pololo amigo amigos amiga amigas mama abuela jefe
bien cocido cocida dorado dorada doradito crujiente crujientes caliente calentito calientes
heladito heladita helada heladas helados frio fria frias frios tibio trozado trozada cortado cortada
cortar presas presa picado picada aparte separado separada mitad
efectivo transferencia tarjeta debito credito webpay
interesa interesaria busco buscaba buscando consulta consultar
espero esperamos aviso avisa avise avisen llamar llamen llama tocar toquen dejar dejen deja
gracia favorcito amable ustedes usted
hey hi hello weno bueno buenasss holaaa
"""
_RELLENO = set(_RELLENO_TEXTO.split())
# Order verbs: an unknown thing right after one is reported as unknown, even with no quantity.
_VERBO_PEDIDO = {"quiero", "queria", "quisiera", "quisieramos", "kiero", "qiero", "keria", "queremos",
                 "pido", "pedir", "necesito", "necesitamos", "manda", "mandame", "mandeme", "mandan",
                 "mandenme", "dame", "deme", "denme", "trae", "traeme", "traen", "envia", "enviame",
                 "envien", "tienen", "tiene", "hay", "agrega", "agregame", "agregale", "sumale"}  # fmt: skip
_RELLENO_PREFIJOS = ("mand", "envi", "trai", "quier", "queri", "quisi", "necesit", "gustar", "podri", "pued",
                     "agreg", "encarg", "reserv", "grac", "salud", "porfa", "please")  # fmt: skip
_INFINITIVO_RE = re.compile(r"^[a-z]{3,}(?:ar|er|ir)(?:me|le|lo|la|nos|les)?$")

# Separator characters: all of these cut a message into chunks; the first group also marks a list.
_SEP_LISTA = set(",;+\n&")
_SEP_LISTA_PALABRAS = {"y", "e", "mas", "ademas", "tambien", "tb", "tmb", "tbn"}
_PRONOMBRES = {"uno", "otro", "otra", "otros", "otras"}


# ---------------------------------------------------------------- word forms
def _canon(w: str) -> str:
    """Plural-insensitive canonical form, applied alike to catalog and message words."""
    if len(w) > 3 and w.endswith("s") and not w.endswith("ss"):
        w = w[:-1]
        if w.endswith("ie"):
            w = w[:-1]
    if len(w) > 4 and w.endswith("e") and w[-2] in "lrnd":
        w = w[:-1]
    return w


def _sin_diminutivo(w: str) -> list[str]:
    """Candidate bases of a diminutive: papita → papa, coquita → coca, arrocito → arroz."""
    out = []
    for suf in ("ito", "ita"):
        if w.endswith(suf) and len(w) > 5:
            stem = w[:-3]
            v = suf[-1]
            if stem.endswith("qu"):
                out.append(stem[:-2] + "c" + v)
            elif stem.endswith("gu"):
                out.append(stem[:-1] + v)
            if stem.endswith("c"):
                out.append(stem[:-1] + "z")  # arrocito → arroz
                out.append(stem[:-1])  # purecito → pure
                out.append(stem[:-1] + v)
            out.append(stem + v)
            out.append(stem + ("o" if v == "a" else "a"))
    return [_canon(x) for x in out]


_FONETICA = [("ll", "y"), ("qu", "k"), ("ca", "ka"), ("co", "ko"), ("cu", "ku"), ("z", "s"), ("ce", "se"),
             ("ci", "si"), ("v", "b"), ("h", ""), ("w", "gu")]  # fmt: skip


def _fonetica(w: str) -> str:
    for a, b in _FONETICA:
        w = w.replace(a, b)
    return w


# ---------------------------------------------------------------- tokens
class _Tok:
    __slots__ = ("articulo", "canon", "fin", "ini", "kind", "palabra", "pronombre", "sep", "valor")

    def __init__(self, kind: str, canon: str, ini: int, fin: int, sep: str = "", valor: float = 0):
        # kind: W word, N quantity, M multiplier (par, docena), D size or number that is not a
        # quantity, X "x" marker, S separator word, T stop word, C clause cutter, F filler,
        # V order verb. Words start as "w" (unclassified) until the catalog classifies them.
        self.kind = kind
        self.canon = canon
        self.palabra = canon  # the folded word as written
        self.valor = valor
        self.ini = ini
        self.fin = fin
        self.sep = sep  # separator just before this token: "" none, "l" list (, + newline), "h" other
        self.articulo = False  # un/una/unos/unas/otro: a quantity of 1 that nobody counted
        self.pronombre = False  # uno/una/otro/otra (as in "uno de pierna y otro de pechuga")

    def __repr__(self) -> str:  # pragma: no cover - debugging aid
        return f"{self.kind}:{self.canon}"


def _num(s: str) -> float | None:
    try:
        return float(s.replace(",", "."))
    except ValueError:
        return None


def _decimal(v: float) -> str:
    return f"{v:g}"


_NUM_SUFIJO_RE = re.compile(r"([0-9]+(?:[.,/][0-9]+)*)([a-z][a-z0-9]*)?")


def _tokens_crudos(plegado: str) -> list[_Tok]:
    """Tokens of folded text: numbers, x markers, sizes and words (words not yet classified)."""
    out: list[_Tok] = []
    prev = 0
    pendiente = ""
    for m in _TOKEN_RE.finditer(plegado):
        gap = plegado[prev : m.start()]
        prev = m.end()
        sep = pendiente
        pendiente = ""
        if gap and gap.strip(" '") and gap != "-":
            sep = "l" if any(c in _SEP_LISTA for c in gap) else (sep or "h")
        t = m.group()
        a, b = m.start(), m.end()
        first = len(out)
        if t[0].isdigit():
            mm = _NUM_SUFIJO_RE.fullmatch(t)
            if mm is None:  # 13c, 520bt: model codes
                out.append(_Tok("w", t, a, b))
            else:
                num, suf = mm.group(1), mm.group(2) or ""
                nb = a + len(num)
                if suf == "x":
                    out.append(_num_tok(num, a, nb))
                    out.append(_Tok("X", "x", nb, nb + 1))
                elif suf.startswith("x") and suf[1:].isdigit():
                    out.append(_Tok("w", t, a, b))  # "2x1", "3x2": a promotion, not a quantity
                elif suf in _UNIDADES_LITRO or suf in _UNIDADES_OTRAS:
                    out.append(_tamano(num, suf, a, b))
                elif suf in _TIEMPO:
                    pass
                elif suf in _UNIDADES_CONTEO:
                    out.append(_num_tok(num, a, nb))
                elif suf:
                    out.append(_Tok("w", t, a, b))
                else:
                    out.append(_num_tok(num, a, b))
        elif t[0] == "x" and t[1:].isdigit():
            out.append(_Tok("X", "x", a, a + 1))
            out.append(_num_tok(t[1:], a + 1, b))
        elif t in ("½", "¼"):
            out.append(_Tok("w", "medio" if t == "½" else "cuarto", a, b))
        else:
            out.append(_Tok("w", t, a, b))
        if len(out) > first:
            out[first].sep = sep
        elif sep:
            pendiente = sep
    return out


def _num_tok(s: str, a: int, b: int) -> _Tok:
    if "/" in s:
        if s == "1/2":
            return _Tok("w", "medio", a, b)
        if s == "1/4":
            return _Tok("w", "cuarto", a, b)
        return _Tok("D", s, a, b)
    if "." in s or "," in s:
        if re.fullmatch(r"[0-9]{1,3}(?:\.[0-9]{3})+", s):
            return _Tok("D", s.replace(".", ""), a, b)  # 12.990: a price
        v = _num(s)
        return _Tok("D", _decimal(v) if v is not None else s, a, b)
    v = int(s)
    if 1 <= v <= 50:
        return _Tok("N", str(v), a, b, valor=v)
    return _Tok("D", str(v), a, b)  # 0, prices, street numbers, years


def _tamano(num: str, unidad: str, a: int, b: int) -> _Tok:
    v = _num(num)
    if v is None or "/" in num:
        return _Tok("D", num, a, b)
    if unidad in _UNIDADES_LITRO:
        return _Tok("D", _decimal(round(v * _UNIDADES_LITRO[unidad], 3)), a, b)
    return _Tok("D", _decimal(v) + unidad, a, b)


def _medidas(toks: list[_Tok]) -> list[_Tok]:
    """Sizes written as words: '1.5 lt', '350 ml', 'litro y medio', 'medio litro'."""
    out: list[_Tok] = []
    i = 0
    n = len(toks)
    while i < n:
        t = toks[i]
        nxt = toks[i + 1] if i + 1 < n else None
        if t.kind == "w" and t.canon in ("litro", "lt") and i + 2 < n and toks[i + 1].canon == "y" \
                and toks[i + 2].canon == "medio":  # fmt: skip
            ini, sep = t.ini, t.sep
            if out and out[-1].kind == "N" and out[-1].valor == 1:
                ini, sep = out[-1].ini, out[-1].sep
                out.pop()
            out.append(_Tok("D", "1.5", ini, toks[i + 2].fin, sep))
            i += 3
            continue
        if t.kind == "w" and t.canon == "medio" and nxt is not None and nxt.canon in ("litro", "lt"):
            out.append(_Tok("D", "0.5", t.ini, nxt.fin, t.sep))
            i += 2
            continue
        if t.kind in ("N", "D") and nxt is not None and nxt.kind == "w" and not nxt.sep:
            u = nxt.canon
            if u in _UNIDADES_LITRO or u in _UNIDADES_OTRAS:
                out.append(_tamano(t.canon, u, t.ini, nxt.fin))
                out[-1].sep = t.sep
                i += 2
                continue
            if u in _TIEMPO and t.kind == "N" and u not in ("dia", "dias"):
                i += 2  # "en 30 min"
                continue
        if t.kind == "w" and t.canon in ("litro", "litros") and out and out[-1].kind == "w":
            out.append(_Tok("D", "1", t.ini, t.fin, t.sep))  # "coca de litro"
            i += 1
            continue
        out.append(t)
        i += 1
    return out


@lru_cache(maxsize=65536)
def _formas(w: str) -> tuple[str, str]:
    """(word with long letter runs collapsed, canonical form): "holaaa" → ("hola", "hola")."""
    w = _REPETIDAS_RE.sub(r"\1", w)
    c = _canon(w)
    return w, ("para" if c in _PARA else c)


def _canon_palabra(w: str) -> str:
    return _formas(w)[1]


# ---------------------------------------------------------------- items
class _Item:
    """One thing the customer asked for: a quantity and the words that name it."""

    __slots__ = ("articulo", "cant", "cierre", "con", "desglose", "explicita", "lista", "o", "pids", "salida",
                 "sep", "toks", "verbo")  # fmt: skip

    def __init__(self, sep: str = "", con: bool = False, o: bool = False):
        self.cant = 1
        self.explicita = False  # a quantity was written ("2", "dos", "x2"), not just "un"/"una"
        self.articulo = False  # "un"/"una"/"unos" was written
        self.toks: list[_Tok] = []  # content tokens (W or D, and stop words inside)
        self.sep = sep  # what came before: "l" list separator, "h" other separator, "" a quantity
        self.con = con  # introduced by "con"
        self.o = o  # introduced by "o": an alternative to the item before
        # next in a list ("pollo, papas, sushi"): no clause was dropped since the item before
        self.lista = False
        self.verbo = False  # right after an order verb ("quiero sushi")
        self.cierre = False  # its quantity was written after the words ("pollo x2")
        self.desglose = False  # "uno de pierna", "otro de pechuga": a part of the item before
        # ("L", (pid,), cant, ini, fin) | ("A", candidates, cant, ini, fin) | ("D", (), 0, ini, fin)
        self.salida: list[tuple[str, tuple[int, ...], int, int, int]] = []
        self.pids: set[int] = set()


@dataclass(frozen=True)
class _Resultado:
    score: float
    exacto: bool
    candidatos: tuple[int, ...]


_NADA = _Resultado(0.0, False, ())


class Catalogo:
    """A brand's catalog, prepared once, that reads order messages."""

    ACEPTA = 0.45  # minimum score for a span to name a product
    MARGEN = 0.1  # products within this of the best are ambiguous
    PENALIZA_TRAMO = 0.3  # DP cost of each span: prefer one product over two halves
    OTRO_TRAMO = 0.8  # minimum score for a second product in the same words, with no separator
    FUZZY_MIN = 80  # rapidfuzz ratio to correct a typo to a catalog word
    FUZZY_MIN_CORTA = 85  # ... when the word has 4 or 5 letters ("piña" is not "pierna")
    FUZZY_MIN_VERBO = 90  # ... when the word looks like an infinitive (tocar, llamar)

    def __init__(self, productos: Iterable[Producto]):
        self._productos: dict[int, Producto] = {}
        for p in productos:
            self._productos.setdefault(p.id, p)
        self._orden = {pid: i for i, pid in enumerate(self._productos)}
        # product → {canon word: 1.0 name/alias/category word, 0.5 word of a description}
        self._bolsa: dict[int, dict[str, float]] = {pid: {} for pid in self._productos}
        self._claves: dict[int, list[tuple[str, ...]]] = {pid: [] for pid in self._productos}
        self._descripcion: dict[int, set[str]] = {pid: set() for pid in self._productos}
        self._exactas: dict[frozenset[str], list[int]] = {}
        self._protegidas: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        categorias: dict[int, list[str]] = {}
        for p in self._productos.values():
            principal = re.sub(r"\([^)]*\)", " ", p.nombre)
            for texto in (principal, *p.alias):
                self._registrar_clave(p.id, self._tokens_clave(texto))
            for desc in re.findall(r"\(([^)]*)\)", p.nombre):
                for t in self._tokens_clave(desc):
                    if t.kind in ("w", "D") and t.canon not in _STOP and t.canon not in _SEPARADORES:
                        self._descripcion[p.id].add(t.canon)
                        self._bolsa[p.id].setdefault(t.canon, 0.5)
            categorias[p.id] = [_canon_palabra(w) for w in _TOKEN_RE.findall(plegar(p.categoria))]
            for w in categorias[p.id]:
                if w not in _STOP:
                    self._bolsa[p.id][w] = 1.0
        self._vocab: set[str] = set()
        df: dict[str, int] = {}
        for bolsa in self._bolsa.values():
            self._vocab.update(bolsa)
            for w in bolsa:
                df[w] = df.get(w, 0) + 1
        n = max(len(self._productos), 1)
        self._peso = {w: 1.0 + math.log(n / c) for w, c in df.items()}
        self._peso_desconocida = 1.5 + math.log(n)
        self._peso_clave = {
            k: sum(self._peso.get(w, 1.0) for w in k) for ks in self._claves.values() for k in ks
        }
        # Category words that are no product's name or alias word ("bebida", "acompanamiento").
        palabras_clave = {w for ks in self._claves.values() for k in ks for w in k}
        self._categoria_pura = {
            pid: {w for w in ws if w not in palabras_clave and w not in _STOP}
            for pid, ws in categorias.items()
        }
        self._fuzzy = sorted(w for w in self._vocab if w.isalpha() and len(w) >= 3)
        self._fuzzy_fon = [_fonetica(w) for w in self._fuzzy]
        self._cache_palabra: dict[str, tuple[str, str]] = {}
        self._cache_match: dict[tuple[str, ...], _Resultado] = {}
        self._largo_max = max((len(k) for ks in self._claves.values() for k in ks), default=1) + 2

    # ------------------------------------------------------------ catalog side
    @staticmethod
    def _tokens_clave(texto: str) -> list[_Tok]:
        toks = _medidas(_tokens_crudos(plegar(texto)))
        for t in toks:
            if t.kind == "w":
                t.canon = _canon_palabra(t.canon)
                if t.palabra in _NUMEROS:
                    t.kind, t.valor = "N", _NUMEROS[t.palabra]
                    t.canon = str(_NUMEROS[t.palabra])
        return toks

    def _registrar_clave(self, pid: int, toks: list[_Tok]) -> None:
        if not toks:
            return
        # A phrase the message reader would cut or count ("combo para dos", "2x1", "iphone 13",
        # "agua sin gas") is matched literally first and glued into one word.
        protegida = any(t.kind in ("N", "X") for t in toks) or any(
            t.canon in _SEPARADORES or t.canon in _CORTAR for t in toks if t.kind == "w"
        )
        palabras = tuple(
            t.canon for t in toks
            if t.kind in ("w", "D") and t.canon not in _STOP and t.canon not in _SEPARADORES
            and t.canon not in _CORTAR
        )  # fmt: skip
        bolsa = self._bolsa[pid]
        for w in palabras:
            bolsa[w] = 1.0
        if protegida:
            seq = tuple(t.canon for t in toks)
            pegada = " ".join(seq)
            lst = self._protegidas.setdefault(seq[0], [])
            if (seq, pegada) not in lst:
                lst.append((seq, pegada))
                lst.sort(key=lambda x: -len(x[0]))
            bolsa[pegada] = 1.0
            clave: tuple[str, ...] = (pegada,)
        else:
            clave = palabras
            if not clave:
                return
        if clave not in self._claves[pid]:
            self._claves[pid].append(clave)
            lst2 = self._exactas.setdefault(frozenset(clave), [])
            if pid not in lst2:
                lst2.append(pid)

    # ------------------------------------------------------------ words
    def _palabra(self, w: str) -> tuple[str, str]:
        """(kind, canon) of a folded message word, corrected to the catalog when close."""
        r = self._cache_palabra.get(w)
        if r is None:
            r = self._palabra_calc(w)
            if len(self._cache_palabra) > 50_000:
                self._cache_palabra.clear()
            self._cache_palabra[w] = r
        return r

    def _palabra_calc(self, w: str) -> tuple[str, str]:
        w = _REPETIDAS_RE.sub(r"\1", w)
        c = _canon(w)
        if w in self._vocab:
            return "W", w
        if c in self._vocab:
            return "W", c
        if w in _NUMEROS:
            return "N", w
        if w in _MULTIPLICADORES:
            return "M", w
        if w in _SEPARADORES:
            return "S", w
        if w in _STOP:
            return "T", ("para" if w in _PARA else w)
        if w in _CORTAR:
            return "C", w
        if w in _VERBO_PEDIDO:
            return "V", w
        if w in _RELLENO or c in _RELLENO:
            return "F", w
        for base in _sin_diminutivo(c):
            if base in self._vocab:
                return "W", base
        if w.startswith(_RELLENO_PREFIJOS):
            return "F", w
        verbo = bool(_INFINITIVO_RE.match(w))
        if len(w) >= 4 and w.isalpha() and self._fuzzy:
            # Typos keep the first letter and the length (a letter or two missing, one extra):
            # "entreo", "pechga", "indivual", "papaz" are typos; "colada" is not "cola".
            minimo = (
                self.FUZZY_MIN_VERBO if verbo else (self.FUZZY_MIN if len(w) > 5 else self.FUZZY_MIN_CORTA)
            )
            for forma in (c, *_sin_diminutivo(c)):
                f = _fonetica(forma)
                for cand, _, idx in process.extract(f, self._fuzzy_fon, scorer=fuzz.ratio, limit=3,
                                                    score_cutoff=minimo):  # fmt: skip
                    if cand[:1] == f[:1] and -1 <= len(cand) - len(f) <= 2:
                        return "W", self._fuzzy[idx]
        if verbo:
            return "F", w
        if len(w) >= 3 and w.isalpha():
            completas = [v for v in self._fuzzy if v.startswith(w)]
            if len(completas) == 1:
                return "W", completas[0]  # "papas fam", "combo indiv"
        return "W", c

    # ------------------------------------------------------------ message side
    def _tokens(self, plegado: str) -> list[_Tok]:
        toks = _medidas(_tokens_crudos(plegado))
        for t in toks:
            if t.kind == "w":
                t.palabra, t.canon = _formas(t.canon)
        # glue protected catalog phrases (compared on canonical forms, number words as digits)
        if self._protegidas:
            out: list[_Tok] = []
            i = 0
            n = len(toks)
            while i < n:
                t = toks[i]
                for seq, pegada in self._protegidas.get(_canon_prot(t), ()):
                    k = len(seq)
                    if i + k <= n and all(_canon_prot(toks[i + j]) == seq[j] for j in range(1, k)):
                        g = _Tok("W", pegada, t.ini, toks[i + k - 1].fin, t.sep)
                        out.append(g)
                        i += k
                        break
                else:
                    out.append(t)
                    i += 1
            toks = out
        # classify words
        n = len(toks)
        for i, t in enumerate(toks):
            if t.kind != "w":
                continue
            w = t.palabra
            if w in ("media", "medio") and i + 1 < n and toks[i + 1].palabra in ("docena", "docenas"):
                t.kind, t.valor = "N", 0.5
                continue
            if w in _PRONOMBRES:
                t.kind, t.valor, t.articulo, t.pronombre = "N", 1, True, True
                continue
            if w == "una" and i + 1 < n and toks[i + 1].palabra in ("de", "d"):
                t.kind, t.valor, t.articulo, t.pronombre = "N", 1, True, True  # "una de pierna"
                continue
            kind, canon = self._palabra(w)
            t.canon = canon
            t.kind = kind
            if kind == "N":
                t.valor = _NUMEROS[canon]
                t.articulo = canon in _ARTICULOS
        return toks

    def _items(self, toks: list[_Tok]) -> list[_Item]:
        """Cut tokens into items: separators, quantities, clauses to drop."""
        items: list[_Item] = []
        cur = _Item()
        postfijo = _postfijos(toks)
        cortar = ""  # "c" until a separator, "s" until a separator or a quantity, "p" para-clause
        corte = False  # a clause was dropped since the last words: what follows is no longer a list
        verbo = False
        i = 0
        n = len(toks)
        while i < n:
            t = toks[i]
            k = t.kind
            if t.sep or k == "S":
                if cur.toks or cur.explicita or cur.articulo:
                    items.append(cur)
                if k == "S":
                    cur = _Item(sep="l" if t.canon in _SEP_LISTA_PALABRAS else "h", con=t.canon in ("con", "cn"),
                                o=t.canon == "o")  # fmt: skip
                else:
                    cur = _Item(sep=t.sep)
                cur.lista = cur.sep == "l" and not corte
                cortar = ""
                verbo = False
                if k == "S":
                    i += 1
                    continue
            if cortar == "c" or (cortar == "s" and k != "N"):
                i += 1
                continue
            if cortar == "p":
                # "para despacho 2 pollos", "para la once: 2 leches": the clause ends at a quantity,
                # or at a catalog word when the item is still empty ("para hoy un pollo"); after a
                # product it qualifies it ("una mica para iphone 15", "nuggets pa la niña").
                if (k == "N" and not t.articulo) or (k == "W" and t.canon in self._vocab and not cur.toks):
                    cortar = ""
                else:
                    i += 1
                    continue
            if k == "C":
                cortar = "s" if t.canon == "sin" else "c"
                corte = True
                i += 1
                continue
            if k == "T":
                if t.canon == "para":
                    cortar = "p"
                    corte = True
                elif (
                    t.canon in ("la", "las")
                    and i + 1 < n
                    and toks[i + 1].kind == "N"
                    and not toks[i + 1].articulo
                ):
                    toks[i + 1].kind = "D"  # "a las 8", "para la once"
                elif cur.toks:
                    cur.toks.append(t)
                i += 1
                continue
            if k in ("F", "V"):
                verbo = verbo or k == "V"
                i += 1
                continue
            if k in ("N", "M"):
                valor, j = _cantidad(toks, i)
                explicita = not (t.articulo and j == i + 1)
                if j < n and toks[j].kind == "X" and not toks[j].sep:
                    j += 1  # "2 x pollo"
                despues = j < n and not toks[j].sep and toks[j].kind in ("W", "D") and not postfijo[i]
                if cur.toks and not cur.cierre and not cur.explicita and not despues and explicita:
                    cur.cant, cur.explicita, cur.cierre = valor, True, True  # "papas 2"
                else:
                    if cur.toks or cur.explicita or cur.articulo:
                        items.append(cur)
                        cur = _Item()
                    cur.cant, cur.explicita, cur.articulo = valor, explicita, not explicita
                    cur.desglose = (
                        t.pronombre and j < n and not toks[j].sep and toks[j].kind in ("W", "D", "T")
                    )
                cur.verbo = cur.verbo or verbo
                i = j
                continue
            if k == "X":
                if i + 1 < n and toks[i + 1].kind == "N":
                    valor, j = _cantidad(toks, i + 1)
                    if cur.toks and not cur.cierre:
                        cur.cant, cur.explicita, cur.cierre = valor, True, True  # "pollo x2"
                    else:
                        if cur.toks or cur.explicita or cur.articulo:
                            items.append(cur)
                            cur = _Item()
                        cur.cant, cur.explicita = valor, True  # "x2 pollo"
                    i = j
                    continue
                i += 1
                continue
            # W or D: words that may name something
            if cur.cierre:
                items.append(cur)
                cur = _Item()
            if not cur.toks:
                cur.verbo = cur.verbo or verbo
            cur.toks.append(t)
            corte = False
            i += 1
        if cur.toks or cur.explicita or cur.articulo:
            items.append(cur)
        return items

    # ------------------------------------------------------------ matching
    def _match(self, q: tuple[str, ...]) -> _Resultado:
        r = self._cache_match.get(q)
        if r is None:
            r = self._match_calc(q)
            if len(self._cache_match) > 50_000:
                self._cache_match.clear()
            self._cache_match[q] = r
        return r

    def _match_calc(self, q: tuple[str, ...]) -> _Resultado:
        qs = frozenset(q)
        exactas = self._exactas.get(qs)
        if exactas:
            return _Resultado(1.0, True, tuple(exactas))
        if not any(w in self._vocab for w in qs):
            return _NADA
        pesos = {w: self._peso.get(w, self._peso_desconocida) for w in qs}
        total = sum(pesos.values())
        puntajes: list[tuple[float, int]] = []
        for pid, bolsa in self._bolsa.items():
            cub = sum(p * bolsa.get(w, 0.0) for w, p in pesos.items())
            if not cub:
                continue
            spec = 0.0
            for k in self._claves[pid]:
                spec = max(spec, sum(pesos[w] for w in k if w in qs) / self._peso_clave[k])
            puntajes.append((cub / total * (0.5 + 0.5 * spec), pid))
        if not puntajes:
            return _NADA
        puntajes.sort(key=lambda x: (-x[0], self._orden[x[1]]))
        mejor = puntajes[0][0]
        if mejor < self.ACEPTA:
            return _Resultado(mejor, False, ())
        return _Resultado(mejor, False, tuple(pid for s, pid in puntajes if s >= mejor - self.MARGEN))

    def _cubrir(self, toks: list[_Tok]) -> list[tuple[int, int, _Resultado]]:
        """Best cover of an item's words by catalog spans: [(first, last + 1, result)] over toks."""
        idx = [i for i, t in enumerate(toks) if t.kind in ("W", "D")]
        m = len(idx)
        best = [0.0] * (m + 1)
        back: list[tuple[int, _Resultado | None]] = [(0, None)] * (m + 1)
        for e in range(1, m + 1):
            best[e], back[e] = best[e - 1], (e - 1, None)
            for s in range(max(0, e - self._largo_max), e):
                r = self._match(tuple(toks[idx[j]].canon for j in range(s, e)))
                if not r.candidatos:
                    continue
                v = best[s] + r.score * (e - s) - self.PENALIZA_TRAMO
                if v > best[e] + 1e-9:
                    best[e], back[e] = v, (s, r)
        tramos = []
        e = m
        while e > 0:
            s, r = back[e]
            if r is not None:
                tramos.append((idx[s], idx[e - 1] + 1, r))
            e = s
        tramos.reverse()
        return tramos

    # ------------------------------------------------------------ public
    def interpretar(self, texto: str) -> Interpretacion:
        """Read one order message. Deterministic; no I/O."""
        plegado = _HORA_RE.sub(lambda m: " " * len(m.group()), plegar(texto))
        items = self._items(self._tokens(plegado))

        # 1. each item on its own
        hubo = False  # the item before named something (list context for unknown things)
        previo: _Item | None = None
        for it in items:
            if not it.toks:
                continue
            antes, hubo = hubo, True
            contenido = [t for t in it.toks if t.kind in ("W", "D")]
            tramos = self._cubrir(it.toks)
            # a second product in the same words must be named clearly: "combo grande" is a combo
            tramos = [
                x for n_x, x in enumerate(tramos) if n_x == 0 or x[2].exacto or x[2].score >= self.OTRO_TRAMO
            ]
            cabeza = contenido[0]
            if not tramos or (cabeza.kind == "W" and cabeza.canon not in self._vocab
                              and it.toks[tramos[0][0]] is not cabeza):  # fmt: skip
                # nothing named, or an unknown head ("pizza familiar", "empanada de pollo")
                if (
                    it.explicita
                    or it.articulo
                    or it.verbo
                    or (it.lista and antes and len(contenido) <= 2 and not it.con)
                ):
                    it.salida.append(("D", (), 0, contenido[0].ini, contenido[-1].fin))
                else:
                    hubo = False
                continue
            # "con X" inside the previous product ("combo familiar con coca")
            if (
                it.con
                and previo is not None
                and all(self._es_eleccion(previo.pids, it.toks[a:b], r) for a, b, r in tramos)
            ):
                continue
            # "de X" inside the product just named ("combo individual de pechuga")
            for n_tramo in range(len(tramos) - 1, 0, -1):
                a, b, r = tramos[n_tramo]
                antes = tramos[n_tramo - 1][2]
                if it.toks[a - 1].canon in ("de", "d") and len(antes.candidatos) == 1 \
                        and self._es_eleccion(set(antes.candidatos), it.toks[a:b], r):  # fmt: skip
                    del tramos[n_tramo]
            for n_tramo, (a, b, r) in enumerate(tramos):
                cant = it.cant if n_tramo == 0 else 1
                tipo = "L" if len(r.candidatos) == 1 else "A"
                it.salida.append((tipo, r.candidatos, cant, it.toks[a].ini, it.toks[b - 1].fin))
                if tipo == "L":
                    it.pids.add(r.candidatos[0])
            previo = it

        # 2. items that qualify the one before
        anterior: _Item | None = None
        for n_it, it in enumerate(items):
            if not it.toks:
                # a bare quantity: "pollos: 2", "tienen nuggets? mándeme 2"
                if anterior is not None and it.explicita and not anterior.explicita and anterior.salida:
                    _cambiar_cantidad(anterior, it.cant)
                    anterior.explicita = True
                continue
            if not it.salida:
                continue
            if anterior is not None and it.sep == "" and not anterior.explicita and not anterior.articulo \
                    and anterior.salida and len(anterior.salida) == 1 and it.pids and anterior.pids <= it.pids:  # fmt: skip
                anterior.salida = []  # "de postre una leche asada": the same thing, named twice
            if it.desglose and anterior is not None and anterior.explicita and not anterior.desglose:
                partes = [it]
                for sig in items[n_it + 1 :]:
                    if sig.desglose:
                        partes.append(sig)
                    elif sig.toks:
                        break
                if sum(p.cant for p in partes) == anterior.cant and all(
                    p.salida and self._relacionados(anterior, p) for p in partes
                ):
                    anterior.salida = []  # "2 cuartos, uno de pierna y otro de pechuga"
            if it.o and anterior is not None and len(anterior.salida) == 1 and len(it.salida) == 1 \
                    and anterior.salida[0][0] != "D" and it.salida[0][0] != "D":  # fmt: skip
                # "una coca o una fanta": one of them
                _, ca, qa, ia, _ = anterior.salida[0]
                cands = tuple(dict.fromkeys(ca + it.salida[0][1]))
                anterior.salida = [("L" if len(cands) == 1 else "A", cands, qa, ia, it.salida[0][4])]
                anterior.pids = set(cands) if len(cands) == 1 else set()
                it.salida = []
                continue
            if not it.desglose:
                anterior = it

        # 3. one line per product
        lineas: dict[int, list] = {}
        ambiguos: list[Ambiguo] = []
        desconocidos: list[str] = []
        for it in items:
            for tipo, cands, cant, ini, fin in it.salida:
                f = texto[ini:fin].strip()
                if tipo == "L":
                    if cands[0] in lineas:
                        lineas[cands[0]][0] += cant
                    else:
                        lineas[cands[0]] = [cant, f]
                elif tipo == "A":
                    ambiguos.append(Ambiguo(f, cant, cands))
                else:
                    desconocidos.append(f)
        return Interpretacion(
            lineas=tuple(Linea(pid, c, f) for pid, (c, f) in lineas.items()),
            ambiguos=tuple(ambiguos),
            desconocidos=tuple(desconocidos),
        )

    def _relacionados(self, a: _Item, b: _Item) -> bool:
        """Do the products of two items share a name word ("cuarto" pierna / "cuarto" pechuga)?"""
        pa = {pid for s in a.salida for pid in s[1]}
        pb = {pid for s in b.salida for pid in s[1]}
        wa = {w for pid in pa for k in self._claves[pid] for w in k}
        return any(w in wa for pid in pb for k in self._claves[pid] for w in k)

    def _es_eleccion(self, previos: set[int], escritos: list[_Tok], r: _Resultado) -> bool:
        """Is "con X" / "de X" a detail of the product before rather than one more line?

        Yes when X is that same product ("agua con gas"), or when that product's description
        offers X: the words written are in it ("combo (…, papas medianas …) con papas"), X's
        category is ("(…, bebida lata)" con coca), or most of one of X's names is
        ("(cuarto de pollo, …)" de pechuga → "cuarto de pollo pechuga").
        """
        if not previos:
            return False
        if len(r.candidatos) == 1 and r.candidatos[0] in previos:
            return True
        desc: set[str] = set()
        for pid in previos:
            desc |= self._descripcion[pid]
        if not desc:
            return False
        if any(t.canon in desc for t in escritos if t.kind in ("W", "D")):
            return True
        for pid in r.candidatos:
            if self._categoria_pura[pid] & desc:
                return True
            for k in self._claves[pid]:
                if sum(self._peso.get(w, 1.0) for w in k if w in desc) >= 0.5 * self._peso_clave[k]:
                    return True
        return False


def _postfijos(toks: list[_Tok]) -> list[bool]:
    """Per token: is its chunk written "item quantity" ("pollos 3 papas 2")?

    A chunk that starts with words and ends with a quantity puts every quantity after its item.
    """
    out = [False] * len(toks)
    ini = 0
    n = len(toks)
    for i in range(n + 1):
        if i == n or (i > ini and (toks[i].sep or toks[i].kind == "S")):
            utiles = [t for t in toks[ini:i] if t.kind in ("W", "D", "N", "M", "X")]
            if len(utiles) >= 3 and utiles[0].kind in ("W", "D") and utiles[-1].kind == "N" \
                    and sum(t.kind == "N" for t in utiles) >= 2:  # fmt: skip
                for k in range(ini, i):
                    out[k] = True
            ini = i
    return out


def _cambiar_cantidad(it: _Item, cant: int) -> None:
    if it.salida:
        tipo, cands, _, ini, fin = it.salida[0]
        it.salida[0] = (tipo, cands, cant, ini, fin)
    it.cant = cant


def _canon_prot(t: _Tok) -> str:
    if t.kind == "w":
        if t.palabra in _NUMEROS:
            return str(_NUMEROS[t.palabra])
        return t.canon
    if t.kind == "N":
        return str(int(t.valor))
    return t.canon


def _cantidad(toks: list[_Tok], i: int) -> tuple[int, int]:
    """Quantity starting at toks[i] (N or M): '2', 'dos', 'un par de', 'media docena'; and the next index."""
    t = toks[i]
    n = len(toks)
    if t.kind == "M":
        valor, j = float(_MULTIPLICADORES[t.canon]), i + 1
    else:
        valor, j = t.valor, i + 1
        if j < n and toks[j].kind == "M" and not toks[j].sep:
            valor *= _MULTIPLICADORES[toks[j].canon]
            j += 1
    if (j > i + 1 or t.kind == "M") and j < n and toks[j].kind == "T" and toks[j].canon in ("de", "d"):
        j += 1  # "un par de", "media docena de"
    return max(int(valor), 1), j
