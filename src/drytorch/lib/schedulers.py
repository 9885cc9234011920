"""Learning-rate schedules as pure functions of the epoch.

A schedule maps ``(base_lr, epoch)`` to a learning rate and keeps no state, so
resuming a run at any epoch gives exactly the rate it would have had, and the
schedule is fully described by its ``repr`` (recorded as run metadata).
Schedules are frozen dataclasses: they compare by value and can be used as
defaults of frozen configurations.

Transforms wrap a schedule: ``warmup(CosineScheduler(), 5)`` or, fluently
and as the original DRYTorch spells it, ``CosineScheduler().bind(warmup(5))``:
called without a schedule first, ``warmup``, ``restart`` and ``rescale``
return the one-argument transform that ``bind`` applies.
"""

from __future__ import annotations

import abc
import bisect
import dataclasses
import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar, overload

from drytorch.core.exceptions import LearningSchemaError

__all__ = [
    'AbstractScheduler',
    'ConstantScheduler',
    'CosineScheduler',
    'ExponentialScheduler',
    'PolynomialScheduler',
    'RescaleScheduler',
    'RestartScheduler',
    'ShiftedScheduler',
    'StepScheduler',
    'WarmupScheduler',
    'rescale',
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
        milestones: strictly increasing epochs, each at least 1 (default:
            200, the original DRYTorch's).
        gamma: the factor applied at each milestone, positive.
    """

    milestones: tuple[int, ...]
    gamma: float

    def __init__(self, milestones: Sequence[int] = (200,), gamma: float = 0.1) -> None:
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


def _base_of(name: str, base: object, logic: object) -> AbstractScheduler:
    """Return the wrapped schedule, given as ``base`` or (the original) ``logic``."""
    if base is not None and logic is not None:
        raise LearningSchemaError(f'{name}: give base or logic, not both.')
    chosen = base if base is not None else logic
    if not isinstance(chosen, AbstractScheduler):
        raise LearningSchemaError(
            f'{name} wraps a drytorch schedule (lib.schedulers), got {chosen!r}.'
        )
    return chosen


@dataclasses.dataclass(frozen=True, init=False)
class WarmupScheduler(AbstractScheduler):
    """Ramp up linearly, then follow ``base`` as if it started afresh.

    For ``epoch < warmup_steps`` the rate is ``base(base_lr, 0) * (epoch + 1)
    / (warmup_steps + 1)``: the ramp's first epoch already trains (a ramp
    from 0 would spend it at rate 0) and the rate rises by equal steps to the
    base's first rate, reached at ``epoch == warmup_steps``; afterwards it is
    ``base(base_lr, epoch - warmup_steps)``, so the wrapped schedule is not
    shortened by the warm-up.

    Args:
        base: the schedule followed after the warm-up (``logic=``, as the
            original DRYTorch names it, is accepted).
        warmup_steps: the epochs of the ramp; 0 disables it.
    """

    base: AbstractScheduler
    warmup_steps: int

    def __init__(
        self,
        base: AbstractScheduler | None = None,
        warmup_steps: int = 10,
        *,
        logic: AbstractScheduler | None = None,
    ) -> None:
        _check_steps('warmup_steps', warmup_steps, minimum=0)
        object.__setattr__(self, 'base', _base_of('WarmupScheduler', base, logic))
        object.__setattr__(self, 'warmup_steps', warmup_steps)

    @property
    def logic(self) -> AbstractScheduler:
        """The wrapped schedule, by the original DRYTorch's name."""
        return self.base

    def _compute(self, base_lr: float, epoch: int) -> float:
        if epoch < self.warmup_steps:
            return self.base(base_lr, 0) * (epoch + 1) / (self.warmup_steps + 1)
        return self.base(base_lr, epoch - self.warmup_steps)


@dataclasses.dataclass(frozen=True, init=False)
class RestartScheduler(AbstractScheduler):
    """Restart ``base`` every ``restart_interval`` epochs (warm restarts).

    The k-th restart follows ``base`` from its epoch 0 again, its rates
    multiplied by ``restart_fraction ** k``. After ``max_restarts`` restarts,
    the last cycle continues ``base`` without restarting.

    Args:
        base: the schedule that is restarted (or ``logic=``).
        restart_interval: the epochs between restarts, at least 1.
        restart_fraction: the amplitude kept at each restart, in (0, 1].
        max_restarts: the most restarts, or None for no limit
            (``max_restart=``, the original's spelling, is accepted).
    """

    base: AbstractScheduler
    restart_interval: int
    restart_fraction: float = 1.0
    max_restarts: int | None = None

    def __init__(
        self,
        base: AbstractScheduler | None = None,
        restart_interval: int = 0,
        restart_fraction: float = 1.0,
        max_restarts: int | None = None,
        *,
        logic: AbstractScheduler | None = None,
        max_restart: int | None = None,
    ) -> None:
        if max_restarts is not None and max_restart is not None:
            raise LearningSchemaError(
                'RestartScheduler: give max_restarts or max_restart, not both.'
            )
        limit = max_restarts if max_restarts is not None else max_restart
        _check_steps('restart_interval', restart_interval, minimum=1)
        _check_fraction('restart_fraction', restart_fraction, allow_zero=False)
        if limit is not None:
            _check_steps('max_restarts', limit, minimum=0)
        object.__setattr__(self, 'base', _base_of('RestartScheduler', base, logic))
        object.__setattr__(self, 'restart_interval', restart_interval)
        object.__setattr__(self, 'restart_fraction', restart_fraction)
        object.__setattr__(self, 'max_restarts', limit)

    @property
    def logic(self) -> AbstractScheduler:
        """The wrapped schedule, by the original DRYTorch's name."""
        return self.base

    @property
    def max_restart(self) -> int | None:
        """``max_restarts``, by the original DRYTorch's name."""
        return self.max_restarts

    def _compute(self, base_lr: float, epoch: int) -> float:
        cycle = epoch // self.restart_interval
        if self.max_restarts is not None:
            cycle = min(cycle, self.max_restarts)
        local_epoch = epoch - cycle * self.restart_interval
        return self.restart_fraction**cycle * self.base(base_lr, local_epoch)


@dataclasses.dataclass(frozen=True, init=False)
class RescaleScheduler(AbstractScheduler):
    """Multiply the rates of ``base`` by ``factor``.

    Args:
        base: the schedule rescaled (or ``logic=``).
        factor: the multiplier, positive.
    """

    base: AbstractScheduler
    factor: float

    def __init__(
        self,
        base: AbstractScheduler | None = None,
        factor: float = 1.0,
        *,
        logic: AbstractScheduler | None = None,
    ) -> None:
        if not 0 < factor < math.inf:
            raise LearningSchemaError(
                f'factor must be positive and finite, got {factor!r}.'
            )
        object.__setattr__(self, 'base', _base_of('RescaleScheduler', base, logic))
        object.__setattr__(self, 'factor', factor)

    @property
    def logic(self) -> AbstractScheduler:
        """The wrapped schedule, by the original DRYTorch's name."""
        return self.base

    def _compute(self, base_lr: float, epoch: int) -> float:
        return self.factor * self.base(base_lr, epoch)


@dataclasses.dataclass(frozen=True)
class ShiftedScheduler(AbstractScheduler):
    """Follow ``base`` as if it had started at epoch ``start``.

    Before ``start`` the rate is the base's first; ``RestartScheduleOnPlateau``
    uses it to start a schedule afresh where a metric plateaued.

    Args:
        base: the schedule followed.
        start: the epoch (or step) that counts as the base's epoch 0.
    """

    base: AbstractScheduler
    start: int

    def __post_init__(self) -> None:
        _check_steps('start', self.start, minimum=0)

    def _compute(self, base_lr: float, epoch: int) -> float:
        return self.base(base_lr, max(epoch - self.start, 0))


def _parse(
    name: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    ours: Sequence[str],
    original: Sequence[str],
) -> tuple[AbstractScheduler | None, dict[str, Any]]:
    """Split a transform's call into the schedule (ours) and its options.

    Our form takes the schedule first; the original's only the options and
    returns a transform. A schedule as the first argument (or
    ``scheduler=``) picks ours.
    """
    scheduler = kwargs.pop('scheduler', None)
    if scheduler is None and args and isinstance(args[0], AbstractScheduler):
        scheduler, args = args[0], args[1:]
    names = ours if scheduler is not None else original
    if len(args) > len(names):
        raise TypeError(f'{name}() takes at most {len(names)} options, got {args!r}.')
    options = dict(zip(names, args, strict=False))
    for key, value in kwargs.items():
        if key in options:
            raise TypeError(f'{name}() got {key!r} twice.')
        options[key] = value
    return scheduler, options


def _either(options: dict[str, Any], ours: str, original: str, default: Any) -> Any:
    """Pop an option given by our name or by the original's, not both."""
    if ours in options and original in options:
        raise TypeError(f'Give {ours} or {original}, not both.')
    if ours in options:
        return options.pop(ours)
    return options.pop(original, default)


@overload
def warmup(scheduler: AbstractScheduler, steps: int) -> WarmupScheduler: ...


@overload
def warmup(
    warmup_steps: int = 10,
) -> Callable[[AbstractScheduler], WarmupScheduler]: ...


def warmup(*args: Any, **kwargs: Any) -> Any:
    """Prefix a schedule with a linear warm-up.

    ``warmup(scheduler, steps)`` returns the warmed-up schedule;
    ``warmup(warmup_steps=10)``, without a schedule, returns the transform for
    ``scheduler.bind(warmup(10))``, as in the original DRYTorch.
    """
    scheduler, options = _parse('warmup', args, kwargs, ['steps'], ['warmup_steps'])
    steps = _either(options, 'steps', 'warmup_steps', 10)
    if options:
        raise TypeError(f'warmup() got unexpected options {sorted(options)}.')
    _check_steps('warmup_steps', steps, minimum=0)
    if scheduler is not None:
        return WarmupScheduler(scheduler, steps)
    return _Transform(lambda s: WarmupScheduler(s, steps), f'warmup({steps})')


@overload
def restart(
    scheduler: AbstractScheduler, interval: int, fraction: float = 1.0
) -> RestartScheduler: ...


@overload
def restart(
    restart_interval: int,
    restart_fraction: float = 1.0,
    max_restart: int | None = None,
) -> Callable[[AbstractScheduler], RestartScheduler]: ...


def restart(*args: Any, **kwargs: Any) -> Any:
    """Restart a schedule every ``interval`` epochs, scaled by ``fraction``.

    ``restart(scheduler, interval, fraction=1.0)`` returns the schedule;
    ``restart(restart_interval, restart_fraction=1.0, max_restart=None)``,
    without a schedule, returns the transform for ``scheduler.bind(...)``.
    """
    scheduler, options = _parse(
        'restart',
        args,
        kwargs,
        ['interval', 'fraction', 'max_restarts'],
        ['restart_interval', 'restart_fraction', 'max_restart'],
    )
    interval = _either(options, 'interval', 'restart_interval', None)
    fraction = _either(options, 'fraction', 'restart_fraction', 1.0)
    limit = _either(options, 'max_restarts', 'max_restart', None)
    if options:
        raise TypeError(f'restart() got unexpected options {sorted(options)}.')
    if interval is None:
        raise TypeError('restart() needs the restart interval.')

    def build(base: AbstractScheduler) -> RestartScheduler:
        return RestartScheduler(base, interval, fraction, limit)

    if scheduler is not None:
        return build(scheduler)
    build(ConstantScheduler())  # refuse bad options now, not when bound
    return _Transform(build, f'restart({interval}, {fraction}, {limit})')


@overload
def rescale(scheduler: AbstractScheduler, factor: float) -> RescaleScheduler: ...


@overload
def rescale(factor: float) -> Callable[[AbstractScheduler], RescaleScheduler]: ...


def rescale(*args: Any, **kwargs: Any) -> Any:
    """Multiply a schedule by ``factor``.

    ``rescale(scheduler, factor)`` returns the schedule; ``rescale(factor)``
    the transform for ``scheduler.bind(rescale(0.5))``.
    """
    scheduler, options = _parse('rescale', args, kwargs, ['factor'], ['factor'])
    if 'factor' not in options or len(options) > 1:
        raise TypeError(f'rescale() needs exactly a factor, got {options!r}.')
    factor = options['factor']
    if scheduler is not None:
        return RescaleScheduler(scheduler, factor)
    RescaleScheduler(ConstantScheduler(), factor)  # refuse a bad factor now
    return _Transform(lambda s: RescaleScheduler(s, factor), f'rescale({factor})')


class _Transform(Generic[_T]):
    """A one-argument transform for ``AbstractScheduler.bind``, with a repr."""

    def __init__(self, build: Callable[[AbstractScheduler], _T], text: str) -> None:
        self._build = build
        self._text = text

    def __call__(self, scheduler: AbstractScheduler) -> _T:
        if not isinstance(scheduler, AbstractScheduler):
            raise LearningSchemaError(
                f'{self._text} transforms a drytorch schedule, got {scheduler!r}.'
            )
        return self._build(scheduler)

    def __repr__(self) -> str:
        return self._text
