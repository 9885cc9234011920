"""``drytorch verify RUN``: check the checkpoints and environment of a run.

A checkpoint passes when its file exists, its SHA-256 matches the one recorded
when it was saved, and it loads with ``torch.load(weights_only=True)``. Only
files that the storage backend lists for the run are read: an entry of the
record's ``[summary.checkpoints]`` (which anyone may edit) whose model name is
unsafe, whose position the backend does not list, or whose path is not the
backend's file for that position is reported, never hashed or loaded.

The environment passes when the versions, the installed packages and the git
state recorded for the run equal the current ones. The git state is read in
the run's code folder, as recorded, not in the folder of the ``drytorch``
script (a virtual environment, often outside the repository). Any failure or
difference is listed and the command exits with status 1.
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
from collections.abc import Mapping
from typing import Any

from drytorch.cli import records
from drytorch.cli.runs import find_run
from drytorch.cli.tables import print_json, print_table
from drytorch.core import checkpointing, environment, exceptions, registry
from drytorch.core.checkpointing import CheckpointLocation, Position
from drytorch.core.plugins import get_host
from drytorch.core.snapshot import flatten
from drytorch.validators.names import check_name

__all__ = ['ENVIRONMENT_KEYS', 'check_checkpoints', 'compare_environment', 'verify']

ENVIRONMENT_KEYS = (
    'python',
    'torch',
    'drytorch',
    'packages_hash',
    'accelerator',
    'git.commit',
    'git.dirty',
)
_LOCAL_BACKEND = 'drytorch.storage.local'


def verify(args: argparse.Namespace) -> int:
    """Print the checks of one run; return 1 when anything fails or differs."""
    record = find_run(args, args.run)
    checkpoints = check_checkpoints(record)
    recorded = record.data.get('environment', {})
    differences = compare_environment(recorded if isinstance(recorded, Mapping) else {})
    failed = [c for c in checkpoints if c['status'] != 'ok']
    if args.json:
        print_json(
            {
                'run': record.id,
                'experiment': record.experiment,
                'checkpoints': checkpoints,
                'environment': differences,
                'ok': not failed and not differences,
            }
        )
        return 1 if failed or differences else 0
    print(f'Run {record.id} of experiment {record.experiment}')
    if checkpoints:
        table = [('CHECKPOINT', 'STATUS', 'PATH')]
        table.extend((c['name'], c['status'], c['path']) for c in checkpoints)
        print_table(table)
    else:
        print('No checkpoint was recorded for this run.')
    if differences:
        table = [('ENVIRONMENT', 'RECORDED', 'NOW')]
        table.extend((d['key'], d['recorded'], d['now']) for d in differences)
        print_table(table)
    else:
        print('Environment: as recorded.')
    return 1 if failed or differences else 0


def check_checkpoints(record: registry.RunRecord) -> list[dict[str, str]]:
    """Check each checkpoint recorded in the run's summary, against the backend.

    Raises:
        CorruptRecordError: checkpoints are recorded but ``par_dir`` is not an
            absolute folder.
    """
    summary = record.data.get('summary', {})
    saved = summary.get('checkpoints', {}) if isinstance(summary, Mapping) else {}
    if not isinstance(saved, Mapping) or not saved:
        return []
    par_dir = records.par_dir(record)
    listed: dict[str, list[Position] | str] = {}  # by model: positions, or why not
    results = []
    for name, entry in sorted(saved.items(), key=lambda item: _order(item[1])):
        recorded = entry.get('path') if isinstance(entry, Mapping) else None
        path, status = _check_entry(record, par_dir, str(name), entry, listed)
        results.append(
            {'name': str(name), 'path': str(path or recorded or '-'), 'status': status}
        )
    return results


def compare_environment(recorded: Mapping[str, Any]) -> list[dict[str, str]]:
    """Return the recorded environment values that differ from the current ones.

    The current git state is that of the code folder the run recorded.
    """
    then, now = flatten(recorded), flatten(_current(recorded))
    differences = []
    for key in ENVIRONMENT_KEYS:
        if key not in then:  # not recorded (an older record, or no git)
            continue
        if then.get(key) != now.get(key):
            differences.append(
                {'key': key, 'recorded': str(then[key]), 'now': str(now.get(key, '-'))}
            )
    return differences


def _current(recorded: Mapping[str, Any]) -> dict[str, Any]:
    """Return what ``ENVIRONMENT_KEYS`` read now, git in the run's code folder."""
    now: dict[str, Any] = {
        **environment.versions(),
        'packages_hash': environment.packages().hash,
        'accelerator': environment.accelerator(),
    }
    folder = environment.recorded_code_folder(recorded)
    git = environment.git_state(folder) if folder is not None else {}
    if git:
        now['git'] = dict(git)
    return now


def _check_entry(
    record: registry.RunRecord,
    par_dir: pathlib.Path,
    name: str,
    entry: Any,
    listed: dict[str, list[Position] | str],
) -> tuple[pathlib.Path | None, str]:
    """Return the file checked and the status of one ``[summary.checkpoints]`` entry.

    Nothing is read before the entry is known to be the backend's file.
    """
    model, _, file_name = name.partition('/')
    try:
        check_name(model, 'model')
    except exceptions.InvalidNameError:
        return None, 'invalid model name'
    position = _position(entry)
    recorded = entry.get('path') if isinstance(entry, Mapping) else None
    if position is None or not file_name or not isinstance(recorded, str):
        return None, 'invalid entry'
    location = CheckpointLocation(par_dir, record.experiment, record.id, model)
    if model not in listed:
        listed[model] = _listed(location)
    positions = listed[model]
    if isinstance(positions, str):
        return None, positions
    if position not in positions:
        return None, 'missing'
    expected = _backend_file(location, position)
    if expected is None:
        return None, 'not checked: the storage backend names no file'
    if pathlib.Path(recorded) != expected or expected.name != file_name:
        return None, "not the backend's file"
    if expected.is_symlink():
        return expected, 'symbolic link, not read'
    if not expected.is_file():
        return expected, 'missing'
    return expected, _check(expected, entry)


def _listed(location: CheckpointLocation) -> list[Position] | str:
    try:
        return checkpointing.list_positions(location)
    except Exception as err:  # a backend's failure is this entry's status
        return f'backend failed: {type(err).__name__}'


def _backend_file(
    location: CheckpointLocation, position: Position
) -> pathlib.Path | None:
    """Return the file the built-in backend keeps at ``position``, if it answers.

    The backend hooks name positions, not files; only the built-in backend's
    layout is known, and it answers only when no other backend is installed.
    """
    impls = get_host().hook.list_checkpoints.get_hookimpls()
    if not impls or any(impl.plugin_name != _LOCAL_BACKEND for impl in impls):
        return None
    from drytorch.storage import local

    return local.path(location, *position)


def _check(path: pathlib.Path, entry: Mapping[str, Any]) -> str:
    with path.open('rb') as file:
        digest = hashlib.file_digest(file, 'sha256').hexdigest()
    if digest != entry.get('sha256'):
        return 'hash differs'
    import torch

    try:
        torch.load(path, map_location='cpu', weights_only=True)
    except Exception as err:
        return f'does not load: {type(err).__name__}'
    return 'ok'


def _position(entry: Any) -> Position | None:
    """Return an entry's ``(epoch, batch)``, or None if it holds no integers."""
    if not isinstance(entry, Mapping):
        return None
    epoch, batch = entry.get('epoch'), entry.get('batch', 0)
    if not isinstance(epoch, int) or not isinstance(batch, int):
        return None
    if isinstance(epoch, bool) or isinstance(batch, bool):
        return None
    return epoch, batch


def _order(entry: Any) -> tuple[int, int]:
    return _position(entry) or (-1, -1)
