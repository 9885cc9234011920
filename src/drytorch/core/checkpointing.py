"""Checkpoints through the storage-backend hooks.

The core does not know where checkpoints live: it names a location and asks
the ``save_checkpoint`` / ``load_checkpoint`` / ``list_checkpoints`` hooks,
which the built-in local backend (``drytorch.storage.local``) or a
third-party backend answers.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Mapping
from typing import Any

from drytorch.core import exceptions
from drytorch.core.plugins import get_host

__all__ = ['LATEST', 'CheckpointLocation', 'list_epochs', 'load', 'save']

LATEST = -1


@dataclasses.dataclass(frozen=True, slots=True)
class CheckpointLocation:
    """Identifies the checkpoints of one model in one run.

    Attributes:
        par_dir: the experiment's output folder.
        experiment_name: the experiment's name.
        run_id: the run's id.
        model_name: the model's name within the run.
    """

    par_dir: pathlib.Path
    experiment_name: str
    run_id: str
    model_name: str

    def __str__(self) -> str:
        return (
            f'model {self.model_name!r} of run {self.run_id!r} '
            f'(experiment {self.experiment_name!r})'
        )


def save(location: CheckpointLocation, epoch: int, state: Mapping[str, Any]) -> str:
    """Save ``state`` as the checkpoint of ``epoch``; return where it went.

    Raises:
        CheckpointError: no storage backend took the checkpoint, or saving
            failed (earlier checkpoints are left as they were).
    """
    try:
        where = get_host().hook.save_checkpoint(
            location=location, epoch=epoch, state=state
        )
    except exceptions.CheckpointError:
        raise
    except Exception as err:
        raise exceptions.CheckpointError(
            f'Saving the checkpoint of {location} at epoch {epoch} failed: '
            f'{type(err).__name__}: {err}. Earlier checkpoints were not touched.'
        ) from err
    if where is None:
        raise exceptions.CheckpointError(
            f'No storage backend saved the checkpoint of {location}: is '
            'drytorch.storage.local disabled with no other backend installed?'
        )
    return str(where)


def list_epochs(location: CheckpointLocation) -> list[int]:
    """Return the saved epochs of ``location``, oldest first."""
    epochs = get_host().hook.list_checkpoints(location=location)
    return sorted(epochs or [])


def load(location: CheckpointLocation, epoch: int = LATEST) -> Mapping[str, Any]:
    """Return the state saved for ``epoch`` (``LATEST``: the highest epoch).

    Raises:
        CheckpointError: there is no such checkpoint, or it cannot be read.
    """
    if epoch == LATEST:
        epochs = list_epochs(location)
        if not epochs:
            raise exceptions.CheckpointError(
                f'No checkpoint of {location} is saved yet; call save_checkpoint() '
                'first.'
            )
        epoch = epochs[-1]
    state = get_host().hook.load_checkpoint(location=location, epoch=epoch)
    if state is None:
        raise exceptions.CheckpointError(
            f'No checkpoint of {location} at epoch {epoch}; saved epochs: '
            f'{list_epochs(location) or "none"}.'
        )
    return state  # type: ignore[no-any-return]
