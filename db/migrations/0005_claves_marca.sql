-- Migration 0005: no row of a hot table locks its brand's row. Kept identical to what
-- db/schema.sql declares (those tables' CREATE TABLE and crm.auditar()).
SET ROLE crm_owner;
SET search_path = crm, public;

-- ---------------------------------------------------------------- claves_marca 0005
-- A foreign key check locks the parent row FOR KEY SHARE. Every order, item, status
-- change, interaction, outbox row and audit row pointed straight at its brand's row in
-- crm.marcas, so every concurrent transaction of a brand locked that one row, and
-- PostgreSQL recorded each overlap as a new multixact (about 17 members per WhatsApp
-- message under load). These tables keep their brand through their composite key to a
-- tenant parent that references crm.marcas itself (a customer, an order), so the direct
-- key added nothing. The audit trail keeps no key at all: it records what happened, and
-- its brand comes from the audited row.
ALTER TABLE crm.pedidos DROP CONSTRAINT pedidos_marca_id_fkey;
ALTER TABLE crm.pedido_items DROP CONSTRAINT pedido_items_marca_id_fkey;
ALTER TABLE crm.pedido_estados DROP CONSTRAINT pedido_estados_marca_id_fkey;
ALTER TABLE crm.interacciones DROP CONSTRAINT interacciones_marca_id_fkey;
ALTER TABLE crm.conversaciones DROP CONSTRAINT conversaciones_marca_id_fkey;
ALTER TABLE crm.alertas DROP CONSTRAINT alertas_marca_id_fkey;
ALTER TABLE crm.salientes DROP CONSTRAINT salientes_marca_id_fkey;
ALTER TABLE crm.auditoria DROP CONSTRAINT auditoria_marca_id_fkey;

-- The audited row as jsonb is built once, not twice.
CREATE OR REPLACE FUNCTION crm.auditar() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, crm AS $$
DECLARE
  fila jsonb := to_jsonb(CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END);
BEGIN
  INSERT INTO crm.auditoria (marca_id, tabla, registro_id, accion, antes, despues, actor)
  VALUES ((fila ->> 'marca_id')::bigint, TG_TABLE_NAME, (fila ->> 'id')::bigint, TG_OP,
          CASE TG_OP WHEN 'UPDATE' THEN to_jsonb(OLD) WHEN 'DELETE' THEN fila END,
          CASE WHEN TG_OP <> 'DELETE' THEN fila END,
          crm.actor_actual());
  RETURN NULL;
END
$$;

RESET ROLE;
