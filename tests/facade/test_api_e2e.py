"""The facade end to end: real uvicorn on a free port, the real Kafka broker and S3 endpoint of
the session fixtures, and a small trained model (64 px) published in the registry.

Covers every endpoint, the corpus of hostile inputs (each with its expected status and code),
and a schemathesis run against the served OpenAPI schema (no 5xx for any generated input).
"""

from __future__ import annotations

import asyncio
import io
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from facade.api.app import create_app
from runtime.kafka import make_consumer, make_producer
from schemas.accepted import AcceptedScan
from schemas.model_updates import MODEL_UPDATE_KEY, ModelUpdate
from schemas.settings import Settings
from tests.helpers import spiral_slice

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIZE = 64


def encode(image: np.ndarray, fmt: str = "PNG", bits: int = 8) -> bytes:
    if bits == 16:
        pil = Image.fromarray((image * 65535).astype(np.uint16))
    else:
        pil = Image.fromarray((image * 255).astype(np.uint8))
    buffer = io.BytesIO()
    pil.save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def checkpoints(tiny_checkpoints: dict[str, Path]) -> tuple[Path, Path]:
    """Two tiny checkpoints (different seeds, so different versions), trained once per session."""
    return tiny_checkpoints["v1"], tiny_checkpoints["v2"]


class ServerThread:
    """uvicorn serving `app` on a free port in a thread; `stop` shuts it down like SIGTERM would."""

    def __init__(self, app: Any) -> None:
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def start(self, timeout_s: float = 60.0) -> str:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:  # uvicorn offers a flag, not an event
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "uvicorn did not stop"


@dataclass
class Facade:
    url: str
    http: httpx.Client
    settings: Settings
    store: Any
    versions: list[str]
    app: Any

    def put(self, key: str, data: bytes) -> str:
        self.store.put_bytes(self.settings.bucket_scans, key, data, content_type="application/octet-stream")
        return f"s3://{self.settings.bucket_scans}/{key}"

    def wait_ready(self, timeout_s: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:  # readiness is the condition; each probe is a real request
            answer = self.http.get("/readyz")
            if answer.status_code == 200 or time.monotonic() > deadline:
                return dict(answer.json())
            time.sleep(0.1)


def start_facade(settings: Settings, store: Any, checkpoints: tuple[Path, Path]) -> Iterator[Facade]:
    from model_core.registry import Registry
    from storage.registry_store import S3BlobStore

    for bucket in (settings.bucket_scans, settings.bucket_models, settings.bucket_heatmaps):
        store.ensure_bucket(bucket)
    registry = Registry(S3BlobStore(store, settings.bucket_models))
    versions = [registry.publish(directory) for directory in checkpoints]
    registry.promote(versions[0])
    registry.promote(versions[1])
    app = create_app(settings)
    server = ServerThread(app)
    url = server.start()
    try:
        with httpx.Client(base_url=url, timeout=60) as http:
            facade = Facade(url, http, settings, store, versions, app)
            assert facade.wait_ready()["ready"], "the facade did not become ready"
            yield facade
    finally:
        server.stop()


@pytest.fixture
def facade(settings: Settings, object_store: Any, checkpoints: tuple[Path, Path]) -> Iterator[Facade]:
    fast = settings.model_copy(
        update={"api_wait_s": 2.0, "checkpoint_dir": settings.checkpoint_dir, "allow_anonymous_writes": True}
    )
    yield from start_facade(fast, object_store, checkpoints)


def test_predict_scores_with_the_current_model_and_stores_the_heatmap(facade: Facade) -> None:
    rng = np.random.default_rng(7)
    url = facade.put("line1/cell-1.png", encode(spiral_slice(rng)))
    answer = facade.http.post("/predict", json={"image_url": url})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert set(body) == {
        "reconstruction_error",
        "is_anomaly",
        "anomaly_score",
        "threshold",
        "model_version",
        "heatmap_url",
        "recipe",
        "pixel_mm",
        "measurements",
        "conforms",
        "conformance",
    }
    assert body["model_version"] == facade.versions[1]
    assert body["reconstruction_error"] >= 0 and body["anomaly_score"] >= 0
    assert body["is_anomaly"] == (body["anomaly_score"] > body["threshold"])

    with_map = facade.http.post("/predict", json={"image_url": url, "heatmap": True}).json()
    bucket, _, key = with_map["heatmap_url"].removeprefix("s3://").partition("/")
    png = facade.store.get_bytes(bucket, key, max_bytes=10_000_000)
    assert png.startswith(b"\x89PNG")
    assert with_map["anomaly_score"] == pytest.approx(body["anomaly_score"])


def test_predict_measures_the_cell_against_a_recipe_from_the_registry(facade: Facade) -> None:
    from model_core.recipe_book import RecipeBook
    from producers.simulator.render import render_slice
    from producers.simulator.sampling import random_spec
    from schemas.recipes import Recipe
    from storage.registry_store import S3BlobStore

    recipe = Recipe.model_validate({"name": "line-21700", "tolerances": {"can.outer_diameter_mm": {"max": 20.5}}})
    RecipeBook(S3BlobStore(facade.store, facade.settings.bucket_models)).add(recipe)
    spec = random_spec(np.random.default_rng(2), 256)
    image, _ = render_slice(spec)
    url = facade.put("line1/measured.png", encode(image.astype(np.float64) / 65535, bits=16))
    pixel_mm = 21.0 / 2 / spec.cell.radius
    body = facade.http.post("/predict", json={"image_url": url, "recipe": "line-21700", "pixel_mm": pixel_mm}).json()
    assert body["recipe"] == "line-21700" and body["pixel_mm"] == pytest.approx(pixel_mm)
    assert body["measurements"]["can.outer_diameter_mm"]["value"] == pytest.approx(21.0, abs=0.1)
    assert body["conforms"] is False and body["conformance"]["failed"] == ["can.outer_diameter_mm"]
    unknown = facade.http.post("/predict", json={"image_url": url, "recipe": "nope"}).json()
    assert unknown["conforms"] is None and "not in the registry" in unknown["conformance"]["reason"]


def test_the_same_scan_scores_the_same_by_path_and_s3_url(facade: Facade) -> None:
    url = facade.put("line1/same.png", encode(spiral_slice(np.random.default_rng(3))))
    by_s3 = facade.http.post("/predict", json={"image_url": url}).json()
    by_path = facade.http.post("/predict", json={"image_url": url.removeprefix("s3:/")}).json()
    assert by_s3 == by_path


def bomb_png(side: int = 10_000) -> bytes:
    """A real decompression bomb: a valid 8-bit PNG of side x side black pixels (100 M, over the 64 M limit),
    a few hundred kilobytes compressed, built row by row so the test never holds it decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    compressor = zlib.compressobj(1)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    body = b"".join(compressor.compress(row * 100) for _ in range(side // 100)) + compressor.flush()
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def test_hostile_inputs_get_their_expected_status_and_code(facade: Facade) -> None:
    rng = np.random.default_rng(11)
    good = encode(spiral_slice(rng))
    bucket = facade.settings.bucket_scans
    endpoint = facade.settings.s3_endpoint
    objects = {
        "empty.png": b"",
        "truncated.png": good[: len(good) // 2],
        "text.png": b"this is not an image, only a file named .png\n" * 20,
        "bomb.png": bomb_png(),
        "ct16.tiff": encode(spiral_slice(rng), "TIFF", bits=16),
    }
    for key, data in objects.items():
        facade.put(key, data)
    corpus: list[tuple[str, int, str | None]] = [
        ("http://169.254.169.254/latest/meta-data/", 400, None),
        ("http://127.0.0.1:22/", 400, None),
        ("http://[::1]/x.png", 400, None),
        ("http://localhost/x.png", 400, None),
        ("http://example.org/x.png", 400, None),
        ("file:///etc/passwd", 400, None),
        ("ftp://scans/x.png", 400, None),
        ("gopher://127.0.0.1/x", 400, None),
        (f"s3://{bucket}/../etc/passwd", 400, None),
        (f"/{bucket}/a/../../secret.png", 400, None),
        ("s3://not-a-configured-bucket/x.png", 400, None),
        (f"s3://{bucket}/does-not-exist.png", 404, "object_missing"),
        (f"s3://{bucket}/empty.png", 422, "image_empty"),
        (f"s3://{bucket}/truncated.png", 422, "image_truncated"),
        (f"s3://{bucket}/text.png", 422, "image_not_an_image"),
        (f"s3://{bucket}/bomb.png", 413, "image_too_large"),
        (f"s3://{bucket}/ct16.tiff", 200, None),
        (f"http://{endpoint}/{bucket}/ct16.tiff", 200, None),
    ]
    wrong = []
    for url, status, code in corpus:
        answer = facade.http.post("/predict", json={"image_url": url})
        got_code = answer.json().get("code")
        if answer.status_code != status or (code is not None and got_code != code):
            wrong.append(f"{url}: expected {status} {code or ''}, got {answer.status_code} {answer.text[:200]}")
        elif status >= 400:
            assert got_code and answer.json()["message"], url
    assert not wrong, "\n".join(wrong)


def test_retrain_publishes_the_scan_then_answers_202_and_the_job_finishes_with_its_update(facade: Facade) -> None:
    settings = facade.settings
    url = facade.put("line2/cell-9.png", encode(spiral_slice(np.random.default_rng(5))))

    async def accepted_message() -> AcceptedScan:
        consumer = make_consumer(settings, settings.topic_accepted, group_id=None, auto_offset_reset="earliest")
        await consumer.start()
        try:
            message = await asyncio.wait_for(consumer.getone(), 30)
            return AcceptedScan.from_json(message.value or b"")
        finally:
            await consumer.stop()

    answer = facade.http.post("/retrain", json={"image_url": url})
    assert answer.status_code == 202, answer.text  # no retrain consumer runs here: past api_wait_s
    job_id = answer.json()["job_id"]
    assert facade.http.get(answer.headers["location"]).json()["status"] == "pending"
    scan = asyncio.run(accepted_message())
    assert (scan.scan_id, scan.label, scan.job_id, scan.image_url) == ("line2/cell-9", "normal", job_id, url)

    async def broadcast(update: ModelUpdate) -> None:  # what the retrain consumer would send
        producer = make_producer(settings)
        await producer.start()
        try:
            await producer.send_and_wait(settings.topic_model_updates, update.to_json(), key=MODEL_UPDATE_KEY)
        finally:
            await producer.stop()

    current = facade.versions[1]
    asyncio.run(
        broadcast(
            ModelUpdate(
                status="rejected",
                version="v9999-candidate",
                current_version=current,
                threshold=0.25,
                new_validation_error=0.003,
                new_anomaly_error=0.02,
                job_ids=[job_id],
                scan_ids=[scan.scan_id],
            )
        )
    )
    deadline = time.monotonic() + 30
    while (status := facade.http.get(f"/jobs/{job_id}").json())["status"] == "pending":
        assert time.monotonic() < deadline, "the job never finished"
        time.sleep(0.05)
    assert status["status"] == "done"
    result = status["result"]
    assert (result["new_validation_error"], result["new_anomaly_error"]) == (0.003, 0.02)
    assert (result["model_version"], result["threshold"], result["status"]) == (current, 0.25, "rejected")


def test_anomaly_refuses_bad_input_before_publishing(facade: Facade) -> None:
    url = facade.put("broken.png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 10)
    answer = facade.http.post("/anomaly", json={"image_url": url})
    assert (answer.status_code, answer.json()["code"]) == (422, "image_truncated")


def until(condition: Any, timeout_s: float = 120.0) -> None:
    """Return once `condition()` holds; each probe is a real request (no event to await over HTTP)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@contextmanager
def retrain_consumer(settings: Settings) -> Iterator[None]:
    """The real retrain consumer (the registry's single writer, which carries out rollbacks) on its
    own event loop in a thread, for the duration of the block."""
    from consumers.retrain.service import RetrainService
    from tests.consumers.test_retrain_integration import TINY

    service = RetrainService(settings.model_copy(update={"metrics_port": 0}), training=(TINY, TINY))
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_until_complete, args=(service.run(),), name="retrain", daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(service.stop.set)
        thread.join(timeout=120)
        assert not thread.is_alive(), "the retrain consumer did not stop"
        loop.close()


def test_checkpoints_and_rollback_hot_swap_the_served_model(facade: Facade) -> None:
    first, second = facade.versions
    listed = facade.http.get("/checkpoints").json()
    assert {c["version"]: c["current"] for c in listed if c["version"] in (first, second)} == {
        first: False,
        second: True,
    }
    with retrain_consumer(facade.settings):
        rolled = facade.http.post(f"/checkpoints/{first}/rollback")
        assert rolled.status_code in (200, 202), rolled.text
        if rolled.status_code == 202:  # the retrain consumer was still starting: the job finishes later
            until(lambda: facade.http.get(rolled.headers["location"]).json()["status"] == "done")
    until(lambda: facade.http.get("/readyz").json()["model_version"] == first)
    url = facade.put("line1/after-rollback.png", encode(spiral_slice(np.random.default_rng(9))))
    assert facade.http.post("/predict", json={"image_url": url}).json()["model_version"] == first
    assert [c["version"] for c in facade.http.get("/checkpoints").json() if c["current"]] == [first]
    assert facade.http.post("/checkpoints/v0000-nope/rollback").status_code == 404
    assert facade.http.post("/checkpoints/..%2Fx/rollback").status_code in (404, 422)


def test_operations_endpoints(facade: Facade) -> None:
    assert facade.http.get("/healthz").json() == {"status": "ok"}
    ready = facade.http.get("/readyz").json()
    assert ready == {
        "ready": True,
        "kafka": True,
        "s3": True,
        "model_loaded": True,
        "model_version": facade.versions[1],
    }
    assert "/predict" in facade.http.get("/openapi.json").json()["paths"]
    assert facade.http.get("/docs").status_code == 200
    metrics = facade.http.get("/metrics").text
    for name in (
        "battery_ct_http_requests_total",
        "battery_ct_http_request_duration_seconds",
        f'battery_ct_model_info{{version="{facade.versions[1]}"}} 1.0',
        "battery_ct_model_threshold",
        "battery_ct_model_load_failures_total",
    ):
        assert name in metrics, name


def test_generated_requests_never_get_a_5xx(facade: Facade) -> None:
    """Every operation of the served OpenAPI schema, with valid and invalid generated input."""
    import schemathesis
    from hypothesis import HealthCheck, given
    from hypothesis import settings as hypothesis_settings
    from hypothesis.errors import Unsatisfiable
    from schemathesis.generation import GenerationMode

    schema = schemathesis.openapi.from_url(f"{facade.url}/openapi.json")
    server_errors: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @hypothesis_settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
            def call(case: Any) -> None:
                response = case.call(base_url=facade.url, timeout=60)
                if response.status_code >= 500 and response.status_code != 503:
                    server_errors.append(f"{case.method} {case.formatted_path} {case.body!r}: {response.status_code}")

            try:
                call()
            except Unsatisfiable:
                assert mode == GenerationMode.NEGATIVE, operation.label  # no input, so no invalid input
    assert not server_errors, "\n".join(server_errors[:20])
