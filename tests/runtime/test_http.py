import httpx
from prometheus_client import CollectorRegistry, Counter

from runtime.http import Health, MetricsServer


async def test_metrics_health_and_readiness() -> None:
    registry = CollectorRegistry()
    Counter("battery_ct_test_total", "test", registry=registry).inc(3)
    health = Health()
    server = MetricsServer(registry, health, host="127.0.0.1", port=0)
    await server.start()
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
            metrics = await client.get("/metrics")
            assert metrics.status_code == 200
            assert "battery_ct_test_total 3.0" in metrics.text
            assert (await client.get("/healthz")).status_code == 200
            not_ready = await client.get("/readyz")
            assert not_ready.status_code == 503
            assert "starting" in not_ready.text
            health.set_ready()
            assert (await client.get("/readyz")).status_code == 200
            assert (await client.get("/nope")).status_code == 404
            assert (await client.post("/metrics")).status_code == 405
    finally:
        await server.stop()
