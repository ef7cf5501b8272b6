-- Migration 0007: the audit trail stops copying what already is a record of itself (the
-- order status history, the outbox's delivery progress). Kept identical to what
-- db/schema.sql declares (crm.auditar_escrituras() and crm.aislar()).
SET ROLE crm_owner;
SET search_path = crm, public;

-- Which writes to a tenant table leave an audit row: every write, except writes that
-- already are their own record (migration 0007):
-- - crm.auditoria is the trail itself.
-- - crm.pedido_estados rows are inserted only by crm.pedidos_historial(), for a change of
--   the order that the order's own audit row records, with the same actor and moment.
--   Their updates and deletes (the owner's corrections, a draft's cascade) are audited.
-- - crm.salientes: the delivery progress of a reply (its status, attempts, provider, id
--   and error) is written by the worker and the providers' status callbacks, and the row
--   keeps it. Each reply would otherwise add three full copies of itself to the trail
--   (sent, delivered, read). Inserting, deleting and changing what is sent or to whom
--   are audited: the WHEN below names every other column (tests/test_audit.py checks it).
CREATE FUNCTION crm.auditar_escrituras(t regclass) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  auditar text := 'FOR EACH ROW EXECUTE FUNCTION crm.auditar()';
BEGIN
  CASE (SELECT relname FROM pg_class WHERE oid = t)
  WHEN 'auditoria' THEN
    NULL;
  WHEN 'pedido_estados' THEN
    EXECUTE format('CREATE TRIGGER auditoria AFTER UPDATE OR DELETE ON %s %s', t, auditar);
  WHEN 'salientes' THEN
    EXECUTE format('CREATE TRIGGER auditoria AFTER INSERT OR DELETE ON %s %s', t, auditar);
    EXECUTE format('CREATE TRIGGER auditoria_contenido AFTER UPDATE ON %s FOR EACH ROW WHEN ('
                   '(OLD.marca_id, OLD.id, OLD.cliente_id, OLD.canal_id, OLD.telefono, OLD.respuesta, '
                   'OLD.en_respuesta_a, OLD.created_at) IS DISTINCT FROM '
                   '(NEW.marca_id, NEW.id, NEW.cliente_id, NEW.canal_id, NEW.telefono, NEW.respuesta, '
                   'NEW.en_respuesta_a, NEW.created_at)) EXECUTE FUNCTION crm.auditar()', t);
  ELSE
    EXECUTE format('CREATE TRIGGER auditoria AFTER INSERT OR UPDATE OR DELETE ON %s %s', t, auditar);
  END CASE;
END
$$;

-- Isolation and audit of one tenant table: the single place that says what every tenant
-- table gets. Migrations that add a tenant table call it too.
CREATE OR REPLACE FUNCTION crm.aislar(t regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
  EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
  EXECUTE format('CREATE POLICY aislamiento_marca ON %s USING (marca_id = crm.marca_actual()) '
                 'WITH CHECK (marca_id = crm.marca_actual())', t);
  -- Executives read every brand (only through the SELECT grants they are given).
  EXECUTE format('CREATE POLICY lectura_ejecutiva ON %s FOR SELECT TO crm_ejecutivo USING (true)', t);
  PERFORM crm.auditar_escrituras(t);
END
$$;

DROP TRIGGER auditoria ON crm.pedido_estados;
DROP TRIGGER auditoria ON crm.salientes;
SELECT crm.auditar_escrituras(t) FROM unnest(ARRAY['crm.pedido_estados', 'crm.salientes']::regclass[]) AS t;

RESET ROLE;
