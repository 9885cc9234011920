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
"""

from __future__ import annotations

import contextlib
import os
import pathlib
from collections.abc import Iterator
from typing import Any

from drytorch import hookimpl
from drytorch.core import plugins, scope, settings, tracking

__all__ = ['HookRecorder', 'isolated']


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
