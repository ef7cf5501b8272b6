"""Order text parser: accuracy on the WhatsApp dataset and throughput.

    .venv/bin/python bench/pedido_texto.py [--segundos 3]

Pure Python, no database. Prints the catalog build time, exact-match accuracy over
tests/data/pedidos_whatsapp.json (lines, ambiguous and unknown fragments all as expected),
and messages per second: cold (a fresh catalog, each message seen once: word and span caches
empty) and warm (the same catalog reused, as the webhook does).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.test_pedido_texto import DATASET, _norm, _resumen, cargar_catalogo


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--segundos", type=float, default=3.0)
    args = ap.parse_args()
    data = json.loads(DATASET.read_text(encoding="utf-8"))
    textos = [d["texto"] for d in data]

    t0 = time.perf_counter()
    cat, _ = cargar_catalogo()
    construir = time.perf_counter() - t0

    t0 = time.perf_counter()
    resultados = [cat.interpretar(t) for t in textos]
    frio = len(textos) / (time.perf_counter() - t0)

    ok = 0
    for d, r in zip(data, resultados):
        esperado = (
            d["lineas"],
            sorted(_norm(a) for a in d.get("ambiguos", [])),
            sorted(_norm(x) for x in d.get("desconocidos", [])),
        )
        ok += _resumen(r) == esperado

    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.segundos:
        for t in textos:
            cat.interpretar(t)
        n += len(textos)
    caliente = n / (time.perf_counter() - t0)

    print(f"catálogo Gollos: construido en {construir * 1000:.1f} ms")
    print(f"exactitud: {ok / len(data):.1%} ({ok}/{len(data)} mensajes)")
    print(f"en frío: {frio:,.0f} mensajes/s")
    print(f"catálogo reutilizado: {caliente:,.0f} mensajes/s")


if __name__ == "__main__":
    main()
