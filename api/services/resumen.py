"""The report summaries (schema resumen) that the dashboards read: recomputed by
`resumen.refrescar()` in the database, called by the worker every CRM_REFRESCO_RESUMEN
seconds and by `crm reportes refrescar`."""

from __future__ import annotations

from sqlalchemy import text

REFRESCAR = text("SELECT resumen.refrescar() AS detalle")


async def refrescar(database) -> list[str]:
    """Recompute every summary (one transaction; concurrent calls wait for each other)."""
    async with database.transaction(None, "worker") as db:
        return [r.detalle for r in await db.execute(REFRESCAR)]
