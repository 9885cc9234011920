"""Learning-rate schedules: values, transforms, validation and repr."""

from __future__ import annotations

import math

import pytest

from drytorch.core.exceptions import LearningSchemaError
from drytorch.lib import schedulers as s


def test_constant() -> None:
    sched = s.ConstantScheduler()
    assert [sched(0.1, epoch) for epoch in (0, 1, 1000)] == [0.1, 0.1, 0.1]
    assert repr(sched) == 'ConstantScheduler()'


def test_exponential_values() -> None:
    sched = s.ExponentialScheduler()
    assert sched(1.0, 0) == pytest.approx(1.0)
    assert sched(2.0, 10) == pytest.approx(2.0 * 0.975**10)
    floored = s.ExponentialScheduler(exp_decay=0.5, min_decay=0.2)
    assert floored(1.0, 1) == pytest.approx(0.2 + 0.8 * 0.5)
    assert floored(1.0, 3) == pytest.approx(0.2 + 0.8 * 0.125)
    assert floored(1.0, 10_000) == pytest.approx(0.2)
    assert repr(floored) == 'ExponentialScheduler(exp_decay=0.5, min_decay=0.2)'


def test_cosine_values() -> None:
    sched = s.CosineScheduler(decay_steps=10, min_decay=0.1)
    assert sched(1.0, 0) == pytest.approx(1.0)
    assert sched(1.0, 5) == pytest.approx(0.1 + 0.9 * 0.5)
    assert sched(1.0, 10) == pytest.approx(0.1)
    assert sched(1.0, 50) == pytest.approx(0.1)
    quarter = 0.5 * (1 + math.cos(math.pi * 0.25))
    assert sched(2.0, 2) == pytest.approx(
        2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(0.2 * math.pi)))
    )
    assert s.CosineScheduler(4, 0.0)(1.0, 1) == pytest.approx(quarter)
    assert s.CosineScheduler()(1.0, 250) == pytest.approx(0.01)


def test_step_values() -> None:
    sched = s.StepScheduler([3, 6], gamma=0.5)
    values = [sched(1.0, epoch) for epoch in range(8)]
    assert values == pytest.approx([1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25])
    assert sched.milestones == (3, 6)
    assert repr(sched) == 'StepScheduler(milestones=(3, 6), gamma=0.5)'
    assert s.StepScheduler([])(0.3, 100) == pytest.approx(0.3)


def test_polynomial_values() -> None:
    linear = s.PolynomialScheduler(max_epochs=10)
    assert linear(1.0, 0) == pytest.approx(1.0)
    assert linear(1.0, 4) == pytest.approx(0.6)
    assert linear(1.0, 10) == pytest.approx(0.0)
    assert linear(1.0, 20) == pytest.approx(0.0)
    square = s.PolynomialScheduler(max_epochs=10, power=2.0, min_decay=0.5)
    assert square(2.0, 5) == pytest.approx(2.0 * (0.5 + 0.5 * 0.25))
    assert square(2.0, 10) == pytest.approx(1.0)


def test_warmup_ramps_then_shifts_the_base() -> None:
    base = s.ExponentialScheduler(exp_decay=0.5)
    sched = s.warmup(base, 4)
    assert isinstance(sched, s.WarmupScheduler)
    # the first epoch of the ramp already trains: no epoch at rate 0
    assert [sched(1.0, e) for e in range(4)] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    # After the ramp the base starts from its own epoch 0.
    assert [sched(1.0, e) for e in (4, 5, 6)] == pytest.approx([1.0, 0.5, 0.25])
    assert s.warmup(base, 0)(1.0, 0) == pytest.approx(1.0)
    assert repr(sched) == (
        'WarmupScheduler(base=ExponentialScheduler(exp_decay=0.5, min_decay=0.0), '
        'warmup_steps=4)'
    )


def test_restart_cycles_with_decaying_amplitude() -> None:
    base = s.PolynomialScheduler(max_epochs=4)
    sched = s.restart(base, 4, 0.5)
    values = [sched(1.0, e) for e in range(10)]
    expected = [1, 0.75, 0.5, 0.25, 0.5, 0.375, 0.25, 0.125, 0.25, 0.1875]
    assert values == pytest.approx(expected)
    assert sched == s.RestartScheduler(base, 4, 0.5)


def test_restart_stops_after_max_restarts() -> None:
    base = s.PolynomialScheduler(max_epochs=8)
    sched = s.RestartScheduler(base, 2, restart_fraction=0.5, max_restarts=1)
    values = [sched(1.0, e) for e in range(7)]
    # One restart at epoch 2, then the base schedule simply continues.
    assert values == pytest.approx([1, 0.875, 0.5, 0.4375, 0.375, 0.3125, 0.25])


def test_bind_applies_transforms_in_order() -> None:
    sched = s.CosineScheduler(decay_steps=4, min_decay=0.0).bind(
        lambda x: s.restart(x, 6)
    )
    sched = sched.bind(lambda x: s.warmup(x, 2))
    assert isinstance(sched, s.WarmupScheduler)
    assert isinstance(sched.base, s.RestartScheduler)
    assert sched(1.0, 0) == pytest.approx(1 / 3)
    assert sched(1.0, 1) == pytest.approx(2 / 3)
    assert sched(1.0, 2) == pytest.approx(1.0)
    assert sched(1.0, 6) == pytest.approx(0.0)
    assert sched(1.0, 8) == pytest.approx(1.0)  # restarted


def test_schedulers_compare_and_hash_by_value() -> None:
    assert s.CosineScheduler(10) == s.CosineScheduler(10)
    assert s.CosineScheduler(10) != s.CosineScheduler(11)
    assert len({s.StepScheduler([1, 2]), s.StepScheduler((1, 2))}) == 1


@pytest.mark.parametrize(
    ('build', 'message'),
    [
        (
            lambda: s.ExponentialScheduler(exp_decay=0.0),
            r'exp_decay must be in \(0, 1\]',
        ),
        (
            lambda: s.ExponentialScheduler(exp_decay=1.5),
            r'exp_decay must be in \(0, 1\]',
        ),
        (
            lambda: s.ExponentialScheduler(min_decay=-0.1),
            r'min_decay must be in \[0, 1\]',
        ),
        (
            lambda: s.CosineScheduler(decay_steps=0),
            'decay_steps must be an integer >= 1',
        ),
        (lambda: s.CosineScheduler(min_decay=2.0), r'min_decay must be in \[0, 1\]'),
        (
            lambda: s.CosineScheduler(min_decay=math.nan),
            r'min_decay must be in \[0, 1\]',
        ),
        (lambda: s.StepScheduler([5, 2]), 'milestones must be strictly increasing'),
        (lambda: s.StepScheduler([2, 2]), 'milestones must be strictly increasing'),
        (lambda: s.StepScheduler([-1]), 'Each milestone must be an integer >= 1'),
        (lambda: s.StepScheduler([1.5]), 'Each milestone must be an integer >= 1'),  # type: ignore[list-item]
        (lambda: s.StepScheduler([2], gamma=0.0), 'gamma must be positive'),
        (
            lambda: s.PolynomialScheduler(max_epochs=0),
            'max_epochs must be an integer >= 1',
        ),
        (lambda: s.PolynomialScheduler(power=0.0), 'power must be positive'),
        (
            lambda: s.PolynomialScheduler(min_decay=1.1),
            r'min_decay must be in \[0, 1\]',
        ),
        (
            lambda: s.warmup(s.ConstantScheduler(), -1),
            'warmup_steps must be an integer >= 0',
        ),
        (
            lambda: s.restart(s.ConstantScheduler(), 0),
            'restart_interval must be an integer >= 1',
        ),
        (
            lambda: s.restart(s.ConstantScheduler(), 3, 0.0),
            r'restart_fraction must be in \(0, 1\]',
        ),
        (
            lambda: s.RestartScheduler(s.ConstantScheduler(), 3, max_restarts=-1),
            'max_restarts must be an integer >= 0',
        ),
    ],
)
def test_invalid_arguments_are_refused(build: object, message: str) -> None:
    with pytest.raises(LearningSchemaError, match=message):
        build()  # type: ignore[operator]


def test_negative_epoch_is_refused() -> None:
    with pytest.raises(LearningSchemaError, match='starts at 0, got -1'):
        s.ConstantScheduler()(0.1, -1)


def test_a_warm_up_never_trains_an_epoch_at_rate_zero() -> None:
    cosine = s.warmup(s.CosineScheduler(decay_steps=10), 3)
    rates = [cosine(0.1, e) for e in range(5)]
    assert rates[0] > 0  # the first epoch, and so its first step
    assert rates[:4] == pytest.approx([0.025, 0.05, 0.075, 0.1])
    assert rates == sorted(rates[:4]) + rates[4:]
