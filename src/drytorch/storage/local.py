"""The built-in storage backend: checkpoint files under the experiment's par_dir.

Layout: ``<par_dir>/checkpoints/<experiment>/<run id>/<model>/``, with
``epoch_<n>.pt`` for a checkpoint at the end of epoch ``n`` and
``epoch_<n>_batch_<k>.pt`` for one taken after batch ``k`` of epoch ``n + 1``.
A save writes a temporary file in the same folder, syncs it and renames it
over the final name, so a crash mid-save never corrupts an earlier
checkpoint; the temporary files of a killed process are removed by the first
save of the next process in that folder. Loads use
``torch.load(weights_only=True)``: a checkpoint that carries code is refused,
never run. It is registered ``trylast`` so that any installed backend takes
over.
"""

from __future__ import annotations

import hashlib
import pathlib
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from drytorch import hookimpl
from drytorch.core import exceptions, files
from drytorch.core.checkpointing import CheckpointLocation

if TYPE_CHECKING:
    from drytorch.core.run_view import RunView

_FILE = re.compile(r'epoch_(\d+)(?:_batch_([1-9]\d*))?\.pt')


def folder(location: CheckpointLocation) -> pathlib.Path:
    """Return the folder of a location's checkpoints."""
    return (
        location.par_dir
        / 'checkpoints'
        / location.experiment_name
        / location.run_id
        / location.model_name
    )


def path(location: CheckpointLocation, epoch: int, batch: int = 0) -> pathlib.Path:
    """Return the file of a location's checkpoint at ``(epoch, batch)``."""
    name = f'epoch_{epoch}.pt' if batch == 0 else f'epoch_{epoch}_batch_{batch}.pt'
    return folder(location) / name


_CLEANED: set[pathlib.Path] = set()


def _remove_stale_temporaries(found: pathlib.Path) -> None:
    # One process at a time runs a run: a dead process's temporary file is a
    # save it never finished. They all predate this process's first save in
    # the folder, so one look per folder suffices.
    if found not in _CLEANED:
        _CLEANED.add(found)
        files.remove_stale_temporaries(found, min_age=0)


@hookimpl(trylast=True)
def save_checkpoint(
    location: CheckpointLocation, epoch: int, batch: int, state: Mapping[str, Any]
) -> str:
    """Write the checkpoint atomically; return its path."""
    import torch  # here, not at plugin load: `drytorch plugins` stays fast

    final = path(location, epoch, batch)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(final.parent)
    with files.replacing(final, suffix='.pt') as file:
        torch.save(dict(state), file)
    return str(final)


@hookimpl(trylast=True)
def load_checkpoint(
    location: CheckpointLocation, epoch: int, batch: int
) -> dict[str, Any] | None:
    """Read the checkpoint at ``(epoch, batch)``; ``None`` if there is none."""
    import torch

    file = path(location, epoch, batch)
    if not file.exists():
        return None
    try:
        state = torch.load(file, map_location='cpu', weights_only=True)
    except Exception as err:
        raise exceptions.CheckpointError(
            f'Checkpoint {file} cannot be loaded safely: {type(err).__name__}: '
            f'{str(err).splitlines()[0] if str(err) else ""}. Only tensors and '
            'plain data are loaded; the file was left untouched.'
        ) from err
    if not isinstance(state, dict):
        raise exceptions.CheckpointError(f'Checkpoint {file} does not hold a dict.')
    return state


@hookimpl(trylast=True)
def list_checkpoints(location: CheckpointLocation) -> list[tuple[int, int]]:
    """Return the positions with a checkpoint file, by file name (not file time)."""
    found = folder(location)
    if not found.is_dir():
        return []
    return sorted(
        (int(match.group(1)), int(match.group(2) or 0))
        for entry in found.iterdir()
        if (match := _FILE.fullmatch(entry.name)) and entry.is_file()
    )


@hookimpl(trylast=True)
def delete_checkpoint(
    location: CheckpointLocation, epoch: int, batch: int
) -> bool | None:
    """Remove the checkpoint file at ``(epoch, batch)``; ``None`` if there is none."""
    file = path(location, epoch, batch)
    if not file.is_file():
        return None
    file.unlink(missing_ok=True)
    return True


@hookimpl(trylast=True)
def checkpoint_digest(
    location: CheckpointLocation, epoch: int, batch: int
) -> str | None:
    """Return the SHA-256 of the checkpoint file; ``None`` if there is none.

    Raises:
        CheckpointError: a symbolic link is in place of the file. This backend
            never writes one, so it is not followed.
    """
    file = path(location, epoch, batch)
    if file.is_symlink():
        raise exceptions.CheckpointError(
            f'symbolic link: {file} is a link, and this backend never writes one'
        )
    if not file.is_file():
        return None
    with file.open('rb') as opened:
        return hashlib.file_digest(opened, 'sha256').hexdigest()


@hookimpl(trylast=True)
def run_outputs(run: RunView) -> dict[str, str] | None:
    """Name the folder of the run's checkpoints, once there is one."""
    found = run.par_dir / 'checkpoints' / run.experiment / run.id
    return {'checkpoints': str(found)} if found.is_dir() else None
