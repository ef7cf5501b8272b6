-- The whole CRM schema, from an empty database.
--
-- Run by `crm db init` as a superuser after db/roles.sql (the roles, and their access to
-- this database); it creates extensions, then every object is created under SET ROLE crm_owner, so crm_owner owns it.
--
-- Isolation: every tenant table has marca_id first in its primary key, foreign keys
-- that include marca_id, FORCE ROW LEVEL SECURITY, and one policy on crm.marca_actual().
-- crm.marca_actual() is the brand of the transaction (app.marca_id, honoured only for
-- the API's role) or the brand mapped to the login role (NocoDB, Metabase).
-- Only the tables at the top of the tree (customers, products, channels, templates, keys)
-- reference crm.marcas; the rest reach it through their composite key to such a parent.
-- A key straight to crm.marcas would lock the brand's one row FOR KEY SHARE in every
-- concurrent write, and each overlap costs a new multixact (migration 0005).
--
-- Keep db/migrations/ in step: a fresh install from this file must equal an install
-- upgraded through every migration (tests/test_migrations.py compares the two).

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS unaccent;
CREATE EXTENSION IF NOT EXISTS citext;

SET ROLE crm_owner;

CREATE SCHEMA crm;
CREATE SCHEMA reporting;
SET search_path = crm, public;

-- ---------------------------------------------------------------- migrations
CREATE TABLE crm.migraciones (
  version    integer PRIMARY KEY,
  nombre     text NOT NULL,
  aplicada_en timestamptz NOT NULL DEFAULT now()
);

-- ---------------------------------------------------------------- helpers
-- Accent- and case-insensitive form of a text, immutable so it can be indexed.
CREATE FUNCTION crm.normalizar(t text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
RETURN lower(public.unaccent('public.unaccent'::regdictionary, t));

-- A compact Chilean RUT (digits and check digit, K uppercase) with a correct check digit.
-- PL/pgSQL, not SQL: a CHECK constraint's expression is planned again for every statement
-- that writes the table, and planning parses a SQL function's body each time (0006).
CREATE FUNCTION crm.rut_valido(rut text) RETURNS boolean
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

CREATE FUNCTION crm.zona_horaria_valida(tz text) RETURNS boolean
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
  PERFORM now() AT TIME ZONE tz;
  RETURN true;
EXCEPTION WHEN invalid_parameter_value THEN
  RETURN false;
END
$$;

-- ---------------------------------------------------------------- brands
CREATE TABLE crm.marcas (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  slug         text NOT NULL UNIQUE CHECK (slug ~ '^[a-z0-9][a-z0-9-]{1,39}$'),
  nombre       text NOT NULL CHECK (length(btrim(nombre)) BETWEEN 1 AND 120),
  zona_horaria text NOT NULL DEFAULT 'America/Santiago' CHECK (crm.zona_horaria_valida(zona_horaria)),
  moneda       text NOT NULL DEFAULT 'CLP' CHECK (moneda ~ '^[A-Z]{3}$'),
  settings     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
  rol_db       name NOT NULL UNIQUE,
  created_at   timestamptz NOT NULL DEFAULT now()
);

-- Brand of the login role (NocoDB, Metabase). Definer: reads crm.marcas without its policy.
CREATE FUNCTION crm.marca_de_rol(rol name) RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog AS $$
  SELECT id FROM crm.marcas WHERE rol_db = rol
$$;

-- The brand every row-level policy compares with. app.marca_id is honoured only for
-- the API's role: a brand role in Metabase could set it, and must not escape its brand.
CREATE FUNCTION crm.marca_actual() RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $$
  SELECT CASE
    WHEN pg_has_role(current_user, 'crm_api', 'MEMBER')
      THEN nullif(current_setting('app.marca_id', true), '')::bigint
    ELSE crm.marca_de_rol(current_user)
  END
$$;

ALTER TABLE crm.marcas ENABLE ROW LEVEL SECURITY;
ALTER TABLE crm.marcas FORCE ROW LEVEL SECURITY;
CREATE POLICY marca_propia ON crm.marcas USING (id = crm.marca_actual());
-- The API lists brands for group admins; executives report on all of them.
CREATE POLICY lectura_grupo ON crm.marcas FOR SELECT TO crm_api, crm_ejecutivo USING (true);

-- Creates a brand and its login role together. p_password is derived by the caller
-- from the install's secret, so `crm db url --brand` can rebuild it without storing it.
CREATE FUNCTION crm.crear_marca(p_slug text, p_nombre text, p_zona_horaria text,
                                p_moneda text, p_settings jsonb, p_password text)
RETURNS crm.marcas
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, crm AS $$
DECLARE
  rol name := 'crm_marca_' || replace(p_slug, '-', '_');
  fila crm.marcas;
BEGIN
  INSERT INTO crm.marcas (slug, nombre, zona_horaria, moneda, settings, rol_db)
  VALUES (p_slug, p_nombre, coalesce(p_zona_horaria, 'America/Santiago'),
          coalesce(p_moneda, 'CLP'), coalesce(p_settings, '{}'), rol)
  RETURNING * INTO fila;
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = rol) THEN
    -- Roles are server-wide: reuse one only if it is already a CRM brand role (a reset or
    -- restore keeps it); never take over a role that belongs to something else.
    IF NOT pg_has_role(rol, 'crm_marca', 'MEMBER') THEN
      RAISE EXCEPTION 'Ya existe un rol de base de datos % que no pertenece al CRM', rol
        USING ERRCODE = 'CRM05', COLUMN = 'slug';
    END IF;
    EXECUTE format('ALTER ROLE %I LOGIN PASSWORD %L', rol, p_password);
  ELSE
    EXECUTE format('CREATE ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEROLE NOCREATEDB PASSWORD %L',
                   rol, p_password);
  END IF;
  EXECUTE format('GRANT crm_marca TO %I', rol);
  RETURN fila;
END
$$;
REVOKE EXECUTE ON FUNCTION crm.crear_marca(text, text, text, text, jsonb, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm.crear_marca(text, text, text, text, jsonb, text) TO crm_api;

-- ---------------------------------------------------------------- API keys
-- Not a tenant table: group-wide keys have no brand. Only the API's role reads it.
CREATE TABLE crm.claves_api (
  id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  marca_id          bigint REFERENCES crm.marcas (id) ON DELETE CASCADE,
  nombre            text NOT NULL DEFAULT '',
  prefijo           text NOT NULL,
  hash              bytea NOT NULL UNIQUE,  -- sha256 of the whole key; keys are 256-bit random
  rol               text NOT NULL CHECK (rol IN ('admin', 'staff', 'lector', 'integracion')),
  limite_por_minuto integer CHECK (limite_por_minuto > 0),
  created_at        timestamptz NOT NULL DEFAULT now(),
  last_used_at      timestamptz,
  revoked_at        timestamptz,
  -- a group-wide key is always an admin key
  CHECK (marca_id IS NOT NULL OR rol = 'admin')
);

-- ---------------------------------------------------------------- audit
-- No key to crm.marcas: the trail records what happened; its brand is the audited row's.
CREATE TABLE crm.auditoria (
  marca_id    bigint NOT NULL DEFAULT crm.marca_actual(),
  id          bigint GENERATED ALWAYS AS IDENTITY,
  tabla       text NOT NULL,
  registro_id bigint NOT NULL,
  accion      text NOT NULL,  -- TG_OP of the audit trigger, its only writer (0006)
  antes       jsonb,
  despues     jsonb,
  actor       text NOT NULL,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (marca_id, id)
);
CREATE INDEX auditoria_registro ON crm.auditoria (marca_id, tabla, registro_id);
COMMENT ON COLUMN crm.auditoria.accion IS 'INSERT, UPDATE o DELETE (TG_OP del disparador crm.auditar())';

-- Who acted: the API key (app.actor, honoured only for the API's role), else the login role.
CREATE FUNCTION crm.actor_actual() RETURNS text
LANGUAGE sql STABLE AS $$
  SELECT CASE
    WHEN pg_has_role(session_user, 'crm_api', 'MEMBER')
         AND coalesce(current_setting('app.actor', true), '') <> ''
      THEN current_setting('app.actor', true)
    ELSE session_user::text
  END
$$;

-- Definer: brand roles may read the audit trail but never write or forge it.
CREATE FUNCTION crm.auditar() RETURNS trigger
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

CREATE FUNCTION crm.tocar_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.updated_at := now();
  RETURN NEW;
END
$$;

-- ---------------------------------------------------------------- customers
CREATE TABLE crm.clientes (
  marca_id              bigint NOT NULL DEFAULT crm.marca_actual() REFERENCES crm.marcas (id),
  id                    bigint GENERATED ALWAYS AS IDENTITY,
  nombre                text NOT NULL CHECK (length(btrim(nombre)) BETWEEN 1 AND 200),
  telefono              text CHECK (telefono ~ '^\+[1-9][0-9]{6,14}$'),
  email                 citext CHECK (email ~ '^[^@\s]+@[^@\s]+\.[^@\s]+$'),
  documento             text CHECK (crm.rut_valido(documento)),  -- RUT, compact form
  fecha_nacimiento      date CHECK (fecha_nacimiento BETWEEN '1900-01-01' AND '2100-01-01'),
  ciudad                text,
  region                text,
  canal_origen          text NOT NULL DEFAULT 'presencial'
                        CHECK (canal_origen IN ('whatsapp', 'web', 'telefono', 'presencial', 'importacion')),
  segmento              text NOT NULL DEFAULT 'nuevo'
                        CHECK (segmento IN ('nuevo', 'recurrente', 'vip', 'inactivo')),
  opt_out_marketing     boolean NOT NULL DEFAULT false,
  opt_out_recordatorios boolean NOT NULL DEFAULT false,
  opt_out_encuestas     boolean NOT NULL DEFAULT false,
  notas                 text,
  created_at            timestamptz NOT NULL DEFAULT now(),
  updated_at            timestamptz NOT NULL DEFAULT now(),
  deleted_at            timestamptz,
  PRIMARY KEY (marca_id, id),
  CONSTRAINT clientes_telefono_unico UNIQUE (marca_id, telefono),
  CONSTRAINT clientes_email_unico UNIQUE (marca_id, email)
);
CREATE INDEX clientes_nombre_trgm ON crm.clientes USING gin (crm.normalizar(nombre) gin_trgm_ops);
CREATE INDEX clientes_documento ON crm.clientes (marca_id, documento);
CREATE INDEX clientes_creacion ON crm.clientes (marca_id, created_at);

-- ---------------------------------------------------------------- products
CREATE TABLE crm.productos (
  marca_id   bigint NOT NULL DEFAULT crm.marca_actual() REFERENCES crm.marcas (id),
  id         bigint GENERATED ALWAYS AS IDENTITY,
  sku        text NOT NULL CHECK (sku ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,39}$'),
  nombre     text NOT NULL CHECK (length(btrim(nombre)) BETWEEN 1 AND 200),
  categoria  text NOT NULL DEFAULT 'general',
  precio     bigint NOT NULL CHECK (precio >= 0),
  stock      integer CHECK (stock >= 0),  -- NULL: not tracked (food made to order)
  activo     boolean NOT NULL DEFAULT true,
  alias      text[] NOT NULL DEFAULT '{}',
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (marca_id, id),
  CONSTRAINT productos_sku_unico UNIQUE (marca_id, sku)
);

-- ---------------------------------------------------------------- orders
CREATE TABLE crm.pedidos (
  marca_id   bigint NOT NULL DEFAULT crm.marca_actual(),
  id         bigint GENERATED ALWAYS AS IDENTITY,
  cliente_id bigint NOT NULL,
  canal      text NOT NULL CHECK (canal IN ('whatsapp', 'web', 'telefono', 'presencial')),
  estado     text NOT NULL DEFAULT 'pendiente'
             CHECK (estado IN ('pendiente', 'confirmado', 'en_preparacion', 'listo', 'entregado', 'cancelado')),
  total      bigint NOT NULL DEFAULT 0 CHECK (total >= 0),  -- kept equal to the items' sum by triggers
  nota       text CHECK (length(nota) <= 2000),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (marca_id, id),
  FOREIGN KEY (marca_id, cliente_id) REFERENCES crm.clientes (marca_id, id)
);
CREATE INDEX pedidos_creacion ON crm.pedidos (marca_id, created_at);
CREATE INDEX pedidos_cliente ON crm.pedidos (marca_id, cliente_id, created_at);
CREATE INDEX pedidos_estado ON crm.pedidos (marca_id, estado);

CREATE TABLE crm.pedido_items (
  marca_id        bigint NOT NULL DEFAULT crm.marca_actual(),
  id              bigint GENERATED ALWAYS AS IDENTITY,
  pedido_id       bigint NOT NULL,
  producto_id     bigint NOT NULL,
  cantidad        integer NOT NULL CHECK (cantidad > 0 AND cantidad <= 10000),
  precio_unitario bigint NOT NULL CHECK (precio_unitario >= 0),  -- captured at order time
  subtotal        bigint GENERATED ALWAYS AS (cantidad * precio_unitario) STORED,
  PRIMARY KEY (marca_id, id),
  FOREIGN KEY (marca_id, pedido_id) REFERENCES crm.pedidos (marca_id, id) ON DELETE CASCADE,
  FOREIGN KEY (marca_id, producto_id) REFERENCES crm.productos (marca_id, id)
);
CREATE INDEX pedido_items_pedido ON crm.pedido_items (marca_id, pedido_id);
CREATE INDEX pedido_items_producto ON crm.pedido_items (marca_id, producto_id);

CREATE TABLE crm.pedido_estados (
  marca_id   bigint NOT NULL DEFAULT crm.marca_actual(),
  id         bigint GENERATED ALWAYS AS IDENTITY,
  pedido_id  bigint NOT NULL,
  desde      text,
  hacia      text NOT NULL,
  actor      text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (marca_id, id),
  FOREIGN KEY (marca_id, pedido_id) REFERENCES crm.pedidos (marca_id, id) ON DELETE CASCADE
);
CREATE INDEX pedido_estados_pedido ON crm.pedido_estados (marca_id, pedido_id, created_at);

-- The order lifecycle, in one place: which state may follow which.
CREATE FUNCTION crm.transicion_permitida(desde text, hacia text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT (desde, hacia) IN (
    ('pendiente', 'confirmado'), ('confirmado', 'en_preparacion'),
    ('en_preparacion', 'listo'), ('listo', 'entregado'),
    ('pendiente', 'cancelado'), ('confirmado', 'cancelado'),
    ('en_preparacion', 'cancelado'), ('listo', 'cancelado'))
$$;

-- Before insert/update of an order: new orders start pending, status moves only along
-- allowed transitions, and total is always recomputed from the items (a new order's,
-- which may come declared, is checked at the end of its statement: pedidos_total_declarado).
CREATE FUNCTION crm.pedidos_reglas() RETURNS trigger
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
CREATE TRIGGER pedidos_reglas BEFORE INSERT OR UPDATE ON crm.pedidos
  FOR EACH ROW EXECUTE FUNCTION crm.pedidos_reglas();

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

-- Only a pending order (a draft) can be deleted; any other is cancelled instead, so sales
-- and their status history never vanish (deleting cascades to items and history).
CREATE FUNCTION crm.pedidos_no_borrar() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF OLD.estado <> 'pendiente' THEN
    RAISE EXCEPTION 'Un pedido % no se puede eliminar; cancélelo si corresponde', OLD.estado
      USING ERRCODE = 'CRM06', COLUMN = 'estado';
  END IF;
  RETURN OLD;
END
$$;
CREATE TRIGGER pedidos_no_borrar BEFORE DELETE ON crm.pedidos
  FOR EACH ROW EXECUTE FUNCTION crm.pedidos_no_borrar();

-- Status history. Definer: brand roles read the history but cannot write it by hand.
CREATE FUNCTION crm.pedidos_historial() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, crm AS $$
BEGIN
  IF TG_OP = 'INSERT' OR NEW.estado IS DISTINCT FROM OLD.estado THEN
    INSERT INTO crm.pedido_estados (marca_id, pedido_id, desde, hacia, actor)
    VALUES (NEW.marca_id, NEW.id, CASE WHEN TG_OP = 'UPDATE' THEN OLD.estado END,
            NEW.estado, crm.actor_actual());
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER pedidos_historial AFTER INSERT OR UPDATE OF estado ON crm.pedidos
  FOR EACH ROW EXECUTE FUNCTION crm.pedidos_historial();

-- Items change only while the order is pending; a new item takes the product's current
-- price unless one is given, and the product must be active.
CREATE FUNCTION crm.pedido_items_reglas() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  estado_pedido text;
  precio_actual bigint;
  esta_activo boolean;
  fila crm.pedido_items := CASE WHEN TG_OP = 'DELETE' THEN OLD ELSE NEW END;
BEGIN
  SELECT estado INTO estado_pedido FROM crm.pedidos
   WHERE marca_id = fila.marca_id AND id = fila.pedido_id;
  IF estado_pedido IS NOT NULL AND estado_pedido <> 'pendiente' THEN
    RAISE EXCEPTION 'Los ítems de un pedido % no se pueden modificar; solo los de un pedido pendiente', estado_pedido
      USING ERRCODE = 'CRM03', COLUMN = 'items';
  END IF;
  IF TG_OP = 'DELETE' THEN
    RETURN OLD;
  END IF;
  IF TG_OP = 'INSERT' OR NEW.producto_id IS DISTINCT FROM OLD.producto_id THEN
    SELECT precio, activo INTO precio_actual, esta_activo FROM crm.productos
     WHERE marca_id = NEW.marca_id AND id = NEW.producto_id;
    IF esta_activo IS false THEN
      RAISE EXCEPTION 'El producto % no está activo', NEW.producto_id
        USING ERRCODE = 'CRM04', COLUMN = 'producto_id';
    END IF;
    NEW.precio_unitario := coalesce(NEW.precio_unitario, precio_actual);
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER pedido_items_reglas BEFORE INSERT OR UPDATE OR DELETE ON crm.pedido_items
  FOR EACH ROW EXECUTE FUNCTION crm.pedido_items_reglas();

-- After items change, touch their orders once per statement so pedidos_reglas recomputes total.
-- Items added to an order this transaction wrote itself, whose total already is their
-- sum (an order declared with its total, with its items), leave it alone: nobody else can
-- see that version of the order, or change it before this transaction ends. Any other
-- order is recomputed under its row lock, unconditionally: a comparison made before
-- waiting for the lock could miss items another transaction committed meanwhile.
CREATE FUNCTION crm.pedido_items_total() RETURNS trigger
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
CREATE TRIGGER pedido_items_total_ins AFTER INSERT ON crm.pedido_items
  REFERENCING NEW TABLE AS nuevos FOR EACH STATEMENT EXECUTE FUNCTION crm.pedido_items_total();
CREATE TRIGGER pedido_items_total_upd AFTER UPDATE ON crm.pedido_items
  REFERENCING NEW TABLE AS nuevos OLD TABLE AS viejos FOR EACH STATEMENT EXECUTE FUNCTION crm.pedido_items_total();
CREATE TRIGGER pedido_items_total_del AFTER DELETE ON crm.pedido_items
  REFERENCING OLD TABLE AS viejos FOR EACH STATEMENT EXECUTE FUNCTION crm.pedido_items_total();

-- ---------------------------------------------------------------- interactions
CREATE TABLE crm.interacciones (
  marca_id             bigint NOT NULL DEFAULT crm.marca_actual(),
  id                   bigint GENERATED ALWAYS AS IDENTITY,
  cliente_id           bigint NOT NULL,
  canal                text NOT NULL CHECK (canal IN ('whatsapp', 'web', 'telefono', 'presencial', 'email', 'sms')),
  direccion            text NOT NULL CHECK (direccion IN ('entrante', 'saliente')),
  tipo                 text NOT NULL CHECK (tipo IN ('mensaje', 'llamada', 'nota', 'encuesta')),
  contenido            text NOT NULL DEFAULT '' CHECK (length(contenido) <= 10000),
  id_externo           text,
  puntaje_satisfaccion smallint CHECK (puntaje_satisfaccion BETWEEN 1 AND 5),
  created_at           timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (marca_id, id),
  FOREIGN KEY (marca_id, cliente_id) REFERENCES crm.clientes (marca_id, id),
  CONSTRAINT interacciones_id_externo_unico UNIQUE (marca_id, canal, id_externo)
);
CREATE INDEX interacciones_cliente ON crm.interacciones (marca_id, cliente_id, created_at);
CREATE INDEX interacciones_creacion ON crm.interacciones (marca_id, created_at);
-- Satisfaction averages read only scored rows: 20 ms → 2 ms on a 30-day dashboard (demo ×10).
CREATE INDEX interacciones_encuestas ON crm.interacciones (marca_id, created_at)
  INCLUDE (puntaje_satisfaccion) WHERE puntaje_satisfaccion IS NOT NULL;

-- ---------------------------------------------------------------- isolation, audit, grants
-- crm.tablas_tenant() is the list every test and tool iterates: keep it the one source.
CREATE FUNCTION crm.tablas_tenant() RETURNS SETOF regclass
LANGUAGE sql STABLE AS $$
  SELECT c.oid::regclass FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'marca_id' AND a.attnum = 1
   WHERE n.nspname = 'crm' AND c.relkind = 'r'
   ORDER BY c.relname
$$;

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
CREATE FUNCTION crm.aislar(t regclass) RETURNS void
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

SELECT crm.aislar(t) FROM crm.tablas_tenant() AS t;

CREATE TRIGGER updated_at BEFORE UPDATE ON crm.clientes FOR EACH ROW EXECUTE FUNCTION crm.tocar_updated_at();
CREATE TRIGGER updated_at BEFORE UPDATE ON crm.productos FOR EACH ROW EXECUTE FUNCTION crm.tocar_updated_at();

GRANT USAGE ON SCHEMA crm, reporting TO crm_api, crm_marca, crm_ejecutivo;
GRANT SELECT ON crm.marcas, crm.migraciones TO crm_api, crm_marca, crm_ejecutivo;
GRANT SELECT, INSERT, UPDATE ON crm.claves_api TO crm_api;
GRANT SELECT, INSERT, UPDATE, DELETE ON crm.clientes, crm.productos, crm.pedidos,
  crm.pedido_items, crm.interacciones TO crm_api, crm_marca;
GRANT SELECT ON crm.pedido_estados, crm.auditoria TO crm_api, crm_marca;
-- Executives: what the reporting views need, without customers' contact data.
GRANT SELECT ON crm.productos, crm.pedidos, crm.pedido_items, crm.pedido_estados,
  crm.interacciones TO crm_ejecutivo;
GRANT SELECT (marca_id, id, ciudad, region, canal_origen, segmento, opt_out_marketing,
  fecha_nacimiento, created_at, deleted_at) ON crm.clientes TO crm_ejecutivo;

-- ---------------------------------------------------------------- reporting
-- security_invoker: each view runs under the reader's own row-level security, so one
-- set of views serves a brand role (its brand) and the executive role (all brands).
CREATE VIEW reporting.marcas WITH (security_invoker = true) AS
  SELECT id AS marca_id, slug, nombre, zona_horaria, moneda, created_at FROM crm.marcas;

CREATE VIEW reporting.clientes WITH (security_invoker = true) AS
  SELECT c.marca_id, m.slug AS marca, c.id AS cliente_id, c.ciudad, c.region, c.canal_origen,
         c.segmento, c.opt_out_marketing, c.created_at,
         (c.created_at AT TIME ZONE m.zona_horaria)::date AS fecha_alta
    FROM crm.clientes c JOIN crm.marcas m ON m.id = c.marca_id
   WHERE c.deleted_at IS NULL;

CREATE VIEW reporting.pedidos WITH (security_invoker = true) AS
  SELECT p.marca_id, m.slug AS marca, p.id AS pedido_id, p.cliente_id, p.canal, p.estado,
         p.total, p.created_at, (p.created_at AT TIME ZONE m.zona_horaria) AS hora_local,
         (p.created_at AT TIME ZONE m.zona_horaria)::date AS fecha
    FROM crm.pedidos p JOIN crm.marcas m ON m.id = p.marca_id;

CREATE VIEW reporting.pedido_items WITH (security_invoker = true) AS
  SELECT i.marca_id, m.slug AS marca, i.pedido_id, i.producto_id, pr.nombre AS producto,
         pr.categoria, i.cantidad, i.precio_unitario, i.subtotal, p.estado, p.canal,
         (p.created_at AT TIME ZONE m.zona_horaria)::date AS fecha
    FROM crm.pedido_items i
    JOIN crm.pedidos p ON p.marca_id = i.marca_id AND p.id = i.pedido_id
    JOIN crm.productos pr ON pr.marca_id = i.marca_id AND pr.id = i.producto_id
    JOIN crm.marcas m ON m.id = i.marca_id;

CREATE VIEW reporting.pedido_estados WITH (security_invoker = true) AS
  SELECT e.marca_id, m.slug AS marca, e.pedido_id, e.desde, e.hacia, e.created_at
    FROM crm.pedido_estados e JOIN crm.marcas m ON m.id = e.marca_id;

CREATE VIEW reporting.interacciones WITH (security_invoker = true) AS
  SELECT i.marca_id, m.slug AS marca, i.id AS interaccion_id, i.cliente_id, i.canal,
         i.direccion, i.tipo, i.puntaje_satisfaccion, i.created_at,
         (i.created_at AT TIME ZONE m.zona_horaria)::date AS fecha
    FROM crm.interacciones i JOIN crm.marcas m ON m.id = i.marca_id;

GRANT SELECT ON ALL TABLES IN SCHEMA reporting TO crm_ejecutivo, crm_marca, crm_api;

-- ---------------------------------------------------------------- whatsapp
-- A brand's WhatsApp number and its provider: Meta (identificador = phone_number_id)
-- or Twilio (identificador = our number, E.164). The webhook finds the brand through
-- crm.canal_de() before any brand is bound; no two brands may share an identifier.
CREATE TABLE crm.canales (
  marca_id      bigint NOT NULL DEFAULT crm.marca_actual() REFERENCES crm.marcas (id),
  id            bigint GENERATED ALWAYS AS IDENTITY,
  proveedor     text NOT NULL CHECK (proveedor IN ('meta', 'twilio')),
  identificador text NOT NULL CHECK (length(identificador) BETWEEN 3 AND 64),
  numero        text CHECK (numero ~ '^\+[1-9][0-9]{6,14}$'),  -- the number customers write to
  activo        boolean NOT NULL DEFAULT true,
  created_at    timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (marca_id, id),
  CONSTRAINT canales_identificador_unico UNIQUE (marca_id, proveedor, identificador)
);

-- The brand and channel of a provider's identifier (webhooks arrive before any brand is
-- known). Definer: reads every brand's channels, returns only the match.
CREATE FUNCTION crm.canal_de(p_proveedor text, p_identificador text)
RETURNS TABLE (marca_id bigint, canal_id bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, crm AS $$
  SELECT marca_id, id FROM crm.canales
   WHERE proveedor = p_proveedor AND identificador = p_identificador AND activo
$$;
REVOKE EXECUTE ON FUNCTION crm.canal_de(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION crm.canal_de(text, text) TO crm_api;

-- One number belongs to one brand, across brands (a unique index cannot say it without
-- marca_id, which every unique index of a tenant table carries for Citus).
CREATE FUNCTION crm.canales_unicos() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, crm AS $$
BEGIN
  PERFORM pg_advisory_xact_lock(hashtextextended(NEW.proveedor || ':' || NEW.identificador, 0));
  IF EXISTS (SELECT 1 FROM crm.canales WHERE proveedor = NEW.proveedor
               AND identificador = NEW.identificador AND (marca_id, id) <> (NEW.marca_id, NEW.id)) THEN
    RAISE EXCEPTION 'El número % de % ya está registrado', NEW.identificador, NEW.proveedor
      USING ERRCODE = 'unique_violation', CONSTRAINT = 'canales_identificador_unico';
  END IF;
  RETURN NEW;
END
$$;
CREATE TRIGGER canales_unicos BEFORE INSERT OR UPDATE OF proveedor, identificador ON crm.canales
  FOR EACH ROW EXECUTE FUNCTION crm.canales_unicos();

-- Where a conversation stands: an order item waiting for the customer to pick one of
-- several products (pendiente = {"lineas": [...], "ambiguo": {...}}).
CREATE TABLE crm.conversaciones (
  marca_id   bigint NOT NULL DEFAULT crm.marca_actual(),
  id         bigint GENERATED ALWAYS AS IDENTITY,
  cliente_id bigint NOT NULL,
  pendiente  jsonb,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (marca_id, id),
  FOREIGN KEY (marca_id, cliente_id) REFERENCES crm.clientes (marca_id, id),
  CONSTRAINT conversaciones_cliente_unico UNIQUE (marca_id, cliente_id)
);

-- Messages the bot could not handle: a person answers them.
CREATE TABLE crm.alertas (
  marca_id       bigint NOT NULL DEFAULT crm.marca_actual(),
  id             bigint GENERATED ALWAYS AS IDENTITY,
  cliente_id     bigint NOT NULL,
  interaccion_id bigint,
  motivo         text NOT NULL,
  estado         text NOT NULL DEFAULT 'abierta' CHECK (estado IN ('abierta', 'asignada', 'cerrada')),
  asignada_a     text,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now(),
  cerrada_en     timestamptz,
  PRIMARY KEY (marca_id, id),
  FOREIGN KEY (marca_id, cliente_id) REFERENCES crm.clientes (marca_id, id),
  FOREIGN KEY (marca_id, interaccion_id) REFERENCES crm.interacciones (marca_id, id)
);
CREATE INDEX alertas_abiertas ON crm.alertas (marca_id, created_at) WHERE estado <> 'cerrada';
CREATE INDEX alertas_cliente ON crm.alertas (marca_id, cliente_id);

-- Approved message templates: the only messages allowed outside the 24-hour window.
CREATE TABLE crm.plantillas (
  marca_id   bigint NOT NULL DEFAULT crm.marca_actual() REFERENCES crm.marcas (id),
  id         bigint GENERATED ALWAYS AS IDENTITY,
  nombre     text NOT NULL CHECK (nombre ~ '^[a-z0-9_]{1,255}$'),
  idioma     text NOT NULL DEFAULT 'es',
  categoria  text NOT NULL DEFAULT 'utilidad' CHECK (categoria IN ('utilidad', 'marketing', 'autenticacion')),
  cuerpo     text NOT NULL,
  aprobada   boolean NOT NULL DEFAULT false,
  created_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (marca_id, id),
  CONSTRAINT plantillas_nombre_unico UNIQUE (marca_id, nombre, idioma)
);

-- The outbox: every reply is a row, sent by `crm worker`. Status only moves forward.
CREATE TABLE crm.salientes (
  marca_id        bigint NOT NULL DEFAULT crm.marca_actual(),
  id              bigint GENERATED ALWAYS AS IDENTITY,
  cliente_id      bigint NOT NULL,
  canal_id        bigint NOT NULL,
  telefono        text NOT NULL CHECK (telefono ~ '^\+[1-9][0-9]{6,14}$'),
  respuesta       jsonb NOT NULL,  -- whatsapp.salida.Respuesta
  estado          text NOT NULL DEFAULT 'en_cola'
                  CHECK (estado IN ('en_cola', 'enviado', 'entregado', 'leido', 'fallido')),
  intentos        integer NOT NULL DEFAULT 0 CHECK (intentos >= 0),
  proximo_intento timestamptz NOT NULL DEFAULT now(),
  proveedor       text,  -- meta | twilio | grabador: who sent it
  id_externo      text,  -- the provider's message id, once sent
  error           text,
  en_respuesta_a  bigint,  -- the inbound interaction it answers
  created_at      timestamptz NOT NULL DEFAULT now(),
  enviado_en      timestamptz,
  updated_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (marca_id, id),
  FOREIGN KEY (marca_id, cliente_id) REFERENCES crm.clientes (marca_id, id),
  FOREIGN KEY (marca_id, canal_id) REFERENCES crm.canales (marca_id, id),
  FOREIGN KEY (marca_id, en_respuesta_a) REFERENCES crm.interacciones (marca_id, id)
);
CREATE INDEX salientes_id_externo ON crm.salientes (marca_id, id_externo);
CREATE INDEX salientes_creacion ON crm.salientes (marca_id, created_at);
-- per customer: NocoDB counts a customer's messages and alerts on every grid row
CREATE INDEX salientes_cliente ON crm.salientes (marca_id, cliente_id);

-- Delivery statuses arrive late and out of order: a late `sent` never overwrites `read`,
-- and `failed` is final (it keeps its error).
CREATE FUNCTION crm.rango_estado_saliente(estado text) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE estado WHEN 'en_cola' THEN 0 WHEN 'enviado' THEN 1 WHEN 'entregado' THEN 2
                     WHEN 'leido' THEN 3 WHEN 'fallido' THEN 4 END
$$;

CREATE FUNCTION crm.salientes_avance() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF crm.rango_estado_saliente(NEW.estado) < crm.rango_estado_saliente(OLD.estado)
     OR (OLD.estado = 'fallido' AND NEW.estado <> 'fallido') THEN
    NEW.estado := OLD.estado;
    NEW.error := OLD.error;
  END IF;
  NEW.updated_at := now();
  RETURN NEW;
END
$$;
CREATE TRIGGER salientes_avance BEFORE UPDATE ON crm.salientes
  FOR EACH ROW EXECUTE FUNCTION crm.salientes_avance();

CREATE TRIGGER updated_at BEFORE UPDATE ON crm.conversaciones FOR EACH ROW EXECUTE FUNCTION crm.tocar_updated_at();
CREATE TRIGGER updated_at BEFORE UPDATE ON crm.alertas FOR EACH ROW EXECUTE FUNCTION crm.tocar_updated_at();

SELECT crm.aislar(t) FROM unnest(ARRAY['crm.canales', 'crm.conversaciones', 'crm.alertas',
                                       'crm.plantillas', 'crm.salientes']::regclass[]) AS t;

GRANT SELECT, INSERT, UPDATE ON crm.canales, crm.conversaciones, crm.alertas, crm.plantillas,
  crm.salientes TO crm_api;
GRANT DELETE ON crm.conversaciones TO crm_api;
-- Staff in NocoDB: answer alerts, manage templates, read channels and the outbox.
GRANT SELECT, UPDATE ON crm.alertas TO crm_marca;
GRANT SELECT, INSERT, UPDATE, DELETE ON crm.plantillas TO crm_marca;
GRANT SELECT ON crm.canales, crm.salientes, crm.conversaciones TO crm_marca;
GRANT SELECT ON crm.salientes, crm.alertas TO crm_ejecutivo;

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

-- ---------------------------------------------------------------- ingesta 0004
-- The worker's claim (api/services/salientes.py, _RECLAMAR) walks the queue in the order
-- it sends it and checks that no earlier reply to the same customer is still queued. Both
-- lookups are partial indexes over the queued rows alone: the claim walked the sent ones
-- too, and at 100,000 rows it took a whole core.
CREATE INDEX salientes_por_enviar ON crm.salientes (marca_id, proximo_intento, id) WHERE estado = 'en_cola';
CREATE INDEX salientes_cola_cliente ON crm.salientes (marca_id, cliente_id, id) WHERE estado = 'en_cola';

INSERT INTO crm.migraciones (version, nombre) VALUES (1, 'nucleo');
INSERT INTO crm.migraciones (version, nombre) VALUES (2, 'whatsapp');
INSERT INTO crm.migraciones (version, nombre) VALUES (3, 'reporting');
INSERT INTO crm.migraciones (version, nombre) VALUES (4, 'ingesta');
INSERT INTO crm.migraciones (version, nombre) VALUES (5, 'claves_marca');
INSERT INTO crm.migraciones (version, nombre) VALUES (6, 'chequeos_por_sentencia');
INSERT INTO crm.migraciones (version, nombre) VALUES (7, 'auditoria_sin_copias');
INSERT INTO crm.migraciones (version, nombre) VALUES (8, 'total_declarado');

RESET ROLE;
