-- Migration 0008: a new order is written once, with its total, instead of twice (inserted
-- with total 0, then updated by its items' trigger). Kept identical to what db/schema.sql
-- declares (crm.pedidos_reglas(), crm.pedidos_total_declarado(), crm.pedido_items_total()).
SET ROLE crm_owner;
SET search_path = crm, public;

-- Before insert/update of an order: new orders start pending, status moves only along
-- allowed transitions, and total is always recomputed from the items (a new order's,
-- which may come declared, is checked at the end of its statement: pedidos_total_declarado).
CREATE OR REPLACE FUNCTION crm.pedidos_reglas() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.estado <> 'pendiente' THEN
      RAISE EXCEPTION 'Un pedido nuevo debe comenzar en estado pendiente, no %', NEW.estado
        USING ERRCODE = 'CRM01', COLUMN = 'estado';
    END IF;
    NEW.total := greatest(coalesce(NEW.total, 0), 0);  -- a declared total; none (a grid's blank) is 0
    RETURN NEW;
  END IF;
  IF NEW.estado IS DISTINCT FROM OLD.estado
     AND NOT crm.transicion_permitida(OLD.estado, NEW.estado) THEN
    RAISE EXCEPTION 'Transición de estado no permitida: % → %', OLD.estado, NEW.estado
      USING ERRCODE = 'CRM01', COLUMN = 'estado',
            HINT = 'Permitidas: pendiente → confirmado → en_preparacion → listo → entregado; cancelado desde cualquier estado no final.';
  END IF;
  IF NEW.cliente_id IS DISTINCT FROM OLD.cliente_id OR NEW.canal IS DISTINCT FROM OLD.canal THEN
    RAISE EXCEPTION 'El cliente y el canal de un pedido no se pueden cambiar'
      USING ERRCODE = 'CRM02', COLUMN = 'cliente_id';
  END IF;
  NEW.total := coalesce((SELECT sum(subtotal) FROM crm.pedido_items
                         WHERE marca_id = NEW.marca_id AND pedido_id = NEW.id), 0);
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

-- A new order may come with the total its writer expects: the API declares it in the
-- statement that also inserts the items, so the order is written once, with its total.
-- At the end of that statement (after its items), a total that is not their sum is
-- recomputed; an order without items has total 0.
CREATE FUNCTION crm.pedidos_total_declarado() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF NEW.total <> coalesce((SELECT sum(subtotal) FROM crm.pedido_items
                            WHERE marca_id = NEW.marca_id AND pedido_id = NEW.id), 0) THEN
    UPDATE crm.pedidos SET total = total WHERE marca_id = NEW.marca_id AND id = NEW.id;
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER pedidos_total_declarado AFTER INSERT ON crm.pedidos
  FOR EACH ROW WHEN (NEW.total <> 0) EXECUTE FUNCTION crm.pedidos_total_declarado();

-- After items change, touch their orders once per statement so pedidos_reglas recomputes total.
-- Items added to an order this transaction wrote itself, whose total already is their
-- sum (an order declared with its total, with its items), leave it alone: nobody else can
-- see that version of the order, or change it before this transaction ends. Any other
-- order is recomputed under its row lock, unconditionally: a comparison made before
-- waiting for the lock could miss items another transaction committed meanwhile.
CREATE OR REPLACE FUNCTION crm.pedido_items_total() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    UPDATE crm.pedidos p SET total = p.total
      FROM (SELECT DISTINCT marca_id, pedido_id FROM nuevos) n
     WHERE p.marca_id = n.marca_id AND p.id = n.pedido_id
       AND NOT (p.xmin = pg_current_xact_id()::xid
                AND p.total = (SELECT coalesce(sum(i.subtotal), 0) FROM crm.pedido_items i
                                WHERE i.marca_id = p.marca_id AND i.pedido_id = p.id));
  END IF;
  IF TG_OP = 'UPDATE' THEN
    UPDATE crm.pedidos p SET total = p.total
      FROM (SELECT DISTINCT marca_id, pedido_id FROM nuevos) n
     WHERE p.marca_id = n.marca_id AND p.id = n.pedido_id;
  END IF;
  IF TG_OP IN ('DELETE', 'UPDATE') THEN
    UPDATE crm.pedidos p SET total = p.total
      FROM (SELECT DISTINCT marca_id, pedido_id FROM viejos) v
     WHERE p.marca_id = v.marca_id AND p.id = v.pedido_id;
  END IF;
  RETURN NULL;
END
$$;

RESET ROLE;
