"""What every process that serves a model shares (the inference consumer and the facade): a
registry version fetched into a private directory and loaded, and the metrics that say which
model serves."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from model_core.detector import Detector


class ModelSource(Protocol):
    """The part of `model_core.registry.Registry` a serving process needs."""

    def current_version(self) -> str | None: ...

    def fetch(self, version: str, dest: Path) -> Path: ...


def fetch_and_load(
    source: ModelSource, version: str, work_dir: Path, loader: Callable[[Path], Detector] = Detector.load
) -> Detector:
    """Fetch `version` (verified by the registry) and load it; blocking, run it off the event loop.

    The download goes to a private directory: replicas and facades on one host share `work_dir`,
    and a download must never be read while another process writes it. The loaded model lives in
    memory, so the download is removed once it is loaded.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    download = Path(tempfile.mkdtemp(prefix=f"{version}.", dir=work_dir))
    try:
        return loader(source.fetch(version, download / "checkpoint"))
    finally:
        shutil.rmtree(download, ignore_errors=True)


class ModelMetrics:
    """The serving model's metrics, the same names in every process that serves one."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.model_info = Gauge(
            "battery_ct_model_info", "The model version serving (1)", ["version"], registry=registry
        )
        self.model_threshold = Gauge("battery_ct_model_threshold", "Threshold of the serving model", registry=registry)
        self.model_load_failures = Counter(
            "battery_ct_model_load_failures_total", "Checkpoints that could not be loaded", registry=registry
        )

    def model_serving(self, version: str, threshold: float) -> None:
        self.model_info.clear()
        self.model_info.labels(version=version).set(1)
        self.model_threshold.set(threshold)
