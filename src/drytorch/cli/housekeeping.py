"""``drytorch tag``, ``rm`` and ``gc``: the commands that change the registry.

The logic is ``drytorch.core.housekeeping``; these commands resolve RUN (and
``--experiment``) like the reading commands, print what they did and ask
before deleting.
"""

from __future__ import annotations

import argparse
import sys

from drytorch.cli import runs
from drytorch.cli.tables import printable
from drytorch.core import exceptions, housekeeping, registry

__all__ = ['collect_garbage', 'remove', 'tag']


def _key(record: registry.RunRecord) -> str:
    """Return the experiment key of a record (the folder above ``runs/``)."""
    return record.path.parent.parent.name


def tag(args: argparse.Namespace) -> int:
    """Add (or with ``--remove``, remove) tags of a run."""
    record = runs.find_run(args, args.run)
    reg = runs._registry(args)
    if args.remove:
        written = housekeeping.tag_run(reg, _key(record), record.id, remove=args.tags)
    else:
        written = housekeeping.tag_run(reg, _key(record), record.id, add=args.tags)
    shown = ', '.join(printable(tag) for tag in written.tags) or '-'
    print(f'Run {record.id} of experiment {record.experiment}: tags {shown}')
    return 0


def remove(args: argparse.Namespace) -> int:
    """Delete a run's record (and with ``--outputs`` its outputs), after asking."""
    record = runs.find_run(args, args.run)
    reg = runs._registry(args)

    def confirm(plan: housekeeping.Deletion) -> bool:
        _describe(plan)
        if args.yes:
            return True
        if not sys.stdin.isatty():
            raise exceptions.DryTorchError(
                f'Not deleting run {plan.run_id!r}: stdin is not a terminal, so '
                'there is nobody to confirm. Pass --yes to delete it.'
            )
        answer = input(f'Delete run {plan.run_id} for good? [y/N] ')
        return answer.strip().lower() in {'y', 'yes'}

    plan = housekeeping.delete_run(
        reg, _key(record), record.id, outputs=args.outputs, confirm=confirm
    )
    if not plan.done:
        print('Nothing was deleted.')
        return 1
    print(f'Deleted run {plan.run_id} of experiment {plan.experiment}.')
    return 0


def collect_garbage(args: argparse.Namespace) -> int:
    """Remove (or with ``--dry-run`` list) what dead processes left behind."""
    reg = runs._registry(args)
    found = housekeeping.collect_garbage(reg, dry_run=args.dry_run)
    verb = 'would remove' if args.dry_run else 'removed'
    for path in found:
        print(f'{verb} {printable(str(path))}')
    print(f'{len(found)} file(s) {verb} in {printable(str(reg.root))}.')
    return 0


def _describe(plan: housekeeping.Deletion) -> None:
    print(f'Run {plan.run_id} of experiment {plan.experiment}:')
    for path in plan.files:
        print(f'  file        {printable(str(path))}')
    models: dict[str, int] = {}
    for model, _, _ in plan.checkpoints:
        models[model] = models.get(model, 0) + 1
    for model, count in models.items():
        print(f'  checkpoints {count} of model {printable(model)}')
    for folder in plan.folders:
        print(f'  folder      {printable(str(folder))}')
    for place, reason in plan.kept:
        print(f'  kept        {printable(str(place))} ({reason})')
