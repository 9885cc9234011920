"""The ``drytorch`` command: list recorded runs and registered plugins.

drytorch runs [--experiment NAME] [--json]
drytorch plugins [--json]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from drytorch.core import exceptions, plugins, registry, settings

__all__ = ['main']


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('always')
            warnings.showwarning = _show_warning
            result: int = args.handler(args)
            return result
    except exceptions.DryTorchError as err:
        print(f'drytorch: error: {err}', file=sys.stderr)
        return 1
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog='drytorch', description='Inspect DRYTorch runs and plugins.'
    )
    commands = parser.add_subparsers(required=True, metavar='COMMAND')

    runs = commands.add_parser('runs', help='list recorded runs')
    runs.add_argument('--experiment', '-e', help='only runs of experiments so named')
    runs.add_argument('--registry', type=pathlib.Path, help='registry folder')
    runs.add_argument('--json', action='store_true', help='print JSON')
    runs.set_defaults(handler=_runs)

    found = commands.add_parser('plugins', help='list registered plugins')
    found.add_argument('--json', action='store_true', help='print JSON')
    found.set_defaults(handler=_plugins)
    return parser


def _runs(args: argparse.Namespace) -> int:
    root = args.registry or settings.get_settings().registry_dir
    reg = registry.RunRegistry(root)
    records: list[tuple[dict[str, Any], registry.RunRecord]] = []
    for key in reg.experiment_keys():
        info = dict(reg.experiment_info(key))
        if args.experiment and info.get('name', key) != args.experiment:
            continue
        records.extend((info, record) for record in reg.list_runs(key))
    if args.json:
        rows = [
            dict(record.to_json(), registry_path=str(record.path))
            for _, record in records
        ]
        print(json.dumps(rows, indent=2))
        return 0
    if not records:
        print(f'No runs recorded in {root}.')
        return 0
    table = [('EXPERIMENT', 'RUN', 'STATUS', 'CREATED', 'DURATION', 'PAR_DIR', 'TAGS')]
    for info, record in records:
        table.append(
            (
                record.experiment,
                record.id,
                record.status,
                record.created_at.strftime('%Y-%m-%d %H:%M:%S'),
                _duration(record),
                str(info.get('par_dir', record.data.get('par_dir', ''))),
                ','.join(record.tags),
            )
        )
    _print_table(table)
    return 0


def _plugins(args: argparse.Namespace) -> int:
    host = plugins.get_host()
    found = sorted(host.plugins(), key=lambda p: p.name)
    if args.json:
        rows = [
            {'name': p.name, 'origin': p.origin, 'hooks': list(p.hooks)} for p in found
        ]
        print(json.dumps(rows, indent=2))
        return 0
    table = [('PLUGIN', 'ORIGIN', 'HOOKS')]
    table.extend((p.name, p.origin, ', '.join(p.hooks)) for p in found)
    _print_table(table)
    return 0


def _duration(record: registry.RunRecord) -> str:
    if record.started_at is None:
        return '-'
    if record.stopped_at is None or record.stopped_at < record.started_at:
        return '-' if record.status != 'running' else 'running'
    seconds = int((record.stopped_at - record.started_at).total_seconds())
    hours, rest = divmod(seconds, 3600)
    return f'{hours}:{rest // 60:02d}:{rest % 60:02d}'


def _print_table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print(
            '  '.join(
                cell.ljust(width) for cell, width in zip(row, widths, strict=True)
            ).rstrip()
        )


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    print(f'drytorch: warning: {message}', file=sys.stderr)


if __name__ == '__main__':
    sys.exit(main())
