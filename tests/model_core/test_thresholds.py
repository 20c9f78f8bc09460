import numpy as np
import pytest

from model_core.thresholds import ThresholdRule, calibrate


def test_normal_only_threshold_sits_above_the_normal_quantile() -> None:
    normal = np.linspace(0.0, 1.0, 101)
    decision = calibrate(normal, None, ThresholdRule(quantile=0.99, margin=0.0))
    assert decision.threshold == pytest.approx(0.99)
    assert decision.false_positive_rate <= 0.01
    assert "normal-only" in decision.rule


def test_normal_only_margin_raises_the_threshold() -> None:
    normal = np.linspace(0.0, 1.0, 101)
    assert (
        calibrate(normal, [], ThresholdRule(margin=0.5)).threshold
        > calibrate(normal, [], ThresholdRule(margin=0)).threshold
    )


def test_separated_sets_cut_the_gap_where_the_normal_only_rule_would() -> None:
    normal, defect = [0.1, 0.2, 0.3], [0.7, 0.8]
    decision = calibrate(normal, defect, ThresholdRule(mode="f1"))
    # Every cut in (0.3, 0.7) scores F1 = 1; unseen defects are often weaker than the known ones,
    # so the cut sits where normal scores alone would put it, not in the middle of the gap.
    assert decision.threshold == pytest.approx(calibrate(normal, None).threshold)
    assert 0.3 < decision.threshold < 0.5
    assert decision.f1 == 1.0 and decision.false_positive_rate == 0.0


def test_the_gap_bounds_the_lean_towards_the_normal_scores() -> None:
    # A wide normal spread would put the normal-only cut above the gap's middle: the middle it is.
    wide = calibrate([0.1, 0.2, 0.3], [0.7, 0.8], ThresholdRule(mode="f1", margin=20))
    assert wide.threshold == pytest.approx(0.5)
    # and never below the highest normal score: that would add a false alarm.
    tight = calibrate([0.1, 0.2, 0.3], [0.7, 0.8], ThresholdRule(mode="f1", quantile=0.5, margin=0))
    assert tight.threshold == pytest.approx(0.3)
    assert tight.false_positive_rate == 0.0


def test_f1_rule_finds_the_best_operating_point_with_overlap() -> None:
    normal = [0.1, 0.2, 0.3, 0.6]
    defect = [0.5, 0.7, 0.8, 0.9]
    decision = calibrate(normal, defect, ThresholdRule(mode="f1"))
    # Cutting between 0.3 and 0.5 catches every defect for one false alarm: F1 = 8/9.
    assert 0.3 < decision.threshold < 0.5
    assert decision.f1 == pytest.approx(8 / 9)


def test_fpr_rule_keeps_false_alarms_within_the_limit() -> None:
    rng = np.random.default_rng(0)
    normal, defect = rng.normal(0, 1, 200), rng.normal(2, 1, 50)
    decision = calibrate(normal, defect, ThresholdRule(mode="fpr", max_fpr=0.05))
    assert decision.false_positive_rate <= 0.05
    assert (normal > decision.threshold).mean() <= 0.05


def test_no_normal_scores_is_an_error() -> None:
    with pytest.raises(ValueError, match="normal"):
        calibrate([], [1.0])


def test_the_default_keeps_false_alarms_within_budget_when_defects_outnumber_normals() -> None:
    # After a retraining: a dozen normal validation scans against two dozen known defects.
    normal, defect = np.linspace(0.0, 1.0, 12), np.linspace(0.7, 2.0, 24)
    f1 = calibrate(normal, defect, ThresholdRule(mode="f1"))
    assert f1.false_positive_rate > 0.25  # F1 buys the overlapping defects with a third of the normals
    default = calibrate(normal, defect)
    assert "false-positive rate <= 0.01" in default.rule
    assert default.false_positive_rate == 0.0
    assert 1.0 <= default.threshold < defect[defect > 1.0].min()
