"""A third-party storage backend built on DRYTorch's public contract alone.

Checkpoints go to one flat folder per experiment, ``<par_dir>/vault/<experiment>/``,
as ``<run>--<model>--<epoch>-<batch>.ckpt``: a layout DRYTorch does not know,
so ``drytorch verify`` and ``show`` can only work through the hooks. It is
registered ``tryfirst`` and takes over from the built-in local backend.
"""

from __future__ import annotations

import hashlib
import io
import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any

from drytorch import CheckpointLocation, RunView, hookimpl
from drytorch.exceptions import CheckpointError


def _folder(par_dir: pathlib.Path, experiment: str) -> pathlib.Path:
    return par_dir / 'vault' / experiment


def _file(location: CheckpointLocation, epoch: int, batch: int) -> pathlib.Path:
    name = f'{location.run_id}--{location.model_name}--{epoch}-{batch}.ckpt'
    return _folder(location.par_dir, location.experiment_name) / name


@hookimpl(tryfirst=True)
def save_checkpoint(
    location: CheckpointLocation, epoch: int, batch: int, state: Mapping[str, Any]
) -> str:
    import torch

    target = _file(location, epoch, batch)
    target.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(dict(state), buffer)
    temporary = target.with_suffix('.partial')
    temporary.write_bytes(buffer.getvalue())
    os.replace(temporary, target)
    return f'vault://{location.experiment_name}/{target.name}'


@hookimpl(tryfirst=True)
def load_checkpoint(
    location: CheckpointLocation, epoch: int, batch: int
) -> dict[str, Any] | None:
    import torch

    target = _file(location, epoch, batch)
    if not target.is_file():
        return None
    try:
        return dict(torch.load(target, map_location='cpu', weights_only=True))
    except Exception as err:
        raise CheckpointError(f'{target} cannot be loaded: {err}') from err


@hookimpl(tryfirst=True)
def list_checkpoints(location: CheckpointLocation) -> list[tuple[int, int]]:
    prefix = re.escape(f'{location.run_id}--{location.model_name}--')
    pattern = re.compile(prefix + r'(\d+)-(\d+)\.ckpt')
    folder = _folder(location.par_dir, location.experiment_name)
    if not folder.is_dir():
        return []
    return sorted(
        (int(match[1]), int(match[2]))
        for entry in folder.iterdir()
        if (match := pattern.fullmatch(entry.name))
    )


@hookimpl(tryfirst=True)
def delete_checkpoint(
    location: CheckpointLocation, epoch: int, batch: int
) -> bool | None:
    target = _file(location, epoch, batch)
    if not target.is_file():
        return None
    target.unlink()
    return True


@hookimpl(tryfirst=True)
def checkpoint_digest(
    location: CheckpointLocation, epoch: int, batch: int
) -> str | None:
    target = _file(location, epoch, batch)
    if not target.is_file():
        return None
    return hashlib.sha256(target.read_bytes()).hexdigest()


@hookimpl
def run_outputs(run: RunView) -> dict[str, str]:
    return {'vault': str(_folder(run.par_dir, run.experiment))}
