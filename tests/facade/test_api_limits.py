"""What a stranger can send the facade, over a real socket to uvicorn as `battery-ct serve api` runs
it: body and header limits, a slow client, too many requests at once, writes without a key, and
settings that must refuse to start. The clients behind the app are the fakes of test_api_app."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from facade.api.app import create_app
from facade.api.metrics import FacadeMetrics
from facade.api.server import bind, uvicorn_config
from facade.api.services import Services
from runtime.safety import unsafe_settings
from schemas.settings import Settings
from storage.scans import scan_decoder
from tests.facade.test_api_app import FakeCatalog, FakeKafka, FakeStore, fake_policy, loads_version, png_bytes

SCAN = "s3://scans/line1/cell-1.png"


class GatedStore(FakeStore):
    """A store whose reads of slow.png wait for `gate` (set from the test), so requests stay in
    flight; `two_waiting` is set once two of them wait."""

    gate: threading.Event
    two_waiting: threading.Event
    waiting: int = 0

    async def aget_bytes(self, bucket: str, key: str, *, max_bytes: int) -> bytes:
        if key == "slow.png":
            self.waiting += 1
            if self.waiting == 2:
                self.two_waiting.set()
            await asyncio.to_thread(self.gate.wait, 30)
        return await super().aget_bytes(bucket, key, max_bytes=max_bytes)


@dataclass
class Running:
    url: str
    host: str
    port: int
    store: GatedStore


def serve(tmp_path: Path, **fields: Any) -> Iterator[Running]:
    settings = Settings(
        checkpoint_dir=tmp_path,
        api_max_body_bytes=4096,
        api_max_header_bytes=4096,
        api_header_timeout_s=1.0,
        api_max_concurrent=2,
        **fields,
    )
    store = GatedStore()
    store.gate, store.two_waiting = threading.Event(), threading.Event()
    store.objects[("scans", "line1/cell-1.png")] = png_bytes()
    store.objects[("scans", "slow.png")] = png_bytes()

    def factory(settings: Settings, metrics: FacadeMetrics) -> Services:
        services = Services(
            settings=settings,
            store=store,
            catalog=FakeCatalog(),
            publisher=(kafka := FakeKafka(settings)),
            feed=kafka,
            parse_url=fake_policy,
            decode=scan_decoder(max_pixels=settings.max_image_pixels),
            metrics=metrics,
        )
        services.served._loader = loads_version
        return services

    app = create_app(settings, registry=CollectorRegistry(), services_factory=factory)
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn_config(app, settings.model_copy(update={"log_level": "WARNING"})))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:  # ready when a model serves: each probe is a real request
            try:
                if httpx.get(f"{url}/readyz", timeout=2).json().get("model_loaded"):
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the facade did not load its model"
            time.sleep(0.05)
        yield Running(url, "127.0.0.1", port, store)
    finally:
        store.gate.set()
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    yield from serve(tmp_path, allow_anonymous_writes=True)


def raw_request(running: Running, data: bytes, *, read_s: float = 5.0) -> bytes:
    with socket.create_connection((running.host, running.port), timeout=read_s) as conn:
        conn.sendall(data)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
        return answer  # recv returned b"": the server closed the connection


def test_a_body_over_the_limit_is_413_whether_declared_or_streamed(running: Running) -> None:
    big = b'{"image_url": "' + b"a" * 10_000 + b'"}'
    declared = httpx.post(f"{running.url}/predict", content=big, headers={"content-type": "application/json"})
    assert declared.status_code == 413 and declared.json()["code"] == "body_too_large"

    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for start in range(0, len(big), 1000):
            yield big[start : start + 1000]

    streamed = httpx.post(f"{running.url}/predict", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and streamed.json()["code"] == "body_too_large"
    assert httpx.post(f"{running.url}/predict", json={"image_url": SCAN}).status_code == 200


def test_headers_over_the_limit_are_431_and_the_connection_is_closed(running: Running) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10_000 + b"\r\n\r\n"
    answer = raw_request(running, head)
    assert answer.startswith(b"HTTP/1.1 431"), answer[:80]


def test_a_client_that_does_not_finish_its_headers_is_disconnected(running: Running) -> None:
    stalled = [socket.create_connection((running.host, running.port), timeout=10) for _ in range(20)]
    try:
        for conn in stalled:
            conn.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")  # and never the rest
        started = time.monotonic()
        # Valid requests still answer while the stalled ones are held.
        assert httpx.post(f"{running.url}/predict", json={"image_url": SCAN}).status_code == 200
        for conn in stalled:
            assert conn.recv(1024) == b""  # closed by the server, not by our 10 s timeout
        assert time.monotonic() - started < 8
    finally:
        for conn in stalled:
            conn.close()


def test_more_requests_than_the_cap_get_503_with_retry_after_and_probes_still_answer(running: Running) -> None:
    async def scenario() -> None:
        async with httpx.AsyncClient(base_url=running.url, timeout=30) as client:
            slow = [
                asyncio.create_task(client.post("/predict", json={"image_url": "s3://scans/slow.png"})) for _ in (1, 2)
            ]
            assert await asyncio.to_thread(running.store.two_waiting.wait, 10)
            third = await client.post("/predict", json={"image_url": SCAN})
            assert third.status_code == 503
            assert third.json()["code"] == "overloaded" and third.headers["retry-after"] == "1"
            assert (await client.get("/healthz")).status_code == 200
            running.store.gate.set()
            assert [r.status_code for r in await asyncio.gather(*slow)] == [200, 200]

    asyncio.run(scenario())


def test_without_a_key_writes_and_stored_heat_maps_are_refused(tmp_path: Path) -> None:
    for running in serve(tmp_path):
        refused = httpx.post(f"{running.url}/retrain", json={"image_url": SCAN})
        assert refused.status_code == 401 and "BATTERY_CT_API_KEY" in refused.json()["message"]
        heatmap = httpx.post(f"{running.url}/predict", json={"image_url": SCAN, "heatmap": True})
        assert heatmap.status_code == 401
        assert not any(bucket == "heatmaps" for bucket, _ in running.store.objects)
        assert httpx.post(f"{running.url}/predict", json={"image_url": SCAN}).status_code == 200  # reads stay open


def test_with_a_key_a_stored_heat_map_needs_it(tmp_path: Path) -> None:
    for running in serve(tmp_path, api_key=SecretStr("s3cret")):
        body = {"image_url": SCAN, "heatmap": True}
        assert httpx.post(f"{running.url}/predict", json=body).status_code == 401
        answer = httpx.post(f"{running.url}/predict", json=body, headers={"X-API-Key": "s3cret"})
        assert answer.status_code == 200 and answer.json()["heatmap_url"]


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"api_key": SecretStr("")}, "API_KEY is set but empty"),
        ({"api_key": SecretStr("   ")}, "API_KEY is set but empty"),
        ({"api_key": SecretStr("change-me-api-key")}, "API_KEY is still the 'change-me' placeholder"),
        ({"s3_secret_key": SecretStr("change-me-battery-ct-secret")}, "S3_SECRET_KEY is still"),
        ({"kafka_password": SecretStr("change-me")}, "KAFKA_PASSWORD is still"),
    ],
)
def test_unsafe_settings_are_named(fields: dict[str, Any], says: str) -> None:
    assert any(says in problem for problem in unsafe_settings(Settings(**fields)))


def test_safe_settings_have_no_problem() -> None:
    assert unsafe_settings(Settings()) == []
    assert unsafe_settings(Settings(api_key=SecretStr("a-real-key"))) == []


@pytest.mark.parametrize("service", ["api", "inference", "retrain"])
@pytest.mark.parametrize("key", ["", "change-me-api-key"])
def test_every_service_refuses_to_start_with_an_empty_or_placeholder_key(service: str, key: str) -> None:
    env = {
        **os.environ,
        "BATTERY_CT_API_KEY": key,
        "BATTERY_CT_KAFKA_BOOTSTRAP": "127.0.0.1:1",
        "BATTERY_CT_S3_ENDPOINT": "127.0.0.1:1",
        "BATTERY_CT_METRICS_PORT": "0",
        "BATTERY_CT_API_PORT": "0",
    }
    done = subprocess.run(
        [sys.executable, "-m", "facade.cli", "serve", service], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    assert "BATTERY_CT_API_KEY" in done.stderr and "Traceback" not in done.stderr
