"""The review consumer's metrics (besides the shared consumer lag and dead letters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

from runtime.metrics import DeliveryMetrics


class ReviewMetrics(DeliveryMetrics):
    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)
        self.verdicts_stored = Counter(
            "battery_ct_review_verdicts_stored", "Verdicts stored in the review database", registry=registry
        )
        self.store_conflicts = Counter(
            "battery_ct_review_store_conflicts",
            "Batches another consumer had stored first (read again from the database's offsets)",
            registry=registry,
        )
        self.store_seconds = Histogram(
            "battery_ct_review_store_seconds",
            "Time to store one batch in the review database",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=registry,
        )
