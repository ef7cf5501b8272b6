"""Every Metabase card's query (metabase/tableros.py) on the demo data scaled ×10.

    .venv/bin/python bench/metabase_cards.py [--scale 10] [--runs 5] [--db crm_bench_metabase] [--recrear]

Uses the CRM's PostgreSQL (the embedded one under .data, or DATABASE_URL) and a database of
its own: created, installed and loaded with `crm seed demo --scale 10` the first time (about
3 to 4 minutes), reused afterwards (pending migrations applied; --recrear starts over). Then
refreshes the summaries (resumen.refrescar(), timed) and runs each card as Metabase would
(template tags substituted by metabase.tableros.renderizar), `--runs` times per scenario:

  ejecutivo          crm_ejecutivo, no filter: every brand, the whole two years
  ejecutivo 90d+marca crm_ejecutivo, the last 90 days of the demo, brand filter = gollos
  marca gollos       crm_marca_gollos (the biggest brand), no filter

and prints p50 and max per card and scenario. Target: p50 and max <= 300 ms each.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api import installer, roles
from api.config import settings
from api.seed import generator, load_demo
from metabase.tableros import renderizar, tarjetas

OBJETIVO_MS = 300


def preparar(args) -> object:
    s = settings()
    installer.ensure_server(s)
    s = dataclasses.replace(s, database_url=roles.with_database(roles.admin_url(s), args.db), db_name=args.db)
    if args.recrear:
        installer.drop_database(s, args.db)
    creada = installer.create_database(s, args.db)
    print(f"base {args.db}: {'creada' if creada else 'existente'}; {installer.install(s)}")
    demo = generator()
    esperados = sum(b["pedidos"] for b in demo.counts(args.scale).values())
    with psycopg.connect(roles.role_url(roles.OWNER, s)) as conn:
        pedidos = conn.execute("SELECT count(*) FROM crm.pedidos").fetchone()[0]
    if pedidos == 0:
        t = time.perf_counter()
        print(load_demo(s, scale=args.scale))
        print(f"carga: {time.perf_counter() - t:.0f} s")
    elif pedidos != esperados:
        sys.exit(
            f"{args.db} tiene {pedidos} pedidos, no los {esperados} de la escala {args.scale}: use --recrear"
        )
    else:
        print(f"datos de demostración ya cargados: {pedidos:,} pedidos".replace(",", "."))
    return s


def refrescar(s) -> None:
    t = time.perf_counter()
    with psycopg.connect(roles.role_url(roles.API, s), autocommit=True) as conn:
        pasos = [r[0] for r in conn.execute("SELECT resumen.refrescar()")]
    print(f"resumen.refrescar(): {time.perf_counter() - t:.1f} s")
    for p in pasos:
        print(f"  {p}")


def medir(conn, sql: str, runs: int) -> tuple[float, float, int]:
    tiempos, filas = [], 0
    for _ in range(runs):
        t = time.perf_counter()
        filas = len(conn.execute(sql).fetchall())
        tiempos.append((time.perf_counter() - t) * 1000)
    return statistics.median(tiempos), max(tiempos), filas


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scale", type=float, default=10)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--db", default="crm_bench_metabase")
    ap.add_argument("--recrear", action="store_true", help="borrar la base y cargarla de nuevo")
    ap.add_argument("--sin-refrescar", action="store_true", help="no recalcular el resumen antes de medir")
    args = ap.parse_args()

    s = preparar(args)
    if not args.sin_refrescar:
        refrescar(s)
    ancla = generator().ANCHOR_DATE
    escenarios = [
        ("ejecutivo", roles.EXECUTIVE, True, {}),
        (
            "ejecutivo 90d+marca",
            roles.EXECUTIVE,
            True,
            {"desde": ancla - timedelta(days=89), "hasta": ancla, "marca": "gollos"},
        ),
        ("marca gollos", roles.brand_role("gollos"), False, {}),
    ]
    conns = {rol: psycopg.connect(roles.role_url(rol, s), autocommit=True) for _, rol, _, _ in escenarios}
    peores = []
    print(f"\n{'tarjeta':<48} {'escenario':<20} {'filas':>6} {'p50 ms':>8} {'máx ms':>8}")
    try:
        for tablero, tarjeta in tarjetas():
            for nombre, rol, ejecutivo, valores in escenarios:
                sql = renderizar(tarjeta.sql_para(ejecutivo), valores)
                p50, maximo, filas = medir(conns[rol], sql, args.runs)
                marca = "" if maximo <= OBJETIVO_MS else "  > objetivo"
                print(f"{tarjeta.nombre[:48]:<48} {nombre:<20} {filas:>6} {p50:>8.1f} {maximo:>8.1f}{marca}")
                peores.append((maximo, tarjeta.nombre, nombre))
    finally:
        for c in conns.values():
            c.close()
    peores.sort(reverse=True)
    fuera = [p for p in peores if p[0] > OBJETIVO_MS]
    print(
        f"\n{len(peores)} mediciones; máximo {peores[0][0]:.1f} ms ({peores[0][1]}, {peores[0][2]}); "
        f"{len(fuera)} sobre {OBJETIVO_MS} ms"
    )


if __name__ == "__main__":
    main()
