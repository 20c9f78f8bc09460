"""The facade's routes, errors, API key, jobs and metrics, with fakes at the boundary (object
store, registry, Kafka) and a stand-in detector; end to end with the real ones is in
test_api_e2e.py."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from facade.api.app import create_app
from facade.api.metrics import FacadeMetrics
from facade.api.services import Services
from model_core.detector import Detector, ScanScore
from schemas.accepted import AcceptedScan
from schemas.api import CheckpointInfo
from schemas.base import utc_now
from schemas.control import RollbackRequest
from schemas.model_updates import ModelUpdate
from schemas.settings import Settings
from storage.errors import ObjectMissing, StoreUnavailable
from storage.scans import scan_decoder


def png_bytes(size: int = 64) -> bytes:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass
class Ref:
    bucket: str
    key: str


def fake_policy(url: str) -> Ref:
    """A stand-in for storage.urls (tested with the real policy in the hostile-input tests)."""
    bucket, _, key = url.removeprefix("s3://").partition("/")
    if not url.startswith("s3://") or not key:
        from storage.errors import UrlNotAllowed

        raise UrlNotAllowed("only s3:// in this fake", code="url_scheme_not_allowed")
    return Ref(bucket, key)


@dataclass
class FakeStore:
    objects: dict[tuple[str, str], bytes] = field(default_factory=dict)
    down: bool = False

    async def aget_bytes(self, bucket: str, key: str, *, max_bytes: int) -> bytes:
        if self.down:
            raise StoreUnavailable("connection refused")
        if (bucket, key) not in self.objects:
            raise ObjectMissing(f"s3://{bucket}/{key} does not exist")
        return self.objects[(bucket, key)]

    async def aput_bytes(self, bucket: str, key: str, data: bytes, *, content_type: str = "") -> str:
        self.objects[(bucket, key)] = data
        return key

    def exists(self, bucket: str, key: str) -> bool:
        if self.down:
            raise StoreUnavailable("connection refused")
        return (bucket, key) in self.objects


@dataclass
class FakeDetector:
    version: str = "v1"
    threshold: float = 0.5
    image_size: int = 64

    def score_batch(self, images: np.ndarray) -> list[ScanScore]:
        assert images.shape[1:] == (64, 64)
        return [ScanScore(0.001, 0.75, True, np.zeros((64, 64), np.float32)) for _ in images]


@dataclass
class FakeCatalog:
    versions: list[str] = field(default_factory=lambda: ["v1", "v2"])
    current: str = "v2"

    def current_version(self) -> str | None:
        return self.current

    def fetch(self, version: str, dest: Path) -> Path:
        dest.mkdir(parents=True)
        (dest / "version").write_text(version)
        return dest

    def checkpoints(self) -> list[CheckpointInfo]:
        return [
            CheckpointInfo(version=v, status="promoted", current=v == self.current, threshold=0.5, created_at=utc_now())
            for v in self.versions
        ]

    def rollback(self, version: str) -> ModelUpdate:
        previous, self.current = self.current, version
        return ModelUpdate(
            status="rolled_back", version=version, parent=previous, current_version=version, threshold=0.5
        )


@dataclass
class FakeKafka:
    """Publisher and update feed in one: an accepted scan comes back as a model update naming it."""

    settings: Settings
    answer: bool = True
    sent: list[tuple[str, bytes, bytes]] = field(default_factory=list)
    catalog: FakeCatalog | None = None
    queue: asyncio.Queue[ModelUpdate] | None = None

    async def publish(self, topic: str, key: bytes, value: bytes) -> None:
        self.sent.append((topic, key, value))
        if topic == self.settings.topic_control and self.catalog is not None:  # what the retrain consumer does
            request = RollbackRequest.from_json(value)
            assert self.queue is not None
            done = self.catalog.rollback(request.version).model_copy(update={"job_ids": [request.request_id]})
            await self.queue.put(done)
        if topic == self.settings.topic_accepted and self.answer:
            scan = AcceptedScan.from_json(value)
            assert self.queue is not None
            await self.queue.put(
                ModelUpdate(
                    status="promoted",
                    version="v3",
                    current_version="v3",
                    threshold=0.4,
                    new_validation_error=0.002,
                    new_anomaly_error=None,
                    scan_ids=[scan.scan_id],
                    job_ids=[scan.job_id or ""],
                )
            )

    async def ping(self) -> bool:
        return True

    async def open(self) -> None:
        self.queue = asyncio.Queue()

    async def updates(self) -> AsyncIterator[ModelUpdate]:
        assert self.queue is not None
        while True:
            yield await self.queue.get()

    async def close(self) -> None:
        return None


@dataclass
class World:
    client: TestClient
    store: FakeStore
    kafka: FakeKafka
    catalog: FakeCatalog
    registry: CollectorRegistry


def loads_version(path: Path) -> Detector:
    return cast(Detector, FakeDetector(version=(path / "version").read_text()))


def fake_services(
    store: FakeStore, catalog: FakeCatalog, kafka: FakeKafka, **extra: Any
) -> Callable[[Settings, FacadeMetrics], Services]:
    """The app's services on the fakes (`extra`: further Services fields, e.g. a relay factory)."""

    def factory(settings: Settings, metrics: FacadeMetrics) -> Services:
        services = Services(
            settings=settings,
            store=store,
            catalog=catalog,
            publisher=kafka,
            feed=kafka,
            parse_url=fake_policy,
            decode=scan_decoder(max_pixels=settings.max_image_pixels),
            metrics=metrics,
            **extra,
        )
        services.served._loader = loads_version  # a stand-in detector instead of Keras
        return services

    return factory


def make_world(tmp_path: Path, **settings_fields: Any) -> Iterator[World]:
    settings = Settings(
        checkpoint_dir=tmp_path,
        api_wait_s=2.0,
        review_database_url=SecretStr(f"sqlite:///{tmp_path / 'review.db'}"),  # not the home directory's
        **{"allow_anonymous_writes": True, **settings_fields},
    )
    store, catalog = FakeStore(), FakeCatalog()
    kafka = FakeKafka(settings, catalog=catalog)
    store.objects[("scans", "line1/cell-1.png")] = png_bytes()
    registry = CollectorRegistry()

    app = create_app(settings, registry=registry, services_factory=fake_services(store, catalog, kafka))
    with TestClient(app, raise_server_exceptions=False) as client:
        services = cast(Services, app.state.services)
        portal = client.portal
        assert portal is not None
        portal.call(asyncio.wait_for, services.served.first_attempted.wait(), 10)
        yield World(client, store, kafka, catalog, registry)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    yield from make_world(tmp_path)


def test_predict_answers_the_contract_fields_from_the_current_model(world: World) -> None:
    answer = world.client.post("/predict", json={"image_url": "s3://scans/line1/cell-1.png"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {
        "reconstruction_error": 0.001,
        "is_anomaly": True,
        "anomaly_score": 0.75,
        "threshold": 0.5,
        "model_version": "v2",
        "heatmap_url": None,
        # no recipe and no measuring on these fakes: the 1.1 fields are there, null
        "recipe": None,
        "pixel_mm": None,
        "measurements": None,
        "conforms": None,
        "conformance": None,
    }


def test_predict_with_heatmap_stores_a_png_and_returns_its_url(world: World) -> None:
    answer = world.client.post("/predict", json={"image_url": "s3://scans/line1/cell-1.png", "heatmap": True})
    assert answer.status_code == 200, answer.text
    url = answer.json()["heatmap_url"]
    assert url == "s3://heatmaps/v2/line1/cell-1.png"
    assert world.store.objects[("heatmaps", "v2/line1/cell-1.png")].startswith(b"\x89PNG")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"image_url": "s3://scans/missing.png"}, 404, "object_missing"),
        ({"image_url": "http://169.254.169.254/latest"}, 400, "url_scheme_not_allowed"),
        ({"image_url": ""}, 422, "invalid_request"),
        ({"image": "s3://scans/x.png"}, 422, "invalid_request"),
        ({"image_url": "s3://scans/x.png", "extra": 1}, 422, "invalid_request"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_machine_readable_code(
    world: World, body: dict[str, object], status: int, code: str
) -> None:
    answer = world.client.post("/predict", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["code"] == code
    assert answer.json()["message"]


def test_malformed_json_is_a_422_not_a_5xx(world: World) -> None:
    answer = world.client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert answer.status_code == 422
    assert answer.json()["code"] == "invalid_request"


def test_a_text_file_named_png_is_refused_as_not_an_image(world: World) -> None:
    world.store.objects[("scans", "notes.png")] = b"hello, this is text\n" * 10
    answer = world.client.post("/predict", json={"image_url": "s3://scans/notes.png"})
    assert (answer.status_code, answer.json()["code"]) == (422, "image_not_an_image")


def test_object_store_down_is_a_503(world: World) -> None:
    world.store.down = True
    answer = world.client.post("/predict", json={"image_url": "s3://scans/line1/cell-1.png"})
    assert (answer.status_code, answer.json()["code"]) == (503, "object_store_unavailable")
    ready = world.client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["s3"] is False


def test_unknown_route_answers_an_error_body(world: World) -> None:
    answer = world.client.get("/nope")
    assert (answer.status_code, answer.json()["code"]) == (404, "not_found")


def test_retrain_publishes_an_accepted_scan_and_answers_with_its_update(world: World) -> None:
    answer = world.client.post("/retrain", json={"image_url": "s3://scans/line1/cell-1.png"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["new_validation_error"] == 0.002
    assert body["new_anomaly_error"] is None
    assert (body["model_version"], body["threshold"]) == ("v3", 0.4)
    ((topic, key, value),) = world.kafka.sent
    scan = AcceptedScan.from_json(value)
    assert (topic, key) == (world.client.app.state.services.settings.topic_accepted, b"line1/cell-1")  # type: ignore[attr-defined]
    assert (scan.label, scan.image_url, scan.job_id) == ("normal", "s3://scans/line1/cell-1.png", body["job_id"])


def test_anomaly_labels_the_scan_defect(world: World) -> None:
    answer = world.client.post("/anomaly", json={"image_url": "s3://scans/line1/cell-1.png"})
    assert answer.status_code == 200, answer.text
    assert AcceptedScan.from_json(world.kafka.sent[0][2]).label == "defect"


def test_retrain_past_the_wait_answers_202_and_the_job_finishes_later(world: World) -> None:
    world.kafka.answer = False
    answer = world.client.post("/retrain", json={"image_url": "s3://scans/line1/cell-1.png"})
    assert answer.status_code == 202, answer.text
    job_id = answer.json()["job_id"]
    assert answer.headers["location"] == f"/jobs/{job_id}"
    assert world.client.get(f"/jobs/{job_id}").json()["status"] == "pending"
    scan = AcceptedScan.from_json(world.kafka.sent[0][2])
    update = ModelUpdate(status="rejected", version="v4", current_version="v2", threshold=0.5, job_ids=[job_id])
    services = cast(Services, world.client.app.state.services)  # type: ignore[attr-defined]
    assert world.client.portal is not None
    world.client.portal.call(services.served.apply, update)
    status = world.client.get(f"/jobs/{job_id}").json()
    assert status["status"] == "done"
    assert status["result"]["status"] == "rejected"
    assert status["result"]["model_version"] == "v2"
    assert scan.job_id == job_id


def test_retrain_of_a_broken_image_is_refused_before_anything_is_published(world: World) -> None:
    world.store.objects[("scans", "bad.png")] = png_bytes()[:40]
    answer = world.client.post("/retrain", json={"image_url": "s3://scans/bad.png"})
    assert (answer.status_code, answer.json()["code"]) == (422, "image_truncated")
    assert world.kafka.sent == []


def test_unknown_job_is_a_404(world: World) -> None:
    answer = world.client.get("/jobs/abc")
    assert (answer.status_code, answer.json()["code"]) == (404, "job_not_found")


def test_checkpoints_lists_versions_and_rollback_serves_and_broadcasts(world: World) -> None:
    listed = world.client.get("/checkpoints").json()
    assert [(c["version"], c["current"]) for c in listed] == [("v1", False), ("v2", True)]
    answer = world.client.post("/checkpoints/v1/rollback")
    assert answer.status_code == 200, answer.text
    assert answer.json()["current"] is True
    # The facade asks the retrain consumer (the registry's single writer); it never publishes a model update.
    ((topic, key, value),) = world.kafka.sent
    request = RollbackRequest.from_json(value)
    assert (topic, key, request.version) == ("ct.control", b"v1", "v1")
    assert world.catalog.current == "v1"
    assert (
        world.client.post("/predict", json={"image_url": "s3://scans/line1/cell-1.png"}).json()["model_version"] == "v1"
    )


def test_rollback_to_an_unknown_version_is_a_404(world: World) -> None:
    answer = world.client.post("/checkpoints/v9/rollback")
    assert (answer.status_code, answer.json()["code"]) == (404, "checkpoint_not_found")
    assert world.kafka.sent == []


def test_api_key_guards_mutating_endpoints_only(tmp_path: Path) -> None:
    for world in make_world(tmp_path, api_key=SecretStr("s3cret")):
        url = {"image_url": "s3://scans/line1/cell-1.png"}
        assert world.client.post("/retrain", json=url).status_code == 401
        assert world.client.post("/anomaly", json=url, headers={"X-API-Key": "wrong"}).json()["code"] == "unauthorized"
        assert world.client.post("/checkpoints/v1/rollback").status_code == 401
        assert world.client.post("/retrain", json=url, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert world.client.post("/predict", json=url).status_code == 200


def test_readyz_and_healthz_and_metrics(world: World) -> None:
    assert world.client.get("/healthz").json() == {"status": "ok"}
    world.store.objects[("models", "current.json")] = b"{}"
    ready = world.client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"ready": True, "kafka": True, "s3": True, "model_loaded": True, "model_version": "v2"}
    world.client.post("/predict", json={"image_url": "s3://scans/line1/cell-1.png"})
    world.client.get("/jobs/some-id")
    text = world.client.get("/metrics").text
    assert 'battery_ct_http_requests_total{path="/predict",status="200"} 1.0' in text
    assert 'battery_ct_http_requests_total{path="/jobs/{job_id}",status="404"} 1.0' in text
    assert 'battery_ct_model_info{version="v2"} 1.0' in text
    assert "battery_ct_model_threshold 0.5" in text
    assert "battery_ct_http_request_duration_seconds_bucket" in text


def test_predict_without_a_model_is_a_503(tmp_path: Path) -> None:
    for world in make_world(tmp_path):
        world.client.app.state.services.served.holder._detector = None  # type: ignore[attr-defined]
        answer = world.client.post("/predict", json={"image_url": "s3://scans/line1/cell-1.png"})
        assert (answer.status_code, answer.json()["code"]) == (503, "model_not_loaded")


def test_the_three_cut_off_images_are_422_image_truncated(world: World) -> None:
    from tests.model_core.test_imaging_truncation import NOISE, encode, filtered_rows, png_by_hand, with_jpeg_size

    jpeg = encode(NOISE, "JPEG", quality=90)
    cut = {
        "half-png.png": png_by_hand(64, 64, filtered_rows(NOISE[:32])),  # a valid zlib stream of half the rows
        "half-jpeg.jpg": jpeg[: len(jpeg) // 2] + b"\xff\xd9",  # cut in half and closed with EOI
        # the header claims far more than the data (under the 4096 x 4096 cap; 8000 x 8000 is 413 before decoding)
        "claims-4000.jpg": with_jpeg_size(jpeg, 4000, 4000),
    }
    for key, data in cut.items():
        world.store.objects[("scans", key)] = data
        answer = world.client.post("/predict", json={"image_url": f"s3://scans/{key}"})
        assert answer.status_code == 422, (key, answer.text)
        assert answer.json()["code"] in ("image_truncated", "image_too_large"), (key, answer.text)
    assert (
        world.client.post("/predict", json={"image_url": "s3://scans/half-png.png"}).json()["code"] == "image_truncated"
    )
