-- Migration 0004: the outbox's queue indexes. Kept identical to the "ingesta 0004" section
-- of db/schema.sql.
SET ROLE crm_owner;
SET search_path = crm, public;

-- ---------------------------------------------------------------- ingesta 0004
-- The worker's claim (api/services/salientes.py, _RECLAMAR) walks the queue in the order
-- it sends it and checks that no earlier reply to the same customer is still queued. Both
-- lookups are partial indexes over the queued rows alone: the claim walked the sent ones
-- too, and at 100,000 rows it took a whole core.
DROP INDEX crm.salientes_por_enviar;
CREATE INDEX salientes_por_enviar ON crm.salientes (marca_id, proximo_intento, id) WHERE estado = 'en_cola';
CREATE INDEX salientes_cola_cliente ON crm.salientes (marca_id, cliente_id, id) WHERE estado = 'en_cola';
