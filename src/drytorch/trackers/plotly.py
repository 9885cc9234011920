"""The original DRYTorch's ``trackers.plotly``, from the contrib package.

``PlotlyPlotter(model_names=(), source_names=(), metric_names=(),
metric_loader=None, start=1)`` draws live plotly figures of the learning
curves, one per model and metric, kept in ``figures`` and optionally written
as HTML. It lives in the ``drytorch-contrib-plotly`` package, so that
DRYTorch's core does not depend on plotly; this module resolves it on first
use. Without the package, ``from drytorch.trackers.plotly import
PlotlyPlotter`` raises ``ContribPackageMissingError`` (an ``ImportError``)
naming it. Built in: ``drytorch.trackers.plot.PlotTracker`` (learning curves
as image files) and ``drytorch.trackers.matplotlib.MatPlotter`` (live
matplotlib figures).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drytorch.trackers._contrib import forwarder

if TYPE_CHECKING:
    from drytorch_contrib_plotly import PlotlyPlotter

__all__ = ['PlotlyPlotter']

DISTRIBUTION = 'drytorch-contrib-plotly'


__getattr__ = forwarder(
    __name__, dict.fromkeys(__all__, 'drytorch_contrib_plotly.plotter'), DISTRIBUTION
)
