"""``PlotTracker``: learning curves of each model as PNG files, and plot helpers.

matplotlib is an optional dependency (``pip install drytorch[plot]``). It is
imported only when a figure is drawn or a ``PlotTracker`` is created, never
when this module is imported. Figures are made with ``matplotlib.figure.Figure``
directly: no pyplot, no global state, no backend switching.

Layout: ``<par_dir>/plots/<experiment>/<run id>/<model>-<metric>.png``, one
file per model and metric, with one curve per source (``Trainer``,
``Validation``, ...) against the epoch. ``plot_run`` (``drytorch plot``) writes
one figure of a whole run instead, one axes per metric. Every figure is drawn
by ``plot_curves``, so all look alike: a source has one colour everywhere
(``Trainer`` blue, ``Validation`` orange, ``Test`` green), models sharing an
axes differ by line style.

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
from collections.abc import Iterable, Mapping, Sequence
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
    'PlotError',
    'PlotTracker',
    'figure_format',
    'match_metric',
    'match_metrics',
    'metric_names',
    'plot_curves',
    'plot_histories',
    'plot_run',
    'run_metric_names',
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


def run_metric_names(histories_by_model: Histories) -> list[str]:
    """Return the metrics with data of any model, in first-seen order."""
    names: dict[str, None] = {}
    for histories in histories_by_model.values():
        names.update(dict.fromkeys(metric_names(histories)))
    return list(names)


class PlotError(exceptions.DryTorchError, ValueError):
    """A figure cannot be made as asked: unknown metric or file format."""


def _listing(names: Iterable[str]) -> str:
    return ', '.join(repr(name) for name in names) or 'none'


def match_metric(name: str, available: Sequence[str]) -> str:
    """Return the metric of ``available`` that ``name`` means.

    Tried in order, the first rule that finds anything decides: the exact
    name, the name ignoring case, a unique prefix, a unique substring (the
    last three ignoring case).

    Raises:
        PlotError: nothing matches (the error lists the metrics that exist),
            or a rule matches several metrics (the error lists them).
    """
    if name in available:
        return name
    folded = name.casefold()
    if folded:
        rules = (
            lambda metric: metric == folded,
            lambda metric: metric.startswith(folded),
            lambda metric: folded in metric,
        )
        for rule in rules:
            found = [m for m in available if rule(m.casefold())]
            if len(found) == 1:
                return found[0]
            if found:
                raise PlotError(
                    f'Metric {name!r} is ambiguous: it matches {_listing(found)}. '
                    'Give more of its name.'
                )
    raise PlotError(
        f'No metric matches {name!r}. The metrics with data are: {_listing(available)}.'
    )


def match_metrics(requested: Iterable[str], available: Sequence[str]) -> list[str]:
    """Return the metrics ``requested`` means (``match_metric``), without repeats."""
    return list(dict.fromkeys(match_metric(name, available) for name in requested))


def _no_data_warning(metric: str | None, where: str) -> None:
    what = 'any metric' if metric is None else f'metric {metric!r}'
    warnings.warn(
        f'No data to plot for {what} of {where}; no plot was made.',
        exceptions.DryTorchWarning,
        stacklevel=3,
    )


# One look for every figure: a source has the same colour wherever it is
# drawn, and models in one figure differ by line style.
_SOURCE_COLOURS = {'Trainer': 'C0', 'Validation': 'C1', 'Test': 'C2'}
_OTHER_COLOURS = tuple(f'C{index}' for index in range(3, 10))
_LINE_STYLES = ('-', '--', ':', '-.')


def _source_colours(histories_by_model: Histories) -> dict[str, str]:
    """Return a colour per source: fixed for the usual ones, then first-seen."""
    colours = dict(_SOURCE_COLOURS)
    others = 0
    for histories in histories_by_model.values():
        for source in histories:
            if source not in colours:
                colours[source] = _OTHER_COLOURS[others % len(_OTHER_COLOURS)]
                others += 1
    return colours


def _draw(
    ax: Axes, histories_by_model: Histories, metric: str, colours: Mapping[str, str]
) -> None:
    from matplotlib.ticker import MaxNLocator

    several = len(histories_by_model) > 1
    for index, (model, histories) in enumerate(histories_by_model.items()):
        for source, history in histories.items():
            series = history.values.get(metric)
            if series is None or not _has_data(series):
                continue
            n = min(len(history.epochs), len(series))
            # NaN breaks the line; markers keep isolated points visible
            ax.plot(
                history.epochs[:n],
                series[:n],
                color=colours[source],
                linestyle=_LINE_STYLES[index % len(_LINE_STYLES)],
                marker='.',
                label=f'{model}/{source}' if several else source,
            )
    ax.set_xlabel('Epoch')
    ax.set_ylabel(metric)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(True, alpha=0.3)
    if ax.lines:
        ax.legend()


def plot_curves(
    histories_by_model: Histories, metrics: Sequence[str], title: str
) -> Figure:
    """Draw one figure with one axes per metric: the drawing of every plot.

    ``PlotTracker``'s files, ``save_learning_curves``, ``plot_histories`` and
    ``drytorch plot`` all draw with it, so they look alike: the same colour
    for a source (``Trainer``, ``Validation``, ``Test``, ...), the same
    styling and axis labels (``Epoch``, the metric).

    Args:
        histories_by_model: ``{model: {source: history}}``; each axes holds
            the curves of every model and source with data for its metric,
            labelled ``source`` (one model) or ``model/source``.
        metrics: the metrics, one axes each (in a grid of up to three
            columns); none gives one axes saying ``no data``.
        title: the axes' title with one metric; the figure's otherwise,
            when each axes is titled with its metric.

    Returns:
        The figure (not saved).

    Raises:
        MissingPlotDependencyError: matplotlib is not installed.
    """
    count = max(1, len(metrics))
    columns = 1 if count == 1 else 2 if count <= 4 else 3
    rows = math.ceil(count / columns)
    figure = _new_figure(figsize=(6.4 * columns, 4.0 * rows), layout='constrained')
    if not metrics:
        ax = figure.add_subplot()
        ax.text(0.5, 0.5, 'no data', ha='center', va='center')
        ax.set_title(title)
        return figure
    colours = _source_colours(histories_by_model)
    for index, name in enumerate(metrics, start=1):
        ax = figure.add_subplot(rows, columns, index)
        _draw(ax, histories_by_model, name, colours)
        ax.set_title(title if len(metrics) == 1 else name)
    if len(metrics) > 1:
        figure.suptitle(title)
    return figure


def plot_histories(
    histories: Mapping[str, MetricHistory], metric: str | None, title: str
) -> Figure:
    """Draw the learning curves of one model, one curve per source.

    Args:
        histories: ``{source: history}`` of one model.
        metric: the metric to draw; ``None`` draws every metric with data,
            one axes each.
        title: the figure's title (for example, the model's name).

    Returns:
        The figure (not saved): ``figure.axes[i].lines`` hold the curves. A
        metric with no data gives a warning and an axes saying so.

    Raises:
        MissingPlotDependencyError: matplotlib is not installed.
    """
    available = metric_names(histories)
    metrics = [metric] if metric is not None else available
    if not any(m in available for m in metrics):
        _no_data_warning(metric, repr(title))
        return plot_curves({}, [], title)
    return plot_curves({title: histories}, metrics, title)


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


def _write(figure: Figure, path: pathlib.Path, fmt: str) -> None:
    """Save ``figure`` to ``path`` in ``fmt``.

    The file is replaced by renaming a new one over it, never opened where
    it is: a symbolic link planted in its place is replaced, and the file it
    points to is left alone.
    """
    with files.replacing(path, sync=False, suffix=path.suffix) as handle:
        figure.savefig(handle, format=fmt)


def _save(
    histories: Mapping[str, MetricHistory], model: str, metric: str, path: pathlib.Path
) -> None:
    """Draw and save the figure of one model and metric as PNG."""
    _write(plot_curves({model: histories}, [metric], f'{model}: {metric}'), path, 'png')


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


def figure_format(path: str | os.PathLike[str]) -> str:
    """Return the file format ``path``'s suffix names (``png`` without one).

    Raises:
        MissingPlotDependencyError: matplotlib is not installed.
        PlotError: matplotlib cannot write that format; the error lists
            the suffixes it can.
    """
    _require_matplotlib()
    from matplotlib.backend_bases import FigureCanvasBase

    suffix = pathlib.Path(path).suffix
    fmt = suffix.lstrip('.').lower() or 'png'
    supported = FigureCanvasBase.get_supported_filetypes()
    if fmt not in supported:
        raise PlotError(
            f'Cannot write a figure as {suffix!r} ({os.fspath(path)}). Supported '
            f'suffixes: {", ".join("." + name for name in sorted(supported))}.'
        )
    return fmt


def plot_run(
    histories_by_model: Histories,
    out: str | os.PathLike[str],
    metrics: str | Iterable[str] | None = None,
    *,
    title: str | None = None,
) -> pathlib.Path:
    """Save one figure of a run's learning curves at ``out`` (``drytorch plot``).

    Args:
        histories_by_model: ``{model: {source: history}}``.
        out: the file to write, exactly there (its folder is created); its
            suffix picks the format (``.png``, ``.pdf``, ``.svg``, ...: what
            matplotlib writes; PNG when it has none).
        metrics: the metrics to draw, one axes each with every model and
            source; matched as ``match_metric`` says (case aside, a unique
            prefix or substring will do). ``None`` draws every metric with
            data.
        title: the figure's title; defaults to ``out``'s stem.

    Returns:
        The file written: ``out``.

    Raises:
        MissingPlotDependencyError: matplotlib is not installed.
        PlotError: an unknown suffix, a metric that matches none or several
            of those with data, or no data at all.
        OSError: the file could not be written.
    """
    out = pathlib.Path(out)
    fmt = figure_format(out)
    available = run_metric_names(histories_by_model)
    if not available:
        raise PlotError('Nothing to plot: no metric has data.')
    if metrics is None:
        chosen = available
    else:
        chosen = match_metrics(
            [metrics] if isinstance(metrics, str) else metrics, available
        )
    figure = plot_curves(
        histories_by_model, chosen, out.stem if title is None else title
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    _write(figure, out, fmt)
    return out


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
