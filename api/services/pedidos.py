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


_VALIDATE = text("""
    SELECT EXISTS (SELECT 1 FROM crm.clientes WHERE id = :c AND deleted_at IS NULL) AS cliente,
           coalesce((SELECT json_object_agg(id, activo) FROM crm.productos
                      WHERE id = ANY(CAST(:ids AS bigint[]))), '{}') AS productos""")

# The order with its items and its status history, in one round trip.
_DETAIL = text(f"""
    SELECT {", ".join("p." + c.strip() for c in COLUMNS.split(","))},
      coalesce((SELECT json_agg(json_build_object(
                  'id', i.id, 'producto_id', i.producto_id, 'producto', pr.nombre, 'cantidad', i.cantidad,
                  'precio_unitario', i.precio_unitario, 'subtotal', i.subtotal) ORDER BY i.id)
                  FROM crm.pedido_items i
                  JOIN crm.productos pr ON pr.marca_id = i.marca_id AND pr.id = i.producto_id
                 WHERE i.marca_id = p.marca_id AND i.pedido_id = p.id), '[]') AS items,
      coalesce((SELECT json_agg(json_build_object(
                  'desde', e.desde, 'hacia', e.hacia, 'actor', e.actor, 'created_at', e.created_at)
                  ORDER BY e.created_at, e.id)
                  FROM crm.pedido_estados e
                 WHERE e.marca_id = p.marca_id AND e.pedido_id = p.id), '[]') AS historial
      FROM crm.pedidos p WHERE p.id = :id""")


# An order and its items in one statement. The items' BEFORE trigger captures each price,
# so their RETURNING already carries it. The order is declared with the total those
# prices make, so it is written once: the database checks the declaration at the end of
# the statement and recomputes a total that is not its items' sum (pedidos_total_declarado).
_INSERTAR = text("""
    WITH pedido AS (
      INSERT INTO crm.pedidos (cliente_id, canal, nota, total)
      SELECT :c, :canal, :nota, coalesce(sum(pr.precio * x.cantidad), 0)
        FROM unnest(CAST(:prods AS bigint[]), CAST(:cants AS int[])) AS x(producto_id, cantidad)
        JOIN crm.productos pr ON pr.id = x.producto_id
      RETURNING id),
    items AS (
      INSERT INTO crm.pedido_items (pedido_id, producto_id, cantidad)
      SELECT pedido.id, x.producto_id, x.cantidad
        FROM pedido, unnest(CAST(:prods AS bigint[]), CAST(:cants AS int[])) WITH ORDINALITY
             AS x(producto_id, cantidad, n)
       ORDER BY x.n
      RETURNING id, producto_id, cantidad, precio_unitario, subtotal)
    SELECT pedido.id,
           (SELECT coalesce(sum(subtotal), 0) FROM items) AS total,
           (SELECT json_agg(json_build_object(
                     'id', i.id, 'producto_id', i.producto_id, 'producto', pr.nombre, 'cantidad', i.cantidad,
                     'precio_unitario', i.precio_unitario, 'subtotal', i.subtotal) ORDER BY i.id)
              FROM items i JOIN crm.productos pr ON pr.id = i.producto_id) AS items
      FROM pedido""")


async def create(db, cliente_id: int, canal: str, items: list[tuple[int, int]], nota: str | None = None):
    """items: (producto_id, cantidad). Checks them first, to name the offending field;
    returns the order as `get` does (items, history)."""
    if not items:
        raise campo("items", "el pedido necesita al menos un ítem")
    for i, (_, cantidad) in enumerate(items):
        if not 1 <= cantidad <= 10_000:
            raise campo(f"items[{i}].cantidad", "debe estar entre 1 y 10000")
    found = (await db.execute(_VALIDATE, {"c": cliente_id, "ids": sorted({p for p, _ in items})})).one()
    if not found.cliente:
        raise campo("cliente_id", f"no existe el cliente {cliente_id} en esta marca")
    for i, (producto_id, _) in enumerate(items):
        activo = found.productos.get(str(producto_id))
        if activo is None:
            raise campo(f"items[{i}].producto_id", f"no existe el producto {producto_id} en esta marca")
        if not activo:
            raise campo(f"items[{i}].producto_id", f"el producto {producto_id} no está activo")
    pedido = await insertar(db, cliente_id, canal, items, nota)
    return await get(db, pedido.id)


async def insertar(db, cliente_id: int, canal: str, items: list[tuple[int, int]], nota: str | None = None):
    """Write a pending order with its items, in one statement, without checking the inputs
    first (the database still refuses what breaks its rules). For callers whose items come
    from the brand's active catalog and whose customer exists (the WhatsApp flow). Returns
    id, total and items (dicts with producto, cantidad, precio_unitario, subtotal)."""
    return (await db.execute(_INSERTAR, {"c": cliente_id, "canal": canal, "nota": nota,
                                         "prods": [p for p, _ in items], "cants": [c for _, c in items]})).one()


async def get(db, pedido_id: int):
    """The order with `items` and `historial` (lists of dicts), or None."""
    return (await db.execute(_DETAIL, {"id": pedido_id})).first()


async def change_status(db, pedido_id: int, estado: str, nota: str | None = None):
    """Moves the order; the database refuses a transition the lifecycle does not allow
    (SQLSTATE CRM01 → 409). Returns None when the order does not exist."""
    current = (await db.execute(text("SELECT estado FROM crm.pedidos WHERE id = :id FOR UPDATE"),
                                {"id": pedido_id})).first()
    if current is None:
        return None
    if current.estado != estado or nota is not None:
        sets = "estado = :estado" + (", nota = :nota" if nota is not None else "")
        await db.execute(text(f"UPDATE crm.pedidos SET {sets} WHERE id = :id"),
                         {"id": pedido_id, "estado": estado, "nota": nota})
    return await get(db, pedido_id)


def not_found(pedido_id: int) -> Problem:
    return Problem(404, f"No existe el pedido {pedido_id}")
