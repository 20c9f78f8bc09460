from model_core.gate import ValidationMetrics, decide


def metrics(error: float, auroc: float | None = None) -> ValidationMetrics:
    return ValidationMetrics(validation_error=error, image_auroc=auroc, false_positive_rate=0.0)


def test_first_model_is_promoted() -> None:
    assert decide(metrics(0.01), None, 0.05).promote


def test_auroc_within_the_allowed_drop_is_promoted_and_beyond_is_rejected() -> None:
    assert decide(metrics(0.01, 0.995), metrics(0.01, 1.0), 0.05).promote
    rejected = decide(metrics(0.01, 0.985), metrics(0.01, 1.0), 0.05)
    assert not rejected.promote
    assert "AUROC" in rejected.reason
    assert decide(metrics(0.01, 0.985), metrics(0.01, 1.0), 0.05, auroc_drop=0.02).promote


def test_a_poisoned_batch_inside_a_relative_tolerance_is_still_refused() -> None:
    # Measured at 256 px: pores learnt as normal cost the pooled AUROC 0.969 -> 0.945, within 5 %.
    assert not decide(metrics(0.01, 0.945), metrics(0.01, 0.969), 0.05).promote


def test_normal_only_compares_validation_error() -> None:
    assert decide(metrics(0.0104), metrics(0.0100), 0.05).promote
    assert not decide(metrics(0.0110), metrics(0.0100), 0.05).promote


def test_auroc_wins_over_error_when_both_know_defects() -> None:
    # Worse reconstruction but better separation: the separation is what matters.
    assert decide(metrics(0.02, 0.99), metrics(0.01, 0.98), 0.05).promote
