"""Database roles and their connection URLs.

Role passwords are derived from CRM_SECRET_KEY (HMAC-SHA256 of the role name), so no
password is stored anywhere and `crm db url --brand SLUG` can rebuild one at any time.
Rotating CRM_SECRET_KEY means running `crm db init` again (it resets every password).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from urllib.parse import quote, urlsplit, urlunsplit

from .config import Settings

OWNER = "crm_owner"
API = "crm_api"
EXECUTIVE = "crm_ejecutivo"
SUPERUSER = "postgres"  # the embedded server's superuser


def brand_role(slug: str) -> str:
    """Login role of one brand; must match crm.crear_marca() in db/schema.sql."""
    return "crm_marca_" + slug.replace("-", "_")


def password_for(role: str, s: Settings) -> str:
    digest = hmac.new(s.secret_key.encode(), f"role:{role}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def admin_url(s: Settings) -> str:
    """URL with rights to create databases, roles and extensions (install time only)."""
    if s.database_url:
        return _with_scheme(s.database_url)
    return (f"postgresql://{SUPERUSER}:{quote(s.pg_superuser_password, safe='')}"
            f"@127.0.0.1:{s.pg_port}/{s.db_name}")


def role_url(role: str, s: Settings, database: str | None = None) -> str:
    """Same server and database as the admin URL, logged in as `role`."""
    parts = urlsplit(admin_url(s))
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{quote(role, safe='')}:{quote(password_for(role, s), safe='')}@{host}"
    if parts.port:
        netloc += f":{parts.port}"
    path = "/" + (database or parts.path.lstrip("/") or s.db_name)
    return urlunsplit((parts.scheme, netloc, path, parts.query, ""))


def database_name(s: Settings) -> str:
    return urlsplit(admin_url(s)).path.lstrip("/") or s.db_name


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, ""))


def sqlalchemy_url(url: str, driver: str = "psycopg") -> str:
    return url.replace("postgresql://", f"postgresql+{driver}://", 1)


def _with_scheme(url: str) -> str:
    for prefix in ("postgres://", "postgresql+psycopg://"):
        if url.startswith(prefix):
            return "postgresql://" + url[len(prefix):]
    return url
