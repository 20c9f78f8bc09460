"""The facade's Prometheus metrics (names are a contract with the dashboard) and the middleware
that counts every request by route template, so that a path parameter never becomes a label."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime.metrics import ModelMetrics

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
UNMATCHED = "unmatched"


class FacadeMetrics(ModelMetrics):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.requests = Counter(
            "battery_ct_http_requests_total", "HTTP requests by route and status", ["path", "status"], registry=registry
        )
        self.duration = Histogram(
            "battery_ct_http_request_duration_seconds",
            "HTTP request duration by route",
            ["path"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )


class MetricsMiddleware:
    """Pure ASGI middleware (no response buffering): status and duration per route template."""

    def __init__(self, app: ASGIApp, metrics: FacadeMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or UNMATCHED
            self.metrics.requests.labels(path=path, status=str(status)).inc()
            self.metrics.duration.labels(path=path).observe(time.perf_counter() - started)
