"""Callbacks that act on a monitored metric: stop, prune, or change the schedule.

Importable from ``drytorch.lib.hooks``. Each is a generic class,
``EarlyStoppingCallback[Output, Target]``, called with the trainer after each
epoch (or, as a post-step hook, after each step validation). ``metric`` may be
a name, a ``Loss``/``Metric`` object or None (the loss, or the runner's first
metric); ``monitor`` the runner to read (default: the validation if any, else
the trainer). Their state goes into the trainer's checkpoints.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic

from typing_extensions import TypeVar  # a torch dependency; defaults for 3.11

from drytorch.lib.monitors import BestIs, FilterFn, MetricMonitor
from drytorch.lib.schedulers import (
    AbstractScheduler,
    RescaleScheduler,
    ShiftedScheduler,
)

if TYPE_CHECKING:
    from drytorch.lib.train import Trainer

__all__ = [
    'ChangeSchedulerOnPlateauCallback',
    'EarlyStoppingCallback',
    'PruneCallback',
    'ReduceLROnPlateau',
    'RestartScheduleOnPlateau',
]

# defaults: an unsubscripted EarlyStoppingCallback() is [Any, Any] for mypy
Output = TypeVar('Output', default=Any)
Target = TypeVar('Target', default=Any)


class EarlyStoppingCallback(Generic[Output, Target]):
    """Stops training when a metric has not improved for ``patience`` epochs.

    With a validation interval above one, only the validated epochs count.

    Args:
        metric: the metric's name or object (default: the first, the loss).
        monitor: the runner to follow.
        min_delta: the smallest change that counts as an improvement.
        patience: epochs without improvement after which training stops.
        best_is: ``'auto'``, ``'higher'`` or ``'lower'``.
        filter_fn: reduces the history to the value compared.
        start_from_epoch: the first epoch at which stopping may happen.
    """

    def __init__(
        self,
        metric: object = None,
        monitor: Any = None,
        min_delta: float = 1e-8,
        patience: int = 10,
        best_is: BestIs = 'auto',
        filter_fn: FilterFn | None = None,
        start_from_epoch: int = 2,
    ) -> None:
        if patience < 0:
            raise ValueError(f'patience must be >= 0, got {patience}.')
        self.monitor = MetricMonitor(
            metric,
            monitor,
            min_delta=min_delta,
            patience=patience,
            best_is=best_is,
            filter_fn=filter_fn,
        )
        self.patience = patience
        self.start_from_epoch = start_from_epoch

    @property
    def epochs_without_improvement(self) -> int:
        """Epochs since the metric last improved."""
        return self.monitor.tracker.epochs_without_improvement

    def check(self, trainer: Trainer[Any, Target, Output]) -> None:
        """Refuse, before training, a metric the monitored runner does not compute."""
        self.monitor.check(trainer)

    def __call__(self, trainer: Trainer[Any, Target, Output]) -> None:
        """Record this epoch's value and stop training when patience ran out."""
        improved = self.monitor.record(trainer)
        if improved is None or improved:  # not validated now, or better
            return
        if not self.monitor.is_patient() and trainer.model.epoch >= (
            self.start_from_epoch
        ):
            name = self.monitor.metric_name or 'the monitored metric'
            trainer.terminate_training(
                f'early stopping: {name} did not improve for '
                f'{self.epochs_without_improvement} epochs '
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
        self.monitor.tracker.epochs_without_improvement = int(state['waited'])

    def __repr__(self) -> str:
        return (
            f'EarlyStoppingCallback(metric={self.monitor.metric!r}, '
            f'patience={self.patience})'
        )


class PruneCallback(Generic[Output, Target]):
    """Stops training at epoch ``e`` when the metric is worse than ``thresholds[e]``.

    Prunes unpromising runs of a hyperparameter search early: at each epoch
    listed, the filtered value must be at least as good as its threshold
    (within ``min_delta``); a NaN never is.

    Args:
        thresholds: the threshold by epoch; epochs not listed (or None) are
            not checked.
        metric: the metric's name or object (default: the first, the loss).
        monitor: the runner to follow.
        min_delta: the margin by which the threshold must be missed.
        best_is: ``'auto'``, ``'higher'`` or ``'lower'``.
        filter_fn: reduces the history to the value compared.
    """

    def __init__(
        self,
        thresholds: Mapping[int, float | None],
        metric: object = None,
        monitor: Any = None,
        min_delta: float = 1e-8,
        best_is: BestIs = 'auto',
        filter_fn: FilterFn | None = None,
    ) -> None:
        if not isinstance(thresholds, Mapping):
            raise TypeError(
                'thresholds must map epochs to thresholds, such as {5: 0.9}; '
                f'got {thresholds!r}.'
            )
        self.thresholds = dict(thresholds)
        self.monitor = MetricMonitor(
            metric, monitor, min_delta=min_delta, best_is=best_is, filter_fn=filter_fn
        )

    def check(self, trainer: Trainer[Any, Target, Output]) -> None:
        """Refuse, before training, a metric the monitored runner does not compute."""
        self.monitor.check(trainer)

    def __call__(self, trainer: Trainer[Any, Target, Output]) -> None:
        """Record this epoch's value; stop training when it misses its threshold."""
        if self.monitor.record(trainer) is None:
            return
        epoch = trainer.model.epoch
        threshold = self.thresholds.get(epoch)
        if threshold is None:
            return
        value = self.monitor.filtered_value
        if math.isnan(value) or self.monitor.is_better(threshold, value):
            name = self.monitor.metric_name or 'the monitored metric'
            trainer.terminate_training(
                f'pruned: {name} is {value:.4g} at epoch {epoch}, worse than '
                f'the threshold {threshold:.4g}'
            )

    def state_dict(self) -> dict[str, Any]:
        """Return the monitor's state."""
        return {'monitor': self.monitor.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state saved by ``state_dict``."""
        self.monitor.load_state_dict(state['monitor'])

    def __repr__(self) -> str:
        return f'PruneCallback(metric={self.monitor.metric!r}, {self.thresholds!r})'


class ChangeSchedulerOnPlateauCallback(abc.ABC, Generic[Output, Target]):
    """Replaces the learning-rate schedule when a metric plateaus.

    After more than ``patience`` epochs without improvement (as torch counts
    patience: ``patience=0`` acts at the first), each optimizer's schedule
    becomes ``get_scheduler(position, schedule)``; then ``cooldown`` epochs
    pass before epochs count again. The positions of the changes are part of
    the state, so a resumed run rebuilds the same schedule when training
    starts.

    Args:
        metric: the metric's name or object (default: the first, the loss).
        monitor: the runner to follow.
        min_delta: the smallest change that counts as an improvement.
        patience: epochs without improvement tolerated.
        best_is: ``'auto'``, ``'higher'`` or ``'lower'``.
        filter_fn: reduces the history to the value compared.
        cooldown: epochs to wait after a change before counting again.
    """

    def __init__(
        self,
        metric: object = None,
        monitor: Any = None,
        min_delta: float = 1e-8,
        patience: int = 0,
        best_is: BestIs = 'auto',
        filter_fn: FilterFn | None = None,
        cooldown: int = 0,
    ) -> None:
        if isinstance(cooldown, bool) or not isinstance(cooldown, int) or cooldown < 0:
            raise ValueError(f'cooldown must be an integer >= 0, got {cooldown!r}.')
        self.monitor = MetricMonitor(
            metric,
            monitor,
            min_delta=min_delta,
            patience=patience,
            best_is=best_is,
            filter_fn=filter_fn,
        )
        self.patience = patience
        self.cooldown = cooldown
        self.cooldown_left = 0
        self.changes: list[int] = []
        """The schedule positions where the schedule was changed."""
        self._installed: dict[str, Any] = {}

    @abc.abstractmethod
    def get_scheduler(
        self, epoch: int, scheduler: AbstractScheduler
    ) -> AbstractScheduler:
        """Return the schedule to follow from ``epoch`` on, replacing ``scheduler``.

        ``epoch`` is the schedule's position: the epoch, or the optimizer
        step for a schema with ``interval='step'``.
        """

    @property
    def epochs_without_improvement(self) -> int:
        """Epochs since the metric last improved (or since the cooldown ended)."""
        return self.monitor.tracker.epochs_without_improvement

    def check(self, trainer: Trainer[Any, Target, Output]) -> None:
        """Refuse a metric the runner does not compute; rebuild a resumed schedule.

        Raises:
            MetricNotFoundError: the runner does not compute the metric.
            TypeError: a schedule is not a drytorch one (a torch scheduler).
        """
        self.monitor.check(trainer)
        for schema in trainer.learning_schemas.values():
            _ours(schema.scheduler)  # before an epoch is spent
        if not self.changes:
            return
        for part, schema in trainer.learning_schemas.items():
            if schema.scheduler is self._installed.get(part):
                continue  # this trainer follows the changed schedule already
            scheduler = schema.scheduler
            for position in self.changes:
                scheduler = self.get_scheduler(position, _ours(scheduler))
            self._install(trainer, part, scheduler)

    def __call__(self, trainer: Trainer[Any, Target, Output]) -> None:
        """Record this epoch's value and change the schedule on a plateau."""
        improved = self.monitor.record(trainer)
        if improved is None:  # no validation at this epoch
            return
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.monitor.tracker.reset_patience()
            return
        if improved or self.epochs_without_improvement <= self.patience:
            return
        self.on_plateau(trainer)
        self.monitor.tracker.reset_patience()
        self.cooldown_left = self.cooldown

    def on_plateau(self, trainer: Trainer[Any, Target, Output]) -> None:
        """Swap every optimizer's schedule for the one ``get_scheduler`` returns."""
        position = trainer.model.epoch
        for part, schema in trainer.learning_schemas.items():
            at = trainer.steps if schema.interval == 'step' else position
            self._install(
                trainer, part, self.get_scheduler(at, _ours(schema.scheduler))
            )
        self.changes.append(position)

    def _install(
        self, trainer: Trainer[Any, Target, Output], part: str, scheduler: Any
    ) -> None:
        trainer.update_learning_rate(
            scheduler=scheduler, reason='plateau', optimizer=part
        )
        self._installed[part] = trainer.learning_schemas[part].scheduler

    def state_dict(self) -> dict[str, Any]:
        """Return the monitor's state, the counters and the changes."""
        return {
            'monitor': self.monitor.state_dict(),
            'waited': self.epochs_without_improvement,
            'cooldown_left': self.cooldown_left,
            'changes': list(self.changes),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the state saved by ``state_dict``."""
        self.monitor.load_state_dict(state['monitor'])
        self.monitor.tracker.epochs_without_improvement = int(state['waited'])
        self.cooldown_left = int(state['cooldown_left'])
        self.changes = [int(position) for position in state.get('changes', [])]
        self._installed = {}

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(metric={self.monitor.metric!r}, '
            f'patience={self.patience}, cooldown={self.cooldown})'
        )


def _ours(scheduler: object) -> AbstractScheduler:
    if not isinstance(scheduler, AbstractScheduler):
        raise TypeError(
            'Changing the schedule on a plateau needs a drytorch schedule '
            f'(lib.schedulers), not {scheduler!r}; ReduceLROnPlateau works with '
            'torch schedulers too.'
        )
    return scheduler


class ReduceLROnPlateau(ChangeSchedulerOnPlateauCallback[Output, Target]):
    """Multiplies the learning rate by ``factor`` when a metric plateaus.

    Acts through the trainer's ``lr_factor``, so it works with torch schedulers
    too, and repeated plateaus compound: after two, the rate is ``factor**2``
    times the scheduled one, as in ``torch.optim.lr_scheduler.ReduceLROnPlateau``.

    Args:
        metric: the metric's name or object (default: the first, the loss).
        monitor: the runner to follow.
        min_delta: the smallest change that counts as an improvement.
        patience: epochs without improvement tolerated; the next one reduces
            the rate (as in torch). Ours defaults to 10, the original's to 0.
        best_is: ``'auto'``, ``'higher'`` or ``'lower'``.
        filter_fn: reduces the history to the value compared.
        factor: the multiplier, in (0, 1).
        cooldown: epochs to wait after a reduction before counting again.
    """

    def __init__(
        self,
        metric: object = None,
        monitor: Any = None,
        min_delta: float = 1e-8,
        patience: int = 10,
        best_is: BestIs = 'auto',
        filter_fn: FilterFn | None = None,
        factor: float = 0.1,
        cooldown: int = 0,
    ) -> None:
        if not 0 < factor < 1:
            raise ValueError(f'factor must be in (0, 1), got {factor}.')
        super().__init__(
            metric, monitor, min_delta, patience, best_is, filter_fn, cooldown
        )
        self.factor = factor

    def get_scheduler(
        self, epoch: int, scheduler: AbstractScheduler
    ) -> AbstractScheduler:
        """Return ``scheduler`` rescaled by ``factor``."""
        return RescaleScheduler(scheduler, self.factor)

    def check(self, trainer: Trainer[Any, Target, Output]) -> None:
        """Refuse, before training, a metric the monitored runner does not compute."""
        self.monitor.check(trainer)  # the factor is in the checkpoint already

    def on_plateau(self, trainer: Trainer[Any, Target, Output]) -> None:
        """Multiply the trainer's ``lr_factor`` by ``factor``."""
        trainer.update_learning_rate(
            factor=trainer.lr_factor * self.factor, reason='plateau'
        )

    def state_dict(self) -> dict[str, Any]:
        """Return the monitor's state and the counters."""
        return {
            'monitor': self.monitor.state_dict(),
            'waited': self.epochs_without_improvement,
            'cooldown_left': self.cooldown_left,
        }

    def __repr__(self) -> str:
        return f'ReduceLROnPlateau(factor={self.factor}, patience={self.patience})'


class RestartScheduleOnPlateau(ChangeSchedulerOnPlateauCallback[Output, Target]):
    """Restarts the schedule from its beginning when a metric plateaus.

    From the plateau on, the rate follows the schedule as at its first epoch
    (a warm restart decided by the metric rather than by the epoch count).
    Arguments as for ``ChangeSchedulerOnPlateauCallback``.
    """

    def get_scheduler(
        self, epoch: int, scheduler: AbstractScheduler
    ) -> AbstractScheduler:
        """Return the schedule that starts ``scheduler`` afresh at ``epoch``."""
        if isinstance(scheduler, ShiftedScheduler):  # restarted before: anew
            scheduler = scheduler.base
        return ShiftedScheduler(scheduler, epoch)
