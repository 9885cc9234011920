"""Checkpoints through the storage-backend hooks.

The core does not know where checkpoints live: it names a location and asks
the ``save_checkpoint`` / ``load_checkpoint`` / ``list_checkpoints`` /
``delete_checkpoint`` hooks, which the built-in local backend
(``drytorch.storage.local``) or a third-party backend answers.

A checkpoint sits at a position ``(epoch, batch)``: ``epoch`` training epochs
were completed and ``batch`` batches of the next one were trained. ``batch``
is 0 at an epoch boundary. Positions compare as tuples, and "latest" is the
highest position, never the newest file.

The active run's record lists every checkpoint file it saved, with its
SHA-256, for ``drytorch verify``. The core keeps that list as the files
change, in an order that never lets the record name a file that is gone: a
save is recorded once the file is in place, a deletion before the file is
removed. A process killed in between leaves at most one file unlisted.
"""

from __future__ import annotations

import dataclasses
import hashlib
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any

from drytorch.core import exceptions, scope
from drytorch.core.plugins import get_host

__all__ = [
    'LATEST',
    'CheckpointLocation',
    'Position',
    'delete',
    'describe_position',
    'latest',
    'list_epochs',
    'list_positions',
    'load',
    'save',
]

LATEST = -1

Position = tuple[int, int]
"""``(epoch, batch)``: completed epochs, and batches trained in the next one."""


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


def describe_position(epoch: int, batch: int) -> str:
    """Return ``epoch 3`` or ``epoch 3, batch 5`` for messages."""
    return f'epoch {epoch}' if batch == 0 else f'epoch {epoch}, batch {batch}'


def _require_batch_support(hook_name: str, location: CheckpointLocation) -> None:
    """Refuse a mid-epoch position if a backend would ignore ``batch``.

    A backend written before positions had a batch would store a mid-epoch
    checkpoint as the epoch's own and overwrite it.
    """
    caller = getattr(get_host().hook, hook_name)
    for impl in caller.get_hookimpls():
        if 'batch' not in impl.argnames:
            raise exceptions.CheckpointError(
                f'The storage backend {impl.plugin_name!r} does not support '
                f'checkpoints inside an epoch ({hook_name} takes no batch '
                f'argument), so {location} cannot be checkpointed there: '
                'checkpoint at epoch ends only, or update the backend.'
            )


def save(
    location: CheckpointLocation,
    epoch: int,
    state: Mapping[str, Any],
    batch: int = 0,
) -> str:
    """Save ``state`` as the checkpoint at ``(epoch, batch)``; return where.

    Raises:
        CheckpointError: no storage backend took the checkpoint, or saving
            failed (earlier checkpoints are left as they were).
    """
    if batch:
        _require_batch_support('save_checkpoint', location)
    try:
        where = get_host().hook.save_checkpoint(
            location=location, epoch=epoch, batch=batch, state=state
        )
    except exceptions.CheckpointError:
        raise
    except Exception as err:
        raise exceptions.CheckpointError(
            f'Saving the checkpoint of {location} at '
            f'{describe_position(epoch, batch)} failed: '
            f'{type(err).__name__}: {err}. Earlier checkpoints were not touched.'
        ) from err
    if where is None:
        raise exceptions.CheckpointError(
            f'No storage backend saved the checkpoint of {location}: is '
            'drytorch.storage.local disabled with no other backend installed?'
        )
    _record_saved(location, epoch, batch, pathlib.Path(str(where)))
    return str(where)


def _run_of(location: CheckpointLocation) -> Any:
    """Return the active run if ``location`` is one of its models."""
    run = scope.active_run()
    if run is None or (run.id, run.experiment.name) != (
        location.run_id,
        location.experiment_name,
    ):
        return None
    return run


def _record_saved(
    location: CheckpointLocation, epoch: int, batch: int, path: pathlib.Path
) -> None:
    """List a saved checkpoint file and its hash in the run's record, now."""
    run = _run_of(location)
    if run is None or not path.is_file():  # a remote backend: nothing to hash
        return
    with path.open('rb') as file:
        digest = hashlib.file_digest(file, 'sha256')
    run.summary.setdefault('checkpoints', {})[f'{location.model_name}/{path.name}'] = {
        'path': str(path),
        'epoch': epoch,
        'batch': batch,
        'sha256': digest.hexdigest(),
    }
    run.save_summary()


def _record_deleting(location: CheckpointLocation, epoch: int, batch: int) -> None:
    """Take a checkpoint out of the run's record before its file goes."""
    run = _run_of(location)
    if run is None:
        return
    prefix = f'{location.model_name}/'
    gone = [
        ('checkpoints', key)
        for key, entry in run.summary.get('checkpoints', {}).items()
        if key.startswith(prefix)
        and (entry.get('epoch'), entry.get('batch', 0)) == (epoch, batch)
    ]
    if gone:
        run.save_summary(remove=gone)


def _positions(found: Iterable[Any] | None) -> list[Position]:
    # A plain int is an epoch boundary (backends of the first contract).
    positions = {
        (int(item), 0) if isinstance(item, int) else (int(item[0]), int(item[1]))
        for item in found or ()
    }
    return sorted(positions)


def list_positions(location: CheckpointLocation) -> list[Position]:
    """Return the saved positions ``(epoch, batch)`` of ``location``, oldest first."""
    return _positions(get_host().hook.list_checkpoints(location=location))


def list_epochs(location: CheckpointLocation) -> list[int]:
    """Return the epochs saved at an epoch boundary, oldest first."""
    return [epoch for epoch, batch in list_positions(location) if batch == 0]


def latest(location: CheckpointLocation) -> Position | None:
    """Return the highest saved position, or ``None`` with no checkpoint."""
    positions = list_positions(location)
    return positions[-1] if positions else None


def load(
    location: CheckpointLocation, epoch: int = LATEST, batch: int = 0
) -> Mapping[str, Any]:
    """Return the state saved at ``(epoch, batch)`` (``LATEST``: the highest).

    Raises:
        CheckpointError: there is no such checkpoint, or it cannot be read.
    """
    if epoch == LATEST:
        found = latest(location)
        if found is None:
            raise exceptions.CheckpointError(
                f'No checkpoint of {location} is saved yet; call save_checkpoint() '
                'first.'
            )
        epoch, batch = found
    if batch:
        _require_batch_support('load_checkpoint', location)
    state = get_host().hook.load_checkpoint(location=location, epoch=epoch, batch=batch)
    if state is None:
        saved = ', '.join(
            f'{e}' if b == 0 else f'{e} (batch {b})'
            for e, b in list_positions(location)
        )
        raise exceptions.CheckpointError(
            f'No checkpoint of {location} at {describe_position(epoch, batch)}; '
            f'saved epochs: [{saved}]' + ('.' if saved else ' (none).')
        )
    return state  # type: ignore[no-any-return]


def delete(location: CheckpointLocation, epoch: int, batch: int = 0) -> bool:
    """Delete the checkpoint at ``(epoch, batch)``; return whether one was.

    Raises:
        CheckpointError: the backend failed to delete it.
    """
    _record_deleting(location, epoch, batch)
    try:
        deleted = get_host().hook.delete_checkpoint(
            location=location, epoch=epoch, batch=batch
        )
    except exceptions.CheckpointError:
        raise
    except Exception as err:
        raise exceptions.CheckpointError(
            f'Deleting the checkpoint of {location} at '
            f'{describe_position(epoch, batch)} failed: {type(err).__name__}: {err}.'
        ) from err
    return bool(deleted)
