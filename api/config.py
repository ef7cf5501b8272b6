"""Configuration from environment variables only, with working local defaults.

`.env` in the project root is read first (values already in the environment win);
`.env.example` lists every variable this module reads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from dotenv import load_dotenv

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Settings:
    database_url: str | None  # admin URL of an external server; None = embedded PostgreSQL
    db_name: str
    secret_key: str
    data_dir: Path
    pg_port: int
    pg_superuser_password: str
    api_host: str
    api_port: int
    api_workers: int
    db_pool_size: int
    calentar: bool  # warm the pool's connections at start-up (api/services/whatsapp_calentar.py)
    rate_limit_per_minute: int
    max_body_bytes: int
    backup_dir: Path
    backup_keep: int
    log_level: str
    # WhatsApp (group-wide secrets; each brand's number is a row of crm.canales)
    whatsapp_app_secret: str  # Meta app secret: X-Hub-Signature-256
    whatsapp_verify_token: str  # Meta webhook verification handshake
    whatsapp_access_token: str  # Meta Graph API token for sending; empty = record, don't send
    whatsapp_graph_url: str
    twilio_account_sid: str  # empty = record, don't send
    twilio_auth_token: str  # also validates Twilio's webhook signatures
    twilio_api_url: str
    public_base_url: str  # the URL Twilio calls (behind a proxy, the public one), for signatures
    worker_interval: float  # seconds between outbox polls when idle
    refresco_resumen: float  # seconds between refreshes of the report summaries (resumen.*)
    # NocoDB (brand staff's grids; nocodb/README.md)
    nocodb_enabled: bool  # setup.sh installs and runs it (needs npm); False = never
    nocodb_port: int  # 127.0.0.1:port when setup.sh runs it
    nocodb_url: str  # where provisioning reaches it; empty = http://127.0.0.1:nocodb_port
    nocodb_meta_db: str  # its metadata database, on the same PostgreSQL server
    nocodb_meta_password: str  # of role crm_nocodb_meta (owns that database); empty = derived
    nc_admin_email: str  # super admin (sees every brand's base)
    nc_admin_password: str  # empty = derived from secret_key
    nc_auth_jwt_secret: str  # empty = derived from secret_key

    @property
    def embedded(self) -> bool:
        return not self.database_url


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise SystemExit(f"{name} must be an integer, got {raw!r}") from None


@lru_cache(maxsize=1)
def settings() -> Settings:
    load_dotenv(ROOT / ".env", override=False)
    data_dir = Path(os.environ.get("CRM_DATA_DIR") or ROOT / ".data").resolve()
    secret = os.environ.get("CRM_SECRET_KEY", "")
    if not secret:
        # Local default only: setup.sh writes a random one into .env on first run.
        secret = "dev-insecure-secret-change-me"
    return Settings(
        database_url=os.environ.get("DATABASE_URL") or None,
        db_name=os.environ.get("CRM_DB_NAME") or "crm",
        secret_key=secret,
        data_dir=data_dir,
        pg_port=_int("CRM_PG_PORT", 5433),
        pg_superuser_password=os.environ.get("CRM_PG_SUPERUSER_PASSWORD") or secret,
        api_host=os.environ.get("CRM_API_HOST") or "127.0.0.1",
        api_port=_int("CRM_API_PORT", 8000),
        api_workers=_int("CRM_API_WORKERS", 1),
        db_pool_size=_int("CRM_DB_POOL_SIZE", 10),
        calentar=(os.environ.get("CRM_CALENTAR") or "1").strip().lower() not in ("0", "false", "no"),
        rate_limit_per_minute=_int("CRM_RATE_LIMIT_PER_MINUTE", 600),
        max_body_bytes=_int("CRM_MAX_BODY_BYTES", 1_048_576),
        backup_dir=Path(os.environ.get("CRM_BACKUP_DIR") or data_dir / "backups").resolve(),
        backup_keep=_int("CRM_BACKUP_KEEP", 7),
        log_level=os.environ.get("CRM_LOG_LEVEL") or "info",
        whatsapp_app_secret=os.environ.get("WHATSAPP_APP_SECRET", ""),
        whatsapp_verify_token=os.environ.get("WHATSAPP_VERIFY_TOKEN", ""),
        whatsapp_access_token=os.environ.get("WHATSAPP_ACCESS_TOKEN", ""),
        whatsapp_graph_url=os.environ.get("WHATSAPP_GRAPH_URL") or "https://graph.facebook.com",
        twilio_account_sid=os.environ.get("TWILIO_ACCOUNT_SID", ""),
        twilio_auth_token=os.environ.get("TWILIO_AUTH_TOKEN", ""),
        twilio_api_url=os.environ.get("TWILIO_API_URL") or "https://api.twilio.com",
        public_base_url=(os.environ.get("CRM_PUBLIC_BASE_URL") or "").rstrip("/"),
        worker_interval=float(os.environ.get("CRM_WORKER_INTERVAL") or 0.5),
        refresco_resumen=float(os.environ.get("CRM_REFRESCO_RESUMEN") or 900),
        nocodb_enabled=(os.environ.get("CRM_NOCODB") or "1").strip().lower() not in ("0", "false", "no"),
        nocodb_port=_int("NOCODB_PORT", 8080),
        nocodb_url=(os.environ.get("NOCODB_URL") or "").rstrip("/"),
        nocodb_meta_db=os.environ.get("NOCODB_META_DB") or "nocodb",
        nocodb_meta_password=os.environ.get("NOCODB_META_PASSWORD", ""),
        nc_admin_email=(os.environ.get("NC_ADMIN_EMAIL") or "admin@crm.local").strip().lower(),
        nc_admin_password=os.environ.get("NC_ADMIN_PASSWORD", ""),
        nc_auth_jwt_secret=os.environ.get("NC_AUTH_JWT_SECRET", ""),
    )
