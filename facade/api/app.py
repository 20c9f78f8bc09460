"""The FastAPI application: routes, error handlers, metrics middleware, and a lifespan that
builds the services (clients, model, job store) at start and stops them at shutdown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from facade.api import checkpoints, ops, predict, training
from facade.api.errors import install_error_handlers
from facade.api.limits import RequestLimits
from facade.api.metrics import FacadeMetrics, MetricsMiddleware
from facade.api.services import Services
from facade.web import routes as review_station
from runtime.metrics import service_registry
from schemas.settings import Settings

ServicesFactory = Callable[[Settings, FacadeMetrics], Services]

DESCRIPTION = """\
Finds defective EV battery cells in CT scans. `/predict` scores one scan with the model serving
now; `/retrain` and `/anomaly` add a scan known to be good or defective and answer with the model
update that includes it. Every error is `{"code", "message"}`: 4xx for bad input, 503 when a
dependency is down. Mutating endpoints need the `X-API-Key` header when an API key is configured.
"""


def create_app(
    settings: Settings,
    *,
    registry: CollectorRegistry | None = None,
    services_factory: ServicesFactory | None = None,
) -> FastAPI:
    """The facade for `settings`; `registry` receives its metrics, `services_factory` (tests)
    replaces the real clients."""
    metrics = FacadeMetrics(registry or service_registry())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if services_factory is None:
            from facade.api.services import build_services

            services = build_services(settings, metrics)
        else:
            services = services_factory(settings, metrics)
        app.state.services = services
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    app = FastAPI(title="battery-ct", description=DESCRIPTION, version="1", lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(
        RequestLimits, max_body_bytes=settings.api_max_body_bytes, max_concurrent=settings.api_max_concurrent
    )
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: refused requests are counted too
    for router in (predict.router, training.router, checkpoints.router, ops.router):
        app.include_router(router)
    review_station.install(app)
    return app
