-- Migration 0002: the WhatsApp channel (channels per brand, conversations, alerts for a
-- person, reply templates, the outbox of replies). Kept identical to the WhatsApp section
-- of db/schema.sql.
SET ROLE crm_owner;
SET search_path = crm, public;

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
  marca_id   bigint NOT NULL DEFAULT crm.marca_actual() REFERENCES crm.marcas (id),
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
  marca_id       bigint NOT NULL DEFAULT crm.marca_actual() REFERENCES crm.marcas (id),
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
  marca_id        bigint NOT NULL DEFAULT crm.marca_actual() REFERENCES crm.marcas (id),
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
CREATE INDEX salientes_por_enviar ON crm.salientes (marca_id, proximo_intento) WHERE estado = 'en_cola';
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

RESET ROLE;
