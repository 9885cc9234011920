"""Hooks that run before or after each training epoch.

A hook is any callable taking the trainer. Stateful hooks also offer
``state_dict()`` and ``load_state_dict()``; the trainer saves that state in its
checkpoints, so early-stopping counters and plateau schedules continue exactly
after a resume.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from drytorch.core import exceptions

if TYPE_CHECKING:
    from drytorch.lib.train import Trainer

__all__ = [
    'EarlyStoppingCallback',
    'HookRegistry',
    'MetricMonitor',
    'ReduceLROnPlateau',
    'StatefulHook',
    'call_every',
    'saving_hook',
]

T = TypeVar('T')
Hook = Callable[[T], None]


class StatefulHook(Protocol):
    """A hook whose state belongs in checkpoints."""

    def __call__(self, trainer: Trainer[Any, Any, Any]) -> None:
        """Act on the trainer."""

    def state_dict(self) -> dict[str, Any]:
        """Return the state to save, as plain data."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state returned by ``state_dict``."""


class HookRegistry(Generic[T]):
    """An ordered list of hooks run one after the other."""

    def __init__(self) -> None:
        self._hooks: list[Hook[T]] = []

    def register(self, hook: Hook[T]) -> None:
        """Add a hook; it runs after those already registered."""
        if not callable(hook):
            raise TypeError(f'A hook must be callable with the trainer, got {hook!r}.')
        self._hooks.append(hook)

    def register_all(self, hooks: Iterable[Hook[T]]) -> None:
        """Add several hooks, in order."""
        for hook in hooks:
            self.register(hook)

    def execute(self, instance: T) -> None:
        """Run every hook on ``instance``."""
        for hook in self._hooks:
            hook(instance)

    def check(self, instance: T) -> None:
        """Let every hook with a ``check`` method refuse ``instance`` up front.

        The trainer calls it when training starts, so that a hook that cannot
        work (a metric the runner does not compute) fails before an epoch
        is spent, not after.
        """
        for hook in self._hooks:
            method = getattr(hook, 'check', None)
            if callable(method):
                method(instance)

    def state_dict(self) -> list[dict[str, Any] | None]:
        """Return each hook's state (``None`` for stateless hooks), in order."""
        return [
            hook.state_dict() if hasattr(hook, 'state_dict') else None
            for hook in self._hooks
        ]

    def load_state_dict(self, states: list[dict[str, Any] | None]) -> None:
        """Restore the hooks' states, saved by ``state_dict``.

        Raises:
            CheckpointError: the hooks differ from those that were saved.
        """
        if len(states) != len(self._hooks):
            raise exceptions.CheckpointError(
                f'The checkpoint holds the state of {len(states)} hooks, but '
                f'{len(self._hooks)} are registered: register the same hooks, in '
                'the same order, before loading.'
            )
        for hook, state in zip(self._hooks, states, strict=True):
            if state is not None and hasattr(hook, 'load_state_dict'):
                hook.load_state_dict(state)

    def __iter__(self) -> Iterator[Hook[T]]:
        return iter(self._hooks)

    def __len__(self) -> int:
        return len(self._hooks)

    def describe(self) -> list[str]:
        """Return the hooks' descriptions."""
        return [repr(hook) for hook in self._hooks]


class _EveryN:
    """Runs a hook at every ``interval``-th epoch from ``start``."""

    def __init__(self, interval: int, hook: Hook[Any], start: int) -> None:
        if interval < 1:
            raise ValueError(f'call_every needs an interval >= 1, got {interval}.')
        self.interval = interval
        self.hook = hook
        self.start = start

    def __call__(self, trainer: Trainer[Any, Any, Any]) -> None:
        epoch = trainer.model.epoch
        if epoch >= self.start and (epoch - self.start) % self.interval == 0:
            self.hook(trainer)

    def check(self, trainer: Trainer[Any, Any, Any]) -> None:
        inner = getattr(self.hook, 'check', None)
        if callable(inner):
            inner(trainer)

    def state_dict(self) -> dict[str, Any]:
        inner = getattr(self.hook, 'state_dict', None)
        return {'hook': inner()} if callable(inner) else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        inner = getattr(self.hook, 'load_state_dict', None)
        if callable(inner) and 'hook' in state:
            inner(state['hook'])

    def __repr__(self) -> str:
        return f'call_every({self.interval}, {self.hook!r}, start={self.start})'


def call_every(interval: int, hook: Hook[Any], start: int = 0) -> Hook[Any]:
    """Return a hook that runs ``hook`` every ``interval`` epochs from ``start``."""
    return _EveryN(interval, hook, start)


class _SavingHook:
    """Saves a checkpoint of the trainer."""

    def __call__(self, trainer: Trainer[Any, Any, Any]) -> None:
        trainer.save_checkpoint()

    def __repr__(self) -> str:
        return 'saving_hook'


saving_hook: Hook[Any] = _SavingHook()
"""Saves a checkpoint; combine with ``call_every(n, saving_hook)``."""


class MetricMonitor:
    """Follows one metric of a runner across epochs and tells when it improves.

    Args:
        metric: the metric's name; defaults to the first one the monitored
            runner computes (the loss, for a trainer).
        monitor: the runner to follow; defaults to the trainer's validation
            when it has one, else the trainer.
        min_delta: the smallest change that counts as an improvement.
        best_is: ``'higher'``, ``'lower'`` or ``'auto'`` (from the objective's
            ``higher_is_better``, lower when unknown).
        filter_fn: reduces the metric's history to the value compared
            (default: the last value).
    """

    def __init__(
        self,
        metric: str | None = None,
        monitor: Any = None,
        min_delta: float = 1e-8,
        best_is: Literal['auto', 'higher', 'lower'] = 'auto',
        filter_fn: Callable[[list[float]], float] | None = None,
    ) -> None:
        if best_is not in ('auto', 'higher', 'lower'):
            raise ValueError(
                f"best_is must be 'auto', 'higher' or 'lower': {best_is!r}"
            )
        if monitor is not None and not hasattr(monitor, 'computed_metrics'):
            raise TypeError(
                'monitor must be the runner to follow (the trainer, its '
                f'validation, a Diagnostic), such as monitor=trainer.validation; '
                f'got {monitor!r}.'
            )
        self.metric = _metric_name(metric)
        self.monitor = monitor
        if monitor is not None:
            self.check_runner(monitor)
        self.min_delta = min_delta
        self.best_is = best_is
        self.filter_fn = filter_fn or (lambda history: history[-1])
        self.history: list[float] = []
        self.best: float | None = None

    def check(self, trainer: Trainer[Any, Any, Any]) -> None:
        """Refuse, before training, a metric the monitored runner does not compute.

        Raises:
            ValueError: the metric's name is not among the runner's.
        """
        self.check_runner(self.monitor or trainer.validation or trainer)

    def check_runner(self, runner: Any) -> None:
        """Refuse a metric that ``runner``'s objective does not name."""
        objective = getattr(runner, 'objective', None)
        names = list(getattr(objective, 'higher_is_better', {}))
        if (
            self.metric is None
            or not names
            or not getattr(objective, 'computes_locally', True)  # names known late
            or self.metric in names
        ):
            return
        raise ValueError(
            f'{getattr(runner, "name", runner)} computes no metric '
            f'{self.metric!r}; it computes {", ".join(names)}.'
        )

    def record(self, trainer: Trainer[Any, Any, Any]) -> bool | None:
        """Record the metric's value at this epoch; return whether it improved.

        Returns ``None``, recording nothing, at epochs (or, as a post-step
        hook, at steps) where the monitored validation did not run (a
        validation interval longer than one epoch, a step between step
        validations): its last values are not new measurements.
        """
        runner = self.monitor or trainer.validation or trainer
        validation = trainer.validation
        if (
            validation is not None
            and runner is validation
            and (
                validation.computed_epoch != trainer.model.epoch
                or validation.computed_step not in (None, trainer.steps)
            )
        ):
            return None  # not validated at this epoch or step: nothing new
        metrics = runner.computed_metrics
        if not metrics:
            raise exceptions.TrainingError(
                f'{runner.name} has no metrics to monitor yet: run it before '
                'this hook, or monitor the trainer instead.'
            )
        name = self.metric or next(iter(metrics))
        if name not in metrics:
            raise exceptions.TrainingError(
                f'{runner.name} computes no metric {name!r}; it computes '
                f'{", ".join(metrics)}.'
            )
        self.history.append(metrics[name])
        value = self.filter_fn(self.history)
        higher = self._higher_is_better(runner, name)
        if self.best is None or math.isnan(self.best):
            improved = not math.isnan(value)
        elif higher:
            improved = value > self.best + self.min_delta
        else:
            improved = value < self.best - self.min_delta
        if improved:
            self.best = value
        return improved

    def _higher_is_better(self, runner: Any, name: str) -> bool:
        if self.best_is != 'auto':
            return self.best_is == 'higher'
        directions = getattr(runner.objective, 'higher_is_better', {})
        return bool(directions.get(name, False))

    def state_dict(self) -> dict[str, Any]:
        """Return the history and the best value."""
        return {'history': list(self.history), 'best': self.best}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the history and the best value."""
        self.history = list(state['history'])
        self.best = state['best']


class EarlyStoppingCallback:
    """Stops training when a metric has not improved for ``patience`` epochs.

    Monitors the validation when the trainer has one, else the trainer; see
    ``MetricMonitor`` for the arguments shared with ``ReduceLROnPlateau``.
    With a validation interval above one, only the validated epochs count.

    Args:
        metric: the metric's name (default: the first, the loss).
        monitor: the runner to follow.
        min_delta: the smallest change that counts as an improvement.
        patience: epochs without improvement after which training stops.
        best_is: ``'auto'``, ``'higher'`` or ``'lower'``.
        filter_fn: reduces the history to the value compared.
        start_from_epoch: the first epoch at which stopping may happen.
    """

    def __init__(
        self,
        metric: str | None = None,
        monitor: Any = None,
        min_delta: float = 1e-8,
        patience: int = 10,
        best_is: Literal['auto', 'higher', 'lower'] = 'auto',
        filter_fn: Callable[[list[float]], float] | None = None,
        start_from_epoch: int = 2,
    ) -> None:
        if patience < 0:
            raise ValueError(f'patience must be >= 0, got {patience}.')
        self.monitor = MetricMonitor(metric, monitor, min_delta, best_is, filter_fn)
        self.patience = patience
        self.start_from_epoch = start_from_epoch
        self.epochs_without_improvement = 0

    def check(self, trainer: Trainer[Any, Any, Any]) -> None:
        """Refuse, before training, a metric the monitored runner does not compute."""
        self.monitor.check(trainer)

    def __call__(self, trainer: Trainer[Any, Any, Any]) -> None:
        """Record this epoch's value and stop training when patience ran out."""
        improved = self.monitor.record(trainer)
        if improved is None:  # no validation at this epoch
            return
        if improved:
            self.epochs_without_improvement = 0
            return
        self.epochs_without_improvement += 1
        epoch = trainer.model.epoch
        waited = self.epochs_without_improvement
        if waited >= self.patience and epoch >= self.start_from_epoch:
            name = self.monitor.metric or 'the monitored metric'
            trainer.terminate_training(
                f'early stopping: {name} did not improve for {waited} epochs '
                f'(best {self.monitor.best:.4g})'
            )

    def state_dict(self) -> dict[str, Any]:
        """Return the monitor's state and the epochs without improvement."""
        return {
            'monitor': self.monitor.state_dict(),
            'waited': self.epochs_without_improvement,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state saved by ``state_dict``."""
        self.monitor.load_state_dict(state['monitor'])
        self.epochs_without_improvement = int(state['waited'])

    def __repr__(self) -> str:
        return (
            f'EarlyStoppingCallback(metric={self.monitor.metric!r}, '
            f'patience={self.patience})'
        )


class ReduceLROnPlateau:
    """Multiplies the learning rate by ``factor`` when a metric plateaus.

    Repeated plateaus compound: after two, the rate is ``factor**2`` times the
    scheduled one, as in ``torch.optim.lr_scheduler.ReduceLROnPlateau``.

    Args:
        metric: the metric's name (default: the first, the loss).
        monitor: the runner to follow.
        min_delta: the smallest change that counts as an improvement.
        patience: epochs without improvement tolerated; the next one reduces
            the rate (as in torch).
        best_is: ``'auto'``, ``'higher'`` or ``'lower'``.
        filter_fn: reduces the history to the value compared.
        factor: the multiplier, in (0, 1).
        cooldown: epochs to wait after a reduction before counting again.
    """

    def __init__(
        self,
        metric: str | None = None,
        monitor: Any = None,
        min_delta: float = 1e-8,
        patience: int = 10,
        best_is: Literal['auto', 'higher', 'lower'] = 'auto',
        filter_fn: Callable[[list[float]], float] | None = None,
        factor: float = 0.1,
        cooldown: int = 0,
    ) -> None:
        if not 0 < factor < 1:
            raise ValueError(f'factor must be in (0, 1), got {factor}.')
        self.monitor = MetricMonitor(metric, monitor, min_delta, best_is, filter_fn)
        self.patience = patience
        self.factor = factor
        self.cooldown = cooldown
        self.epochs_without_improvement = 0
        self.cooldown_left = 0

    def check(self, trainer: Trainer[Any, Any, Any]) -> None:
        """Refuse, before training, a metric the monitored runner does not compute."""
        self.monitor.check(trainer)

    def __call__(self, trainer: Trainer[Any, Any, Any]) -> None:
        """Record this epoch's value and reduce the rate on a plateau."""
        improved = self.monitor.record(trainer)
        if improved is None:  # no validation at this epoch
            return
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            return
        if improved:
            self.epochs_without_improvement = 0
            return
        self.epochs_without_improvement += 1
        if self.epochs_without_improvement > self.patience:
            trainer.update_learning_rate(
                factor=trainer.lr_factor * self.factor, reason='plateau'
            )
            self.epochs_without_improvement = 0
            self.cooldown_left = self.cooldown

    def state_dict(self) -> dict[str, Any]:
        """Return the monitor's state and the counters."""
        return {
            'monitor': self.monitor.state_dict(),
            'waited': self.epochs_without_improvement,
            'cooldown_left': self.cooldown_left,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state saved by ``state_dict``."""
        self.monitor.load_state_dict(state['monitor'])
        self.epochs_without_improvement = int(state['waited'])
        self.cooldown_left = int(state['cooldown_left'])

    def __repr__(self) -> str:
        return f'ReduceLROnPlateau(factor={self.factor}, patience={self.patience})'


def _metric_name(metric: object) -> str | None:
    """Return the name of the metric to monitor, given by name or as an objective.

    Raises:
        TypeError: ``metric`` is neither a name nor an objective with one name.
    """
    if metric is None or (isinstance(metric, str) and metric):
        return metric
    name = getattr(metric, 'name', None)
    if isinstance(name, str) and name:
        return name  # a Loss or a Metric: its name
    names = list(getattr(metric, 'higher_is_better', {}))
    if len(names) == 1:
        return str(names[0])
    raise TypeError(
        'metric must be the name of a metric, or a Loss or Metric; got '
        f'{metric!r}'
        + (f' (which names {", ".join(names)}: pick one)' if names else '')
        + '.'
    )
