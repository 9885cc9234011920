"""The DRYTorch plugin (entry point ``plotly``): offers the plotter by name.

It implements ``tracker_types`` only, not ``default_trackers``: installing the
package must not make every experiment draw figures. Users opt in, by name in
the settings (``[tool.drytorch] trackers = ["PlotlyPlotter"]``) or by
subscribing an instance. Nothing heavy is imported here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from drytorch import hookimpl

if TYPE_CHECKING:
    from drytorch import Tracker


@hookimpl
def tracker_types() -> Mapping[str, Callable[[], Tracker]]:
    """Offer the ``PlotlyPlotter`` tracker."""
    from drytorch_contrib_plotly.plotter import PlotlyPlotter

    return {'PlotlyPlotter': PlotlyPlotter}
