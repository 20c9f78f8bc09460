"""The retrain consumer's Prometheus metrics (names are a contract with the Grafana dashboard)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from runtime.metrics import DeliveryMetrics

OUTCOMES = ("promoted", "rejected", "failed")
_DURATION_BUCKETS = (1, 5, 10, 30, 60, 120, 180, 300, 600, 1200, 3600)


class RetrainMetrics(DeliveryMetrics):
    """The delivery loop's shared metrics, plus what the retrain consumer decides."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.retrains = Counter(
            "battery_ct_retrains_total", "Retrain batches by outcome", ["outcome"], registry=registry
        )
        self.duration = Histogram(
            "battery_ct_retrain_duration_seconds",
            "Time of one retrain job (training, checkpoint, gate)",
            buckets=_DURATION_BUCKETS,
            registry=registry,
        )
        self.dataset_scans = Gauge("battery_ct_dataset_scans", "Scans in the dataset", ["label"], registry=registry)
        self.current_model = Gauge(
            "battery_ct_current_model_info", "The registry's current version (1)", ["version"], registry=registry
        )
        self.current_threshold = Gauge(
            "battery_ct_current_threshold", "Threshold of the current model", registry=registry
        )
        self.validation_error = Gauge(
            "battery_ct_validation_error", "Mean error on the normal validation set (last candidate)", registry=registry
        )
        self.anomaly_error = Gauge(
            "battery_ct_anomaly_error", "Mean error on the known-defect set (last candidate)", registry=registry
        )
        for outcome in OUTCOMES:
            self.retrains.labels(outcome=outcome)
        for label in ("normal", "defect"):
            self.dataset_scans.labels(label=label)

    def dataset(self, sizes: dict[str, int]) -> None:
        for label, count in sizes.items():
            self.dataset_scans.labels(label=label).set(count)

    def current(self, version: str, threshold: float) -> None:
        self.current_model.clear()
        self.current_model.labels(version=version).set(1)
        self.current_threshold.set(threshold)

    def errors(self, validation_error: float | None, anomaly_error: float | None) -> None:
        if validation_error is not None:
            self.validation_error.set(validation_error)
        if anomaly_error is not None:
            self.anomaly_error.set(anomaly_error)
