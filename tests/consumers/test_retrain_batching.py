"""The batch policy: a batch closes at a count or an age, whichever comes first."""

import pytest

from consumers.retrain.batching import BatchPolicy


def test_an_empty_batch_is_never_due_and_the_loop_waits_the_idle_time() -> None:
    policy = BatchPolicy(max_count=3, max_age_s=10)
    assert not policy.is_due(0, None, now=1e9)
    assert policy.wait_s(0, None, now=5, idle_s=0.5) == 0.5


def test_a_batch_is_due_at_its_count() -> None:
    policy = BatchPolicy(max_count=3, max_age_s=10)
    assert not policy.is_due(2, opened_at=100, now=101)
    assert policy.is_due(3, opened_at=100, now=101)


def test_a_batch_is_due_at_its_age_even_when_small() -> None:
    policy = BatchPolicy(max_count=32, max_age_s=10)
    assert not policy.is_due(1, opened_at=100, now=109.9)
    assert policy.is_due(1, opened_at=100, now=110)


def test_the_loop_waits_no_longer_than_the_batch_has_left() -> None:
    policy = BatchPolicy(max_count=32, max_age_s=10)
    assert policy.wait_s(1, opened_at=100, now=108, idle_s=5) == pytest.approx(2)
    assert policy.wait_s(1, opened_at=100, now=101, idle_s=0.5) == 0.5
    assert policy.wait_s(1, opened_at=100, now=200, idle_s=0.5) == 0.0


def test_nonsense_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        BatchPolicy(max_count=0, max_age_s=1)
    with pytest.raises(ValueError):
        BatchPolicy(max_count=1, max_age_s=0)
