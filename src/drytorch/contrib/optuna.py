"""The original DRYTorch's ``contrib.optuna``: forwards to the contrib package.

``TrialCallback``, ``suggest_overrides``, ``get_final_value`` and
``OptunaError`` are those of ``drytorch_contrib_optuna`` (install
``drytorch-contrib-optuna``), with the original's signatures. The module
imports nothing until a name is used: ``from drytorch.contrib.optuna import
TrialCallback`` fails at that line when the package is missing, with an error
naming it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drytorch.trackers._contrib import forwarder

if TYPE_CHECKING:
    from drytorch_contrib_optuna import (
        OptunaError,
        TrialCallback,
        get_final_value,
        suggest_overrides,
    )

__all__ = ['OptunaError', 'TrialCallback', 'get_final_value', 'suggest_overrides']

DISTRIBUTION = 'drytorch-contrib-optuna'


__getattr__ = forwarder(
    __name__, dict.fromkeys(__all__, 'drytorch_contrib_optuna'), DISTRIBUTION
)
