"""Storage-backend hooks: where checkpoints are saved and loaded from.

The first implementation that returns something other than ``None`` wins, so
a third-party backend (a remote store, say) takes over from the built-in
local-file backend, which is registered ``trylast``. A backend must write
atomically (a crash mid-save never corrupts the last good checkpoint) and load
without executing code (``torch.load(weights_only=True)`` or equivalent).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from drytorch.hookspecs._markers import hookspec

if TYPE_CHECKING:
    from drytorch.core.checkpointing import CheckpointLocation


@hookspec(firstresult=True)
def save_checkpoint(
    location: CheckpointLocation, epoch: int, state: Mapping[str, Any]
) -> str | None:
    """Query: store ``state`` for ``epoch``; return where, readable by people.

    ``state`` holds tensors, numbers, strings, and lists, tuples and dicts of
    them. Errors propagate: a failed save must not pass silently.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def load_checkpoint(
    location: CheckpointLocation, epoch: int
) -> Mapping[str, Any] | None:
    """Query: return the state saved for ``epoch``, or ``None`` if not found here.

    Raise ``CheckpointError`` for a checkpoint that exists but cannot be read.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def list_checkpoints(location: CheckpointLocation) -> Sequence[int] | None:
    """Query: return the epochs saved at ``location``, or ``None`` if unknown here."""
    raise NotImplementedError
