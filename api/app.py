"""The Litestar application: routes, dependencies, errors, OpenAPI at /docs."""

from __future__ import annotations

import gc
import logging
from contextlib import asynccontextmanager

from litestar import Litestar, Request, get
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin, SwaggerRenderPlugin
from litestar.openapi.spec import Components, SecurityScheme
from litestar.response import Response
from sqlalchemy import text

from .config import Settings
from .config import settings as env_settings
from .db import Conn, Database
from .errors import HANDLERS, problem_response
from .routes import canales, clientes, interacciones, marcas, metricas, pedidos, productos, webhooks
from .services.whatsapp_calentar import calentar
from .services.whatsapp_flujo import Catalogos
from .services.whatsapp_lotes import Lotes
from .structs import reject_nul
from .tenancy import Contexto, Tenancy, provide_ctx, provide_db

ROUTE_MODULES = [marcas, clientes, productos, pedidos, interacciones, metricas, canales, webhooks]


@get("/api/health", summary="Estado de la API y de la base de datos", tags=["sistema"])
async def health(request: Request) -> Response:
    try:
        async with request.app.state.tenancy.database.connection() as conn:
            await conn.execute(text("SELECT 1"))
    except Exception as e:  # any failure to reach PostgreSQL
        logging.getLogger("crm.api").warning("health: database unreachable: %s", e)
        return problem_response(503, "La base de datos no responde")
    return Response({"estado": "ok", "base_de_datos": "ok"})


def create_app(s: Settings | None = None) -> Litestar:
    s = s or env_settings()
    database = Database(s)

    @asynccontextmanager
    async def lifespan(app: Litestar):
        await database.open()
        if s.calentar:
            await calentar(database, app.state.catalogos, s.db_pool_size)
        # Everything loaded so far (modules, routes, the pool) lives as long as the process:
        # out of the collector's sight, a full collection scans only what requests create
        # (it scanned it all, 50-100 ms every few seconds under load).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            await database.close()

    app = Litestar(
        route_handlers=[health] + [r for m in ROUTE_MODULES for r in m.ROUTES],
        dependencies={"ctx": Provide(provide_ctx), "db": Provide(provide_db)},
        exception_handlers=HANDLERS,
        before_request=reject_nul,
        lifespan=[lifespan],
        request_max_body_size=s.max_body_bytes,
        signature_namespace={"Conn": Conn, "Contexto": Contexto},
        openapi_config=OpenAPIConfig(
            title="CRM multimarca", version="1.0.0", path="/docs",
            description="API del CRM: cada clave de API actúa sobre su marca; las claves del "
                        "grupo indican la marca con X-Tenant. Errores en application/problem+json.",
            render_plugins=[SwaggerRenderPlugin(path="/"), JsonRenderPlugin(path="/openapi.json")],
            components=Components(security_schemes={
                "ApiKey": SecurityScheme(type="apiKey", name="X-API-Key", security_scheme_in="header")}),
            security=[{"ApiKey": []}],
        ),
    )
    app.state.settings = s
    app.state.tenancy = Tenancy(database, s.rate_limit_per_minute)
    app.state.catalogos = Catalogos()  # each brand's order parser, for the WhatsApp webhook
    app.state.lotes = Lotes(database, app.state.catalogos)  # inbound WhatsApp messages, batched under load
    app.state.canales = webhooks.Canales()  # provider number → brand, for the webhooks
    return app
