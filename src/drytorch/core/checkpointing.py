"""Checkpoints through the storage-backend hooks.

The core does not know where checkpoints live: it names a location and asks
the ``save_checkpoint`` / ``load_checkpoint`` / ``list_checkpoints`` /
``delete_checkpoint`` hooks, which the built-in local backend
(``drytorch.storage.local``) or a third-party backend answers.

A checkpoint sits at a position ``(epoch, batch)``: ``epoch`` training epochs
were completed and ``batch`` batches of the next one were trained. ``batch``
is 0 at an epoch boundary. Positions compare as tuples, and "latest" is the
highest position, never the newest file.

The active run's record lists every checkpoint it saved, with the SHA-256
that the backend's ``checkpoint_digest`` gives, for ``drytorch verify``. The
core keeps that list (``drytorch.core.summary``) as checkpoints change, in an
order that never lets the record name one that is gone: a save is recorded
once stored, a deletion before the backend deletes. A process killed in
between leaves at most one checkpoint unlisted.
"""

from __future__ import annotations

import dataclasses
import pathlib
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from drytorch.core import exceptions, scope
from drytorch.core.plugins import get_host

__all__ = [
    'LATEST',
    'CheckpointLocation',
    'Position',
    'Stored',
    'delete',
    'describe_position',
    'digest_of',
    'latest',
    'list_epochs',
    'list_positions',
    'load',
    'save',
    'store',
    'where',
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


class Stored(NamedTuple):
    """Where a checkpoint was stored (for people), and its SHA-256 if known."""

    where: str
    digest: str | None


def _require_batch_support(hook_name: str, location: CheckpointLocation) -> None:
    """Refuse a mid-epoch position if a backend would ignore ``batch``.

    A backend written before positions had a batch would store a mid-epoch
    checkpoint as the epoch's own and overwrite it.
    """
    for name in get_host().lacking_argument(hook_name, 'batch'):
        raise exceptions.CheckpointError(
            f'The storage backend {name!r} does not support '
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
    return store(location, epoch, state, batch).where


def store(
    location: CheckpointLocation,
    epoch: int,
    state: Mapping[str, Any],
    batch: int = 0,
) -> Stored:
    """Save like ``save``; return where, and the digest the backend gives.

    Raises:
        CheckpointError: as ``save``.
    """
    host = get_host()
    if batch:
        _require_batch_support('save_checkpoint', location)
    try:
        where = host.save_checkpoint(location, epoch, batch, state)
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
    digest = digest_of(location, epoch, batch)
    run = _run_of(location)
    if run is not None:
        run.keeper.record_checkpoint(location.model_name, epoch, batch, where, digest)
    return Stored(where, digest)


def digest_of(location: CheckpointLocation, epoch: int, batch: int = 0) -> str | None:
    """Return the backend's SHA-256 of the checkpoint at ``(epoch, batch)``.

    Raises:
        CheckpointError: the backend failed to read it.
    """
    try:
        return get_host().checkpoint_digest(location, epoch, batch)
    except exceptions.CheckpointError:
        raise
    except Exception as err:
        raise exceptions.CheckpointError(
            f'Hashing the checkpoint of {location} at '
            f'{describe_position(epoch, batch)} failed: {type(err).__name__}: {err}.'
        ) from err


def where(location: CheckpointLocation, epoch: int, batch: int = 0) -> str:
    """Return where the checkpoint at ``(epoch, batch)`` was stored, for people.

    The location its save returned, as the active run's record lists it;
    else a description of the location and position.
    """
    run = _run_of(location)
    if run is not None:
        for key, entry in run.summary.get('checkpoints', {}).items():
            if key.startswith(f'{location.model_name}/') and (
                entry.get('epoch'),
                entry.get('batch', 0),
            ) == (epoch, batch):
                return str(entry.get('path', key))
    return f'{location} at {describe_position(epoch, batch)}'


def _run_of(location: CheckpointLocation) -> Any:
    """Return the active run if ``location`` is one of its models."""
    run = scope.active_run()
    if run is None or (run.id, run.experiment.name) != (
        location.run_id,
        location.experiment_name,
    ):
        return None
    return run


def _positions(found: Iterable[Any] | None) -> list[Position]:
    # A plain int is an epoch boundary (backends of the first contract).
    positions = {
        (int(item), 0) if isinstance(item, int) else (int(item[0]), int(item[1]))
        for item in found or ()
    }
    return sorted(positions)


def list_positions(location: CheckpointLocation) -> list[Position]:
    """Return the saved positions ``(epoch, batch)`` of ``location``, oldest first."""
    return _positions(get_host().list_checkpoints(location))


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
    state = get_host().load_checkpoint(location, epoch, batch)
    if state is None:
        saved = ', '.join(
            f'{e}' if b == 0 else f'{e} (batch {b})'
            for e, b in list_positions(location)
        )
        raise exceptions.CheckpointError(
            f'No checkpoint of {location} at {describe_position(epoch, batch)}; '
            f'saved epochs: [{saved}]' + ('.' if saved else ' (none).')
        )
    return state


def delete(location: CheckpointLocation, epoch: int, batch: int = 0) -> bool:
    """Delete the checkpoint at ``(epoch, batch)``; return whether one was.

    Raises:
        CheckpointError: the backend failed to delete it.
    """
    run = _run_of(location)
    if run is not None:
        run.keeper.forget_checkpoint(location.model_name, epoch, batch)
    try:
        deleted = get_host().delete_checkpoint(location, epoch, batch)
    except exceptions.CheckpointError:
        raise
    except Exception as err:
        raise exceptions.CheckpointError(
            f'Deleting the checkpoint of {location} at '
            f'{describe_position(epoch, batch)} failed: {type(err).__name__}: {err}.'
        ) from err
    return bool(deleted)
