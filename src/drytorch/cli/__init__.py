"""The ``drytorch`` command.

    drytorch runs [--experiment NAME] [--status S] [--tag T] [--since WHEN]
                  [--sort KEY] [--desc] [--limit N] [--json]
                                                 recorded runs, with last metrics
    drytorch show RUN [--json]                   config, environment, metrics, outputs
    drytorch compare RUN RUN [--json]            config and final-metric differences
    drytorch plot RUN [--metric M]... [--out FILE]  one figure of learning curves
    drytorch verify RUN [--json]                 checkpoints load and match, environment
    drytorch plugins [--json]                    plugins, their origin and hooks
    drytorch tag RUN TAG [TAG...] [--remove]     add or remove tags of a run
    drytorch rm RUN [--outputs] [--yes]          delete a run (and its outputs)
    drytorch gc [--dry-run]                      remove what dead processes left

RUN is a run id, a prefix of one that only one run has, or ``last`` (the newest
run); add ``--experiment NAME`` when two experiments share it. ``drytorch
--version`` prints the versions; ``python -m drytorch`` is the same command.
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from drytorch.core import exceptions

__all__ = ['main']

RUN_ARGUMENT = 'a run id, a prefix only one run id has, "last" or "last~N"'
RUN_HELP = (
    'RUN is a run id, a prefix that only one run id has, "last" (the newest '
    'run) or "last~N" (the one N runs before it: last~1 is the one before '
    'last); add --experiment NAME when two experiments have that id.'
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    args = _parser().parse_args(argv)
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
    from drytorch.cli import housekeeping, plugins, runs, verify

    parser = argparse.ArgumentParser(
        prog='drytorch',
        description='Inspect DRYTorch runs and plugins.',
        epilog=f'{RUN_HELP} Runs are recorded in the registry folder: '
        'DRYTORCH_REGISTRY_DIR, [tool.drytorch] registry_dir in pyproject.toml, '
        'or the user data folder; `drytorch COMMAND --help` tells more.',
    )
    parser.add_argument('--version', action='version', version=_version())
    commands = parser.add_subparsers(required=True, metavar='COMMAND')

    def command(name: str, help_text: str, handler: Any) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name, help=help_text, description=help_text, epilog=RUN_HELP
        )
        sub.set_defaults(handler=handler)
        return sub

    def registry_options(sub: argparse.ArgumentParser) -> None:
        sub.add_argument('--experiment', '-e', help='only experiments so named')
        sub.add_argument('--registry', type=pathlib.Path, help='registry folder')

    listing = command('runs', 'list recorded runs', runs.list_runs)
    registry_options(listing)
    listing.add_argument('--json', action='store_true', help='print JSON')
    _selection_options(listing)

    show = command('show', 'show one run', runs.show)
    show.add_argument('run', metavar='RUN', help=RUN_ARGUMENT)
    registry_options(show)
    show.add_argument('--json', action='store_true', help='print JSON')

    compare = command('compare', 'compare two runs', runs.compare)
    compare.add_argument('runs', metavar='RUN', nargs=2, help=RUN_ARGUMENT)
    registry_options(compare)
    compare.add_argument('--json', action='store_true', help='print JSON')

    plot = command('plot', 'plot the learning curves of a run', runs.plot)
    plot.add_argument('run', metavar='RUN', help=RUN_ARGUMENT)
    registry_options(plot)
    plot.add_argument(
        '--metric',
        '-m',
        action='append',
        help='only this metric (repeat for several; case aside, a unique '
        'prefix or part of its name will do)',
    )
    plot.add_argument(
        '--out',
        '-o',
        type=pathlib.Path,
        help='the figure to write: .png, .pdf, .svg... (default: '
        '<experiment>_<run>.png)',
    )

    check = command(
        'verify', "check a run's checkpoints and environment", verify.verify
    )
    check.add_argument('run', metavar='RUN', help=RUN_ARGUMENT)
    registry_options(check)
    check.add_argument('--json', action='store_true', help='print JSON')

    found = command('plugins', 'list registered plugins', plugins.list_plugins)
    found.add_argument('--json', action='store_true', help='print JSON')

    tagging = command('tag', 'add or remove tags of a run', housekeeping.tag)
    tagging.add_argument('run', metavar='RUN', help=RUN_ARGUMENT)
    tagging.add_argument('tags', metavar='TAG', nargs='+')
    registry_options(tagging)
    tagging.add_argument('--remove', action='store_true', help='remove the tags')

    rm = command('rm', 'delete a run from the registry', housekeeping.remove)
    rm.add_argument('run', metavar='RUN', help=RUN_ARGUMENT)
    registry_options(rm)
    rm.add_argument(
        '--outputs', action='store_true', help='also its checkpoints and outputs'
    )
    rm.add_argument('--yes', '-y', action='store_true', help='do not ask')

    gc = command(
        'gc', 'remove what dead processes left behind', housekeeping.collect_garbage
    )
    gc.add_argument('--registry', type=pathlib.Path, help='registry folder')
    gc.add_argument('--dry-run', action='store_true', help='only list')
    return parser


def _selection_options(listing: argparse.ArgumentParser) -> None:
    from drytorch.core import selection

    def since(text: str) -> Any:
        try:
            return selection.parse_since(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    listing.add_argument(
        '--status',
        action='append',
        choices=sorted(selection.STATUSES),
        help='only runs with this status (repeat for several)',
    )
    listing.add_argument(
        '--tag', action='append', default=[], help='only runs with this tag (repeat)'
    )
    listing.add_argument(
        '--since', type=since, help='only runs created since: 2026-12-01, 12h, 7d'
    )
    listing.add_argument(
        '--sort', choices=selection.SORT_KEYS, default='created', help='order'
    )
    listing.add_argument('--desc', action='store_true', help='reverse the order')
    count = listing.add_mutually_exclusive_group()
    count.add_argument(
        '--limit',
        type=_count,
        help='only the N highest of the order (the N newest; default 100)',
    )
    count.add_argument('--all', action='store_true', help='every run that matches')
    listing.add_argument(
        '--refresh',
        action='store_true',
        help='compare every record with the index first (after edits in place)',
    )


def _version() -> str:
    import platform

    from drytorch.__about__ import __version__

    try:
        from importlib.metadata import version

        torch = version('torch')
    except Exception:  # torch missing or not installed as a distribution
        torch = 'not installed'
    return f'drytorch {__version__} (torch {torch}, python {platform.python_version()})'


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f'expected a whole number >= 0, got {text!r}')
    return value


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: str | None = None,
) -> None:
    print(f'drytorch: warning: {message}', file=sys.stderr)
