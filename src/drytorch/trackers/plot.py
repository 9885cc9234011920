"""``PlotTracker``: learning curves of each model as PNG files, and plot helpers.

matplotlib is an optional dependency (``pip install drytorch[plot]``). It is
imported only when a figure is drawn or a ``PlotTracker`` is created, never
when this module is imported. Figures are made with ``matplotlib.figure.Figure``
directly: no pyplot, no global state, no backend switching.

Layout: ``<par_dir>/plots/<experiment>/<run id>/<model>-<metric>.png``, one
file per model and metric, with one curve per source (``Trainer``,
``Validation``, ...) against the epoch.

Every file is written to a temporary file and renamed over its name, so a
reader never sees half a PNG and a symbolic link planted in the output
folder is replaced rather than written through.

Cost: drawing and saving one PNG takes some tens of milliseconds (about 30 ms
for a small curve on a laptop CPU). With ``every_epoch`` the tracker redraws
the files of the model whose epoch ended, once per epoch and metric; it does
nothing per batch.
"""

from __future__ import annotations

import copy
import math
import os
import pathlib
import re
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from drytorch import hookimpl
from drytorch.core import exceptions, files
from drytorch.trackers.base import Dumper, MetricHistory, MetricLoader

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from drytorch.core import log_events
    from drytorch.core.run_view import RunView

__all__ = [
    'MissingPlotDependencyError',
    'PlotTracker',
    'metric_names',
    'plot_histories',
    'plot_run',
    'save_learning_curves',
]

Histories = Mapping[str, Mapping[str, MetricHistory]]
"""``{model: {source: history}}``, as ``RunView.metric_history()`` returns."""

_UNSAFE = re.compile(r'[^\w.\-]+')


class MissingPlotDependencyError(exceptions.TrackerError, ImportError):
    """Plotting needs matplotlib, which is not installed."""

    def __init__(self) -> None:
        super().__init__(
            'Plotting learning curves needs matplotlib, which is not installed. '
            'Install it with `pip install drytorch[plot]`.'
        )


def _require_matplotlib() -> None:
    try:
        import matplotlib.figure  # noqa: F401
    except ImportError as error:
        raise MissingPlotDependencyError() from error


def _new_figure(**kwargs: Any) -> Figure:
    _require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _has_data(values: Iterable[float]) -> bool:
    return any(math.isfinite(value) for value in values)


def metric_names(histories: Mapping[str, MetricHistory]) -> list[str]:
    """Return the metrics of ``histories`` that have data, in first-seen order."""
    names: dict[str, None] = {}
    for history in histories.values():
        for name, series in history.values.items():
            if _has_data(series):
                names.setdefault(name)
    return list(names)


def _no_data_warning(metric: str | None, where: str) -> None:
    what = 'any metric' if metric is None else f'metric {metric!r}'
    warnings.warn(
        f'No data to plot for {what} of {where}; no plot was made.',
        exceptions.DryTorchWarning,
        stacklevel=3,
    )


def _draw(ax: Axes, histories: Mapping[str, MetricHistory], metric: str) -> None:
    from matplotlib.ticker import MaxNLocator

    for source, history in histories.items():
        series = history.values.get(metric)
        if series is None or not _has_data(series):
            continue
        n = min(len(history.epochs), len(series))
        # NaN breaks the line; markers keep isolated points visible
        ax.plot(history.epochs[:n], series[:n], marker='.', label=source)
    ax.set_xlabel('Epoch')
    ax.set_ylabel(metric)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    ax.legend()


def plot_histories(
    histories: Mapping[str, MetricHistory], metric: str | None, title: str
) -> Figure:
    """Draw the learning curves of one model, one curve per source.

    Args:
        histories: ``{source: history}`` of one model.
        metric: the metric to draw; ``None`` draws every metric with data,
            one axes each, stacked.
        title: the figure's title (for example, the model's name).

    Returns:
        The figure (not saved): ``figure.axes[i].lines`` hold the curves. A
        metric with no data gives a warning and an axes saying so.

    Raises:
        MissingPlotDependencyError: matplotlib is not installed.
    """
    metrics = [metric] if metric is not None else metric_names(histories)
    figure = _new_figure(
        figsize=(6.4, 4.0 * max(1, len(metrics))), layout='constrained'
    )
    if not metrics or not any(m in metric_names(histories) for m in metrics):
        _no_data_warning(metric, repr(title))
        ax = figure.add_subplot()
        ax.text(0.5, 0.5, 'no data', ha='center', va='center')
        ax.set_title(title)
        return figure
    for index, name in enumerate(metrics, start=1):
        ax = figure.add_subplot(len(metrics), 1, index)
        _draw(ax, histories, name)
        ax.set_title(title if len(metrics) == 1 else name)
    if len(metrics) > 1:
        figure.suptitle(title)
    return figure


def _safe(name: str) -> str:
    return _UNSAFE.sub('_', name).strip('._') or '_'


def _curves(
    histories_by_model: Histories, metric: str | None, warned: set[str] | None = None
) -> list[tuple[str, str]]:
    """Return the ``(model, metric)`` pairs to draw; warn about missing data.

    ``warned`` keeps the models already warned about, to warn once each.
    """
    pairs: list[tuple[str, str]] = []
    for model, histories in histories_by_model.items():
        available = metric_names(histories)
        if metric is None:
            pairs.extend((model, name) for name in available)
        elif metric in available:
            pairs.append((model, metric))
        elif warned is None or model not in warned:
            if warned is not None:
                warned.add(model)
            _no_data_warning(metric, f'model {model!r}')
    return pairs


def _save(
    histories: Mapping[str, MetricHistory], model: str, metric: str, path: pathlib.Path
) -> None:
    """Draw and save one figure; its suffix names the format.

    The file is replaced by renaming a new one over it, never opened where
    it is: a symbolic link planted in its place is replaced, and the file it
    points to is left alone.
    """
    figure = plot_histories(histories, metric, f'{model}: {metric}')
    fmt = path.suffix.lstrip('.').lower() or 'png'
    with files.replacing(path, sync=False, suffix=path.suffix) as handle:
        figure.savefig(handle, format=fmt)


def save_learning_curves(
    histories_by_model: Histories,
    folder: str | os.PathLike[str],
    metric: str | None = None,
) -> list[pathlib.Path]:
    """Save ``<folder>/<model>-<metric>.png`` for each model and metric.

    Args:
        histories_by_model: ``{model: {source: history}}``.
        folder: where to write; created if missing.
        metric: the metric to draw; ``None`` draws every metric with data.
            A metric without data gives a warning and no file.

    Returns:
        The files written.

    Raises:
        MissingPlotDependencyError: matplotlib is not installed.
        OSError: a file could not be written.
    """
    _require_matplotlib()
    folder = pathlib.Path(folder)
    written = []
    for model, name in _curves(histories_by_model, metric):
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f'{_safe(model)}-{_safe(name)}.png'
        _save(histories_by_model[model], model, name, path)
        written.append(path)
    return written


def plot_run(
    histories_by_model: Histories,
    out: str | os.PathLike[str] | None,
    metric: str | None = None,
) -> list[pathlib.Path]:
    """Save a run's learning curves where the user asked (``drytorch plot``).

    Args:
        histories_by_model: ``{model: {source: history}}``.
        out: the file to write; its suffix picks the format (``.png`` when it
            has none). With several models or metrics, one file each is written
            next to it as ``<stem>-<model>-<metric><suffix>``. An existing
            folder, or ``None`` for the working directory, receives
            ``<model>-<metric>.png`` files.
        metric: the metric to draw; ``None`` draws every metric with data.

    Returns:
        The files written (none when there is no data; a warning says so).

    Raises:
        MissingPlotDependencyError: matplotlib is not installed.
        OSError: a file could not be written.
    """
    _require_matplotlib()
    if out is None or pathlib.Path(out).is_dir():
        return save_learning_curves(histories_by_model, out or '.', metric)
    out = pathlib.Path(out)
    suffix = out.suffix or '.png'
    pairs = _curves(histories_by_model, metric)
    written = []
    for model, name in pairs:
        if len(pairs) == 1:
            path = out.with_suffix(suffix)
        else:
            path = out.with_name(f'{out.stem}-{_safe(model)}-{_safe(name)}{suffix}')
        path.parent.mkdir(parents=True, exist_ok=True)
        _save(histories_by_model[model], model, name, path)
        written.append(path)
    return written


class PlotTracker(Dumper):
    """Saves each model's learning curves as PNG files while it trains.

    Files: ``<par_dir>/plots/<experiment>/<run id>/<model>-<metric>.png``.

    The tracker keeps the history of the metrics it receives. When a run
    resumes, the history of its earlier sessions is loaded once, through the
    ``load_metrics`` hook (``run.metric_history()``: the files of a CSV or
    SQLite tracker the run had, or any plugin that stores metrics), so the
    curves still start at the first epoch; without one, only the metrics seen
    in this process are drawn.

    Args:
        par_dir: the folder to write in; defaults to the experiment's.
        every_epoch: redraw a model's curves at the end of each of its epochs
            (some tens of milliseconds per file); when False, only at run stop.
            Curves are always saved when the run stops.
        metric: the metric to draw; ``None`` draws every metric.
        loader: where a resumed run's earlier metrics come from instead of
            the ``load_metrics`` hook (an object with
            ``load_metrics(experiment_name, run_id)``, such as a ``CSVDumper``).

    A failed save gives a warning naming the file and never stops training.

    Raises:
        MissingPlotDependencyError: matplotlib is not installed.
    """

    kind = 'plots'

    def __init__(
        self,
        par_dir: str | os.PathLike[str] | None = None,
        every_epoch: bool = True,
        metric: str | None = None,
        loader: MetricLoader | None = None,
    ) -> None:
        _require_matplotlib()
        super().__init__(par_dir)
        self.every_epoch = every_epoch
        self.metric = metric
        self.loader = loader
        self.histories: dict[str, dict[str, MetricHistory]] = {}
        self._session: RunView | None = None
        self._tracked: tuple[str, str] | None = None  # (experiment, run id)
        self._warned_models: set[str] = set()  # no data for the metric
        self._warned_paths: set[str] = set()  # could not save

    @hookimpl
    def on_run_start(self, run: RunView) -> None:
        """Start the run's curves; a resumed run's begin with its earlier epochs."""
        self._begin(run)

    @hookimpl
    def on_metrics(self, event: log_events.MetricsEvent, run: RunView) -> None:
        """Add the event's metrics to the model's history."""
        self._current(run)
        sources = self.histories.setdefault(event.model_name, {})
        history = sources.setdefault(event.source_name, MetricHistory())
        history.add(event.epoch, event.metrics)

    @hookimpl
    def on_epoch_end(self, event: log_events.EpochEndEvent, run: RunView) -> None:
        """Redraw the curves of the model whose epoch ended (``every_epoch``)."""
        if self.every_epoch:
            self.save(run, [event.model_name])

    @hookimpl
    def on_run_stop(self, run: RunView) -> None:
        """Save every curve of the run."""
        self.save(run)
        self._session = None

    def save(
        self, run: RunView, models: Iterable[str] | None = None
    ) -> list[pathlib.Path]:
        """Save the curves of ``models`` (default: all) in ``run``'s folder.

        Failures give a warning (once per file and session) and return no path.
        """
        self._current(run)
        names = list(self.histories) if models is None else list(models)
        selected = {m: self.histories[m] for m in names if m in self.histories}
        written = []
        try:
            folder = self.run_dir(run)
        except Exception as error:
            self._warn_failure(self.folder(run), error)
            return []
        for model, name in _curves(selected, self.metric, self._warned_models):
            path = folder / f'{_safe(model)}-{_safe(name)}.png'
            try:
                _save(selected[model], model, name, path)
            except Exception as error:
                self._warn_failure(path, error)
            else:
                written.append(path)
        return written

    def _begin(self, run: RunView) -> None:
        """Start a session of ``run``; load the earlier history if it resumed."""
        key = (run.experiment, run.id)
        if not (run.resumed and key == self._tracked):
            self.histories = {}  # a new run, or one this process did not see
        self._session = run
        self._tracked = key
        self._warned_models.clear()
        self._warned_paths.clear()
        if run.resumed:
            self._load_earlier(run)

    def _current(self, run: RunView) -> None:
        """Begin the session of ``run`` if its start was not seen."""
        if run is not self._session:
            self._begin(run)

    def _load_earlier(self, run: RunView) -> None:
        """Put a resumed run's recorded metrics under those of this session."""
        source = repr(self.loader) if self.loader is not None else 'load_metrics'
        try:
            if self.loader is not None:
                loaded: Histories = self.loader.load_metrics(run.experiment, run.id)
            else:
                loaded = run.metric_history()
        except Exception as error:
            warnings.warn(
                f'{self.name} could not load the earlier metrics of run '
                f'{run.id!r} from {source}: {type(error).__name__}: '
                f'{error}. The curves start from this session.',
                exceptions.DryTorchWarning,
                stacklevel=2,
            )
            return
        if loaded:
            self.histories = {
                model: {s: copy.deepcopy(h) for s, h in sources.items()}
                for model, sources in loaded.items()
            }

    def _warn_failure(self, path: pathlib.Path, error: Exception) -> None:
        if str(path) in self._warned_paths:
            return
        self._warned_paths.add(str(path))
        warnings.warn(
            f'{self.name} could not save learning curves to {path}: '
            f'{type(error).__name__}: {error}. Training goes on.',
            exceptions.DryTorchWarning,
            stacklevel=2,
        )

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(par_dir={self.par_dir!r}, '
            f'every_epoch={self.every_epoch!r}, metric={self.metric!r})'
        )
