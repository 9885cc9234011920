"""plotly for DRYTorch: live, interactive learning curves.

``PlotlyPlotter`` is imported on first use, so importing this package (as
DRYTorch does when it loads the plugin) imports neither plotly nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drytorch_contrib_plotly.__about__ import __version__

if TYPE_CHECKING:
    from drytorch_contrib_plotly.plotter import PlotError, PlotlyPlotter

__all__ = ['PlotError', 'PlotlyPlotter', '__version__']


def __getattr__(name: str) -> Any:
    if name in ('PlotlyPlotter', 'PlotError'):
        from drytorch_contrib_plotly import plotter

        return getattr(plotter, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
