"""The DRYTorch plugin (entry point ``wandb``): the tracker by name, its outputs.

It implements two query hooks:

- ``tracker_types``: offers the ``Wandb`` tracker by name. It deliberately
  does not implement ``default_trackers``: installing the package must not make
  every experiment start a W&B run. Users opt in, by name in the settings
  (``[tool.drytorch] trackers = ["Wandb"]``) or by subscribing an instance.
- ``run_outputs``: where a run's W&B data is (its URL, or the local folder of
  an offline run), read from the state the tracker saved in the run's record,
  so ``drytorch show`` lists it for live and recorded runs alike.

Nothing heavy is imported here, so ``drytorch plugins`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from drytorch import hookimpl

if TYPE_CHECKING:
    from drytorch import RunView, Tracker

__all__ = ['OUTPUT_LABEL', 'STATE_NAME', 'outputs_of', 'run_outputs', 'tracker_types']

STATE_NAME = 'wandb'
"""The run record's ``[plugins.wandb]`` table holds the tracker's state."""

OUTPUT_LABEL = 'Wandb'


@hookimpl
def tracker_types() -> Mapping[str, Callable[[], Tracker]]:
    """Offer the ``Wandb`` tracker."""
    from drytorch_contrib_wandb.tracker import Wandb

    return {'Wandb': Wandb}


@hookimpl
def run_outputs(run: RunView) -> Mapping[str, str] | None:
    """Where the run's W&B data is; ``None`` for a run W&B never tracked."""
    return outputs_of(run.plugin_state(STATE_NAME))


def outputs_of(state: Mapping[str, object]) -> dict[str, str] | None:
    """Return a run's outputs from its saved state: the URL, else the local folder."""
    where = state.get('url') or state.get('run_dir')
    if not isinstance(where, str) or not where:
        return None
    return {OUTPUT_LABEL: where}
