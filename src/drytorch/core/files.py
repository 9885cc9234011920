"""Writing files whole: a reader, or a crash, sees the old content or the new.

The content goes to a temporary file beside the target, named
``.tmp-<pid>-<random><suffix>`` so that whoever owns the folder can tell a
killed process's leftovers from a save in progress; it is synced (unless the
caller says the file is not worth an ``fsync``) and renamed over the target,
or linked to it where the target must not exist yet. The run registry, the
built-in trackers and the local checkpoint backend all write this way; a
plugin may too.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import re
import secrets
import time
from collections.abc import Iterator
from typing import IO, Any

__all__ = [
    'refuse_links',
    'remove_stale_temporaries',
    'replace_file',
    'replacing',
    'stale_temporaries',
    'temp_path',
    'write_temp',
]


def temp_path(folder: pathlib.Path, suffix: str = '') -> pathlib.Path:
    """Return a fresh temporary name in ``folder``, owned by this process."""
    return folder / f'.tmp-{os.getpid()}-{secrets.token_hex(4)}{suffix}'


@contextlib.contextmanager
def replacing(
    path: pathlib.Path,
    *,
    sync: bool = True,
    suffix: str = '',
    mode: str = 'wb',
    **open_args: Any,
) -> Iterator[IO[Any]]:
    """Open a temporary file that replaces ``path`` when the block ends cleanly.

    Args:
        path: the file to replace (or create); its folder must exist.
        sync: ``fsync`` the data before the rename, so that the new file
            survives a power loss as well as a crash.
        suffix: the end of the temporary file's name.
        mode: ``'wb'`` or ``'w'``.
        **open_args: more arguments for ``open`` (``encoding``, ``newline``).

    On an error in the block, the temporary file is removed and ``path`` is
    left as it was.
    """
    temp = temp_path(path.parent, suffix)
    try:
        with open(temp, mode.replace('w', 'x'), **open_args) as file:
            yield file
            file.flush()
            if sync:
                os.fsync(file.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def replace_file(path: pathlib.Path, content: bytes, *, sync: bool = True) -> None:
    """Replace (or create) ``path`` with ``content``, whole; see ``replacing``."""
    with replacing(path, sync=sync) as file:
        file.write(content)


def write_temp(folder: pathlib.Path, content: bytes) -> pathlib.Path:
    """Write ``content`` to a synced temporary file in ``folder``; return its path.

    For callers that link it into place (``os.link`` fails rather than
    replace a file that exists); they remove it afterwards.
    """
    temp = temp_path(folder)
    try:
        with temp.open('xb') as file:
            file.write(content)
            file.flush()
            os.fsync(file.fileno())
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return temp


STALE_AGE = 60.0  # seconds: older than any write in progress, on any host
_TEMP = re.compile(r'\.tmp-(\d+)-[0-9a-f]{8}.*')


def stale_temporaries(
    folder: pathlib.Path, min_age: float = STALE_AGE
) -> list[pathlib.Path]:
    """Return the temporary files that killed processes left in ``folder``.

    A temporary file is stale when the process named in it is gone and it is
    older than ``min_age`` seconds: the age keeps the files of a live writer
    on another host (a shared file system, where pids mean nothing) safe. A
    linked folder is someone else's: nothing in it is stale.
    """
    if folder.is_symlink():
        return []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return []
    deadline = time.time() - min_age
    stale = []
    for entry in entries:
        match = _TEMP.fullmatch(entry.name)
        if match is None or int(match.group(1)) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if entry.stat(follow_symlinks=False).st_mtime > deadline:
                continue
            if not pid_alive(int(match.group(1))):
                stale.append(pathlib.Path(entry.path))
    return sorted(stale)


def remove_stale_temporaries(folder: pathlib.Path, min_age: float = STALE_AGE) -> int:
    """Remove ``stale_temporaries(folder, min_age)``; return how many went.

    Files that cannot be removed are left.
    """
    removed = 0
    for path in stale_temporaries(folder, min_age):
        with contextlib.suppress(OSError):
            path.unlink()
            removed += 1
    return removed


def pid_alive(pid: int) -> bool:
    """Return whether a process with ``pid`` runs on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists, owned by someone else
        return True
    return True


def refuse_links(path: pathlib.Path, writer: str, depth: int = 1) -> None:
    """Raise ``UnsafePathError`` if ``path`` or a near parent is a symbolic link.

    ``depth`` counts ``path`` and the parents checked. Appending writers (CSV
    files, SQLite databases) would follow a link planted in their output
    folder and change a file elsewhere; ``writer`` names who refuses, for the
    message.
    """
    from drytorch.core import exceptions

    for place in [path, *path.parents][:depth]:
        if place.is_symlink():
            raise exceptions.UnsafePathError(
                f'{place} is a symbolic link (to {os.readlink(place)}): {writer} '
                'neither reads nor writes through links, which could reach a '
                'file elsewhere. Remove the link to write there.'
            )
