"""Delete, rename or copy an experiment's output folders under ``par_dir``.

Trackers and checkpoints write a run's outputs to
``<par_dir>/<kind>/<experiment name>/<run id>`` (``kind``: ``checkpoints``,
``csv``, ``toml``...), so an experiment's folders are the
``<par_dir>/<kind>/<experiment name>`` that exist. These functions act on the
files only: the run registry keeps its records (delete those with
``Experiment.delete_run`` or the ``drytorch`` command line). Do not use them
while a run of the experiment is writing.

They refuse names that could leave their folder and symbolic links on the
way, so that nothing outside ``par_dir`` is touched.
"""

from __future__ import annotations

import os
import pathlib
import shutil

from drytorch.core.exceptions import UnsafePathError
from drytorch.validators.names import check_name

__all__ = [
    'clone_experiment_data',
    'delete_experiment_data',
    'rename_experiment_data',
]

_PathLike = str | os.PathLike[str]


def _experiment_folders(par_dir: _PathLike, exp_name: str) -> list[pathlib.Path]:
    """Return the experiment's folders, checked to lie inside ``par_dir``.

    Raises:
        InvalidNameError: ``exp_name`` is not a safe folder name.
        UnsafePathError: a folder is a symbolic link or leads outside.
        FileNotFoundError: ``par_dir`` is not a folder.
    """
    check_name(exp_name, 'experiment')
    root = pathlib.Path(par_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f'{root} is not a folder: pass the par_dir of the run.')
    root = root.resolve()
    found = []
    for kind in sorted(root.iterdir()):
        folder = kind / exp_name
        if not folder.exists() and not folder.is_symlink():
            continue
        for place in (kind, folder):
            if place.is_symlink():
                raise UnsafePathError(
                    f'{place} is a symbolic link: the experiment data is moved '
                    'or deleted only inside par_dir. Remove the link first.'
                )
        if folder.is_dir() and folder.resolve().parent == kind.resolve():
            found.append(folder)
    return found


def delete_experiment_data(par_dir: _PathLike, exp_name: str) -> list[pathlib.Path]:
    """Delete every output folder of experiment ``exp_name`` under ``par_dir``.

    Returns:
        The folders deleted (none when the experiment wrote nothing there).

    Raises:
        InvalidNameError: ``exp_name`` is not a safe folder name.
        UnsafePathError: a folder on the way is a symbolic link.
        FileNotFoundError: ``par_dir`` is not a folder.
    """
    folders = _experiment_folders(par_dir, exp_name)
    for folder in folders:
        shutil.rmtree(folder)  # links inside are removed, not followed
    return folders


def rename_experiment_data(
    par_dir: _PathLike, exp_name: str, new_exp_name: str
) -> list[pathlib.Path]:
    """Rename the output folders of ``exp_name`` to ``new_exp_name``.

    Returns:
        The new folders.

    Raises:
        InvalidNameError: a name is not a safe folder name.
        UnsafePathError: a folder on the way is a symbolic link.
        FileExistsError: ``new_exp_name`` already has a folder of that kind.
        FileNotFoundError: ``par_dir`` is not a folder.
    """
    targets = _targets(par_dir, exp_name, new_exp_name)
    for source, target in targets:
        source.rename(target)
    return [target for _, target in targets]


def clone_experiment_data(
    par_dir: _PathLike, exp_name: str, new_exp_name: str
) -> list[pathlib.Path]:
    """Copy the output folders of ``exp_name`` as those of ``new_exp_name``.

    Symbolic links inside are copied as links, not followed.

    Returns:
        The new folders.

    Raises:
        InvalidNameError: a name is not a safe folder name.
        UnsafePathError: a folder on the way is a symbolic link.
        FileExistsError: ``new_exp_name`` already has a folder of that kind.
        FileNotFoundError: ``par_dir`` is not a folder.
    """
    targets = _targets(par_dir, exp_name, new_exp_name)
    for source, target in targets:
        shutil.copytree(source, target, symlinks=True)
    return [target for _, target in targets]


def _targets(
    par_dir: _PathLike, exp_name: str, new_exp_name: str
) -> list[tuple[pathlib.Path, pathlib.Path]]:
    """Pair each folder of ``exp_name`` with its new place; refuse overwriting."""
    check_name(new_exp_name, 'experiment')
    pairs = [
        (folder, folder.with_name(new_exp_name))
        for folder in _experiment_folders(par_dir, exp_name)
    ]
    for _, target in pairs:
        if target.exists() or target.is_symlink():
            raise FileExistsError(
                f'{target} already exists: choose another name, or delete the '
                f'data of {new_exp_name!r} first.'
            )
    return pairs
