"""A tracker that blocks is reported, with its stack, and left to finish.

The end-to-end tests train in a fresh interpreter (the watchdog is a process
thread) with a tracker, written to a real file so that its stack shows source
lines, whose ``on_epoch_end`` waits on an ``Event`` nobody sets.
"""

from __future__ import annotations

import ast
import pathlib
import re
import threading
import time
import tomllib
import warnings
from typing import Any

import pytest

from drytorch import hookimpl
from drytorch.core import exceptions, log_events, plugins, settings
from drytorch.core.exceptions import SettingsError, SlowTrackerWarning
from drytorch.core.watchdog import noticeable_tracker_times
from tests import training_kit as kit
from tests.conftest import ROOT, run_python

BLOCKER = '''\
import threading

from drytorch import hookimpl
from drytorch.core.tracking import Tracker


class Blocker:
    """Blocks in on_epoch_end of the first ``epochs`` epochs."""

    name = 'Blocker'

    def __init__(self, seconds, epochs):
        self.seconds = seconds
        self.epochs = epochs
        self.gate = threading.Event()  # never set

    @hookimpl
    def on_epoch_end(self, event):
        if event.epoch <= self.epochs:
            self.gate.wait(self.seconds)  # the blocking line


class Fast(Tracker):
    """Receives every event, batches included, and returns at once."""

    def notify(self, event):
        pass
'''
BLOCKING_LINE = 'self.gate.wait(self.seconds)  # the blocking line'

CHILD = """\
import sys
import time

sys.path[:0] = [{root!r}, {here!r}]
from blocker import Blocker, Fast
from drytorch.core import plugins
from tests import training_kit as kit

exp = kit.experiment()
exp.trackers.subscribe(Blocker({seconds}, {blocked}), Fast())
with exp.create_run(run_id='r'):
    kit.trainer().train(3)
time.sleep(0.6)  # idle past the limit: a call left marked would be reported now
print(plugins.get_host().tracker_times())
"""
HEADER = re.compile(r'^(.*):(\d+): SlowTrackerWarning: (.*)$', re.MULTILINE)


def train_with_blocker(
    cwd: pathlib.Path, seconds: float, blocked: int, limit: str | None = '0.3'
) -> tuple[str, dict[str, float]]:
    """Train 3 epochs, ``blocked`` of them stuck; return stderr and the times.

    The record must list the blocked tracker's time, and only that one.
    """
    (cwd / 'blocker.py').write_text(BLOCKER)
    code = CHILD.format(root=str(ROOT), here=str(cwd), seconds=seconds, blocked=blocked)
    env = {'DRYTORCH_INIT_MODE': 'none'}
    if limit is not None:
        env['DRYTORCH_SLOW_TRACKER_SECONDS'] = limit
    done = run_python(code, cwd, env, timeout=120)
    assert done.returncode == 0, done.stderr
    (record,) = (cwd.parent / 'registry').rglob('r.toml')
    data = tomllib.loads(record.read_text())
    assert data['status'] == 'completed'
    recorded = data.get('summary', {}).get('tracker_seconds', {})
    assert recorded.get('tracker:Blocker', 0) >= seconds * blocked
    assert 'tracker:Fast' not in recorded  # not a noticeable share of the run
    return done.stderr, ast.literal_eval(done.stdout.strip().splitlines()[-1])


def blocking_line_number() -> int:
    lines = BLOCKER.splitlines()
    return next(i for i, line in enumerate(lines, 1) if BLOCKING_LINE in line)


def test_a_blocked_tracker_is_reported_once_with_its_stack() -> None:
    cwd = pathlib.Path.cwd()
    stderr, times = train_with_blocker(cwd, seconds=2.0, blocked=1)
    headers = HEADER.findall(stderr)
    assert len(headers) == 1, stderr  # one warning in 2 s, polled every 0.05 s
    filename, lineno, message = headers[0]
    assert (filename, int(lineno)) == (str(cwd / 'blocker.py'), blocking_line_number())
    assert message.startswith("on_epoch_end of 'tracker:Blocker' has been running")
    assert 0.3 <= float(re.search(r'running for ([\d.]+) s', message).group(1)) < 2
    stack_line = (
        f'File "{cwd / "blocker.py"}", line {blocking_line_number()}, in on_epoch_end'
        f'\n    {BLOCKING_LINE}'
    )
    assert stack_line in stderr
    assert 'tracker:Fast' not in stderr  # a fast tracker is never reported
    assert times['tracker:Blocker'] >= 2.0
    assert times['tracker:Fast'] < 0.3


def test_each_stuck_call_is_reported_once() -> None:
    stderr, _ = train_with_blocker(pathlib.Path.cwd(), seconds=1.0, blocked=2)
    headers = HEADER.findall(stderr)
    assert len(headers) == 2, stderr
    assert all("of 'tracker:Blocker'" in message for _, _, message in headers)


def test_zero_turns_the_watchdog_off() -> None:
    stderr, times = train_with_blocker(
        pathlib.Path.cwd(), seconds=1.0, blocked=1, limit='0'
    )
    assert 'SlowTrackerWarning' not in stderr
    assert times['tracker:Blocker'] >= 1.0  # still timed


def test_the_limit_comes_from_pyproject() -> None:
    cwd = pathlib.Path.cwd()
    (cwd / 'pyproject.toml').write_text('[tool.drytorch]\nslow_tracker_seconds = 0.3\n')
    stderr, _ = train_with_blocker(cwd, seconds=1.5, blocked=1, limit=None)
    assert len(HEADER.findall(stderr)) == 1, stderr


def test_without_setting_the_limit_is_60_seconds(host: plugins.PluginHost) -> None:
    assert settings.get_settings().slow_tracker_seconds == 60.0
    assert host.slow_tracker_seconds == 60.0


def test_env_overrides_pyproject(monkeypatch: pytest.MonkeyPatch) -> None:
    pathlib.Path('pyproject.toml').write_text(
        '[tool.drytorch]\nslow_tracker_seconds = 5\n'
    )
    assert settings.get_settings().slow_tracker_seconds == 5.0
    monkeypatch.setenv('DRYTORCH_SLOW_TRACKER_SECONDS', ' 0.25 ')
    assert settings.get_settings().slow_tracker_seconds == 0.25
    plugins.reset_host()
    assert plugins.get_host().slow_tracker_seconds == 0.25  # read when loading


@pytest.mark.parametrize('value', ['"soon"', 'true', 'nan', 'inf', '[1]'])
def test_invalid_pyproject_value_names_the_file(value: str) -> None:
    pathlib.Path('pyproject.toml').write_text(
        f'[tool.drytorch]\nslow_tracker_seconds = {value}\n'
    )
    with pytest.raises(SettingsError, match=r'pyproject.toml.*slow_tracker_seconds'):
        settings.get_settings()


@pytest.mark.parametrize('value', ['', 'soon', 'nan', '1e999'])
def test_invalid_env_value_names_the_variable(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv('DRYTORCH_SLOW_TRACKER_SECONDS', value)
    with pytest.raises(SettingsError, match='DRYTORCH_SLOW_TRACKER_SECONDS'):
        settings.get_settings()


class Sleeper:
    """A plugin sleeping in ``on_run_start`` and ``on_metrics``."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    @hookimpl
    def on_run_start(self, event: Any) -> None:
        time.sleep(self.seconds)

    @hookimpl
    def on_metrics(self, event: Any) -> None:
        time.sleep(self.seconds)


class Quick:
    @hookimpl
    def on_run_start(self, event: Any) -> None:
        pass


def metrics_event() -> log_events.MetricsEvent:
    return log_events.MetricsEvent('m', 'Trainer', 1, {'loss': 1.0})


def test_hook_times_accumulate_per_plugin(host: plugins.PluginHost) -> None:
    host.register(Sleeper(0.2), 'sleeper')
    host.register(Quick(), 'quick')
    host.reset_tracker_times()
    with kit.experiment().create_run(run_id='r'):
        pass
    times = host.tracker_times()
    assert 0.2 <= times['sleeper'] < 1.0
    assert times['quick'] < 0.1
    host.reset_tracker_times()
    assert host.tracker_times() == {}


def test_hook_times_of_threads_add_up(host: plugins.PluginHost) -> None:
    host.register(Sleeper(0.2), 'sleeper')
    host.reset_tracker_times()
    threads = [
        threading.Thread(target=host.on_metrics, args=(metrics_event(),))
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    host.on_metrics(metrics_event())
    assert host.tracker_times()['sleeper'] >= 0.8


class Gate:
    """A plugin whose ``on_metrics`` waits ``seconds`` on its own line."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    @hookimpl
    def on_metrics(self, event: Any) -> None:
        threading.Event().wait(self.seconds)  # gate line


def slow_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if w.category is SlowTrackerWarning]


def test_blocked_threads_are_reported_each(host: plugins.PluginHost) -> None:
    host.register(Gate(3.0), 'gate')  # slack for a watchdog slowed by load
    host.slow_tracker_seconds = 0.2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        threads = [
            threading.Thread(target=host.on_metrics, args=(metrics_event(),))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=10)
    messages = slow_warnings(caught)
    assert len(messages) == 2, messages
    for message in messages:
        assert message.startswith("on_metrics of 'gate' has been running")
        assert 'in on_metrics\n    threading.Event().wait(self.seconds)  # gate' in (
            message
        )


class OnceGate(Gate):
    """A gate that waits on its first call only."""

    @hookimpl
    def on_metrics(self, event: Any) -> None:
        seconds, self.seconds = self.seconds, 0.0
        threading.Event().wait(seconds)  # gate line


class Outer:
    """Dispatches again from inside its own hook, then keeps working."""

    def __init__(self, host: plugins.PluginHost) -> None:
        self.host = host
        self.inside = False

    @hookimpl
    def on_metrics(self, event: Any) -> None:
        if self.inside:
            return
        self.inside = True
        self.host.on_metrics(event)  # nested: the gate blocks in here
        time.sleep(0.5)  # past the limit again, after the gate returned


def test_a_call_slow_because_of_a_nested_one_is_not_reported_again(
    host: plugins.PluginHost,
) -> None:
    host.register(OnceGate(0.8), 'gate')
    host.register(Outer(host), 'outer')  # called first: the last registered
    host.slow_tracker_seconds = 0.2
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        host.on_metrics(metrics_event())
    messages = slow_warnings(caught)
    assert len(messages) == 1, messages
    assert messages[0].startswith("on_metrics of 'gate'")
    assert 'threading.Event().wait(seconds)  # gate line' in messages[0]
    assert 'self.host.on_metrics' not in messages[0]  # the gate's part of the stack
    times = host.tracker_times()
    assert times['gate'] >= 0.8
    assert times['outer'] >= 1.3  # the nested call counts in both


def test_a_faulty_tracker_warning_still_points_at_the_caller(
    host: plugins.PluginHost,
) -> None:
    class Broken:
        @hookimpl
        def on_run_start(self, event: Any) -> None:
            raise RuntimeError('boom')

    host.register(Broken(), 'broken')
    run = kit.experiment().create_run(run_id='r')
    with pytest.warns(exceptions.TrackerFailureWarning) as caught:
        run.start()
    run.stop()
    (failure,) = (w for w in caught if w.category is exceptions.TrackerFailureWarning)
    assert failure.filename == __file__


@pytest.mark.parametrize(
    ('run_seconds', 'kept'),
    [
        (100.0, {'a': 2.0, 'b': 1.0}),  # 1 % of the run: 1 s, kept when equal
        (5.0, {'a': 2.0, 'b': 1.0, 'c': 0.1}),  # 0.1 s at least
        (0.0, {'a': 2.0, 'b': 1.0, 'c': 0.1}),
        (1000.0, {}),
    ],
)
def test_noticeable_tracker_times(run_seconds: float, kept: dict[str, float]) -> None:
    times = {'c': 0.1, 'b': 1.0, 'd': 0.05, 'a': 2.0}
    result = noticeable_tracker_times(times, run_seconds)
    assert result == kept
    assert list(result) == list(kept)  # slowest first
