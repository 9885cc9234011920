"""``drytorch verify RUN``: check the checkpoints and environment of a run.

A checkpoint passes when its file exists, its SHA-256 matches the one recorded
when it was saved, and it loads with ``torch.load(weights_only=True)``. The
environment passes when the versions, the installed packages and the git
state recorded for the run equal the current ones. Any failure or difference
is listed and the command exits with status 1.
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
from collections.abc import Mapping
from typing import Any

from drytorch.cli.runs import find_run
from drytorch.cli.tables import print_json, print_table
from drytorch.core import environment, registry
from drytorch.core.snapshot import flatten

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
    differences = compare_environment(record.data.get('environment', {}))
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
    """Check each checkpoint recorded in the run's summary."""
    saved = record.data.get('summary', {}).get('checkpoints', {})
    results = []
    for name, entry in sorted(saved.items(), key=lambda item: _order(item[1])):
        path = pathlib.Path(str(entry.get('path', '')))
        results.append({'name': name, 'path': str(path), 'status': _check(path, entry)})
    return results


def compare_environment(recorded: Mapping[str, Any]) -> list[dict[str, str]]:
    """Return the recorded environment values that differ from the current ones."""
    then, now = flatten(recorded), flatten(environment.capture())
    differences = []
    for key in ENVIRONMENT_KEYS:
        if key not in then:  # not recorded (an older record, or no git)
            continue
        if then.get(key) != now.get(key):
            differences.append(
                {'key': key, 'recorded': str(then[key]), 'now': str(now.get(key, '-'))}
            )
    return differences


def _check(path: pathlib.Path, entry: Mapping[str, Any]) -> str:
    if not path.is_file():
        return 'missing'
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


def _order(entry: Mapping[str, Any]) -> tuple[int, int]:
    return int(entry.get('epoch', 0)), int(entry.get('batch', 0))
