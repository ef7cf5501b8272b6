"""`crm seed demo`: load the deterministic demo data of db/seeds/demo.py.

The generator is plain Python with no database access; this module creates the brands
(through crm.crear_marca, so each gets its login role), then COPYs the generated rows,
all in one transaction as the owner role (COPY refuses to run under row-level
security; the owner has BYPASSRLS). Bulk-load practice, as pg_restore does it:
- the tables' own triggers (audit, order totals, status history) are disabled during the
  load: the generator writes totals and history itself, and the audit trail is for
  people's changes;
- the foreign keys of the loaded tables are dropped before COPY and added back, with
  the same names and definitions, after it: adding a foreign key checks every row in one
  join instead of one lookup per row, which halves the load. CHECK constraints, unique
  indexes and primary keys stay on. If any row were wrong the transaction fails and
  leaves nothing behind, constraints included.

Idempotent: when a demo brand already exists, nothing is loaded, except what a demo
brand still lacks of the WhatsApp setup (demo data loaded before it existed): its
channel (`DEMO_CANALES`) and its approved templates (`DEMO_PLANTILLAS`).
"""

from __future__ import annotations

import importlib.util
import sys
import time
from types import ModuleType

import psycopg
from psycopg import sql
from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from . import roles
from .config import ROOT, Settings
from .installer import InstallError
from .services import marcas

GENERATOR = ROOT / "db" / "seeds" / "demo.py"
MAX_SCALE = 50

# One WhatsApp number per demo brand (made-up identifiers: without provider credentials
# the worker records replies instead of sending them).
DEMO_CANALES = {
    "gollos": ("meta", "100000000000001", "+56 2 2938 0001"),
    "goio": ("meta", "100000000000002", "+56 2 2938 0002"),
    "eco-eterno": ("twilio", "+56 2 2938 0000", None),
}
# Approved templates: the only messages WhatsApp allows outside the 24-hour window.
DEMO_PLANTILLAS = {
    "bienvenida": "¡Hola {{1}}! Gracias por escribir a {{2}}. Responde este mensaje para ver nuestra carta.",
    "recordatorio_pedido": "Hola {{1}}, tu pedido #{{2}} en {{3}} está {{4}}. Responde si necesitas ayuda.",
}


class SeedError(InstallError):
    """Shown by the CLI as a one-line error."""


def generator() -> ModuleType:
    """db/seeds/demo.py, imported by path (db/ is not a package)."""
    name = "crm_seeds_demo"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, GENERATOR)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it executes
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
    return sys.modules[name]


def _id_base(conn: psycopg.Connection, table: str) -> tuple[str, int]:
    """The table's identity sequence and the highest id it or the table has used."""
    seq = conn.execute("SELECT pg_get_serial_sequence(%s, 'id')", (f"crm.{table}",)).fetchone()[0]
    last, called = conn.execute(sql.SQL("SELECT last_value, is_called FROM {}").format(
        sql.SQL(seq))).fetchone()
    top = conn.execute(sql.SQL("SELECT coalesce(max(id), 0) FROM {}").format(
        sql.Identifier("crm", table))).fetchone()[0]
    return seq, max(top, last if called else 0)


def ensure_whatsapp(conn, ids: dict[str, int]) -> str:
    """Give each demo brand its channel and approved templates when it lacks them (as the
    owner: marca_id explicit). Returns what was added, '' when nothing was."""
    from .services import canales

    n_canales = n_plantillas = 0
    for slug, marca_id in ids.items():
        if slug in DEMO_CANALES:
            proveedor, identificador, numero = DEMO_CANALES[slug]
            v = canales.valores(proveedor, identificador, numero)
            # Checked first, not ON CONFLICT: the table's trigger refuses a taken identifier
            # (in any brand) before ON CONFLICT could skip it.
            n_canales += conn.execute(text("""
                INSERT INTO crm.canales (marca_id, proveedor, identificador, numero, activo)
                SELECT :m, :proveedor, :identificador, :numero, true
                 WHERE NOT EXISTS (SELECT 1 FROM crm.canales WHERE marca_id = :m AND proveedor = :proveedor)
                   AND NOT EXISTS (SELECT 1 FROM crm.canales
                                    WHERE proveedor = :proveedor AND identificador = :identificador)"""),
                {"m": marca_id, **v}).rowcount
        for nombre, cuerpo in DEMO_PLANTILLAS.items():
            n_plantillas += conn.execute(text("""
                INSERT INTO crm.plantillas (marca_id, nombre, idioma, categoria, cuerpo, aprobada)
                VALUES (:m, :nombre, 'es', 'utilidad', :cuerpo, true)
                ON CONFLICT (marca_id, nombre, idioma) DO NOTHING"""),
                {"m": marca_id, "nombre": nombre, "cuerpo": cuerpo}).rowcount
    partes = [f"{n_canales} canales de WhatsApp"] if n_canales else []
    partes += [f"{n_plantillas} plantillas"] if n_plantillas else []
    return " y ".join(partes)


def load_demo(s: Settings, scale: float = 1.0) -> str:
    """Create the demo brands and load their history; returns a summary (time, rows).

    `scale` multiplies customers, orders and everything that hangs from them. The rows
    are built in memory before COPY: about 180 MB per unit of scale."""
    if not 0 < scale <= MAX_SCALE:
        raise SeedError(f"--scale debe ser un número mayor que 0 y hasta {MAX_SCALE}, no {scale}")
    demo = generator()
    started = time.perf_counter()
    brands = demo.brands()
    slugs = [b["slug"] for b in brands]
    engine = create_engine(roles.sqlalchemy_url(roles.role_url(roles.OWNER, s)), poolclass=NullPool)
    counts: dict[str, int] = {}
    try:
        with engine.begin() as conn:
            # two loads at once (setup.sh twice): the second waits, then finds the brands
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('crm seed demo'))"))
            existing = conn.execute(text("SELECT slug FROM crm.marcas WHERE slug = ANY(:slugs) ORDER BY id"),
                                    {"slugs": slugs}).scalars().all()
            if existing:
                ids = dict(conn.execute(text("SELECT slug, id FROM crm.marcas WHERE slug = ANY(:slugs)"),
                                        {"slugs": slugs}).all())
                added = ensure_whatsapp(conn, ids)
                return ("datos de demostración: ya existen las marcas " + ", ".join(existing)
                        + ("; no se cargó nada" if not added else f"; solo se agregó {added}"))
            ids = {}
            for b in brands:
                row = marcas.create(conn, s, b["slug"], b["nombre"], b["zona_horaria"], b["moneda"],
                                    b["settings"])
                ids[b["slug"]] = row["id"]
                conn.execute(text("UPDATE crm.marcas SET created_at = :t WHERE id = :id"),
                             {"t": demo.brand_created_at(b["zona_horaria"]), "id": row["id"]})

            pg: psycopg.Connection = conn.connection.driver_connection
            sequences, bases = {}, {}
            for table in demo.TABLES:
                sequences[table], bases[table] = _id_base(pg, table)
            data = demo.generate(scale, ids, bases)
            generated = time.perf_counter()

            foreign_keys = pg.execute(
                "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) FROM pg_constraint"
                " WHERE contype = 'f' AND conrelid = ANY(%s::regclass[]) ORDER BY conrelid, conname",
                ([f"crm.{t}" for t in demo.TABLES],)).fetchall()
            for table, name, _ in foreign_keys:
                pg.execute(sql.SQL("ALTER TABLE {} DROP CONSTRAINT {}").format(
                    sql.SQL(table), sql.Identifier(name)))
            for table in demo.TABLES:
                pg.execute(sql.SQL("ALTER TABLE {} DISABLE TRIGGER USER").format(sql.Identifier("crm", table)))
            with pg.cursor() as cur:
                for table, (columns, rows) in data.items():
                    stmt = sql.SQL("COPY {} ({}) FROM STDIN").format(
                        sql.Identifier("crm", table), sql.SQL(", ").join(map(sql.Identifier, columns)))
                    with cur.copy(stmt) as copy:
                        for r in rows:
                            copy.write_row(r)
                    counts[table] = len(rows)
            for table, name, definition in foreign_keys:
                pg.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT {} {}").format(
                    sql.SQL(table), sql.Identifier(name), sql.SQL(definition)))
            for table in demo.TABLES:
                pg.execute(sql.SQL("ALTER TABLE {} ENABLE TRIGGER USER").format(sql.Identifier("crm", table)))
                # the rows carry explicit ids (COPY takes them even for GENERATED ALWAYS
                # and leaves the sequence alone): move the identity past them
                if counts[table]:
                    pg.execute("SELECT setval(%s, %s)", (sequences[table], bases[table] + counts[table]))
            whatsapp = ensure_whatsapp(conn, ids)
        copied = time.perf_counter()
    finally:
        engine.dispose()

    with psycopg.connect(roles.role_url(roles.OWNER, s), autocommit=True) as conn:
        conn.execute(sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(
            sql.Identifier("crm", t) for t in ("marcas", *demo.TABLES))))
    done = time.perf_counter()

    per_brand = ", ".join(f"{slug} (id {ids[slug]})" for slug in slugs)
    tables = ", ".join(f"{t} {n:,}".replace(",", ".") for t, n in counts.items())
    return (f"datos de demostración cargados (escala {scale:g}) en {done - started:.1f} s "
            f"(generación {generated - started:.1f} s, COPY {copied - generated:.1f} s, "
            f"ANALYZE {done - copied:.1f} s)\n  marcas: {per_brand}\n  filas: {tables}"
            + (f"\n  whatsapp: {whatsapp}" if whatsapp else ""))
