"""Hydra for DRYTorch: a tracker that keeps each run's Hydra output folder.

``HydraLink`` is imported on first use, so importing this package (as
DRYTorch does when it loads the plugin) imports neither Hydra nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drytorch_contrib_hydra.__about__ import __version__

if TYPE_CHECKING:
    from drytorch_contrib_hydra.tracker import HydraLink, HydraNotRunningError

__all__ = ['HydraLink', 'HydraNotRunningError', '__version__']


def __getattr__(name: str) -> Any:
    if name in ('HydraLink', 'HydraNotRunningError'):
        from drytorch_contrib_hydra import tracker

        return getattr(tracker, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
