"""Weights & Biases for DRYTorch: a tracker logging runs to W&B.

``Wandb`` is imported on first use, so importing this package (as DRYTorch
does when it loads the plugin) imports neither wandb nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drytorch_contrib_wandb.__about__ import __version__

if TYPE_CHECKING:
    from drytorch_contrib_wandb.tracker import Wandb

__all__ = ['Wandb', '__version__']


def __getattr__(name: str) -> Any:
    if name == 'Wandb':
        from drytorch_contrib_wandb.tracker import Wandb

        return Wandb
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
