"""Storage-backend hooks: where checkpoints are saved, loaded and deleted.

The first implementation that returns something other than ``None`` wins, so
a third-party backend (a remote store, say) takes over from the built-in
local-file backend, which is registered ``trylast``. A backend must write
atomically (a crash mid-save never corrupts the last good checkpoint) and load
without executing code (``torch.load(weights_only=True)`` or equivalent).

Checkpoints are keyed by their position ``(epoch, batch)``: ``epoch`` training
epochs were completed and ``batch`` batches of the next one were trained;
``batch`` is 0 at an epoch boundary. A backend that takes no ``batch``
argument (written for the first version of this contract) keeps working for
epoch boundaries; DRYTorch refuses to save a mid-epoch checkpoint through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from drytorch.hookspecs._markers import hookspec

if TYPE_CHECKING:
    from drytorch.core.checkpointing import CheckpointLocation


@hookspec(firstresult=True)
def save_checkpoint(
    location: CheckpointLocation, epoch: int, batch: int, state: Mapping[str, Any]
) -> str | None:
    """Query: store ``state`` at ``(epoch, batch)``; return where, for people.

    ``state`` holds tensors, numbers, strings, ``None``, and lists, tuples
    and dicts of them. Saving again at a position replaces that checkpoint, atomically.
    Errors propagate: a failed save must not pass silently.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def load_checkpoint(
    location: CheckpointLocation, epoch: int, batch: int
) -> Mapping[str, Any] | None:
    """Query: return the state saved at ``(epoch, batch)``, or ``None`` if not here.

    Raise ``CheckpointError`` for a checkpoint that exists but cannot be read.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def list_checkpoints(
    location: CheckpointLocation,
) -> Sequence[tuple[int, int] | int] | None:
    """Query: return the saved positions ``(epoch, batch)``, or ``None`` if unknown.

    A plain ``int`` stands for ``(epoch, 0)``. "Latest" is the highest
    position, never the newest file.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def delete_checkpoint(
    location: CheckpointLocation, epoch: int, batch: int
) -> bool | None:
    """Query: delete the checkpoint at ``(epoch, batch)``; ``True`` once deleted.

    Return ``None`` if this backend holds no such checkpoint. Called by
    checkpoint retention (``keep_last`` / ``keep_best``), never on the latest
    checkpoint. Errors propagate.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def checkpoint_digest(
    location: CheckpointLocation, epoch: int, batch: int
) -> str | None:
    """Query: the SHA-256 (hex) of the checkpoint stored at ``(epoch, batch)``.

    Return ``None`` if this backend holds no such checkpoint. The core records
    the digest right after each save (``[summary.checkpoints]``, and
    ``CheckpointEvent.digest``), and ``drytorch verify`` compares it with a
    fresh one, so verification works for any backend that answers. Hash the
    stored bytes, not the state: a digest must change if the file is damaged.
    """
    raise NotImplementedError
