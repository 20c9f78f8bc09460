"""A real Prometheus server (Debian's package) scrapes the running services (the retrain consumer,
the inference consumer and the HTTP facade, on the session fixtures' broker and S3 endpoint with a
tiny model) through a short stream of scans, then every dashboard panel's PromQL is evaluated
through the Prometheus HTTP API and must return data.

The stream is the production flow: accepted normal scans make the retrain consumer train and
publish the first model, the inference consumer picks it up from the model-updates topic, scans
arrive as MinIO bucket notifications (one of them a corrupt image), and the facade answers a
/predict. Measured cells of one recipe go through the inference consumer's `measured()` (the
simulated slices carry no recipe), so the Measurements (SPC) row has data too.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
import yaml

from consumers.inference.service import InferenceService
from consumers.retrain.service import RetrainService
from facade.api.app import create_app
from model_core.network import NetworkConfig
from model_core.scoring import PatchMemoryConfig
from model_core.training import TrainingConfig
from producers.simulator.dataset import generate_dataset
from runtime.metrics import service_registry
from schemas.accepted import AcceptedScan
from schemas.measurements import Measurement, MeasurementName
from schemas.recipes import CheckResult, Conformance
from schemas.settings import Settings
from schemas.verdicts import Verdict
from storage.object_store import ObjectStore
from tests.deploy.deploy_files import PanelQuery, expand, panel_queries
from tests.deploy.minio_events import minio_put_notification
from tests.helpers import consume_until, produce_messages

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SIZE = 64
TINY = TrainingConfig(
    network=NetworkConfig(image_size=SIZE, depth=2, base_filters=4),
    memory=PatchMemoryConfig.for_image_size(SIZE, bank_per_row=150),
    epochs=2,
    batch_size=8,
)
TRAIN_SCANS = 8
STREAM_SCANS = 12
# Grafana's $__rate_interval, widened to cover the whole test so that every event is in the window.
RATE_WINDOW = "10m"
SCRAPE_INTERVAL_S = 1.0
RECIPE = "21700-nmc"
# The recipe's limits (min, max) of the key measurements; eccentricity is a ratio.
LIMITS: dict[MeasurementName, tuple[float, float]] = {
    "can.outer_diameter_mm": (20.95, 21.25),
    "can.wall_min_mm": (0.2, 0.35),
    "can.eccentricity": (0.0, 0.08),
    "can.max_dent_mm": (0.0, 0.3),
    "roll.layer_max_deviation_mm": (0.0, 0.15),
    "overhang.min_mm": (0.1, 1.5),
}
# Ten cells' outer diameters: the last two are above the recipe's maximum.
DIAMETERS = (21.08, 21.10, 21.12, 21.09, 21.11, 21.13, 21.10, 21.12, 21.31, 21.33)


def measured_cell(index: int, diameter: float | None) -> Verdict:
    """A judged cell of RECIPE with its key measurements checked against LIMITS, or (`diameter`
    None) one without a pixel size: its values in px, not checked."""
    if diameter is None:
        measurements: dict[MeasurementName, Measurement] = {
            "can.outer_diameter_mm": Measurement(value=620.0, unit="px")
        }
        conformance = Conformance(recipe=RECIPE, conforms=None, reason="no pixel size: values in px")
    else:
        values: dict[MeasurementName, float] = {
            "can.outer_diameter_mm": diameter,
            "can.wall_min_mm": 0.24 + 0.005 * index,
            "can.eccentricity": 0.02 + 0.002 * index,
            "can.max_dent_mm": 0.04,
            "roll.layer_max_deviation_mm": 0.05 + 0.01 * (index % 3),
            "overhang.min_mm": 0.3 - 0.01 * index,
        }
        measurements = {
            name: Measurement(value=value, unit="ratio" if name == "can.eccentricity" else "mm")
            for name, value in values.items()
        }
        checks = tuple(
            CheckResult(
                name=name,
                value=value,
                unit=measurements[name].unit,
                min=LIMITS[name][0],
                max=LIMITS[name][1],
                passed=LIMITS[name][0] <= value <= LIMITS[name][1],
            )
            for name, value in values.items()
        )
        failed = tuple(check.name for check in checks if not check.passed)
        conformance = Conformance(recipe=RECIPE, conforms=not failed, failed=failed, checks=checks)
    return Verdict(
        scan_id=f"line2/cell-{index:03d}",
        image_url=f"s3://scans/line2/cell-{index:03d}.png",
        reconstruction_error=0.01,
        anomaly_score=0.1,
        is_anomaly=False,
        threshold=0.5,
        model_version="measured",
        recipe=RECIPE,
        pixel_mm=None if diameter is None else 0.034,
        measurements=measurements,
        conforms=conformance.conforms,
        conformance=conformance,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for(condition: Any, what: str, timeout_s: float = 120.0, every_s: float = 0.2) -> Any:
    """Polls `condition` (a real request each time: there is no event to await) until it is truthy."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(every_s)


class PrometheusServer:
    """`prometheus` on a free port with its own storage directory, scraping `targets` every second."""

    def __init__(self, work: Path, targets: dict[str, str]) -> None:
        binary = shutil.which("prometheus")
        assert binary is not None, "prometheus not found: apt-get install prometheus"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": f"{SCRAPE_INTERVAL_S:g}s", "evaluation_interval": f"{SCRAPE_INTERVAL_S:g}s"},
            "scrape_configs": [
                {"job_name": job, "static_configs": [{"targets": [target]}]} for job, target in targets.items()
            ],
        }
        (work / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = work / "prometheus.log"
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={work / 'prometheus.yml'}",
                f"--storage.tsdb.path={work / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
        )

    def ready(self) -> bool:
        assert self.process.poll() is None, f"prometheus exited: {self.log.read_text()[-2000:]}"
        with contextlib.suppress(httpx.HTTPError):
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        return False

    def query(self, expr: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10)
        body = answer.json()
        assert answer.status_code == 200 and body["status"] == "success", f"{expr}: {body}"
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def value(self, expr: str) -> float:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else math.nan

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class FacadeThread:
    """The facade under uvicorn on a free port in a thread (its own event loop, like its own process)."""

    def __init__(self, settings: Settings) -> None:
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(settings), host="127.0.0.1", port=0, log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, name="facade", daemon=True)

    def start(self) -> str:
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), "uvicorn to start", 60, 0.02)
        assert self.thread.is_alive(), "the facade did not start"
        return f"127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


@contextlib.asynccontextmanager
async def running(service: InferenceService | RetrainService) -> AsyncIterator[str]:
    """Runs a consumer service in this event loop; yields its metrics address once it is bound."""
    task = asyncio.create_task(service.run())
    try:
        while service.server._server is None:  # bound as the first step of run(); nothing to await
            assert not task.done(), f"{type(service).__name__} ended early"
            await asyncio.sleep(0.02)
        yield f"127.0.0.1:{service.server.port}"
    finally:
        service.stop.set()
        await asyncio.wait_for(task, timeout=120)


@pytest.fixture
def stack_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "image_size": SIZE,
            "metrics_port": 0,
            "batch_size": 4,
            "batch_linger_ms": 20,
            "retrain_batch_size": TRAIN_SCANS,
            "retrain_max_age_s": 3.0,
            "api_wait_s": 2.0,
        }
    )


@pytest.fixture
def slices(tmp_path: Path) -> list[Path]:
    """Simulated CT slices: the first TRAIN_SCANS normal ones train, the rest stream."""
    generate_dataset(tmp_path / "slices", TRAIN_SCANS + STREAM_SCANS - 3, 3, seed=11, size=SIZE, progress=False)
    normal = sorted((tmp_path / "slices" / "normal").glob("*.png"))
    defect = sorted((tmp_path / "slices" / "defect").rglob("*.png"))
    return normal + defect


@pytest.fixture
def facade(stack_settings: Settings) -> Iterator[FacadeThread]:
    facade = FacadeThread(stack_settings)
    try:
        yield facade
    finally:
        facade.stop()


async def test_every_dashboard_panel_returns_data_from_the_running_services(
    stack_settings: Settings,
    object_store: ObjectStore,
    slices: list[Path],
    facade: FacadeThread,
    dashboard: dict[str, Any],
    tmp_path: Path,
) -> None:
    settings = stack_settings
    for bucket in (settings.bucket_scans, settings.bucket_models, settings.bucket_datasets):
        object_store.ensure_bucket(bucket)
    api = facade.start()
    inference = InferenceService(settings, registry=service_registry())
    retrain = RetrainService(settings, registry=service_registry(), training=(TINY, TINY))
    async with running(retrain) as retrain_at, running(inference) as inference_at:
        prometheus = PrometheusServer(tmp_path, {"inference": inference_at, "retrain": retrain_at, "api": api})
        try:
            await asyncio.to_thread(wait_for, prometheus.ready, "prometheus to be ready", 60)
            # Prometheus scrapes its first targets a few seconds after it is ready (its target updates
            # are throttled): the stream must start after a first sample of every target, or rate()
            # sees the counters only after they changed and every rate panel is empty.
            await asyncio.to_thread(
                wait_for,
                lambda: prometheus.value('count(up{job=~"inference|retrain|api"} == 1)') == 3,
                "a first scrape of every service",
                60,
            )
            # A first cell of the recipe, not checked, creates its series at 0; Prometheus scrapes
            # them before the measured cells come, so rate() sees every one of those.
            inference.metrics.measured(measured_cell(0, None))
            await asyncio.to_thread(
                wait_for,
                lambda: prometheus.value(f'sum(battery_ct_conformance_total{{recipe="{RECIPE}"}})') == 1,
                "a first scrape of the recipe's series",
                60,
            )

            # Operators accept normal scans: the retrain consumer trains and broadcasts the first model.
            train, stream = slices[:TRAIN_SCANS], slices[TRAIN_SCANS:]
            accepted = []
            for index, path in enumerate(train):
                key = f"accepted/cell-{index:03d}.png"
                await object_store.aput_bytes(settings.bucket_scans, key, path.read_bytes())
                message = AcceptedScan(
                    scan_id=f"accepted/cell-{index:03d}",
                    image_url=f"s3://{settings.bucket_scans}/{key}",
                    label="normal",
                )
                accepted.append((message.scan_id.encode(), message.to_json()))
            await produce_messages(settings, settings.topic_accepted, accepted)
            await consume_until(settings, settings.topic_model_updates, 1, 300)

            # The CT machine uploads; MinIO announces each object; one upload is a truncated PNG.
            events = []
            for index, path in enumerate(stream):
                key = f"line1/cell-{index:03d}.png"
                data = path.read_bytes()
                await object_store.aput_bytes(settings.bucket_scans, key, data)
                events.append((None, minio_put_notification(settings.bucket_scans, key, data)))
            corrupt = stream[0].read_bytes()[:200]
            await object_store.aput_bytes(settings.bucket_scans, "line1/truncated.png", corrupt)
            events.append((None, minio_put_notification(settings.bucket_scans, "line1/truncated.png", corrupt)))
            await produce_messages(settings, settings.topic_scans, events)
            verdicts = await consume_until(settings, settings.topic_verdicts, len(stream), 180)
            letters = await consume_until(settings, settings.topic_dead_letter, 1, 60)
            assert len(verdicts) == len(stream) and len(letters) == 1

            # The facade serves the same model once the update reached it.
            async with httpx.AsyncClient(base_url=f"http://{api}", timeout=60) as http:
                for _ in range(600):  # readiness is the condition; each probe is a real request
                    if (await http.get("/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                answer = await http.post(
                    "/predict", json={"image_url": f"s3://{settings.bucket_scans}/line1/cell-000.png"}
                )
                assert answer.status_code == 200, answer.text

            # The cells measured against their recipe, as the inference consumer records each verdict.
            for index, diameter in enumerate(DIAMETERS, start=1):
                inference.metrics.measured(measured_cell(index, diameter))

            # Prometheus has scraped the final state of every service.
            await asyncio.to_thread(
                wait_for,
                lambda: (
                    prometheus.value("sum(battery_ct_scans_total)") == len(stream)
                    and prometheus.value("sum(battery_ct_retrain_duration_seconds_count)") >= 1
                    and prometheus.value('sum(battery_ct_http_requests_total{path="/predict"})') >= 1
                    and prometheus.value("sum(battery_ct_dead_letters_total)") >= 1
                    and prometheus.value(f'sum(battery_ct_conformance_total{{recipe="{RECIPE}"}})')
                    == 1 + len(DIAMETERS)
                ),
                "prometheus to scrape the stream's results",
                60,
            )
            # A series first scraped with the final state has one sample: rate() needs a second one. So
            # the panels are asked until each returns data (each scrape is the event), up to a deadline.
            empty = await asyncio.to_thread(panels_without_data, prometheus, dashboard, 60.0)
            assert not empty, "dashboard panels without data:\n" + "\n".join(empty)
            assert_spc_figures(prometheus, dashboard)
            assert prometheus.value('count(up{job=~"inference|retrain|api"} == 1)') == 3
        finally:
            prometheus.stop()


def panels_without_data(prometheus: PrometheusServer, dashboard: dict[str, Any], timeout_s: float) -> list[str]:
    """The panels whose PromQL returns no data, asked again after every scrape interval until none is
    left or `timeout_s` has passed (then the last answer, for the assertion's message)."""
    deadline = time.monotonic() + timeout_s
    while True:
        empty = []
        for query in panel_queries(dashboard):
            result = prometheus.query(expand(query.expr, RATE_WINDOW))
            values = [float(series["value"][1]) for series in result]
            if not values or all(math.isnan(value) for value in values):
                empty.append(describe(query, result))
        if not empty or time.monotonic() > deadline:
            return empty
        time.sleep(SCRAPE_INTERVAL_S)


def assert_spc_figures(prometheus: PrometheusServer, dashboard: dict[str, Any]) -> None:
    """The SPC panels' first queries give the figures of the cells measured (all within the window)."""
    first = {query.panel: expand(query.expr, RATE_WINDOW) for query in panel_queries(dashboard) if query.ref_id == "A"}

    def of_recipe(panel: str) -> dict[str, float]:
        """The panel's series of RECIPE, by their measurement (or "" for a per-recipe series)."""
        return {
            series["metric"].get("measurement", ""): float(series["value"][1])
            for series in prometheus.query(first[panel])
            if series["metric"].get("recipe") == RECIPE
        }

    failing = 2 / len(DIAMETERS)
    assert of_recipe("Out-of-tolerance rate") == {"": pytest.approx(failing)}
    by_measurement = of_recipe("Out-of-tolerance rate by measurement")
    assert by_measurement.pop("can.outer_diameter_mm") == pytest.approx(failing)
    assert set(by_measurement.values()) == {0.0}
    # The mean of the checked cells: the cell in px is not in it.
    assert of_recipe("Can outer diameter") == {"": pytest.approx(sum(DIAMETERS) / len(DIAMETERS))}
    limit = f'battery_ct_tolerance{{recipe="{RECIPE}",measurement="can.outer_diameter_mm",bound="max"}}'
    assert prometheus.value(limit) == LIMITS["can.outer_diameter_mm"][1]
    outcomes = {
        series["metric"]["conforms"]: float(series["value"][1])
        for series in prometheus.query(f'battery_ct_conformance_total{{recipe="{RECIPE}"}}')
    }
    assert outcomes == {"true": len(DIAMETERS) - 2, "false": 2, "unknown": 1}


def describe(query: PanelQuery, result: list[dict[str, Any]]) -> str:
    return f"  {query.panel} ({query.ref_id}): {query.expr} -> {result}"
