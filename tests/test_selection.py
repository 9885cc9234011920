"""Choosing runs: ``list_runs(...)`` and ``drytorch runs`` filter alike."""

from __future__ import annotations

import datetime
import json
import os
import signal
import subprocess
from collections.abc import Callable

import pytest

from drytorch import Experiment
from drytorch.core import selection
from tests.test_cli import drytorch
from tests.test_registry_processes import TIMEOUT, wait_until
from tests.test_registry_processes import spawn as spawn  # a fixture

KILLED = """
started = sys.argv[1]
exp = drytorch.Experiment(None, name='sweep', par_dir='.')
exp.create_run(run_id='killed').start()
touch(started)
time.sleep(600)
"""


@pytest.fixture
def sweep(spawn: Callable[..., subprocess.Popen[str]]) -> Experiment[None]:
    """Runs a0..a2 (tag a), b0 failed (tag b), t (tags a, b), killed (crashed)."""
    exp = Experiment(None, name='sweep', par_dir='.')
    for n in range(3):
        with exp.create_run(run_id=f'a{n}'):
            pass
        exp.tag_run(f'a{n}', 'a')
    with pytest.raises(RuntimeError), exp.create_run(run_id='b0'):
        raise RuntimeError('diverged')
    exp.tag_run('b0', 'b')
    with exp.create_run(run_id='t'):
        pass
    exp.tag_run('t', 'a', 'b')
    started = os.path.join(os.getcwd(), 'started')
    proc = spawn(KILLED, started)
    wait_until(lambda: os.path.exists(started), [proc], 'the run to start')
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=TIMEOUT)
    return exp


def ids(records: list[object]) -> list[str]:
    return [record.id for record in records]  # type: ignore[attr-defined]


def test_filters_in_python(sweep: Experiment[None]) -> None:
    assert ids(sweep.list_runs()) == ['a0', 'a1', 'a2', 'b0', 't', 'killed']
    assert ids(sweep.list_runs(status='crashed')) == ['killed']
    assert ids(sweep.list_runs(status=['failed', 'crashed'])) == ['b0', 'killed']
    assert ids(sweep.list_runs(tags='a')) == ['a0', 'a1', 'a2', 't']
    assert ids(sweep.list_runs(tags=['a', 'b'])) == ['t']
    assert ids(sweep.list_runs(limit=2)) == ['t', 'killed']
    assert ids(sweep.list_runs(limit=0)) == []
    for more in (7, 10, 12, 100):  # a limit above the count keeps every run
        assert ids(sweep.list_runs(limit=more)) == ids(sweep.list_runs())
    assert ids(sweep.list_runs(descending=True, limit=2)) == ['killed', 't']
    assert ids(sweep.list_runs(sort='id'))[:2] == ['a0', 'a1']
    assert ids(sweep.list_runs(sort='status', tags='a')) == ['a0', 'a1', 'a2', 't']
    created = {r.id: r.created_at for r in sweep.list_runs()}
    assert ids(sweep.list_runs(since=created['t'])) == ['t', 'killed']
    assert ids(sweep.list_runs(since='1h')) == ids(sweep.list_runs())
    future = datetime.datetime.now().astimezone() + datetime.timedelta(days=1)
    assert sweep.list_runs(since=future) == []


def test_bad_filters_say_what_to_use(sweep: Experiment[None]) -> None:
    with pytest.raises(ValueError, match="Unknown run status 'done'"):
        sweep.list_runs(status='done')
    with pytest.raises(ValueError, match='Cannot read'):
        sweep.list_runs(since='yesterday')
    with pytest.raises(ValueError, match='Cannot sort'):
        sweep.list_runs(sort='size')  # type: ignore[arg-type]


def test_the_command_line_selects_the_same_runs(sweep: Experiment[None]) -> None:
    def listed(*args: str) -> list[str]:
        done = drytorch('runs', '--json', '--experiment', 'sweep', *args)
        assert done.returncode == 0, done.stderr
        return [run['id'] for run in json.loads(done.stdout)]

    assert listed('--status', 'crashed') == ['killed']
    assert listed('--status', 'failed', '--status', 'crashed') == ['b0', 'killed']
    assert listed('--tag', 'a', '--tag', 'b') == ['t']
    assert listed('--since', '2h', '--limit', '3') == ['b0', 't', 'killed']
    assert listed('--sort', 'id', '--desc', '--limit', '2') == ['t', 'killed']
    done = drytorch('runs', '--status', 'done')
    assert done.returncode == 2 and 'invalid choice' in done.stderr
    done = drytorch('runs', '--since', 'soon')
    assert done.returncode == 2 and 'Cannot read' in done.stderr
    done = drytorch('runs', '--tag', 'none-has-it')
    assert done.returncode == 0 and 'No run matches' in done.stdout


def test_parse_since() -> None:
    now = datetime.datetime.now().astimezone()
    assert abs((now - selection.parse_since('90m')).total_seconds() - 5400) < 5
    day = selection.parse_since('2026-12-01')
    assert (day.year, day.month, day.day, day.tzinfo is not None) == (2026, 12, 1, True)
