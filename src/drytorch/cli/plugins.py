"""``drytorch plugins``: every registered plugin, its origin and its hooks."""

from __future__ import annotations

import argparse

from drytorch.cli.tables import print_json, print_table
from drytorch.core import plugins

__all__ = ['list_plugins']


def list_plugins(args: argparse.Namespace) -> int:
    """Print the plugins of a fresh plugin host."""
    found = sorted(plugins.get_host().plugins(), key=lambda p: p.name)
    if args.json:
        print_json(
            [
                {'name': p.name, 'origin': p.origin, 'hooks': list(p.hooks)}
                for p in found
            ]
        )
        return 0
    table = [('PLUGIN', 'ORIGIN', 'HOOKS')]
    table.extend((p.name, p.origin, ', '.join(p.hooks)) for p in found)
    print_table(table)
    return 0
