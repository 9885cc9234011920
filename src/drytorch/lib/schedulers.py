"""Learning-rate schedules as pure functions of the epoch.

A schedule maps ``(base_lr, epoch)`` to a learning rate and keeps no state, so
resuming a run at any epoch gives exactly the rate it would have had, and the
schedule is fully described by its ``repr`` (recorded as run metadata).
Schedules are frozen dataclasses: they compare by value and can be used as
defaults of frozen configurations.

Transforms wrap a schedule: ``warmup(CosineScheduler(), 5)`` or, fluently,
``CosineScheduler().bind(lambda s: warmup(s, 5))``.
"""

from __future__ import annotations

import abc
import bisect
import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from typing import TypeVar

from drytorch.core.exceptions import LearningSchemaError

__all__ = [
    'AbstractScheduler',
    'ConstantScheduler',
    'CosineScheduler',
    'ExponentialScheduler',
    'PolynomialScheduler',
    'RestartScheduler',
    'StepScheduler',
    'WarmupScheduler',
    'restart',
    'warmup',
]

_T = TypeVar('_T')


def _check_fraction(name: str, value: float, *, allow_zero: bool = True) -> None:
    low = '[0, 1]' if allow_zero else '(0, 1]'
    ok = 0.0 <= value <= 1.0 if allow_zero else 0.0 < value <= 1.0
    if not ok:
        raise LearningSchemaError(f'{name} must be in {low}, got {value!r}.')


def _check_steps(name: str, value: int, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise LearningSchemaError(
            f'{name} must be an integer >= {minimum}, got {value!r}.'
        )


class AbstractScheduler(abc.ABC):
    """A learning-rate schedule: a pure function of the base rate and epoch."""

    def __call__(self, base_lr: float, epoch: int) -> float:
        """Return the learning rate for ``epoch`` (counted from 0).

        Raises:
            LearningSchemaError: ``epoch`` is negative.
        """
        if epoch < 0:
            raise LearningSchemaError(
                f'The epoch of a learning-rate schedule starts at 0, got {epoch}.'
            )
        return self._compute(base_lr, epoch)

    @abc.abstractmethod
    def _compute(self, base_lr: float, epoch: int) -> float:
        """Return the rate for a non-negative ``epoch``."""

    def bind(self, transform: Callable[[AbstractScheduler], _T]) -> _T:
        """Apply ``transform`` to this schedule, so transforms read left to right."""
        return transform(self)


@dataclasses.dataclass(frozen=True)
class ConstantScheduler(AbstractScheduler):
    """Keep the base learning rate for every epoch."""

    def _compute(self, base_lr: float, epoch: int) -> float:
        return base_lr


@dataclasses.dataclass(frozen=True)
class ExponentialScheduler(AbstractScheduler):
    """Decay geometrically towards a floor.

    ``lr = base_lr * (min_decay + (1 - min_decay) * exp_decay ** epoch)``

    Args:
        exp_decay: the factor applied each epoch, in (0, 1].
        min_decay: the fraction of ``base_lr`` never decayed, in [0, 1].
    """

    exp_decay: float = 0.975
    min_decay: float = 0.0

    def __post_init__(self) -> None:
        _check_fraction('exp_decay', self.exp_decay, allow_zero=False)
        _check_fraction('min_decay', self.min_decay)

    def _compute(self, base_lr: float, epoch: int) -> float:
        decay = self.min_decay + (1.0 - self.min_decay) * self.exp_decay**epoch
        return base_lr * decay


@dataclasses.dataclass(frozen=True)
class CosineScheduler(AbstractScheduler):
    """Anneal along half a cosine, then stay at the floor.

    ``lr = base_lr * (min_decay + (1 - min_decay) * (1 + cos(pi * t)) / 2)``
    with ``t = min(epoch, decay_steps) / decay_steps``.

    Args:
        decay_steps: the epochs the annealing takes, at least 1.
        min_decay: the fraction of ``base_lr`` reached at the end, in [0, 1].
    """

    decay_steps: int = 250
    min_decay: float = 0.01

    def __post_init__(self) -> None:
        _check_steps('decay_steps', self.decay_steps, minimum=1)
        _check_fraction('min_decay', self.min_decay)

    def _compute(self, base_lr: float, epoch: int) -> float:
        progress = min(epoch, self.decay_steps) / self.decay_steps
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return base_lr * (self.min_decay + (1.0 - self.min_decay) * cosine)


@dataclasses.dataclass(frozen=True, init=False)
class StepScheduler(AbstractScheduler):
    """Multiply the rate by ``gamma`` at each milestone epoch.

    ``lr = base_lr * gamma ** (number of milestones <= epoch)``

    Args:
        milestones: strictly increasing epochs, each at least 1.
        gamma: the factor applied at each milestone, positive.
    """

    milestones: tuple[int, ...]
    gamma: float

    def __init__(self, milestones: Sequence[int], gamma: float = 0.1) -> None:
        stones = tuple(milestones)
        for stone in stones:
            _check_steps('Each milestone', stone, minimum=1)
        if any(b <= a for a, b in itertools.pairwise(stones)):
            raise LearningSchemaError(
                f'milestones must be strictly increasing, got {list(stones)}.'
            )
        if not gamma > 0:
            raise LearningSchemaError(f'gamma must be positive, got {gamma!r}.')
        object.__setattr__(self, 'milestones', stones)
        object.__setattr__(self, 'gamma', gamma)

    def _compute(self, base_lr: float, epoch: int) -> float:
        return base_lr * self.gamma ** bisect.bisect_right(self.milestones, epoch)


@dataclasses.dataclass(frozen=True)
class PolynomialScheduler(AbstractScheduler):
    """Decay polynomially to a floor reached at ``max_epochs``.

    ``lr = base_lr * (min_decay + (1 - min_decay) * (1 - t) ** power)``
    with ``t = min(epoch, max_epochs) / max_epochs``.

    Args:
        max_epochs: the epoch where the floor is reached, at least 1.
        power: the exponent, positive (1 is a linear decay).
        min_decay: the fraction of ``base_lr`` kept at the end, in [0, 1].
    """

    max_epochs: int = 1000
    power: float = 1.0
    min_decay: float = 0.0

    def __post_init__(self) -> None:
        _check_steps('max_epochs', self.max_epochs, minimum=1)
        if not self.power > 0:
            raise LearningSchemaError(f'power must be positive, got {self.power!r}.')
        _check_fraction('min_decay', self.min_decay)

    def _compute(self, base_lr: float, epoch: int) -> float:
        remaining = 1.0 - min(epoch, self.max_epochs) / self.max_epochs
        shape = math.pow(remaining, self.power)
        decay = self.min_decay + (1.0 - self.min_decay) * shape
        return base_lr * decay


@dataclasses.dataclass(frozen=True)
class WarmupScheduler(AbstractScheduler):
    """Ramp up linearly, then follow ``base`` as if it started afresh.

    For ``epoch < warmup_steps`` the rate is ``base(base_lr, 0) * (epoch + 1)
    / (warmup_steps + 1)``: the ramp's first epoch already trains (a ramp
    from 0 would spend it at rate 0) and the rate rises by equal steps to the
    base's first rate, reached at ``epoch == warmup_steps``; afterwards it is
    ``base(base_lr, epoch - warmup_steps)``, so the wrapped schedule is not
    shortened by the warm-up.

    Args:
        base: the schedule followed after the warm-up.
        warmup_steps: the epochs of the ramp; 0 disables it.
    """

    base: AbstractScheduler
    warmup_steps: int

    def __post_init__(self) -> None:
        _check_steps('warmup_steps', self.warmup_steps, minimum=0)

    def _compute(self, base_lr: float, epoch: int) -> float:
        if epoch < self.warmup_steps:
            return self.base(base_lr, 0) * (epoch + 1) / (self.warmup_steps + 1)
        return self.base(base_lr, epoch - self.warmup_steps)


@dataclasses.dataclass(frozen=True)
class RestartScheduler(AbstractScheduler):
    """Restart ``base`` every ``restart_interval`` epochs (warm restarts).

    The k-th restart follows ``base`` from its epoch 0 again, its rates
    multiplied by ``restart_fraction ** k``. After ``max_restarts`` restarts,
    the last cycle continues ``base`` without restarting.

    Args:
        base: the schedule that is restarted.
        restart_interval: the epochs between restarts, at least 1.
        restart_fraction: the amplitude kept at each restart, in (0, 1].
        max_restarts: the most restarts, or None for no limit.
    """

    base: AbstractScheduler
    restart_interval: int
    restart_fraction: float = 1.0
    max_restarts: int | None = None

    def __post_init__(self) -> None:
        _check_steps('restart_interval', self.restart_interval, minimum=1)
        _check_fraction('restart_fraction', self.restart_fraction, allow_zero=False)
        if self.max_restarts is not None:
            _check_steps('max_restarts', self.max_restarts, minimum=0)

    def _compute(self, base_lr: float, epoch: int) -> float:
        cycle = epoch // self.restart_interval
        if self.max_restarts is not None:
            cycle = min(cycle, self.max_restarts)
        local_epoch = epoch - cycle * self.restart_interval
        return self.restart_fraction**cycle * self.base(base_lr, local_epoch)


def warmup(scheduler: AbstractScheduler, steps: int) -> WarmupScheduler:
    """Prefix ``scheduler`` with a linear warm-up of ``steps`` epochs."""
    return WarmupScheduler(scheduler, steps)


def restart(
    scheduler: AbstractScheduler, interval: int, fraction: float = 1.0
) -> RestartScheduler:
    """Restart ``scheduler`` every ``interval`` epochs, scaled by ``fraction``."""
    return RestartScheduler(scheduler, interval, fraction)
