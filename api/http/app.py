"""The FastAPI application: one front door for cameras, operators and engineers.

``create_app(settings)`` builds the app; the lifespan opens the ``ServiceContext`` (database, writer, model
loading in the background) and closes it in order, flushing every pending write.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from api.composition import ServiceContext
from api.config import ServiceSettings, load_service_settings
from api.http.docs import install_offline_docs
from api.http.errors import install_error_handlers
from api.http.middleware import BodyLimitAndMetrics
from api.http.routes import analytics, certificates, engineering, frames, health, keys, line, orders, reviews, web
from api.http.security import Gatekeeper
from api.services.metrics import ServiceMetrics

log = logging.getLogger(__name__)

WEB_DIR = Path(__file__).resolve().parent / "web"


def create_app(settings: ServiceSettings | None = None, *, context: ServiceContext | None = None) -> FastAPI:
    """The service app. ``context`` may be given ready-made (tests); otherwise it is opened from ``settings``
    (default: ``QC_*`` variables) when the app starts and closed when it stops."""
    settings = settings or (context.settings if context else load_service_settings())
    metrics = context.metrics if context else ServiceMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = context or ServiceContext.open(settings, metrics=metrics)
        ctx.metrics = metrics
        app.state.context = ctx
        ctx.start()
        try:
            yield
        finally:
            ctx.close()

    app = FastAPI(
        title="qcline", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
        description="AI vision quality control for build-to-order lines. Every call but the probes needs "
        "`Authorization: Bearer <API key>` (`qcline keys create --role camera|operator|engineer|admin`).")
    install_error_handlers(app)
    app.add_middleware(Gatekeeper, settings=settings)  # inside the metrics: refusals are counted too
    app.add_middleware(BodyLimitAndMetrics, max_bytes=settings.max_upload_bytes, metrics=metrics)
    for router in (health.router, frames.router, orders.router, reviews.router, engineering.router, keys.router,
                   web.router, certificates.router, analytics.router, line.router, line.page_router):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    install_offline_docs(app)
    return app
