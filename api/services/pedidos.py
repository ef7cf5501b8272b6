"""Orders: creation with their items, reading, status changes.

The rules themselves (allowed transitions, totals, prices captured at order time, items
frozen once confirmed) live in the database triggers, so NocoDB edits obey them too;
this module checks inputs first only to name the offending field in the answer."""

from __future__ import annotations

from sqlalchemy import text

from ..errors import Problem, campo

COLUMNS = "id, marca_id, cliente_id, canal, estado, total, nota, created_at, updated_at"
ESTADOS = ("pendiente", "confirmado", "en_preparacion", "listo", "entregado", "cancelado")
CANALES = ("whatsapp", "web", "telefono", "presencial")


async def create(db, cliente_id: int, canal: str, items: list[tuple[int, int]], nota: str | None = None):
    """items: (producto_id, cantidad). Returns the order row (with its total)."""
    if not items:
        raise campo("items", "el pedido necesita al menos un ítem")
    for i, (_, cantidad) in enumerate(items):
        if not 1 <= cantidad <= 10_000:
            raise campo(f"items[{i}].cantidad", "debe estar entre 1 y 10000")
    ids = sorted({p for p, _ in items})
    known = {r.id: r.activo for r in await db.execute(
        text("SELECT id, activo FROM crm.productos WHERE id = ANY(:ids)"), {"ids": ids})}
    for i, (producto_id, _) in enumerate(items):
        if producto_id not in known:
            raise campo(f"items[{i}].producto_id", f"no existe el producto {producto_id} en esta marca")
        if not known[producto_id]:
            raise campo(f"items[{i}].producto_id", f"el producto {producto_id} no está activo")
    cliente = (await db.execute(text("SELECT 1 FROM crm.clientes WHERE id = :id AND deleted_at IS NULL"),
                                {"id": cliente_id})).first()
    if cliente is None:
        raise campo("cliente_id", f"no existe el cliente {cliente_id} en esta marca")
    pedido_id = (await db.execute(
        text("INSERT INTO crm.pedidos (cliente_id, canal, nota) VALUES (:c, :canal, :nota) RETURNING id"),
        {"c": cliente_id, "canal": canal, "nota": nota})).scalar_one()
    await db.execute(text(
        "INSERT INTO crm.pedido_items (pedido_id, producto_id, cantidad) "
        "SELECT :p, x.producto_id, x.cantidad FROM unnest(CAST(:prods AS bigint[]), CAST(:cants AS int[])) "
        "AS x(producto_id, cantidad)"),
        {"p": pedido_id, "prods": [p for p, _ in items], "cants": [c for _, c in items]})
    return await get(db, pedido_id)


async def get(db, pedido_id: int):
    return (await db.execute(text(f"SELECT {COLUMNS} FROM crm.pedidos WHERE id = :id"),
                             {"id": pedido_id})).first()


async def items(db, pedido_id: int):
    return (await db.execute(text(
        "SELECT i.id, i.producto_id, p.nombre AS producto, i.cantidad, i.precio_unitario, i.subtotal "
        "FROM crm.pedido_items i JOIN crm.productos p ON p.marca_id = i.marca_id AND p.id = i.producto_id "
        "WHERE i.pedido_id = :id ORDER BY i.id"), {"id": pedido_id})).all()


async def history(db, pedido_id: int):
    return (await db.execute(text(
        "SELECT desde, hacia, actor, created_at FROM crm.pedido_estados "
        "WHERE pedido_id = :id ORDER BY created_at, id"), {"id": pedido_id})).all()


async def change_status(db, pedido_id: int, estado: str, nota: str | None = None):
    """Moves the order; the database refuses a transition the lifecycle does not allow
    (SQLSTATE CRM01 → 409). Returns None when the order does not exist."""
    current = (await db.execute(text("SELECT estado FROM crm.pedidos WHERE id = :id FOR UPDATE"),
                                {"id": pedido_id})).first()
    if current is None:
        return None
    if current.estado == estado and nota is None:
        return await get(db, pedido_id)
    sets = "estado = :estado" + (", nota = :nota" if nota is not None else "")
    return (await db.execute(text(f"UPDATE crm.pedidos SET {sets} WHERE id = :id RETURNING {COLUMNS}"),
                             {"id": pedido_id, "estado": estado, "nota": nota})).first()


def not_found(pedido_id: int) -> Problem:
    return Problem(404, f"No existe el pedido {pedido_id}")
