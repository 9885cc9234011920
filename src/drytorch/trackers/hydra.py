"""The original DRYTorch's ``trackers.hydra``: forwards to the contrib package.

``HydraLink(par_dir=None, copy_hydra=True, hydra_dir=None)`` is
``drytorch_contrib_hydra.HydraLink`` itself (install
``drytorch-contrib-hydra``), with the original's arguments. The module
imports nothing until the name is used: ``from drytorch.trackers.hydra import
HydraLink`` fails at that line when the package is missing, with an error
naming it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drytorch.trackers._contrib import import_contrib

if TYPE_CHECKING:
    from drytorch_contrib_hydra import HydraLink, HydraNotRunningError

__all__ = ['HydraLink', 'HydraNotRunningError']

DISTRIBUTION = 'drytorch-contrib-hydra'


def __getattr__(name: str) -> Any:
    if name in __all__:
        module = import_contrib(
            'drytorch_contrib_hydra.tracker', DISTRIBUTION, f'{__name__}.{name}'
        )
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
