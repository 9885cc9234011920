"""The built-in storage backend: checkpoint files under the experiment's par_dir.

Layout: ``<par_dir>/checkpoints/<experiment>/<run id>/<model>/epoch_<n>.pt``.
A save writes a temporary file in the same folder, syncs it and renames it
over the final name, so a crash mid-save never corrupts an earlier
checkpoint. Loads use ``torch.load(weights_only=True)``: a checkpoint that
carries code is refused, never run. It is registered ``trylast`` so that any
installed backend takes over.
"""

from __future__ import annotations

import os
import pathlib
import re
import secrets
from collections.abc import Mapping
from typing import Any

from drytorch.core import exceptions
from drytorch.core.checkpointing import CheckpointLocation
from drytorch.hookspecs._markers import hookimpl

_FILE = re.compile(r'epoch_(\d+)\.pt')


def folder(location: CheckpointLocation) -> pathlib.Path:
    """Return the folder of a location's checkpoints."""
    return (
        location.par_dir
        / 'checkpoints'
        / location.experiment_name
        / location.run_id
        / location.model_name
    )


def path(location: CheckpointLocation, epoch: int) -> pathlib.Path:
    """Return the file of a location's checkpoint at ``epoch``."""
    return folder(location) / f'epoch_{epoch}.pt'


@hookimpl(trylast=True)
def save_checkpoint(
    location: CheckpointLocation, epoch: int, state: Mapping[str, Any]
) -> str:
    """Write the checkpoint atomically; return its path."""
    import torch  # here, not at plugin load: `drytorch plugins` stays fast

    final = path(location, epoch)
    final.parent.mkdir(parents=True, exist_ok=True)
    temp = final.parent / f'.tmp-{os.getpid()}-{secrets.token_hex(4)}.pt'
    try:
        with temp.open('xb') as file:
            torch.save(dict(state), file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp, final)
    finally:
        temp.unlink(missing_ok=True)
    return str(final)


@hookimpl(trylast=True)
def load_checkpoint(location: CheckpointLocation, epoch: int) -> dict[str, Any] | None:
    """Read the checkpoint of ``epoch``; ``None`` if there is none."""
    import torch

    file = path(location, epoch)
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
def list_checkpoints(location: CheckpointLocation) -> list[int]:
    """Return the epochs with a checkpoint file, by file name (not file time)."""
    found = folder(location)
    if not found.is_dir():
        return []
    return sorted(
        int(match.group(1))
        for entry in found.iterdir()
        if (match := _FILE.fullmatch(entry.name)) and entry.is_file()
    )
