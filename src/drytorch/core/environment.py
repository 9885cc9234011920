"""What a run record captures about the environment it ran in.

Versions and git state are read once per process and folder: they cannot
change under a running interpreter in any way that matters for the record,
and asking git on every run would dominate the cost of starting one.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import pathlib
import platform
import subprocess
import sys
from typing import Any

__all__ = ['capture', 'git_state', 'versions']


def capture() -> dict[str, Any]:
    """Return the process, versions and the git state of the running code.

    The code's folder is the running script's folder, or the working
    directory in an interactive session.
    """
    env: dict[str, Any] = {
        'command': [sys.executable, *sys.argv],
        'cwd': os.getcwd(),
        'platform': platform.platform(),
        **versions(),
    }
    script = pathlib.Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    folder = script.parent if script and script.is_file() else pathlib.Path.cwd()
    git = git_state(str(folder.resolve()))
    if git:
        env['git'] = git
    return env


@functools.cache
def versions() -> dict[str, str]:
    """Return the versions of python, torch and drytorch."""
    found = {'python': platform.python_version()}
    for dist in ('torch', 'drytorch'):
        try:
            found[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            found[dist] = 'not installed'
    return found


@functools.cache
def git_state(folder: str) -> dict[str, Any]:
    """Return commit, branch and dirty flag of the git work tree holding ``folder``.

    Empty when ``folder`` is not in a git work tree or git is not installed.
    """
    commit = _git(folder, 'rev-parse', 'HEAD')
    if commit is None:
        return {}
    status = _git(folder, 'status', '--porcelain', '--untracked-files=no')
    state: dict[str, Any] = {'commit': commit, 'dirty': bool(status)}
    branch = _git(folder, 'rev-parse', '--abbrev-ref', 'HEAD')
    if branch and branch != 'HEAD':
        state['branch'] = branch
    return state


def _git(folder: str, *args: str) -> str | None:
    try:
        done = subprocess.run(
            ['git', *args],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
