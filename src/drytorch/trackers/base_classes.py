"""The original DRYTorch's ``trackers.base_classes``: bases of file and plot trackers.

``Dumper`` and ``MetricLoader`` are ours (``drytorch.trackers.base``): a
``Dumper`` finds its folder from the run it receives (``folder(run)``,
``run_dir(run)``) rather than the original's ``par_dir``/``run_id``/``exp_name``
attributes, and ``MetricLoader.load_metrics`` takes ``(experiment_name,
run_id)`` and returns ``{model: {source: MetricHistory}}``.

``MemoryMetrics`` keeps every metric of the run in memory, and
``BasePlotter`` redraws a model's curves after each of its epochs through one
method, ``plot_metric``, that subclasses implement
(``drytorch.trackers.matplotlib.MatPlotter`` does, with matplotlib).
"""

from __future__ import annotations

import abc
import copy
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING

from drytorch import hookimpl
from drytorch.core import exceptions, tracking
from drytorch.trackers.base import Dumper, MetricHistory, MetricLoader
from drytorch.trackers.plot import PlotError

if TYPE_CHECKING:
    from drytorch.core import log_events
    from drytorch.core.run_view import RunView

__all__ = [
    'BasePlotter',
    'Dumper',
    'MemoryMetrics',
    'MetricLoader',
    'PlotError',
    'Series',
]

Series = tuple[list[int], list[float]]
"""The epochs and values of one metric of one source."""


class MemoryMetrics(tracking.Tracker):
    """Keeps every metric of the active run in memory.

    ``model_dict`` is ``{model: {source: MetricHistory}}``. When a run resumes,
    the metrics of its earlier sessions are loaded first: from
    ``metric_loader`` when given (an object with ``load_metrics(
    experiment_name, run_id)``, such as a ``CSVDumper``), else through the
    ``load_metrics`` hook (whatever tracker stored the run's metrics).

    Args:
        metric_loader: where a resumed run's earlier metrics come from.
    """

    def __init__(self, metric_loader: MetricLoader | None = None) -> None:
        super().__init__()
        self.metric_loader = metric_loader
        self.model_dict: dict[str, dict[str, MetricHistory]] = {}
        self._session: RunView | None = None

    @property
    def session(self) -> RunView | None:
        """The run whose metrics ``model_dict`` holds (``None`` before any)."""
        return self._session

    @hookimpl
    def on_run_start(self, run: RunView) -> None:
        """Start afresh; a resumed run starts with its earlier metrics."""
        self._begin(run)

    @hookimpl
    def on_metrics(self, event: log_events.MetricsEvent, run: RunView) -> None:
        """Add the event's metrics to its model's and source's history."""
        if run is not self._session:
            self._begin(run)
        sources = self.model_dict.setdefault(event.model_name, {})
        sources.setdefault(event.source_name, MetricHistory()).add(
            event.epoch, event.metrics
        )

    def _begin(self, run: RunView) -> None:
        self._session = run
        self.model_dict = {}
        if not run.resumed:
            return
        try:
            if self.metric_loader is not None:
                loaded: Mapping[str, Mapping[str, MetricHistory]] = (
                    self.metric_loader.load_metrics(run.experiment, run.id)
                )
            else:
                loaded = run.metric_history()
        except Exception as error:
            warnings.warn(
                f'{self.name} could not load the earlier metrics of run '
                f'{run.id!r}: {type(error).__name__}: {error}. It keeps those '
                'of this session only.',
                exceptions.DryTorchWarning,
                stacklevel=2,
            )
            return
        self.model_dict = {
            model: {source: copy.deepcopy(h) for source, h in sources.items()}
            for model, sources in loaded.items()
        }


class BasePlotter(MemoryMetrics, abc.ABC):
    """Redraws the learning curves of a model at the end of each of its epochs.

    Subclasses implement ``plot_metric``, which draws one metric of one model
    with a curve per source.

    Args:
        model_names: the models to draw; all when empty.
        source_names: the sources to draw (``Trainer``, ``Validation``...);
            all when empty.
        metric_names: the metrics to draw; all when empty.
        start: the first epoch drawn (0 or 1: from the start).
        metric_loader: where a resumed run's earlier metrics come from.

    Raises:
        PlotError: ``start`` is negative.
    """

    def __init__(
        self,
        model_names: Iterable[str] = (),
        source_names: Iterable[str] = (),
        metric_names: Iterable[str] = (),
        start: int = 1,
        metric_loader: MetricLoader | None = None,
    ) -> None:
        _check_start(start)
        super().__init__(metric_loader)
        self.model_names = tuple(model_names)
        self.source_names = tuple(source_names)
        self.metric_names = tuple(metric_names)
        self.start = start

    @hookimpl
    def on_epoch_end(self, event: log_events.EpochEndEvent) -> None:
        """Redraw the curves of the model whose epoch ended (if it is drawn)."""
        if not self.model_names or event.model_name in self.model_names:
            self.plot(event.model_name)

    def plot(
        self,
        model_name: str,
        source_names: Sequence[str] = (),
        metric_names: Sequence[str] = (),
        start_epoch: int | None = None,
    ) -> list[str]:
        """Draw the curves of ``model_name``; return the metrics drawn.

        Args:
            model_name: the model.
            source_names: the sources to draw; default: the plotter's.
            metric_names: the metrics to draw; default: the plotter's.
            start_epoch: the first epoch drawn; default: the plotter's ``start``.

        Raises:
            PlotError: the model has no metrics, or ``start_epoch`` is negative.
        """
        start = self.start if start_epoch is None else start_epoch
        _check_start(start)
        sources = self.model_dict.get(model_name)
        if not sources:
            known = ', '.join(repr(name) for name in self.model_dict) or 'none'
            raise PlotError(
                f'No metrics of model {model_name!r} to plot; the models with '
                f'metrics are: {known}.'
            )
        wanted_sources = tuple(source_names) or self.source_names
        wanted_metrics = tuple(metric_names) or self.metric_names
        by_metric: dict[str, dict[str, Series]] = {}
        for source, history in sources.items():
            if wanted_sources and source not in wanted_sources:
                continue
            for metric, values in history.values.items():
                if wanted_metrics and metric not in wanted_metrics:
                    continue
                kept = [
                    (epoch, value)
                    for epoch, value in zip(history.epochs, values, strict=False)
                    if epoch >= start
                ]
                if kept:
                    epochs, series = zip(*kept, strict=True)
                    by_metric.setdefault(metric, {})[source] = (
                        list(epochs),
                        list(series),
                    )
        for metric, curves in by_metric.items():
            self.plot_metric(model_name, metric, curves)
        return list(by_metric)

    @abc.abstractmethod
    def plot_metric(
        self, model_name: str, metric_name: str, curves: Mapping[str, Series]
    ) -> None:
        """Draw one metric of one model; ``curves``: ``{source: (epochs, values)}``."""


def _check_start(start: int) -> None:
    if isinstance(start, bool) or not isinstance(start, int) or start < 0:
        raise PlotError(f'start must be an epoch number >= 0, got {start!r}.')
