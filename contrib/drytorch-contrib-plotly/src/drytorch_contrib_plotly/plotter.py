"""``PlotlyPlotter``: the original DRYTorch's live plotly figures.

One plotly figure per model and metric, with a trace per source (``Trainer``,
``Validation``...), redrawn at the end of each of the model's epochs and kept
in ``figures``: show one with ``plotter.figures['net', 'MSE'].show()``. A
figure is updated in place (its traces' ``x`` and ``y``), so a
``plotly.graph_objects.FigureWidget`` given through ``figure_factory`` and
displayed in a notebook follows the training live.

With ``write_html=True`` each figure is also written, after each redraw, as
``<par_dir>/plotly/<experiment>/<run id>/<model>-<metric>.html`` (``par_dir``
is the plotter's, else the experiment's), replacing the file atomically so
that a browser never sees half of it.

A resumed run starts with the curves of its earlier sessions: from
``metric_loader`` when given (an object with ``load_metrics(experiment_name,
run_id)``, such as a ``CSVDumper`` or an ``SQLConnection``), else from
whatever plugin stored the run's metrics (``RunView.metric_history()``).

It is a ``drytorch.trackers.base_classes.BasePlotter``: the same arguments,
``model_dict``, ``plot`` and ``plot_metric``.

plotly is imported when the first figure is drawn, not with this module.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from drytorch import hookimpl
from drytorch.trackers.base_classes import BasePlotter, MetricLoader, PlotError, Series

if TYPE_CHECKING:
    from drytorch import RunView

__all__ = ['KIND', 'MetricLoader', 'PlotError', 'PlotlyPlotter', 'Series']

KIND = 'plotly'
"""The folder of the HTML files under ``par_dir``."""

_COLOURS = {'Trainer': '#1f77b4', 'Validation': '#ff7f0e', 'Test': '#2ca02c'}
_UNSAFE = re.compile(r'[^A-Za-z0-9._-]+')


class PlotlyPlotter(BasePlotter):
    """Live plotly figures of the learning curves, one per model and metric.

    Args:
        model_names: the models to draw; all when empty.
        source_names: the sources to draw; all when empty.
        metric_names: the metrics to draw; all when empty.
        metric_loader: where a resumed run's earlier metrics come from
            (default: the ``load_metrics`` hook).
        start: the first epoch drawn (0 or 1: from the start).
        write_html: also write each figure as an HTML file after each redraw.
        par_dir: the folder of the HTML files; defaults to the experiment's.
        include_plotlyjs: how the HTML files get plotly.js (plotly's
            ``write_html`` argument): ``'cdn'`` (small files, viewed online)
            or ``True`` (about 4 MB each, viewed offline).
        figure_factory: makes a new, empty figure; default
            ``plotly.graph_objects.Figure``.

    Attributes:
        figures: ``{(model, metric): figure}``, the figures of the active (or
            last) run; a new run starts with none.
        model_dict: ``{model: {source: MetricHistory}}`` of the active run.

    Raises:
        ImportError: plotly is not installed.
        PlotError: ``start`` is negative.
    """

    def __init__(
        self,
        model_names: Iterable[str] = (),
        source_names: Iterable[str] = (),
        metric_names: Iterable[str] = (),
        metric_loader: MetricLoader | None = None,
        start: int = 1,
        *,
        write_html: bool = False,
        par_dir: str | os.PathLike[str] | None = None,
        include_plotlyjs: bool | str = 'cdn',
        figure_factory: Callable[[], Any] | None = None,
    ) -> None:
        if importlib.util.find_spec('plotly') is None:
            raise ImportError(
                'PlotlyPlotter needs the plotly package: pip install plotly'
            )
        super().__init__(
            model_names,
            source_names,
            metric_names,
            start=start,
            metric_loader=metric_loader,
        )
        self.write_html = write_html
        self.par_dir = pathlib.Path(par_dir).resolve() if par_dir is not None else None
        self.include_plotlyjs = include_plotlyjs
        self.figure_factory = figure_factory
        self.figures: dict[tuple[str, str], Any] = {}

    @hookimpl
    def on_run_start(self, run: RunView) -> None:
        """Start with no figures; a resumed run's earlier curves are loaded."""
        self.figures = {}
        super().on_run_start(run)

    def html_dir(self, run: RunView) -> pathlib.Path:
        """Return the folder of ``run``'s HTML files (it may not exist)."""
        root = self.par_dir if self.par_dir is not None else run.par_dir
        return root / KIND / run.experiment / run.id

    def plot_metric(
        self, model_name: str, metric_name: str, curves: Mapping[str, Series]
    ) -> None:
        """Redraw the figure of one model and metric: a trace per source."""
        key = (model_name, metric_name)
        figure = self.figures.get(key)
        if figure is None:
            figure = self.figures[key] = self._new_figure(model_name, metric_name)
        traces = {trace.name: trace for trace in figure.data}
        with figure.batch_update():
            for source, (epochs, values) in curves.items():
                trace = traces.get(source)
                if trace is None:
                    figure.add_trace(_trace(source, epochs, values, len(traces)))
                    traces[source] = figure.data[-1]
                else:
                    trace.x, trace.y = epochs, values
        if self.write_html and self.session is not None:
            self._write(figure, model_name, metric_name, self.session)

    def _new_figure(self, model_name: str, metric_name: str) -> Any:
        if self.figure_factory is not None:
            figure = self.figure_factory()
        else:
            import plotly.graph_objects as go  # type: ignore[import-untyped]

            figure = go.Figure()
        figure.update_layout(
            title=f'{model_name}: {metric_name}',
            xaxis_title='Epoch',
            yaxis_title=metric_name,
            legend_title='Source',
            hovermode='x unified',
        )
        figure.update_xaxes(tickformat='d')
        return figure

    def _write(
        self, figure: Any, model_name: str, metric_name: str, run: RunView
    ) -> None:
        folder = self.html_dir(run)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f'{_safe(model_name)}-{_safe(metric_name)}.html'
        handle, temporary = tempfile.mkstemp(
            dir=folder, prefix=f'.{target.name}.', suffix='.tmp'
        )
        os.close(handle)
        try:
            figure.write_html(temporary, include_plotlyjs=self.include_plotlyjs)
            os.replace(temporary, target)
        except BaseException:
            pathlib.Path(temporary).unlink(missing_ok=True)
            raise

    def __repr__(self) -> str:
        return (
            f'PlotlyPlotter(model_names={self.model_names!r}, '
            f'source_names={self.source_names!r}, '
            f'metric_names={self.metric_names!r}, start={self.start!r})'
        )


def _trace(source: str, epochs: list[int], values: list[float], index: int) -> Any:
    import plotly.graph_objects as go

    colour = _COLOURS.get(source)
    if colour is None:
        palette = ('#d62728', '#9467bd', '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22')
        colour = palette[index % len(palette)]
    return go.Scatter(
        x=epochs,
        y=values,
        name=source,
        mode='lines+markers',
        line={'color': colour},
    )


def _safe(name: str) -> str:
    """Return ``name`` fit for a file name."""
    return _UNSAFE.sub('_', name).strip('.') or '_'
