from __future__ import annotations

import pytest

from examples.demo.tally import StreamTally


def test_empty_tally_has_no_rates() -> None:
    tally = StreamTally()
    assert (tally.total, tally.precision, tally.recall, tally.accuracy) == (0, None, None, None)
    assert "n/a" in tally.summary()


def test_counts_and_rates() -> None:
    tally = StreamTally()
    for is_defect, flagged in [(True, True), (True, True), (True, False), (False, True), (False, False)]:
        tally.add(is_defect=is_defect, flagged=flagged)
    assert (tally.true_positives, tally.false_negatives, tally.false_positives, tally.true_negatives) == (2, 1, 1, 1)
    assert tally.precision == pytest.approx(2 / 3)
    assert tally.recall == pytest.approx(2 / 3)
    assert tally.accuracy == pytest.approx(3 / 5)
    assert "scored    5" in tally.summary()
    assert "TP 2 FP 1 TN 1 FN 1" in tally.summary()


def test_no_flags_means_no_precision_but_a_recall() -> None:
    tally = StreamTally()
    tally.add(is_defect=True, flagged=False)
    assert tally.precision is None
    assert tally.recall == 0.0
