-- Migration 0006: less work that PostgreSQL repeats for every write statement. Kept
-- identical to what db/schema.sql declares (crm.rut_valido() and crm.auditoria).
SET ROLE crm_owner;
SET search_path = crm, public;

-- ---------------------------------------------------------------- chequeos_por_sentencia 0006
-- PostgreSQL rebuilds a table's CHECK constraints from their stored text for every
-- statement that writes a row to it (reading the node tree, then planning it, which tries
-- to inline every SQL function it calls). Measured with perf under the WhatsApp ingest
-- bench, that was about a tenth of the server's CPU. Two of those checks cost the most
-- and bought nothing:
--
-- crm.rut_valido() was a SQL function with a subquery: never inlined, yet parsed and
-- analyzed again by every statement inserting a customer, whether or not it had a RUT.
-- In PL/pgSQL it is compiled once per session and only runs for a RUT that is there.
CREATE OR REPLACE FUNCTION crm.rut_valido(rut text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE STRICT AS $$
DECLARE
  cuerpo text := reverse(left(rut, -1));
  suma int := 0;
  r int;
BEGIN
  IF rut !~ '^[0-9]{7,8}[0-9K]$' THEN
    RETURN false;
  END IF;
  FOR i IN 1 .. length(cuerpo) LOOP
    suma := suma + substr(cuerpo, i, 1)::int * (2 + (i - 1) % 6);
  END LOOP;
  r := 11 - suma % 11;
  RETURN right(rut, 1) = CASE r WHEN 11 THEN '0' WHEN 10 THEN 'K' ELSE r::text END;
END
$$;

-- The audit row's action comes from the audit trigger alone (brand roles cannot write the
-- trail), and a row trigger's TG_OP is always one of these three; the check was rebuilt
-- for every audit row written, about eight per WhatsApp message.
ALTER TABLE crm.auditoria DROP CONSTRAINT auditoria_accion_check;
COMMENT ON COLUMN crm.auditoria.accion IS 'INSERT, UPDATE o DELETE (TG_OP del disparador crm.auditar())';

RESET ROLE;
