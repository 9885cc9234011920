"""What a run record captures about the environment it ran in.

Versions, installed packages, the accelerator and the git state are read once
per process (per folder for git): they cannot change under a running
interpreter in any way that matters for the record, and reading them on every
run would dominate the cost of starting one. Git is asked once for the state
of a folder, and once more for the diff of uncommitted changes when there are
some.

Nothing here imports torch when this module is imported; the accelerator is
looked up, importing torch if needed, the first time a run is captured.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import os
import pathlib
import platform
import re
import socket
import subprocess
import sys
from collections.abc import Mapping
from typing import Any, NamedTuple

__all__ = [
    'DIFF_LIMIT',
    'Capture',
    'Packages',
    'accelerator',
    'capture',
    'capture_all',
    'code_folder',
    'git_diff',
    'git_state',
    'packages',
    'recorded_code_folder',
    'versions',
]

DIFF_LIMIT = 5 * 2**20  # bytes of ``git diff HEAD`` kept beside a run
_TIMEOUT = 10


class Packages(NamedTuple):
    """The installed distributions.

    Attributes:
        text: one ``name==version`` line each, sorted, names normalised as
            in PEP 503 (lower case, runs of ``-_.`` as ``-``).
        hash: ``sha256:`` and the first 16 hex digits of the hash of ``text``.
    """

    text: str
    hash: str


class Capture(NamedTuple):
    """The environment of a run: the record's table and the files beside it.

    Attributes:
        record: the ``[environment]`` table of the run record.
        packages: the installed distributions.
        diff: ``git diff HEAD`` of the code's work tree, when it is dirty
            (at most ``DIFF_LIMIT`` bytes); None when clean or not in git.
    """

    record: dict[str, Any]
    packages: Packages
    diff: bytes | None


def capture() -> dict[str, Any]:
    """Return the ``[environment]`` table of a new run record."""
    return capture_all().record


def capture_all() -> Capture:
    """Return the environment of a new run, files beside the record included.

    The code's folder is the running script's folder, or the working
    directory in an interactive session. It is recorded as ``code_folder``
    so that the git state can be compared later from any process, whatever
    its own script (``drytorch verify`` runs from the virtual environment).
    """
    installed = packages()
    env: dict[str, Any] = {
        'command': [sys.executable, *sys.argv],
        'cwd': os.getcwd(),
        'hostname': socket.gethostname(),
        'platform': platform.platform(),
        **versions(),
        'packages_hash': installed.hash,
        'accelerator': accelerator(),
    }
    folder = code_folder()
    env['code_folder'] = folder  # `drytorch verify` asks git about this folder
    git = git_state(folder)
    diff = None
    if git:
        env['git'] = dict(git)
        if git['dirty']:
            diff, truncated = git_diff(folder)
            if truncated:
                env['git']['diff_truncated'] = True
    return Capture(env, installed, diff)


def code_folder() -> str:
    """Return the folder of the running script, or the working directory."""
    script = pathlib.Path(sys.argv[0]) if sys.argv and sys.argv[0] else None
    folder = script.parent if script and script.is_file() else pathlib.Path.cwd()
    return str(folder.resolve())


def recorded_code_folder(env: Mapping[str, Any]) -> str | None:
    """Return the code folder that a run's ``[environment]`` table names.

    Records written before ``code_folder`` was kept give the command and the
    working directory, from which the folder is found as ``code_folder``
    found it. None when the table cannot tell (or names no absolute folder).
    """
    folder = env.get('code_folder')
    if folder is None:
        cwd, command = env.get('cwd'), env.get('command')
        if not isinstance(cwd, str) or not _absolute(cwd):
            return None
        script = command[1] if isinstance(command, list) and command[1:] else None
        if isinstance(script, str) and script and '\0' not in script:
            path = pathlib.Path(cwd, script)
            if path.is_file():
                return str(path.parent.resolve())
        return cwd
    return folder if isinstance(folder, str) and _absolute(folder) else None


def _absolute(folder: str) -> bool:
    # a NUL would make subprocess raise ValueError rather than fail like git
    return '\0' not in folder and os.path.isabs(folder)


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
def packages() -> Packages:
    """Return the distributions installed in this interpreter, read once."""
    lines = set()
    for dist in importlib.metadata.distributions():
        name = dist.metadata['Name']
        if name:
            lines.add(f'{_normalise(name)}=={dist.version}')
    text = ''.join(f'{line}\n' for line in sorted(lines))
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    return Packages(text, f'sha256:{digest}')


def _normalise(name: str) -> str:
    return re.sub(r'[-_.]+', '-', name).lower()


@functools.cache
def accelerator() -> dict[str, Any]:
    """Return the kind of accelerator torch sees, how many, and their names.

    ``type`` is ``cuda`` (ROCm included), ``mps`` or ``cpu``. Naming CUDA
    devices initialises CUDA, which training is about to do anyway.
    """
    torch: Any = sys.modules.get('torch')
    if torch is None:
        try:
            import torch
        except ImportError:
            return {'type': 'cpu', 'count': 0}
    if torch.cuda.is_available():
        count = int(torch.cuda.device_count())
        found: dict[str, Any] = {
            'type': 'cuda',
            'count': count,
            'names': [str(torch.cuda.get_device_name(i)) for i in range(count)],
        }
        runtime = torch.version.hip or torch.version.cuda
        if runtime:
            found['runtime'] = str(runtime)
        return found
    mps = getattr(torch.backends, 'mps', None)
    if mps is not None and mps.is_available():
        return {'type': 'mps', 'count': 1}
    return {'type': 'cpu', 'count': 0}


@functools.cache
def git_state(folder: str) -> dict[str, Any]:
    """Return commit, branch and dirty flag of the git work tree holding ``folder``.

    Empty when ``folder`` is not in a git work tree, the branch has no commit
    yet, or git is not installed. Untracked files do not make a tree dirty.
    """
    status = _git(folder, 'status', '--porcelain=v2', '--branch', '-uno')
    if status is None:
        return {}
    commit = branch = None
    dirty = False
    for line in status.splitlines():
        if line.startswith('# branch.oid '):
            commit = line.removeprefix('# branch.oid ').strip()
        elif line.startswith('# branch.head '):
            branch = line.removeprefix('# branch.head ').strip()
        elif line and not line.startswith('#'):
            dirty = True
    if not commit or commit == '(initial)':
        return {}
    state: dict[str, Any] = {'commit': commit, 'dirty': dirty}
    if branch and branch != '(detached)':
        state['branch'] = branch
    return state


@functools.cache
def git_diff(folder: str) -> tuple[bytes, bool]:
    """Return ``git diff HEAD`` of the work tree holding ``folder``, and if cut.

    The diff is cut at ``DIFF_LIMIT`` bytes; binary files show as "Binary
    files differ". Empty if git fails.
    """
    try:
        process = subprocess.Popen(
            [
                'git',
                '-c',
                'core.quotepath=off',
                'diff',
                'HEAD',
                '--no-color',
                '--no-ext-diff',
                '--no-textconv',
            ],
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
    except OSError:
        return b'', False
    assert process.stdout is not None
    with process:
        data = process.stdout.read(DIFF_LIMIT + 1)
        truncated = len(data) > DIFF_LIMIT
        if truncated:
            process.kill()
        try:
            code = process.wait(timeout=_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            return b'', False
    if not truncated and code != 0:
        return b'', False
    return data[:DIFF_LIMIT], truncated


def _git(folder: str, *args: str) -> str | None:
    # core.fsmonitor names a program that git runs: never one of a folder's own
    # config, since ``drytorch verify`` asks about folders named in records
    try:
        done = subprocess.run(
            ['git', '-c', 'core.fsmonitor=false', *args],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None
