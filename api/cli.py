"""`crm`: the command line of the stack (installed entry point).

    crm db init | upgrade | url [--brand SLUG | --executive | --api]
    crm pg start | stop | status          (embedded PostgreSQL only)
    crm seed demo [--scale N]
    crm brands create SLUG NOMBRE [--zona-horaria TZ]
    crm brands list
    crm keys create (--brand SLUG --role ROLE | --group-admin) [--name N] [--rate-limit N]
    crm keys revoke PREFIX_OR_ID
    crm channels add --brand SLUG --provider meta --phone-number-id ID [--number +56...]
    crm channels add --brand SLUG --provider twilio --number +56...
    crm channels list [--brand SLUG]
    crm backup create | restore FILE
    crm serve [--host H] [--port P] [--workers N]
    crm worker                             (sends the WhatsApp outbox; SIGTERM stops it)
    crm reportes refrescar                 (the dashboards' summaries; the worker does it too)
    crm nocodb provision [SLUG...] | credentials

Messages go to stderr; stdout carries only what a script captures (a key, a URL).
"""

from __future__ import annotations

import argparse
import sys

from sqlalchemy import create_engine, text

from . import installer, pg_embedded, roles
from .config import settings


def _err(msg: str) -> None:
    print(msg, file=sys.stderr)


def _engine(role: str = roles.API):
    return create_engine(roles.sqlalchemy_url(roles.role_url(role, settings())), pool_pre_ping=True)


def cmd_db(args) -> int:
    s = settings()
    if args.action == "url":
        if args.brand:
            role = roles.brand_role(args.brand)
        elif args.executive:
            role = roles.EXECUTIVE
        elif args.api:
            role = roles.API
        else:
            role = roles.OWNER
        print(roles.role_url(role, s))
        return 0
    installer.ensure_server(s)
    if args.action == "init":
        created = installer.create_database(s)
        _err(f"base de datos {roles.database_name(s)}: {'creada' if created else 'ya existía'}")
    _err(installer.install(s))
    return 0


def cmd_pg(args) -> int:
    s = settings()
    if not s.embedded:
        _err("DATABASE_URL está definido: el PostgreSQL embebido no se usa.")
        return 0 if args.action == "status" else 1
    if args.action == "start":
        pg_embedded.start(s)
        pg_embedded.wait_ready(s)
        _err(f"PostgreSQL embebido en 127.0.0.1:{s.pg_port}")
    elif args.action == "stop":
        _err("PostgreSQL detenido" if pg_embedded.stop(s) else "PostgreSQL no estaba corriendo")
    else:
        up = pg_embedded.running(s)
        print(f"postgres: {'corriendo' if up else 'detenido'} (127.0.0.1:{s.pg_port})")
        return 0 if up else 3
    return 0


def cmd_seed(args) -> int:
    from .seed import load_demo

    s = settings()
    installer.ensure_server(s)
    _err(load_demo(s, scale=args.scale))
    return 0


def cmd_brands(args) -> int:
    from .services import marcas

    s = settings()
    with _engine().begin() as conn:
        if args.action == "list":
            for r in conn.execute(text("SELECT id, slug, nombre, rol_db FROM crm.marcas ORDER BY id")):
                print(f"{r.id}\t{r.slug}\t{r.nombre}\t{r.rol_db}")
            return 0
        row = marcas.create(conn, s, args.slug, args.nombre, args.zona_horaria)
    _err(f"marca {row['slug']} creada (id {row['id']}, rol de base de datos {row['rol_db']})")
    return 0


def cmd_keys(args) -> int:
    from .services import claves

    with _engine().begin() as conn:
        if args.action == "revoke":
            if conn.execute(claves.REVOKE, {"ref": args.ref}).first() is None:
                _err(f"no hay una clave activa con prefijo o id {args.ref}")
                return 1
            _err("clave revocada")
            return 0
        marca_id = None
        if args.group_admin:
            rol = "admin"
        else:
            if not args.brand or not args.role:
                _err("indique --brand SLUG y --role ROL, o --group-admin")
                return 2
            rol = args.role
            marca_id = conn.execute(text("SELECT id FROM crm.marcas WHERE slug = :s"),
                                    {"s": args.brand}).scalar()
            if marca_id is None:
                _err(f"no existe la marca {args.brand}")
                return 1
        key, stmt, params = claves.insert_statement(marca_id, rol, args.name or "", args.rate_limit)
        conn.execute(stmt, params)
    print(key)
    return 0


def _bind(conn, marca_id: int) -> None:
    conn.execute(text("SELECT set_config('app.marca_id', :m, true), set_config('app.actor', 'cli', true)"),
                 {"m": str(marca_id)})


def cmd_channels(args) -> int:
    from sqlalchemy.exc import DBAPIError

    from .services import canales

    with _engine().begin() as conn:
        marcas = conn.execute(text("SELECT id, slug FROM crm.marcas WHERE CAST(:slug AS text) IS NULL "
                                   "OR slug = :slug ORDER BY id"), {"slug": args.brand}).all()
        if args.brand and not marcas:
            _err(f"no existe la marca {args.brand}")
            return 1
        if args.action == "list":
            for m in marcas:
                _bind(conn, m.id)
                for c in conn.execute(canales.LIST):
                    print(f"{c.id}\t{m.slug}\t{c.proveedor}\t{c.identificador}\t{c.numero or ''}\t"
                          f"{'activo' if c.activo else 'inactivo'}")
            return 0
        if args.provider == "meta" and not args.phone_number_id:
            _err("con --provider meta indique --phone-number-id (el de WhatsApp Manager)")
            return 2
        if args.provider == "twilio" and not args.number:
            _err("con --provider twilio indique --number (su número de WhatsApp en Twilio, E.164)")
            return 2
        if args.provider == "twilio" and args.phone_number_id:
            _err("--phone-number-id es solo para --provider meta")
            return 2
        try:
            values = canales.valores(args.provider, args.phone_number_id or args.number or "", args.number,
                                     not args.inactive)
        except canales.CanalInvalido as e:
            _err(f"error: {e}")
            return 2
        _bind(conn, marcas[0].id)
        try:
            row = conn.execute(canales.INSERT, values).one()
        except DBAPIError as e:  # e.g. the identifier is another channel's: one line, no CONTEXT
            diag = getattr(e.orig, "diag", None)
            _err(f"error: {getattr(diag, 'message_primary', None) or e.orig}")
            return 1
    _err(f"canal {row.id} de {args.brand} creado: {row.proveedor} {row.identificador}"
         + (f" ({row.numero})" if row.numero and row.numero != row.identificador else ""))
    print(row.id)
    return 0


def cmd_worker(args) -> int:
    from . import worker

    return worker.main(settings())


def cmd_reportes(args) -> int:
    from .services import resumen

    with _engine().begin() as conn:
        for row in conn.execute(resumen.REFRESCAR):
            _err(row.detalle)
    return 0


def cmd_nocodb(args) -> int:
    from nocodb import provision

    return provision.main(["credentials"] if args.action == "credentials" else list(args.slugs))


def cmd_backup(args) -> int:
    from . import backup

    s = settings()
    installer.ensure_server(s)
    if args.action == "create":
        print(backup.create(s))
    else:
        _err(backup.restore(s, args.file))
    return 0


def cmd_serve(args) -> int:
    import uvicorn

    s = settings()
    uvicorn.run("api.app:create_app", factory=True, host=args.host or s.api_host,
                port=args.port or s.api_port, workers=args.workers or s.api_workers,
                log_level=s.log_level, proxy_headers=True, access_log=args.access_log)
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="crm", description="CRM multimarca: administración")
    sub = p.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="base de datos")
    db.add_argument("action", choices=["init", "upgrade", "url"])
    who = db.add_mutually_exclusive_group()
    who.add_argument("--brand", metavar="SLUG", help="URL del rol de la marca (NocoDB, Metabase)")
    who.add_argument("--executive", action="store_true", help="URL del rol ejecutivo (solo lectura)")
    who.add_argument("--api", action="store_true", help="URL del rol de la API")
    db.set_defaults(func=cmd_db)

    pg = sub.add_parser("pg", help="PostgreSQL embebido")
    pg.add_argument("action", choices=["start", "stop", "status"])
    pg.set_defaults(func=cmd_pg)

    seed = sub.add_parser("seed", help="datos de demostración")
    seed.add_argument("what", choices=["demo"])
    seed.add_argument("--scale", type=float, default=1.0, help="multiplica clientes y pedidos")
    seed.set_defaults(func=cmd_seed)

    br = sub.add_parser("brands", help="marcas")
    brs = br.add_subparsers(dest="action", required=True)
    c = brs.add_parser("create")
    c.add_argument("slug")
    c.add_argument("nombre")
    c.add_argument("--zona-horaria", default=None)
    brs.add_parser("list")
    br.set_defaults(func=cmd_brands)

    keys = sub.add_parser("keys", help="claves de API")
    ks = keys.add_subparsers(dest="action", required=True)
    kc = ks.add_parser("create")
    kc.add_argument("--brand", metavar="SLUG")
    kc.add_argument("--role", choices=["admin", "staff", "lector", "integracion"])
    kc.add_argument("--group-admin", action="store_true")
    kc.add_argument("--name", default="")
    kc.add_argument("--rate-limit", type=int, default=None, help="solicitudes por minuto")
    kr = ks.add_parser("revoke")
    kr.add_argument("ref", metavar="PREFIX_OR_ID")
    keys.set_defaults(func=cmd_keys)

    ch = sub.add_parser("channels", help="canales de WhatsApp de las marcas")
    chs = ch.add_subparsers(dest="action", required=True)
    ca = chs.add_parser("add", help="registra el número de WhatsApp de una marca")
    ca.add_argument("--brand", metavar="SLUG", required=True)
    ca.add_argument("--provider", choices=["meta", "twilio"], required=True)
    ca.add_argument("--phone-number-id", metavar="ID", help="Meta: phone_number_id del número")
    ca.add_argument("--number", metavar="E164", help="número de WhatsApp (+56...); obligatorio en Twilio")
    ca.add_argument("--inactive", action="store_true", help="registrar sin activar")
    cl = chs.add_parser("list")
    cl.add_argument("--brand", metavar="SLUG")
    ch.set_defaults(func=cmd_channels)

    wk = sub.add_parser("worker", help="envía los mensajes de WhatsApp en cola (hasta SIGTERM)")
    wk.set_defaults(func=cmd_worker)

    rp = sub.add_parser("reportes", help="resúmenes de los tableros (el worker los refresca solo)")
    rp.add_argument("action", choices=["refrescar"])
    rp.set_defaults(func=cmd_reportes)

    nc = sub.add_parser("nocodb", help="NocoDB: una base por marca para su personal")
    nc.add_argument("action", choices=["provision", "credentials"])
    nc.add_argument("slugs", nargs="*", metavar="SLUG", help="solo estas marcas (provision)")
    nc.set_defaults(func=cmd_nocodb)

    bk = sub.add_parser("backup", help="respaldos")
    bks = bk.add_subparsers(dest="action", required=True)
    bks.add_parser("create")
    rs = bks.add_parser("restore")
    rs.add_argument("file")
    bk.set_defaults(func=cmd_backup)

    sv = sub.add_parser("serve", help="inicia la API")
    sv.add_argument("--host")
    sv.add_argument("--port", type=int)
    sv.add_argument("--workers", type=int)
    sv.add_argument("--access-log", action="store_true")
    sv.set_defaults(func=cmd_serve)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except (installer.InstallError, pg_embedded.EmbeddedError) as e:
        _err(f"error: {e}")
        return 1
    except Exception as e:  # database errors: show the message, not a traceback
        from sqlalchemy.exc import DBAPIError

        if isinstance(e, DBAPIError) and e.orig is not None:
            _err(f"error: {e.orig}")
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
