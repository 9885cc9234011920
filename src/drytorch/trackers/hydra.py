"""The original DRYTorch's ``trackers.hydra``: forwards to the contrib package.

``HydraLink(par_dir=None, copy_hydra=True, hydra_dir=None)`` is
``drytorch_contrib_hydra.HydraLink`` itself (install
``drytorch-contrib-hydra``), with the original's arguments. The module
imports nothing until the name is used: ``from drytorch.trackers.hydra import
HydraLink`` fails at that line when the package is missing, with an error
naming it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drytorch.trackers._contrib import forwarder

if TYPE_CHECKING:
    from drytorch_contrib_hydra import HydraLink, HydraNotRunningError

__all__ = ['HydraLink', 'HydraNotRunningError']

DISTRIBUTION = 'drytorch-contrib-hydra'


__getattr__ = forwarder(
    __name__, dict.fromkeys(__all__, 'drytorch_contrib_hydra.tracker'), DISTRIBUTION
)
