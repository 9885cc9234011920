"""Following one metric across epochs: its history, best value and patience.

``MetricTracker`` knows nothing of runners: it is fed values and tells whether
they improve. ``MetricExtractor`` resolves which runner and which metric to
read. ``MetricMonitor`` joins the two for the callbacks of ``lib.hooks``; all
three are importable from ``drytorch.lib.hooks`` as in the original DRYTorch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from drytorch.core import exceptions

if TYPE_CHECKING:
    from drytorch.lib.train import Trainer

__all__ = ['MetricExtractor', 'MetricMonitor', 'MetricTracker', 'last']

BestIs = Literal['auto', 'higher', 'lower']
FilterFn = Callable[[list[float]], float]


def last(history: Sequence[float]) -> float:
    """Return the last value of ``history``: the default ``filter_fn``."""
    return history[-1]


def _check_best_is(best_is: object) -> None:
    if best_is not in ('auto', 'higher', 'lower'):
        raise ValueError(f"best_is must be 'auto', 'higher' or 'lower': {best_is!r}")


class MetricTracker:
    """A metric's history, its best value and how long it has not improved.

    Each value added is appended to ``history``; ``filter_fn`` reduces the
    history to the value compared (smoothing a noisy metric), and the best of
    those is ``best_value``. ``best_is='auto'`` compares as ``higher_is_better``
    says (set by ``MetricExtractor`` from the objective), lower when unknown.

    Args:
        metric_name: the metric's name, for messages.
        min_delta: the smallest change that counts as an improvement.
        patience: how many values in a row may fail to improve before
            ``is_patient()`` turns false (at least one always may).
        best_is: ``'auto'``, ``'higher'`` or ``'lower'``.
        filter_fn: reduces the history to the value compared.
    """

    def __init__(
        self,
        metric_name: str | None = None,
        min_delta: float = 1e-8,
        patience: int = 0,
        best_is: BestIs = 'auto',
        filter_fn: FilterFn | None = None,
    ) -> None:
        _check_best_is(best_is)
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 0:
            raise ValueError(f'patience must be an integer >= 0, got {patience!r}.')
        if not min_delta >= 0:
            raise ValueError(f'min_delta must be >= 0, got {min_delta!r}.')
        self.metric_name = metric_name
        self.min_delta = min_delta
        self.patience = patience
        self.best_is: BestIs = best_is
        self.filter_fn: FilterFn = filter_fn or last
        self.higher_is_better: bool | None = None
        """The direction ``best_is='auto'`` follows; None: lower is better."""
        self.history: list[float] = []
        self.best: float | None = None
        """The best filtered value, None before any (``best_value`` raises)."""
        self.epochs_without_improvement = 0
        self._improved = False

    @property
    def best_value(self) -> float:
        """The best filtered value so far.

        Raises:
            ResultNotAvailableError: no value was added yet.
        """
        if self.best is None:
            raise exceptions.ResultNotAvailableError()
        return self.best

    @best_value.setter
    def best_value(self, value: float) -> None:
        self.best = float(value)

    @property
    def filtered_value(self) -> float:
        """``filter_fn`` of the history: the value compared with the best.

        Raises:
            ResultNotAvailableError: no value was added yet.
        """
        if not self.history:
            raise exceptions.ResultNotAvailableError()
        return float(self.filter_fn(self.history))

    def higher(self) -> bool:
        """Whether higher values are better, resolving ``'auto'``."""
        if self.best_is == 'auto':
            return bool(self.higher_is_better)
        return self.best_is == 'higher'

    def is_better(self, value: float, reference: float) -> bool:
        """Whether ``value`` beats ``reference`` by more than ``min_delta``.

        A NaN never is better; anything else beats a NaN reference.
        """
        if math.isnan(value):
            return False
        if math.isnan(reference):
            return True
        if self.higher():
            return value > reference + self.min_delta
        return value < reference - self.min_delta

    def add_value(self, value: float) -> None:
        """Append ``value``; update the best value and the patience count."""
        self.history.append(float(value))
        filtered = self.filtered_value
        if self.best is None:
            self._improved = not math.isnan(filtered)
        else:
            self._improved = self.is_better(filtered, self.best)
        if self._improved:
            self.best = filtered
            self.epochs_without_improvement = 0
        else:
            self.epochs_without_improvement += 1

    def is_improving(self) -> bool:
        """Whether the last value added improved on the best before it."""
        return self._improved

    def is_patient(self) -> bool:
        """Tell whether fewer than ``max(patience, 1)`` values in a row missed."""
        return self.epochs_without_improvement < max(self.patience, 1)

    def reset_patience(self) -> None:
        """Forget the values without improvement (after acting on them)."""
        self.epochs_without_improvement = 0

    def state_dict(self) -> dict[str, Any]:
        """Return the history, the best value and the patience count."""
        return {
            'history': list(self.history),
            'best': self.best,
            'waited': self.epochs_without_improvement,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state returned by ``state_dict``."""
        self.history = [float(value) for value in state['history']]
        self.best = state['best']
        self.epochs_without_improvement = int(state.get('waited', 0))

    def __repr__(self) -> str:
        return (
            f'MetricTracker(metric_name={self.metric_name!r}, '
            f'min_delta={self.min_delta}, patience={self.patience}, '
            f'best_is={self.best_is!r})'
        )


class _UnknownMetricError(exceptions.MetricNotFoundError, ValueError):
    """A metric the runner does not compute; a ``ValueError`` as ours was."""

    def __init__(
        self, source_name: str, metric_name: str, names: Sequence[str]
    ) -> None:
        super().__init__(source_name, metric_name)
        computes = f'; it computes {", ".join(names)}' if names else ''
        self.args = (f'{source_name} computes no metric {metric_name!r}{computes}.',)


class _NoMetricsYetError(exceptions.ResultNotAvailableError):
    """The monitored runner has not computed anything yet."""

    def __init__(self, source_name: str) -> None:
        super().__init__()
        self.args = (
            f'{source_name} has no metrics to monitor yet: run it before this '
            'hook, or monitor the trainer instead.',
        )


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


def _direction(objective: object, name: str) -> bool | None:
    directions = getattr(objective, 'higher_is_better', None)
    if isinstance(directions, Mapping):
        value = directions.get(name)
        return None if value is None else bool(value)
    if isinstance(directions, bool):  # an original-style or torchmetrics object
        return directions
    return None


class MetricExtractor:
    """Resolves the runner and the metric a callback reads.

    Args:
        metric: the metric's name, or a ``Loss``/``Metric`` object (its name
            is used); None: the first metric the runner computes (the loss,
            for a trainer).
        monitor: the runner to read; None: the trainer's validation when it
            has one, else the trainer.

    Raises:
        TypeError: ``metric`` or ``monitor`` is of the wrong kind.
        MetricNotFoundError: ``monitor`` is given and does not compute
            ``metric``.
    """

    def __init__(self, metric: object = None, monitor: Any = None) -> None:
        if monitor is not None and not hasattr(monitor, 'computed_metrics'):
            raise TypeError(
                'monitor must be the runner to follow (the trainer, its '
                f'validation, a Diagnostic), such as monitor=trainer.validation; '
                f'got {monitor!r}.'
            )
        self.metric = _metric_name(metric)
        self._metric_object = None if isinstance(metric, str) else metric
        self.monitor = monitor
        self._resolved: str | None = None
        if monitor is not None:
            self.check_runner(monitor)

    @property
    def metric_name(self) -> str | None:
        """The metric's name; None until the first metric is read, if unnamed."""
        return self.metric or self._resolved

    def runner(self, trainer: Trainer[Any, Any, Any]) -> Any:
        """Return the runner read for ``trainer``."""
        return self.monitor or trainer.validation or trainer

    def check(self, trainer: Trainer[Any, Any, Any]) -> None:
        """Refuse, before training, a metric the monitored runner does not compute.

        Raises:
            MetricNotFoundError: the metric's name is not among the runner's.
        """
        self.check_runner(self.runner(trainer))

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
        raise _UnknownMetricError(
            str(getattr(runner, 'name', runner)), self.metric, names
        )

    def extract_metric_value(
        self, trainer: Trainer[Any, Any, Any], tracker: MetricTracker | None = None
    ) -> float:
        """Return the metric's last computed value.

        With a ``tracker`` whose ``best_is`` is ``'auto'``, also tell it the
        metric's direction.

        Raises:
            ResultNotAvailableError: the runner has computed no metric yet.
            MetricNotFoundError: the runner computes no such metric.
        """
        runner = self.runner(trainer)
        metrics = runner.computed_metrics
        if not metrics:
            raise _NoMetricsYetError(str(runner.name))
        name = self.metric or next(iter(metrics))
        if name not in metrics:
            raise _UnknownMetricError(str(runner.name), name, list(metrics))
        self._resolved = name
        if tracker is not None:
            if tracker.metric_name is None:
                tracker.metric_name = name
            if tracker.best_is == 'auto':
                best_is = self.get_metric_best_is(runner)
                tracker.higher_is_better = (
                    None if best_is is None else (best_is == 'higher')
                )
        return float(metrics[name])

    def get_metric_best_is(
        self, runner: Any = None
    ) -> Literal['higher', 'lower'] | None:
        """Return the metric's direction from its objective; None when unknown.

        Args:
            runner: where to look when the metric was given by name (default:
                the monitored runner, if given).
        """
        name = self.metric_name
        if name is None:
            return None
        sources = [self._metric_object]
        runner = runner if runner is not None else self.monitor
        if runner is not None:
            sources.append(getattr(runner, 'objective', None))
        for source in sources:
            higher = _direction(source, name)
            if higher is not None:
                return 'higher' if higher else 'lower'
        return None


class MetricMonitor:
    """Follows one metric of a runner across epochs and tells when it improves.

    Joins a ``MetricExtractor`` (what to read) and a ``MetricTracker`` (what
    the values mean). ``record`` (ours) and ``record_metric_value`` (the
    original's name) read the value of the epoch.

    Args:
        metric: the metric's name or a ``Loss``/``Metric`` object; defaults
            to the first one the monitored runner computes (the loss, for a
            trainer).
        monitor: the runner to follow; defaults to the trainer's validation
            when it has one, else the trainer.
        min_delta: the smallest change that counts as an improvement.
        patience: values in a row without improvement tolerated by
            ``is_patient()``.
        best_is: ``'higher'``, ``'lower'`` or ``'auto'`` (from the objective's
            ``higher_is_better``, lower when unknown).
        filter_fn: reduces the metric's history to the value compared
            (default: the last value).
    """

    def __init__(
        self,
        metric: object = None,
        monitor: Any = None,
        min_delta: float = 1e-8,
        patience: int = 0,
        best_is: BestIs = 'auto',
        filter_fn: FilterFn | None = None,
    ) -> None:
        if isinstance(patience, str):  # our former order: (..., best_is, filter_fn)
            best_is, filter_fn, patience = patience, best_is, 0
        _check_best_is(best_is)
        self.extractor = MetricExtractor(metric, monitor)
        self.tracker = MetricTracker(
            self.extractor.metric, min_delta, patience, best_is, filter_fn
        )

    # --- our names -------------------------------------------------------------

    @property
    def metric(self) -> str | None:
        """The metric's name as given (None: the runner's first)."""
        return self.extractor.metric

    @property
    def monitor(self) -> Any:
        """The runner given to follow (None: resolved at each epoch)."""
        return self.extractor.monitor

    @property
    def min_delta(self) -> float:
        """The smallest change that counts as an improvement."""
        return self.tracker.min_delta

    @property
    def best_is(self) -> BestIs:
        """``'auto'``, ``'higher'`` or ``'lower'``."""
        return self.tracker.best_is

    @property
    def filter_fn(self) -> FilterFn:
        """Reduces the history to the value compared."""
        return self.tracker.filter_fn

    @property
    def patience(self) -> int:
        """Values in a row without improvement that ``is_patient`` tolerates."""
        return self.tracker.patience

    @property
    def history(self) -> list[float]:
        """Every value recorded, in order."""
        return self.tracker.history

    @property
    def best(self) -> float | None:
        """The best filtered value, None before any."""
        return self.tracker.best

    def check(self, trainer: Trainer[Any, Any, Any]) -> None:
        """Refuse, before training, a metric the monitored runner does not compute.

        Raises:
            MetricNotFoundError: the metric's name is not among the runner's.
        """
        self.extractor.check(trainer)

    def check_runner(self, runner: Any) -> None:
        """Refuse a metric that ``runner``'s objective does not name."""
        self.extractor.check_runner(runner)

    def record(self, trainer: Trainer[Any, Any, Any]) -> bool | None:
        """Record the metric's value at this epoch; return whether it improved.

        Returns ``None``, recording nothing, at epochs (or, as a post-step
        hook, at steps) where the monitored validation did not run (a
        validation interval longer than one epoch, a step between step
        validations): its last values are not new measurements.

        Raises:
            ResultNotAvailableError: the runner has no metrics yet.
            MetricNotFoundError: the runner computes no such metric.
        """
        runner = self.extractor.runner(trainer)
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
        value = self.extractor.extract_metric_value(trainer, self.tracker)
        self.tracker.add_value(value)
        return self.tracker.is_improving()

    def state_dict(self) -> dict[str, Any]:
        """Return the history and the best value."""
        return {'history': list(self.history), 'best': self.best}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the history and the best value."""
        self.tracker.history = [float(value) for value in state['history']]
        self.tracker.best = state['best']
        if 'waited' in state:
            self.tracker.epochs_without_improvement = int(state['waited'])

    # --- the original's names --------------------------------------------------

    @property
    def metric_name(self) -> str | None:
        """The metric's name; None until the first epoch, if unnamed."""
        return self.extractor.metric_name

    @property
    def best_value(self) -> float:
        """The best filtered value.

        Raises:
            ResultNotAvailableError: nothing was recorded yet.
        """
        return self.tracker.best_value

    @best_value.setter
    def best_value(self, value: float) -> None:
        self.tracker.best_value = value

    @property
    def filtered_value(self) -> float:
        """The filtered value of the last epoch recorded."""
        return self.tracker.filtered_value

    def is_better(self, value: float, reference: float) -> bool:
        """Whether ``value`` beats ``reference`` by more than ``min_delta``."""
        return self.tracker.is_better(value, reference)

    def is_improving(self) -> bool:
        """Whether the last value recorded improved on the best."""
        return self.tracker.is_improving()

    def is_patient(self) -> bool:
        """Tell whether fewer than ``max(patience, 1)`` values in a row missed."""
        return self.tracker.is_patient()

    def record_metric_value(self, trainer: Trainer[Any, Any, Any]) -> None:
        """Record the metric's value at this epoch (the original's ``record``)."""
        self.record(trainer)

    def __repr__(self) -> str:
        return (
            f'MetricMonitor(metric={self.metric!r}, min_delta={self.min_delta}, '
            f'patience={self.patience}, best_is={self.best_is!r})'
        )
