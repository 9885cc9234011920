"""Optuna for DRYTorch: prune trials from the training loop, tune Hydra configs.

- ``TrialCallback(trial)``: a post-epoch hook that reports a metric to the
  trial each epoch and prunes it when the study's pruner says so;
- ``suggest_overrides(tune_cfg, trial)``: Hydra overrides with the values the
  trial suggests for a tuning configuration;
- ``get_final_value(trial)``: the trial's value, from those reported;
- ``OptunaError``: what they raise.

Names are imported on first use: importing this package imports neither
Optuna nor Hydra nor torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from drytorch_contrib_optuna.__about__ import __version__

if TYPE_CHECKING:
    from drytorch_contrib_optuna.callback import PRUNED_TAG, TrialCallback
    from drytorch_contrib_optuna.errors import OptunaError
    from drytorch_contrib_optuna.suggest import suggest_overrides
    from drytorch_contrib_optuna.values import get_final_value, last

__all__ = [
    'PRUNED_TAG',
    'OptunaError',
    'TrialCallback',
    '__version__',
    'get_final_value',
    'last',
    'suggest_overrides',
]

_LAZY = {
    'PRUNED_TAG': 'callback',
    'TrialCallback': 'callback',
    'OptunaError': 'errors',
    'suggest_overrides': 'suggest',
    'get_final_value': 'values',
    'last': 'values',
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
    return getattr(importlib.import_module(f'{__name__}.{module}'), name)
