"""TensorBoard for DRYTorch: a tracker writing TensorBoard event files.

``TensorBoard`` is imported on first use, so importing this package (as
DRYTorch does when it loads the plugin) imports neither TensorBoard nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drytorch_contrib_tensorboard.__about__ import __version__

if TYPE_CHECKING:
    from drytorch_contrib_tensorboard.tracker import TensorBoard

__all__ = ['TensorBoard', '__version__']


def __getattr__(name: str) -> Any:
    if name == 'TensorBoard':
        from drytorch_contrib_tensorboard.tracker import TensorBoard

        return TensorBoard
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
