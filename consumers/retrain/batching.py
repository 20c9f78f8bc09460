"""When a batch of accepted scans is due: enough scans, or the oldest has waited long enough."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchPolicy:
    """Close a batch at `max_count` scans or when its first scan is `max_age_s` old."""

    max_count: int
    max_age_s: float

    def __post_init__(self) -> None:
        if self.max_count < 1 or self.max_age_s <= 0:
            raise ValueError("a batch needs max_count >= 1 and max_age_s > 0")

    def is_due(self, count: int, opened_at: float | None, now: float) -> bool:
        """`opened_at`: monotonic time the batch's first scan arrived (None: the batch is empty)."""
        if count <= 0 or opened_at is None:
            return False
        return count >= self.max_count or now - opened_at >= self.max_age_s

    def wait_s(self, count: int, opened_at: float | None, now: float, *, idle_s: float) -> float:
        """How long the loop may wait for more scans before the batch is due (`idle_s` when empty)."""
        if count <= 0 or opened_at is None:
            return idle_s
        return max(0.0, min(idle_s, opened_at + self.max_age_s - now))
