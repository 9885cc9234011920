"""Refuse names that could escape their folder or break on some file system.

Tags are labels, not file names: they only need to be storable text, so they
may hold ``/``, ``:`` and the like, which names may not.
"""

from __future__ import annotations

import re

from drytorch import hookimpl
from drytorch.core import exceptions

MAX_LENGTH = 128
_CONTROL = re.compile(r'[\x00-\x1f\x7f]')
_FORBIDDEN = re.compile(r'[/\\:*?"<>|\x00-\x1f\x7f]')
_RESERVED = {'CON', 'PRN', 'AUX', 'NUL'} | {
    f'{p}{n}' for p in ('COM', 'LPT') for n in range(1, 10)
}


def check_name(name: str, kind: str) -> None:
    """Raise ``InvalidNameError`` if ``name`` is unsafe as a name of its ``kind``.

    ``kind`` is ``experiment``, ``run`` or ``model`` (file and folder names),
    or ``tag`` (a label recorded as text).
    """
    label = 'Tag' if kind == 'tag' else f'{kind.capitalize()} name'
    if not isinstance(name, str):
        raise exceptions.InvalidNameError(
            f'{label}s must be strings, got {type(name).__name__} {name!r}.'
        )
    tag = kind == 'tag'
    rule = (
        f'Tags are recorded as text: use printable characters (at most {MAX_LENGTH}).'
        if tag
        else 'Names become file and folder names: use letters, digits, spaces and '
        f'-_.+=@,()[] (at most {MAX_LENGTH} characters).'
    )
    if surrogate := _lone_surrogate(name):
        problem = (
            f'contains the lone surrogate {surrogate!r}, which cannot be written '
            'to a file. It usually comes from bytes decoded with '
            "errors='surrogateescape' (os.fsdecode, sys.argv on a non-UTF-8 "
            'system): decode them with their real encoding'
        )
    elif not name or name.strip() != name:
        problem = 'is empty or starts or ends with whitespace'
    elif len(name) > MAX_LENGTH:
        problem = f'is longer than {MAX_LENGTH} characters'
    elif match := (_CONTROL if tag else _FORBIDDEN).search(name):
        problem = f'contains the forbidden character {match.group()!r}'
    elif tag:
        return
    elif '..' in name or name.startswith('.') or name.endswith('.'):
        problem = "contains '..' or starts or ends with '.'"
    elif name.split('.')[0].upper() in _RESERVED:
        problem = 'is a reserved device name on Windows'
    else:
        return
    raise exceptions.InvalidNameError(f'{label} {name!r} {problem}. {rule}')


def _lone_surrogate(text: str) -> str:
    """Return the first lone surrogate in ``text`` (UTF-8 cannot encode it), or ''."""
    try:
        text.encode('utf-8')
    except UnicodeEncodeError as error:
        return text[error.start]
    return ''


@hookimpl
def validate_name(name: str, kind: str) -> None:
    """Refuse unsafe experiment names, run ids, model names and tags."""
    check_name(name, kind)
