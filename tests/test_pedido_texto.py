"""Order text parser (whatsapp/pedido_texto.py): dataset accuracy and focused cases.

Pure tests: no database. The catalog is Gollos Chicken's as in db/seeds/data/marcas.json,
ids assigned in catalog order (1, 2, …), only active products (no "hasta"), as the webhook
builds it from crm.productos.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import pytest

from whatsapp.pedido_texto import Ambiguo, Catalogo, Interpretacion, Linea, Producto

ROOT = Path(__file__).resolve().parents[1]
DATASET = ROOT / "tests" / "data" / "pedidos_whatsapp.json"


def cargar_catalogo(slug: str = "gollos") -> tuple[Catalogo, dict[int, str]]:
    marcas = json.loads((ROOT / "db" / "seeds" / "data" / "marcas.json").read_text(encoding="utf-8"))
    marca = next(m for m in marcas["marcas"] if m["slug"] == slug)
    productos, skus = [], {}
    for i, p in enumerate(marca["catalogo"], start=1):
        skus[i] = p["sku"]
        if "hasta" not in p:  # inactive today
            productos.append(Producto(i, p["nombre"], tuple(p.get("alias", [])), p["precio"], p["categoria"]))
    return Catalogo(productos), skus


CAT, SKUS = cargar_catalogo()
ID = {sku: pid for pid, sku in SKUS.items()}


def _norm(s: str) -> str:
    s = unicodedata.normalize("NFKD", s.lower())
    s = "".join(c for c in s if not unicodedata.combining(c))
    return " ".join(re.findall(r"[a-z0-9./]+", s))


def _resumen(r: Interpretacion) -> tuple[dict[str, int], list[str], list[str]]:
    return (
        {SKUS[linea.producto_id]: linea.cantidad for linea in r.lineas},
        sorted(_norm(a.fragmento) for a in r.ambiguos),
        sorted(_norm(d) for d in r.desconocidos),
    )


def lineas(texto: str) -> dict[str, int]:
    return _resumen(CAT.interpretar(texto))[0]


# ---------------------------------------------------------------- the dataset
def test_dataset_is_large_and_well_formed():
    data = json.loads(DATASET.read_text(encoding="utf-8"))
    assert len(data) >= 160
    assert len({d["texto"] for d in data}) == len(data), "duplicate messages"
    for d in data:
        assert set(d) <= {"texto", "lineas", "ambiguos", "desconocidos"}
        assert all(sku in ID for sku in d["lineas"]), d
        assert all(isinstance(q, int) and q > 0 for q in d["lineas"].values())


def test_exactitud_sobre_el_dataset():
    data = json.loads(DATASET.read_text(encoding="utf-8"))
    fallas = []
    for d in data:
        esperado = (
            d["lineas"],
            sorted(_norm(a) for a in d.get("ambiguos", [])),
            sorted(_norm(x) for x in d.get("desconocidos", [])),
        )
        obtenido = _resumen(CAT.interpretar(d["texto"]))
        if obtenido != esperado:
            fallas.append((d["texto"], obtenido, esperado))
    exactitud = 1 - len(fallas) / len(data)
    print(f"\nexactitud: {exactitud:.1%} ({len(data) - len(fallas)}/{len(data)} mensajes)")
    for texto, obtenido, esperado in fallas:
        print(f"  falla: {texto!r}\n    obtenido {obtenido}\n    esperado {esperado}")
    assert exactitud >= 0.95


# ---------------------------------------------------------------- quantities
@pytest.mark.parametrize(
    "texto, cantidad",
    [
        ("pollo entero", 1),
        ("un pollo entero", 1),
        ("2 pollos enteros", 2),
        ("2x pollo entero", 2),
        ("2 x pollo entero", 2),
        ("x2 pollo entero", 2),
        ("x 2 pollo entero", 2),
        ("pollo entero x2", 2),
        ("pollo entero x 3", 3),
        ("pollo entero 3 x", 3),
        ("pollo entero 4", 4),
        ("pollos enteros: 2", 2),
        ("un par de pollos enteros", 2),
        ("un par pollos", 2),
        ("media docena de pollos", 6),
        ("una docena de pollos", 12),
        ("2 docenas de pollos", 24),
        ("12 pollos", 12),
    ],
)
def test_cantidades(texto, cantidad):
    assert lineas(texto) == {"GOL-POLLO-ENT": cantidad}


@pytest.mark.parametrize(
    "palabra, n",
    [("un", 1), ("uno", 1), ("una", 1), ("dos", 2), ("tres", 3), ("cuatro", 4), ("cinco", 5), ("seis", 6),
     ("siete", 7), ("ocho", 8), ("nueve", 9), ("diez", 10), ("once", 11), ("doce", 12)],
)  # fmt: skip
def test_numeros_en_palabras(palabra, n):
    assert lineas(f"quiero {palabra} cocas") == {"GOL-COCA-LATA": n}
    assert lineas(f"{palabra.upper()} COCAS porfa") == {"GOL-COCA-LATA": n}


def test_cantidad_antes_y_despues_en_la_misma_linea():
    assert lineas("pollos 3 papas 2") == {"GOL-POLLO-ENT": 3, "GOL-PAPAS-MED": 2}
    assert lineas("pollo entero 2 papas") == {"GOL-POLLO-ENT": 1, "GOL-PAPAS-MED": 2}
    assert lineas("2 pollos 3 cocas 1 pure") == {"GOL-POLLO-ENT": 2, "GOL-COCA-LATA": 3, "GOL-PURE": 1}


def test_numeros_que_no_son_cantidades():
    # sizes, times, prices and street numbers
    assert lineas("2 cocas de 1,5 lt") == {"GOL-COCA-1500": 2}
    assert lineas("una coca de litro y medio") == {"GOL-COCA-1500": 1}
    assert lineas("1 pollo para las 20:30") == {"GOL-POLLO-ENT": 1}
    assert lineas("1 pollo a las 8 y media") == {"GOL-POLLO-ENT": 1}
    assert lineas("2 pollos a Irarrázaval 3350 depto 502") == {"GOL-POLLO-ENT": 2}
    assert lineas("un pollo ($12.990)") == {"GOL-POLLO-ENT": 1}
    assert lineas("1 pollo para 4 personas") == {"GOL-POLLO-ENT": 1}


def test_cantidad_sola_despues_de_la_pregunta():
    assert lineas("tienen alitas? mándeme 3") == {"GOL-ALITAS-8": 3}


# ---------------------------------------------------------------- words and typos
@pytest.mark.parametrize(
    "texto, sku",
    [
        ("pollo entreo", "GOL-POLLO-ENT"),
        ("un poyo", "GOL-POLLO-ENT"),
        ("papaz fritas", "GOL-PAPAS-MED"),
        ("ensalda", "GOL-ENS-CHILENA"),
        ("nugets", "GOL-NUGGETS-10"),
        ("una sprait", "GOL-SPRITE-LATA"),
        ("una koka", "GOL-COCA-LATA"),
        ("combo familar", "GOL-COMBO-FAM"),
        ("PURÉ", "GOL-PURE"),
        ("pure", "GOL-PURE"),
        ("un puré casero", "GOL-PURE"),
        ("una coquita", "GOL-COCA-LATA"),
        ("unas papitas", "GOL-PAPAS-MED"),
        ("un cuartito", "GOL-CUARTO-PIE"),
        ("un pollito", "GOL-POLLO-ENT"),
        ("un arrocito", "GOL-ARROZ"),
        ("una aguita", "GOL-AGUA-500"),
        ("una pechuguita", "GOL-CUARTO-PEC"),
        ("unas papas fam", "GOL-PAPAS-FAM"),
        ("1/2 pollo", "GOL-POLLO-MED"),
        ("½ pollo", "GOL-POLLO-MED"),
        ("un 1/4 de pechuga", "GOL-CUARTO-PEC"),
        ("coca-cola", "GOL-COCA-LATA"),
        ("coca cola 350 ml", "GOL-COCA-LATA"),
        ("una coca de 1.5", "GOL-COCA-1500"),
        ("una bebida de litro y medio", "GOL-COCA-1500"),
    ],
)
def test_errores_y_diminutivos(texto, sku):
    assert lineas(texto) == {sku: 1}


def test_plurales():
    assert lineas("papas fritas") == {"GOL-PAPAS-MED": 1}
    assert lineas("3 pollos") == {"GOL-POLLO-ENT": 3}
    assert lineas("2 papas fritas familiares") == {"GOL-PAPAS-FAM": 2}
    assert lineas("4 leches asadas") == {"GOL-LECHE-ASADA": 4}


def test_relleno_alrededor():
    texto = (
        "Hola buenas tardes!! 😊 quería pedir porfa 2 pollos enteros para llevar, a nombre de Camila Rojas. "
        "Pago con transferencia. Muchas gracias!!"
    )
    r = CAT.interpretar(texto)
    assert _resumen(r) == ({"GOL-POLLO-ENT": 2}, [], [])


def test_varios_items_y_separadores():
    esperado = {"GOL-POLLO-ENT": 1, "GOL-PAPAS-MED": 1, "GOL-ENS-CHILENA": 1, "GOL-COCA-LATA": 1}
    assert lineas("un pollo, papas, ensalada y una coca") == esperado
    assert lineas("pollo + papas + ensalada + coca") == esperado
    assert lineas("pollo\npapas\nensalada\ncoca") == esperado
    assert lineas("pollo con papas y ensalada, más una coca") == esperado
    assert lineas("pollo entero papas fritas ensalada coca") == esperado


# ---------------------------------------------------------------- ambiguity and unknown items
def test_ambiguo_entre_dos_productos_parecidos():
    cat = Catalogo([Producto(1, "Pollo entero"), Producto(2, "Medio pollo"), Producto(3, "Papas fritas")])
    r = cat.interpretar("quiero 2 pollos y papas")
    assert r.lineas == (Linea(3, 1, "papas"),)
    assert r.ambiguos == (Ambiguo("pollos", 2, (1, 2)),)
    assert r.desconocidos == ()
    # named precisely, it is no longer ambiguous
    assert cat.interpretar("2 pollos enteros").lineas == (Linea(1, 2, "pollos enteros"),)


def test_ambiguo_combo_entre_varios_combos():
    cat = Catalogo([Producto(1, "Combo individual"), Producto(2, "Combo dúo"), Producto(3, "Combo familiar")])
    r = cat.interpretar("un combo porfa")
    assert r.lineas == ()
    assert r.ambiguos == (Ambiguo("combo", 1, (1, 2, 3)),)
    assert cat.interpretar("un combo duo").lineas == (Linea(2, 1, "combo duo"),)


def test_un_alias_exacto_decide():
    # Gollos lists "pollo" and "combo" as aliases: the brand decided what they mean
    assert lineas("un pollo") == {"GOL-POLLO-ENT": 1}
    assert lineas("un combo") == {"GOL-COMBO-IND": 1}


def test_categoria_sin_producto_es_ambigua():
    r = CAT.interpretar("un pollo y 2 bebidas")
    assert _resumen(r)[0] == {"GOL-POLLO-ENT": 1}
    (a,) = r.ambiguos
    assert a.fragmento == "bebidas" and a.cantidad == 2
    assert {SKUS[c] for c in a.candidatos} == {
        "GOL-COCA-LATA", "GOL-COCA-1500", "GOL-FANTA-LATA", "GOL-SPRITE-LATA", "GOL-AGUA-500", "GOL-JUGO-500"
    }  # fmt: skip
    (b,) = CAT.interpretar("2 bebidas en lata").ambiguos
    assert SKUS[b.candidatos[0]] == "GOL-COCA-LATA"
    assert {SKUS[c] for c in b.candidatos} == {"GOL-COCA-LATA", "GOL-FANTA-LATA", "GOL-SPRITE-LATA"}


@pytest.mark.parametrize(
    "texto, desconocido",
    [
        ("quiero sushi", "sushi"),
        ("una pizza y un pollo", "pizza"),
        ("2 empanadas de pollo y 1 coca", "empanadas de pollo"),
        ("una pizza familiar", "pizza familiar"),
        ("tienen completos?", "completos"),
        ("pollo, papas, Sushi", "Sushi"),
    ],
)
def test_desconocidos(texto, desconocido):
    r = CAT.interpretar(texto)
    assert r.desconocidos == (desconocido,)
    assert all(linea.producto_id for linea in r.lineas)


def test_lo_que_no_es_pedido_no_es_desconocido():
    for texto in ("hola buenas tardes", "gracias!!", "Depto 502, tocar timbre", "retiro en el local",
                  "a nombre de Pedro", "pago con transferencia", ""):  # fmt: skip
        assert CAT.interpretar(texto) == Interpretacion((), (), ()), texto


def test_modificadores_no_son_productos():
    assert lineas("2 pollos enteros bien doraditos, sin ají") == {"GOL-POLLO-ENT": 2}
    assert lineas("un agua con gas") == {"GOL-AGUA-500": 1}
    assert lineas("un pollo (entero) y papas") == {"GOL-POLLO-ENT": 1, "GOL-PAPAS-MED": 1}


def test_eleccion_dentro_de_un_combo():
    # the combo's description offers a drink / a quarter: "con coca" picks it, it is no extra line
    assert lineas("un combo familiar con coca") == {"GOL-COMBO-FAM": 1}
    assert lineas("combo individual de pechuga") == {"GOL-COMBO-IND": 1}
    assert lineas("2 combos dúo con sprite") == {"GOL-COMBO-DUO": 2}
    # not offered by the combo: one more line
    assert lineas("un combo familiar con alitas") == {"GOL-COMBO-FAM": 1, "GOL-ALITAS-8": 1}
    assert lineas("un combo dúo con ensalada") == {"GOL-COMBO-DUO": 1, "GOL-ENS-CHILENA": 1}


# ---------------------------------------------------------------- merging and shape
def test_mismo_producto_dos_veces_suma():
    r = CAT.interpretar("2 pollos enteros, papas y otro pollo entero más")
    assert _resumen(r)[0] == {"GOL-POLLO-ENT": 3, "GOL-PAPAS-MED": 1}
    assert [linea.producto_id for linea in r.lineas] == [ID["GOL-POLLO-ENT"], ID["GOL-PAPAS-MED"]]
    assert lineas("un jugo y otro jugo") == {"GOL-JUGO-500": 2}
    assert lineas("1 coca, 1 pollo, 2 coca-cola") == {"GOL-COCA-LATA": 3, "GOL-POLLO-ENT": 1}


def test_desglose_no_duplica():
    assert lineas("2 cuartos, uno de pierna y otro de pechuga") == {"GOL-CUARTO-PIE": 1, "GOL-CUARTO-PEC": 1}
    assert lineas("de postre una leche asada") == {"GOL-LECHE-ASADA": 1}


def test_fragmentos_como_se_escribieron():
    r = CAT.interpretar("Hola! 2 Pollos Enteros y una Piña Colada 🍹")
    assert r.lineas == (Linea(ID["GOL-POLLO-ENT"], 2, "Pollos Enteros"),)
    assert r.desconocidos == ("Piña Colada",)


def test_frase_del_catalogo_con_numeros_o_separadores():
    cat = Catalogo([
        Producto(1, "Promo 2x1"), Producto(2, "Combo para dos"), Producto(3, "Combo individual"),
        Producto(4, "Agua sin gas"), Producto(5, "Agua con gas"), Producto(6, "iPhone 15"),
    ])  # fmt: skip
    assert cat.interpretar("2 promos 2x1").lineas == (Linea(1, 2, "promos 2x1"),)
    assert cat.interpretar("un combo para dos").lineas == (Linea(2, 1, "combo para dos"),)
    assert cat.interpretar("3 combos para 2").lineas == (Linea(2, 3, "combos para 2"),)
    assert cat.interpretar("agua con gas y agua sin gas").lineas == (
        Linea(5, 1, "agua con gas"), Linea(4, 1, "agua sin gas"),
    )  # fmt: skip
    assert cat.interpretar("2 iphone 15").lineas == (Linea(6, 2, "iphone 15"),)


def test_otros_catalogos():
    goio, skus = cargar_catalogo("goio")
    r = goio.interpretar("hola, quiero 2 iphone 15 y una mica para iphone 15")
    assert {skus[x.producto_id]: x.cantidad for x in r.lineas} == {"GOI-IPH-15": 2, "GOI-LAMINA-VT": 1}
    eco, skus = cargar_catalogo("eco-eterno")
    r = eco.interpretar("2 cepillos de bambú y un shampoo sólido porfa")
    assert {skus[x.producto_id]: x.cantidad for x in r.lineas} == {"ECO-CEP-BAMBU": 2, "ECO-SHAMPOO-SOL": 1}


def test_determinista_y_catalogo_reutilizable():
    texto = "hola kiero 2 poyos, unas papitas y una bebida porfa"
    a = CAT.interpretar(texto)
    assert all(CAT.interpretar(texto) == a for _ in range(3))
    assert cargar_catalogo()[0].interpretar(texto) == a


def test_catalogo_vacio():
    assert Catalogo([]).interpretar("2 pollos") == Interpretacion((), (), ("pollos",))


def test_alternativas_con_o():
    r = CAT.interpretar("un pollo y una coca o una fanta, la que tengan")
    assert _resumen(r)[0] == {"GOL-POLLO-ENT": 1}
    assert r.ambiguos == (Ambiguo("coca o una fanta", 1, (ID["GOL-COCA-LATA"], ID["GOL-FANTA-LATA"])),)
    assert lineas("2 o 3 pollos") == {"GOL-POLLO-ENT": 3}


def test_sin_categoria_una_bebida_es_desconocida():
    # the optional `categoria` is what turns "bebida" into a choice among the drinks
    cat = Catalogo([Producto(1, "Coca-Cola lata", ("coca",), 1490), Producto(2, "Fanta lata", (), 1490)])
    assert cat.interpretar("una bebida").desconocidos == ("bebida",)
    cat = Catalogo(
        [
            Producto(1, "Coca-Cola lata", ("coca",), 1490, "bebidas"),
            Producto(2, "Fanta lata", (), 1490, "bebidas"),
        ]
    )
    assert cat.interpretar("una bebida").ambiguos == (Ambiguo("bebida", 1, (1, 2)),)
