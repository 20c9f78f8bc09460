"""The inference consumer's Prometheus metrics (names are a contract with the Grafana dashboard)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from runtime.metrics import DeliveryMetrics, ModelMetrics

STAGES = ("fetch", "decode", "model", "publish")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class InferenceMetrics(ModelMetrics, DeliveryMetrics):
    """The served model's and the delivery loop's shared metrics, plus the inference stages."""

    def __init__(self, registry: CollectorRegistry) -> None:
        ModelMetrics.__init__(self, registry)
        DeliveryMetrics.__init__(self, registry)
        self.scans = Counter("battery_ct_scans_total", "Scans judged", ["verdict"], registry=registry)
        self.batch_size = Histogram(
            "battery_ct_batch_size", "Scans per model micro-batch", buckets=_BATCH_BUCKETS, registry=registry
        )
        self.stage_seconds = Histogram(
            "battery_ct_stage_seconds",
            "Time per pipeline stage",
            ["stage"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.event_to_verdict = Histogram(
            "battery_ct_event_to_verdict_seconds",
            "From the scan's event time to its verdict being published",
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        # Pre-create the label values the dashboard expects, so they read 0 rather than "no data".
        for verdict in ("normal", "anomaly"):
            self.scans.labels(verdict=verdict)
        for stage in STAGES:
            self.stage_seconds.labels(stage=stage)
