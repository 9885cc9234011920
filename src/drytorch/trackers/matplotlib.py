"""``MatPlotter``: the original DRYTorch's live matplotlib figures.

One pyplot figure per model and metric, with a curve per source, redrawn at
the end of each of the model's epochs: in a window with an interactive
backend, in a notebook with ``%matplotlib widget``; with a non-interactive
backend the figures are only kept (``plt.figure(label)`` / ``figures``), to be
shown or saved at will. For learning curves saved as image files, use
``drytorch.trackers.plot.PlotTracker``, which uses no pyplot state.

matplotlib is imported when a ``MatPlotter`` is created.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from drytorch.trackers.base import MetricLoader
from drytorch.trackers.base_classes import BasePlotter, Series
from drytorch.trackers.plot import MissingPlotDependencyError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ['MatPlotter']

_COLOURS = {'Trainer': 'C0', 'Validation': 'C1', 'Test': 'C2'}


class MatPlotter(BasePlotter):
    """Live matplotlib figures of the learning curves, one per model and metric.

    Args:
        model_names: the models to draw; all when empty.
        source_names: the sources to draw; all when empty.
        metric_names: the metrics to draw; all when empty.
        metric_loader: where a resumed run's earlier metrics come from
            (default: the ``load_metrics`` hook).
        start: the first epoch drawn.

    Attributes:
        figures: ``{(model, metric): Figure}``, the figures drawn so far; the
            figure's label (``plt.figure(label)``) is ``'<model>: <metric>'``.

    Raises:
        MissingPlotDependencyError: matplotlib is not installed.
    """

    def __init__(
        self,
        model_names: Iterable[str] = (),
        source_names: Iterable[str] = (),
        metric_names: Iterable[str] = (),
        metric_loader: MetricLoader | None = None,
        start: int = 1,
    ) -> None:
        if importlib.util.find_spec('matplotlib') is None:
            raise MissingPlotDependencyError()
        super().__init__(model_names, source_names, metric_names, start, metric_loader)
        self.figures: dict[tuple[str, str], Figure] = {}

    def plot_metric(
        self, model_name: str, metric_name: str, curves: Mapping[str, Series]
    ) -> None:
        """Redraw the figure of one model and metric, a curve per source."""
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator

        key = (model_name, metric_name)
        figure = self.figures.get(key)
        new = figure is None or not plt.fignum_exists(figure.number)
        if new:
            figure = plt.figure(f'{model_name}: {metric_name}')
            self.figures[key] = figure
        assert figure is not None
        figure.clear()
        ax = figure.add_subplot()
        others = 3
        for source, (epochs, values) in curves.items():
            colour = _COLOURS.get(source)
            if colour is None:
                colour, others = f'C{others % 10}', others + 1
            ax.plot(epochs, values, color=colour, marker='.', label=source)
        ax.set_title(f'{model_name}: {metric_name}')
        ax.set_xlabel('Epoch')
        ax.set_ylabel(metric_name)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if ax.lines:
            ax.legend()
        canvas: Any = figure.canvas
        if plt.isinteractive() or _interactive_backend():
            if new:
                plt.show(block=False)
            canvas.draw_idle()
            canvas.flush_events()

    def close_all(self) -> None:
        """Close every figure this plotter opened."""
        if self.figures:
            import matplotlib.pyplot as plt

            for figure in self.figures.values():
                plt.close(figure)
            self.figures.clear()

    def __repr__(self) -> str:
        return (
            f'MatPlotter(model_names={self.model_names!r}, '
            f'source_names={self.source_names!r}, '
            f'metric_names={self.metric_names!r}, start={self.start!r})'
        )


_FILE_BACKENDS = frozenset({'agg', 'cairo', 'pdf', 'pgf', 'ps', 'svg', 'template'})


def _interactive_backend() -> bool:
    """Whether figures appear on screen (a GUI or notebook widget backend)."""
    import matplotlib

    backend = matplotlib.get_backend().lower()
    return backend not in _FILE_BACKENDS and 'inline' not in backend
