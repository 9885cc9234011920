"""The DRYTorch plugin (entry point ``hydra``): the tracker by name, its outputs.

- ``tracker_types`` offers ``HydraLink`` by name (``[tool.drytorch] trackers =
  ["HydraLink"]``); it is no default tracker. Outside a Hydra app it cannot
  work: created by name there, it is skipped with a warning.
- ``run_outputs`` answers, for live and recorded runs, where the run's Hydra
  folders are, from the state the tracker saved in the run's record.

Nothing heavy is imported here, so ``drytorch plugins`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from drytorch import hookimpl

if TYPE_CHECKING:
    from drytorch import RunView, Tracker

__all__ = ['OUTPUT_LABEL', 'STATE_NAME', 'run_outputs', 'tracker_types']

STATE_NAME = 'hydra'
"""The run record's ``[plugins.hydra]`` table holds the tracker's state."""

OUTPUT_LABEL = 'HydraLink'


@hookimpl
def tracker_types() -> Mapping[str, Callable[[], Tracker]]:
    """Offer the ``HydraLink`` tracker."""
    from drytorch_contrib_hydra.tracker import HydraLink

    return {'HydraLink': HydraLink}


@hookimpl
def run_outputs(run: RunView) -> Mapping[str, str] | None:
    """Return the folder of the run's Hydra outputs; ``None`` if never linked."""
    folder = run.plugin_state(STATE_NAME).get('folder')
    if not isinstance(folder, str) or not folder:
        return None
    return {OUTPUT_LABEL: folder}
