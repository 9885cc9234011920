"""A small kit for testing DRYTorch plugins and trackers.

``isolated`` gives a test its own registry, working directory and plugin host,
so it never touches the real user data directory and never sees state left by
another test. ``HookRecorder`` is a plugin that records every tracking event::

    def test_my_tracker(tmp_path):
        with drytorch.testing.isolated(tmp_path) as host:
            recorder = drytorch.testing.HookRecorder()
            host.register(recorder, 'recorder')
            ...
            assert recorder.names() == ['on_run_start', 'on_run_stop']

``torchrun`` launches a script on several processes, as users do, with a
timeout after which the whole job is killed, so a test of a distributed run
fails instead of hanging.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from drytorch import hookimpl
from drytorch.core import plugins, scope, settings, tracking
from drytorch.trackers import logging as builtin_logging

__all__ = [
    'HookRecorder',
    'isolated',
    'require_distribution',
    'start_torchrun',
    'stop_torchrun',
    'torchrun',
    'wait_torchrun',
]


def require_distribution(distribution: str) -> None:
    """Stop a pytest session at once when ``distribution`` is not installed.

    A plugin's tests need the plugin installed (its entry point is what makes
    DRYTorch load it); call this from ``pytest_configure`` so that a missing
    install is one clear line, not a failure in every test.

    Raises:
        pytest.UsageError: the distribution is not installed; the message
            says how to install it from a DRYTorch checkout.
    """
    import importlib.metadata

    import pytest

    try:
        importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise pytest.UsageError(
            f'{distribution} is not installed in this environment; run '
            f'`pip install ./contrib/{distribution}` first.'
        ) from None


@contextlib.contextmanager
def isolated(folder: pathlib.Path, **env: str) -> Iterator[plugins.PluginHost]:
    """Run the body with a fresh registry, working directory and plugin host.

    Args:
        folder: an empty temporary folder; the registry goes to
            ``folder/registry`` and the working directory is ``folder/work``.
        env: extra ``DRYTORCH_*`` variables, by setting name
            (``init_mode='none'``).

    Yields:
        The fresh plugin host, with the built-in and entry-point plugins.
    """
    saved_env = {var: os.environ.get(var) for var in settings.ENV_VARS.values()}
    saved_cwd = os.getcwd()
    work = folder / 'work'
    work.mkdir(parents=True, exist_ok=True)
    for var in settings.ENV_VARS.values():
        os.environ.pop(var, None)
    os.environ['DRYTORCH_REGISTRY_DIR'] = str(folder / 'registry')
    for key, value in env.items():
        os.environ[settings.ENV_VARS[key]] = value
    os.chdir(work)
    plugins.reset_host()
    tracking.reset_default_trackers()
    builtin_logging.reset_verbosity()
    try:
        yield plugins.get_host()
    finally:
        active = scope.active_run()
        if active is not None:
            active.stop()
        os.chdir(saved_cwd)
        for var, saved in saved_env.items():
            if saved is None:
                os.environ.pop(var, None)
            else:
                os.environ[var] = saved
        plugins.reset_host()
        tracking.reset_default_trackers()
        builtin_logging.reset_verbosity()


class HookRecorder:
    """A plugin that records every tracking event it receives, in order.

    It implements every tracking hook of the contract (``on_*``).
    """

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.runs: list[Any] = []  # the RunView of each call, aligned with calls

    def names(self) -> list[str]:
        """Return the names of the hooks called so far."""
        return [name for name, _ in self.calls]

    def events(self, hook_name: str) -> list[Any]:
        """Return the events received by ``hook_name``."""
        return [event for name, event in self.calls if name == hook_name]


def _recording(hook_name: str) -> Any:
    def record(self: HookRecorder, event: Any, run: Any) -> None:
        self.calls.append((hook_name, event))
        self.runs.append(run)

    record.__name__ = record.__qualname__ = hook_name
    record.__doc__ = f'Record the event of ``{hook_name}``.'
    return hookimpl(record)


for _hook_name in sorted(plugins.TRACKING_HOOKS):
    setattr(HookRecorder, _hook_name, _recording(_hook_name))


ONE_NODE = ('--standalone', '--nproc_per_node=2')
"""torchrun's arguments for 2 processes on this machine."""


def start_torchrun(
    script: str | os.PathLike[str],
    *script_args: str,
    launcher_args: Sequence[str] = ONE_NODE,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    capture: bool = True,
) -> subprocess.Popen[str]:
    """Start ``python -m torch.distributed.run <launcher_args> script ...``.

    Args:
        script: the script every process runs.
        script_args: its arguments.
        launcher_args: torchrun's (default: 2 processes, ``--standalone``).
        cwd: the working directory.
        env: variables added to this process's environment.
        capture: collect stdout and stderr together (else they pass through).
    """
    command = [
        sys.executable,
        '-m',
        'torch.distributed.run',
        *launcher_args,
        os.fspath(script),
        *script_args,
    ]
    return subprocess.Popen(
        command,
        cwd=cwd,
        env={**os.environ, 'PYTHONUNBUFFERED': '1', **(env or {})},
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.STDOUT if capture else None,
        text=True,
        start_new_session=True,
    )


def stop_torchrun(process: subprocess.Popen[str], grace: float = 10.0) -> None:
    """Stop a torchrun job: SIGTERM, then SIGKILL to torchrun and its workers.

    torchrun starts each worker in a session of its own, so a signal to
    torchrun's process group does not reach them: they are found as
    torchrun's descendants (in ``/proc``, on Linux) before it is signalled.
    """
    workers = _descendants(process.pid)
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)  # torchrun stops its workers
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
    for pid in workers:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def wait_torchrun(
    process: subprocess.Popen[str], timeout: float = 180.0
) -> subprocess.CompletedProcess[str]:
    """Wait for a job from ``start_torchrun``; its output, and its exit status.

    Raises:
        TimeoutError: the job ran past ``timeout`` seconds; it was stopped,
            and the message ends with the tail of its output.
    """
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        stop_torchrun(process)
        output, _ = process.communicate()
        raise TimeoutError(
            f'The torchrun job did not end within {timeout:g} s and was killed. '
            f'Its output ended with:\n{(output or "")[-4000:]}'
        ) from None
    return subprocess.CompletedProcess(process.args, process.returncode, output, '')


def torchrun(
    script: str | os.PathLike[str],
    *script_args: str,
    launcher_args: Sequence[str] = ONE_NODE,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 180.0,
) -> subprocess.CompletedProcess[str]:
    """Run ``script`` under torchrun to the end; see ``start_torchrun``.

    Raises:
        TimeoutError: the job ran past ``timeout`` seconds (it was killed).
    """
    process = start_torchrun(
        script, *script_args, launcher_args=launcher_args, cwd=cwd, env=env
    )
    return wait_torchrun(process, timeout)


def _descendants(pid: int) -> list[int]:
    """Return the pids of ``pid``'s descendants, read from ``/proc`` (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in pathlib.Path('/proc').glob('[0-9]*'):
        try:
            stat = (entry / 'stat').read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(')') + 2 :].split()  # after "pid (name)"
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    pending = [pid]
    while pending:
        for child in children.get(pending.pop(), []):
            found.append(child)
            pending.append(child)
    return found
