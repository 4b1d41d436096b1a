"""The JSON API: every domain's router, mounted under ``/api/v1``."""

from __future__ import annotations

from fastapi import FastAPI


def include_routers(app: FastAPI) -> None:
    """Mount the routers of every domain that has an API."""
    from simkeep.camara.api import router as camara_router

    # First: routes are matched in order, and the CAMARA check is the hot path (tens of thousands a second).
    app.include_router(camara_router)  # /oauth2/token, /number-recycling/v0.2/*, /sim-swap/v2/* at the root
    from simkeep.auth.api import router as auth_router
    from simkeep.identity.api import router as identity_router
    from simkeep.jobs.api import router as jobs_router
    from simkeep.keepalive.api import router as keepalive_router
    from simkeep.lines.api import router as lines_router
    from simkeep.loss.api import router as loss_router
    from simkeep.replacements.api import router as replacements_router
    from simkeep.shipping.api import router as shipping_router
    from simkeep.sims.api import router as sims_router

    for router in (
        auth_router,
        identity_router,
        jobs_router,
        keepalive_router,
        lines_router,
        loss_router,
        replacements_router,
        shipping_router,
        sims_router,
    ):
        app.include_router(router, prefix="/api/v1")
    from simkeep.esim.api import router as esim_router

    app.include_router(esim_router)  # /gsma/rsp2/es2plus/handleDownloadProgressInfo, called by the SM-DP+
