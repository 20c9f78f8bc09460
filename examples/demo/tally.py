"""Running confusion counts of a verdict stream against the simulator's ground truth."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StreamTally:
    true_positives: int = 0
    false_positives: int = 0
    true_negatives: int = 0
    false_negatives: int = 0

    def add(self, *, is_defect: bool, flagged: bool) -> None:
        if is_defect and flagged:
            self.true_positives += 1
        elif is_defect:
            self.false_negatives += 1
        elif flagged:
            self.false_positives += 1
        else:
            self.true_negatives += 1

    @property
    def total(self) -> int:
        return self.true_positives + self.false_positives + self.true_negatives + self.false_negatives

    @property
    def precision(self) -> float | None:
        flagged = self.true_positives + self.false_positives
        return self.true_positives / flagged if flagged else None

    @property
    def recall(self) -> float | None:
        defects = self.true_positives + self.false_negatives
        return self.true_positives / defects if defects else None

    @property
    def accuracy(self) -> float | None:
        return (self.true_positives + self.true_negatives) / self.total if self.total else None

    def summary(self) -> str:
        def pct(value: float | None) -> str:
            return "  n/a" if value is None else f"{value * 100:5.1f}%"

        return (
            f"scored {self.total:4d} | precision {pct(self.precision)} | recall {pct(self.recall)} | "
            f"accuracy {pct(self.accuracy)} | TP {self.true_positives} FP {self.false_positives} "
            f"TN {self.true_negatives} FN {self.false_negatives}"
        )
