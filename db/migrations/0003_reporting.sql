-- Migration 0003: what the Metabase dashboards read (metabase/tableros.py). Kept identical
-- to the "reporting 0003" section of db/schema.sql.
SET ROLE crm_owner;
SET search_path = crm, public;

-- ---------------------------------------------------------------- reporting 0003
-- The WhatsApp outbox and the alerts, for reports. No phone, no message text, no error
-- (a provider's error can quote the number), and only the category of an alert's reason
-- (after the colon comes what the customer wrote).
CREATE VIEW reporting.salientes WITH (security_invoker = true) AS
  SELECT s.marca_id, m.slug AS marca, s.id AS saliente_id, s.cliente_id, s.estado, s.intentos,
         s.proveedor, s.respuesta ->> 'tipo' AS tipo, s.respuesta ->> 'plantilla' AS plantilla,
         s.en_respuesta_a, s.created_at, s.enviado_en,
         (s.created_at AT TIME ZONE m.zona_horaria)::date AS fecha
    FROM crm.salientes s JOIN crm.marcas m ON m.id = s.marca_id;

CREATE VIEW reporting.alertas WITH (security_invoker = true) AS
  SELECT a.marca_id, m.slug AS marca, a.id AS alerta_id, a.cliente_id, split_part(a.motivo, ':', 1) AS motivo,
         a.estado, a.created_at, a.cerrada_en, (a.created_at AT TIME ZONE m.zona_horaria)::date AS fecha
    FROM crm.alertas a JOIN crm.marcas m ON m.id = a.marca_id;

-- Executives read the outbox through reporting.salientes only: not the customer's phone,
-- nor the provider's error (0002 had granted the whole table).
REVOKE SELECT ON crm.salientes FROM crm_ejecutivo;
GRANT SELECT (marca_id, id, cliente_id, canal_id, respuesta, estado, intentos, proximo_intento, proveedor,
  id_externo, en_respuesta_a, created_at, enviado_en, updated_at) ON crm.salientes TO crm_ejecutivo;

-- ---------------------------------------------------------------- resumen
-- Daily and per-customer summaries behind the dashboards. Two years of a group's history
-- (demo ×10: 510,000 orders, 2.5 million status changes, 1.4 million interactions) cannot
-- be aggregated per request in 300 ms; these tables hold the same figures, computed by
-- resumen.refrescar() (`crm`'s scheduler calls it every few minutes; metabase/provision.py
-- once after provisioning). They are what a materialized view would be, as tables: a
-- materialized view cannot have row-level security, and these carry marca_id first in the
-- key with the very policies of the tenant tables, so a brand role reading them directly
-- still sees only its brand. Clients may only read them; only resumen.refrescar() writes.
CREATE SCHEMA resumen;

-- Orders per local day, channel and (current) status.
CREATE TABLE resumen.pedidos_dia (
  marca_id bigint NOT NULL,
  fecha    date NOT NULL,
  canal    text NOT NULL,
  estado   text NOT NULL,
  pedidos  integer NOT NULL,
  ingresos bigint NOT NULL,
  PRIMARY KEY (marca_id, fecha, canal, estado)
);

-- Orders per local day and hour (busiest hours and weekdays), cancelled ones included.
CREATE TABLE resumen.pedidos_hora (
  marca_id bigint NOT NULL,
  fecha    date NOT NULL,
  hora     smallint NOT NULL,
  pedidos  integer NOT NULL,
  PRIMARY KEY (marca_id, fecha, hora)
);

-- Units and revenue per local day and product category (orders not cancelled).
CREATE TABLE resumen.categorias_dia (
  marca_id  bigint NOT NULL,
  fecha     date NOT NULL,
  categoria text NOT NULL,
  unidades  bigint NOT NULL,
  ingresos  bigint NOT NULL,
  PRIMARY KEY (marca_id, fecha, categoria)
);

-- Each customer's purchases (orders not cancelled): first and last local day, count, value.
CREATE TABLE resumen.clientes (
  marca_id      bigint NOT NULL,
  cliente_id    bigint NOT NULL,
  primera_compra date NOT NULL,
  ultima_compra  date NOT NULL,
  pedidos       integer NOT NULL,
  valor         bigint NOT NULL,
  PRIMARY KEY (marca_id, cliente_id)
);

-- Monthly cohorts: customers whose first purchase fell in `cohorte` who bought in `mes`.
CREATE TABLE resumen.cohortes (
  marca_id bigint NOT NULL,
  cohorte  date NOT NULL,
  mes      date NOT NULL,
  clientes integer NOT NULL,
  PRIMARY KEY (marca_id, cohorte, mes)
);

-- Time from one status to the next (crm.pedido_estados), per local month of the change.
CREATE TABLE resumen.tiempos_estado (
  marca_id        bigint NOT NULL,
  mes             date NOT NULL,
  desde           text NOT NULL,
  hacia           text NOT NULL,
  cambios         integer NOT NULL,
  mediana_minutos numeric NOT NULL,
  p90_minutos     numeric NOT NULL,
  PRIMARY KEY (marca_id, mes, desde, hacia)
);

-- WhatsApp messages per local day. conversaciones: customers who wrote that day;
-- respondidos: inbound messages followed by one of ours within 24 hours;
-- minutos_respuesta: the sum of those waits (divide by respondidos for the average).
CREATE TABLE resumen.mensajes_dia (
  marca_id          bigint NOT NULL,
  fecha             date NOT NULL,
  entrantes         integer NOT NULL,
  salientes         integer NOT NULL,
  conversaciones    integer NOT NULL,
  respondidos       integer NOT NULL,
  minutos_respuesta numeric NOT NULL,
  PRIMARY KEY (marca_id, fecha)
);

-- When each summary was last computed.
CREATE TABLE resumen.refrescos (
  tabla          text PRIMARY KEY,
  filas          bigint NOT NULL,
  milisegundos   integer NOT NULL,
  actualizado_en timestamptz NOT NULL
);

-- The tenant tables' isolation policies (not their audit trigger: no person writes here).
DO $$
DECLARE
  t regclass;
BEGIN
  FOREACH t IN ARRAY ARRAY['resumen.pedidos_dia', 'resumen.pedidos_hora', 'resumen.categorias_dia',
                           'resumen.clientes', 'resumen.cohortes', 'resumen.tiempos_estado',
                           'resumen.mensajes_dia']::regclass[] LOOP
    EXECUTE format('ALTER TABLE %s ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %s FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY aislamiento_marca ON %s USING (marca_id = crm.marca_actual()) '
                   'WITH CHECK (marca_id = crm.marca_actual())', t);
    EXECUTE format('CREATE POLICY lectura_ejecutiva ON %s FOR SELECT TO crm_ejecutivo USING (true)', t);
  END LOOP;
END
$$;

-- Recomputes every summary from the tenant tables, in one transaction (readers see the
-- old figures until it commits). Definer: crm_owner reads every brand (BYPASSRLS).
-- Returns one line per table: rows and milliseconds. Demo ×10: about 15 s.
CREATE FUNCTION resumen.refrescar() RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, crm AS $$
DECLARE
  t0 timestamptz;
  n bigint;
  paso text;
  pasos text[] := ARRAY['pedidos_dia', 'pedidos_hora', 'categorias_dia', 'clientes', 'cohortes',
                        'tiempos_estado', 'mensajes_dia'];
BEGIN
  -- two schedulers at once: the second waits, then recomputes from the newer data
  PERFORM pg_advisory_xact_lock(hashtext('resumen.refrescar'));
  FOREACH paso IN ARRAY pasos LOOP
    t0 := clock_timestamp();
    EXECUTE format('DELETE FROM resumen.%I', paso);
    CASE paso
    WHEN 'pedidos_dia' THEN
      INSERT INTO resumen.pedidos_dia (marca_id, fecha, canal, estado, pedidos, ingresos)
      SELECT p.marca_id, (p.created_at AT TIME ZONE m.zona_horaria)::date, p.canal, p.estado, count(*), sum(p.total)
        FROM crm.pedidos p JOIN crm.marcas m ON m.id = p.marca_id
       GROUP BY 1, 2, 3, 4;
    WHEN 'pedidos_hora' THEN
      INSERT INTO resumen.pedidos_hora (marca_id, fecha, hora, pedidos)
      SELECT x.marca_id, x.hora_local::date, extract(hour FROM x.hora_local), count(*)
        FROM (SELECT p.marca_id, p.created_at AT TIME ZONE m.zona_horaria AS hora_local
                FROM crm.pedidos p JOIN crm.marcas m ON m.id = p.marca_id) x
       GROUP BY 1, 2, 3;
    WHEN 'categorias_dia' THEN
      INSERT INTO resumen.categorias_dia (marca_id, fecha, categoria, unidades, ingresos)
      SELECT i.marca_id, (p.created_at AT TIME ZONE m.zona_horaria)::date, pr.categoria,
             sum(i.cantidad), sum(i.subtotal)
        FROM crm.pedido_items i
        JOIN crm.pedidos p ON p.marca_id = i.marca_id AND p.id = i.pedido_id
        JOIN crm.productos pr ON pr.marca_id = i.marca_id AND pr.id = i.producto_id
        JOIN crm.marcas m ON m.id = i.marca_id
       WHERE p.estado <> 'cancelado'
       GROUP BY 1, 2, 3;
    WHEN 'clientes' THEN
      INSERT INTO resumen.clientes (marca_id, cliente_id, primera_compra, ultima_compra, pedidos, valor)
      SELECT p.marca_id, p.cliente_id, min((p.created_at AT TIME ZONE m.zona_horaria)::date),
             max((p.created_at AT TIME ZONE m.zona_horaria)::date), count(*), sum(p.total)
        FROM crm.pedidos p JOIN crm.marcas m ON m.id = p.marca_id
       WHERE p.estado <> 'cancelado'
       GROUP BY 1, 2;
    WHEN 'cohortes' THEN
      INSERT INTO resumen.cohortes (marca_id, cohorte, mes, clientes)
      WITH meses AS (
        SELECT DISTINCT p.marca_id, p.cliente_id,
               date_trunc('month', p.created_at AT TIME ZONE m.zona_horaria)::date AS mes
          FROM crm.pedidos p JOIN crm.marcas m ON m.id = p.marca_id
         WHERE p.estado <> 'cancelado'
      ), primeras AS (
        SELECT marca_id, cliente_id, min(mes) AS cohorte FROM meses GROUP BY 1, 2
      )
      SELECT c.marca_id, c.cohorte, x.mes, count(*)
        FROM primeras c JOIN meses x ON x.marca_id = c.marca_id AND x.cliente_id = c.cliente_id
       GROUP BY 1, 2, 3;
    WHEN 'tiempos_estado' THEN
      INSERT INTO resumen.tiempos_estado (marca_id, mes, desde, hacia, cambios, mediana_minutos, p90_minutos)
      SELECT x.marca_id, date_trunc('month', x.created_at AT TIME ZONE m.zona_horaria)::date, x.desde, x.hacia,
             count(*),
             round((percentile_cont(0.5) WITHIN GROUP (ORDER BY x.minutos))::numeric, 1),
             round((percentile_cont(0.9) WITHIN GROUP (ORDER BY x.minutos))::numeric, 1)
        FROM (SELECT e.marca_id, e.desde, e.hacia, e.created_at,
                     extract(epoch FROM e.created_at - lag(e.created_at) OVER (
                       PARTITION BY e.marca_id, e.pedido_id ORDER BY e.created_at, e.id)) / 60 AS minutos
                FROM crm.pedido_estados e) x
        JOIN crm.marcas m ON m.id = x.marca_id
       WHERE x.desde IS NOT NULL AND x.minutos IS NOT NULL
       GROUP BY 1, 2, 3, 4;
    WHEN 'mensajes_dia' THEN
      INSERT INTO resumen.mensajes_dia (marca_id, fecha, entrantes, salientes, conversaciones, respondidos,
                                        minutos_respuesta)
      SELECT x.marca_id, (x.created_at AT TIME ZONE m.zona_horaria)::date,
             count(*) FILTER (WHERE x.direccion = 'entrante'),
             count(*) FILTER (WHERE x.direccion = 'saliente'),
             count(DISTINCT x.cliente_id) FILTER (WHERE x.direccion = 'entrante'),
             count(*) FILTER (WHERE x.direccion = 'entrante' AND x.respuesta <= x.created_at + interval '24 hours'),
             coalesce(round((sum(extract(epoch FROM x.respuesta - x.created_at) / 60) FILTER (
               WHERE x.direccion = 'entrante' AND x.respuesta <= x.created_at + interval '24 hours'))::numeric, 1), 0)
        FROM (SELECT i.marca_id, i.cliente_id, i.direccion, i.created_at,
                     -- the first message of ours after this one, to the same customer
                     min(i.created_at) FILTER (WHERE i.direccion = 'saliente') OVER (
                       PARTITION BY i.marca_id, i.cliente_id ORDER BY i.created_at DESC, i.id DESC
                       ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS respuesta
                FROM crm.interacciones i
               WHERE i.canal = 'whatsapp' AND i.tipo = 'mensaje') x
        JOIN crm.marcas m ON m.id = x.marca_id
       GROUP BY 1, 2;
    END CASE;
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO resumen.refrescos (tabla, filas, milisegundos, actualizado_en)
    VALUES (paso, n, (extract(epoch FROM clock_timestamp() - t0) * 1000)::integer, now())
    ON CONFLICT (tabla) DO UPDATE SET filas = EXCLUDED.filas, milisegundos = EXCLUDED.milisegundos,
                                      actualizado_en = EXCLUDED.actualizado_en;
    EXECUTE format('ANALYZE resumen.%I', paso);
    RETURN NEXT format('%s: %s filas en %s ms', paso, n,
                       (extract(epoch FROM clock_timestamp() - t0) * 1000)::integer);
  END LOOP;
END
$$;
REVOKE EXECUTE ON FUNCTION resumen.refrescar() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION resumen.refrescar() TO crm_api;

GRANT USAGE ON SCHEMA resumen TO crm_api, crm_marca, crm_ejecutivo;
GRANT SELECT ON ALL TABLES IN SCHEMA resumen TO crm_api, crm_marca, crm_ejecutivo;

-- The summaries as reports: brand slug, and the local calendar they were computed in.
CREATE VIEW reporting.resumen_ventas_dia WITH (security_invoker = true) AS
  SELECT r.marca_id, m.slug AS marca, r.fecha, r.canal, r.estado, r.pedidos, r.ingresos
    FROM resumen.pedidos_dia r JOIN crm.marcas m ON m.id = r.marca_id;

CREATE VIEW reporting.resumen_pedidos_hora WITH (security_invoker = true) AS
  SELECT r.marca_id, m.slug AS marca, r.fecha, extract(isodow FROM r.fecha)::smallint AS dia_semana,
         r.hora, r.pedidos
    FROM resumen.pedidos_hora r JOIN crm.marcas m ON m.id = r.marca_id;

CREATE VIEW reporting.resumen_categorias_dia WITH (security_invoker = true) AS
  SELECT r.marca_id, m.slug AS marca, r.fecha, r.categoria, r.unidades, r.ingresos
    FROM resumen.categorias_dia r JOIN crm.marcas m ON m.id = r.marca_id;

CREATE VIEW reporting.resumen_clientes WITH (security_invoker = true) AS
  SELECT r.marca_id, m.slug AS marca, r.cliente_id, r.primera_compra, r.ultima_compra, r.pedidos, r.valor
    FROM resumen.clientes r JOIN crm.marcas m ON m.id = r.marca_id;

CREATE VIEW reporting.resumen_cohortes WITH (security_invoker = true) AS
  SELECT r.marca_id, m.slug AS marca, r.cohorte, r.mes,
         ((extract(year FROM r.mes) - extract(year FROM r.cohorte)) * 12
           + extract(month FROM r.mes) - extract(month FROM r.cohorte))::integer AS meses_desde_primera,
         r.clientes
    FROM resumen.cohortes r JOIN crm.marcas m ON m.id = r.marca_id;

CREATE VIEW reporting.resumen_tiempos_estado WITH (security_invoker = true) AS
  SELECT r.marca_id, m.slug AS marca, r.mes, r.desde, r.hacia, r.cambios, r.mediana_minutos, r.p90_minutos
    FROM resumen.tiempos_estado r JOIN crm.marcas m ON m.id = r.marca_id;

CREATE VIEW reporting.resumen_mensajes_dia WITH (security_invoker = true) AS
  SELECT r.marca_id, m.slug AS marca, r.fecha, r.entrantes, r.salientes, r.conversaciones, r.respondidos,
         r.minutos_respuesta
    FROM resumen.mensajes_dia r JOIN crm.marcas m ON m.id = r.marca_id;

GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO crm_ejecutivo, crm_marca, crm_api;

RESET ROLE;
