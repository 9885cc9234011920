"""``drytorch verify RUN``: check the checkpoints and environment of a run.

A checkpoint passes when the storage backend lists its position, the SHA-256
that the backend gives now (``checkpoint_digest``) equals the one recorded
when it was saved, and it loads through the backend (``load_checkpoint``).
Everything goes through the storage hooks, so the checkpoints of any backend
are verified, and no path written in the record is ever opened: an entry of
``[summary.checkpoints]`` (which anyone may edit) only names a model and a
position, and one whose model name is unsafe, whose position the backend
does not list, or that repeats a position already checked is reported.

The environment passes when the versions, the installed packages and the git
state recorded for the run equal the current ones. The git state is read in
the run's code folder, as recorded, not in the folder of the ``drytorch``
script (a virtual environment, often outside the repository). Any failure or
difference is listed and the command exits with status 1.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from drytorch.cli.runs import find_run
from drytorch.cli.tables import print_json, print_table, printable
from drytorch.core import checkpointing, environment, exceptions, registry
from drytorch.core.checkpointing import CheckpointLocation, Position
from drytorch.core.run_view import RunView
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
    """Check each checkpoint recorded in the run's summary, through the backend.

    Raises:
        CorruptRecordError: checkpoints are recorded but the record's names or
            ``par_dir`` cannot be used.
    """
    summary = record.data.get('summary', {})
    saved = summary.get('checkpoints', {}) if isinstance(summary, Mapping) else {}
    if not isinstance(saved, Mapping) or not saved:
        return []
    run = RunView.of_record(record)
    listed: dict[str, list[Position] | str] = {}  # by model: positions, or why not
    seen: set[tuple[str, Position]] = set()
    results = []
    for name, entry in sorted(saved.items(), key=lambda item: _order(item[1])):
        recorded = entry.get('path') if isinstance(entry, Mapping) else None
        status = _check_entry(run, str(name), entry, listed, seen)
        results.append(
            {'name': str(name), 'path': printable(recorded or '-'), 'status': status}
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
    run: RunView,
    name: str,
    entry: Any,
    listed: dict[str, list[Position] | str],
    seen: set[tuple[str, Position]],
) -> str:
    """Return the status of one ``[summary.checkpoints]`` entry."""
    model = name.partition('/')[0]
    try:
        check_name(model, 'model')
    except exceptions.InvalidNameError:
        return 'invalid model name'
    position = _position(entry)
    if position is None:
        return 'invalid entry'
    if (model, position) in seen:
        return f'repeats {checkpointing.describe_position(*position)}'
    seen.add((model, position))
    location = CheckpointLocation(run.par_dir, run.experiment, run.id, model)
    if model not in listed:
        listed[model] = _listed(location)
    positions = listed[model]
    if isinstance(positions, str):
        return positions
    if position not in positions:
        return 'missing'
    expected = entry.get('sha256')
    if not isinstance(expected, str):
        return 'no digest recorded'
    try:
        digest = checkpointing.digest_of(location, *position)
    except exceptions.CheckpointError as err:
        return f'not read: {_cause(err)}'
    if digest is None:
        return 'not checked: the storage backend gives no digest'
    if digest != expected:
        return 'hash differs'
    try:
        checkpointing.load(location, *position)
    except Exception as err:
        return f'does not load: {type(_cause_error(err)).__name__}'
    return 'ok'


def _listed(location: CheckpointLocation) -> list[Position] | str:
    try:
        return checkpointing.list_positions(location)
    except Exception as err:  # a backend's failure is this entry's status
        return f'backend failed: {type(err).__name__}'


def _cause_error(err: BaseException) -> BaseException:
    return err.__cause__ if err.__cause__ is not None else err


def _cause(err: BaseException) -> str:
    return printable(str(err).splitlines()[0] if str(err) else type(err).__name__)


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
