"""The metrics every battery-ct process shares, defined once: the per-process registry (with the
standard process and platform collectors), the served model's gauges and the delivery loop's dead
letters and consumer lag. Names are a contract with the dashboard and the alert rules."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, PlatformCollector, ProcessCollector


def service_registry() -> CollectorRegistry:
    """A fresh registry with the process and platform collectors registered (one per process).

    The services never use prometheus_client's global registry, so they register what it would
    carry themselves (CPU seconds, resident memory, open file descriptors, Python version).
    """
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    return registry


REFUSAL_REASONS = ("not_current", "invalid_version")


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
        self.model_updates_refused = Counter(
            "battery_ct_model_updates_refused_total",
            "Model updates not followed: the registry did not name that version current, or the name was invalid",
            ["reason"],
            registry=registry,
        )
        for reason in REFUSAL_REASONS:
            self.model_updates_refused.labels(reason=reason)
        self.checkpoints_refused = Counter(
            "battery_ct_checkpoints_refused_total",
            "Checkpoints refused at load, by reason (unsigned, bad_signature, files_changed, name_mismatch, ...)",
            ["reason"],
            registry=registry,
        )

    def model_serving(self, version: str, threshold: float) -> None:
        self.model_info.clear()
        self.model_info.labels(version=version).set(1)
        self.model_threshold.set(threshold)


class DeliveryMetrics:
    """What the batch delivery loop counts, the same names in every consumer."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.dead_letters = Counter(
            "battery_ct_dead_letters_total",
            "Poison messages sent to the dead-letter topic",
            ["reason"],
            registry=registry,
        )
        self.consumer_lag = Gauge(
            "battery_ct_consumer_lag_messages",
            "Messages behind the end of the partition",
            ["topic", "partition"],
            registry=registry,
        )
