"""Refuse names that could escape their folder or break on some file system."""

from __future__ import annotations

import re

from drytorch.core import exceptions
from drytorch.hookspecs._markers import hookimpl

MAX_LENGTH = 128
_FORBIDDEN = re.compile(r'[/\\:*?"<>|\x00-\x1f\x7f]')
_RESERVED = {'CON', 'PRN', 'AUX', 'NUL'} | {
    f'{p}{n}' for p in ('COM', 'LPT') for n in range(1, 10)
}


def check_name(name: str, kind: str) -> None:
    """Raise ``InvalidNameError`` if ``name`` is unsafe as a file or folder name."""
    what = f'{kind.capitalize()} name {name!r}'
    if not isinstance(name, str):
        raise exceptions.InvalidNameError(f'{kind.capitalize()} names must be strings.')
    if not name or name.strip() != name:
        problem = 'is empty or starts or ends with whitespace'
    elif len(name) > MAX_LENGTH:
        problem = f'is longer than {MAX_LENGTH} characters'
    elif match := _FORBIDDEN.search(name):
        problem = f'contains the forbidden character {match.group()!r}'
    elif '..' in name or name.startswith('.') or name.endswith('.'):
        problem = "contains '..' or starts or ends with '.'"
    elif name.split('.')[0].upper() in _RESERVED:
        problem = 'is a reserved device name on Windows'
    else:
        return
    raise exceptions.InvalidNameError(
        f'{what} {problem}. Names become file and folder names: use letters, '
        f'digits, spaces and -_.+=@,()[] (at most {MAX_LENGTH} characters).'
    )


@hookimpl
def validate_name(name: str, kind: str) -> None:
    """Refuse unsafe experiment names, run ids and model names."""
    check_name(name, kind)
