"""The run registry across real processes: races, crashes, interpreter exit."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import drytorch
from drytorch.core import exceptions, registry
from tests.conftest import git, run_python

pytestmark = pytest.mark.skipif(
    sys.platform == 'win32', reason='uses SIGKILL and POSIX process semantics'
)

TIMEOUT = 90  # seconds: generous, for a loaded two-core machine

# Every child starts with this: the same experiment as ``make_exp`` below, and
# ``wait_for`` to synchronise on files rather than on sleeps.
PRELUDE = """
import dataclasses, os, pathlib, sys, time, warnings
import drytorch
from drytorch.core import exceptions

warnings.simplefilter('ignore')


@dataclasses.dataclass(frozen=True)
class Config:
    lr: float = 0.1
    epochs: int = 2


def wait_for(path, timeout=90):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.exit(f'timed out waiting for {path}')
        time.sleep(0.002)


def touch(path):
    pathlib.Path(path).touch()


exp = drytorch.Experiment(Config(), name='exp')
"""


@dataclasses.dataclass(frozen=True)
class Config:
    lr: float = 0.1
    epochs: int = 2


def make_exp() -> drytorch.Experiment[Config]:
    return drytorch.Experiment(Config(), name='exp')


def child_env() -> dict[str, str]:
    return dict(os.environ, PYTHONUNBUFFERED='1', DRYTORCH_INIT_MODE='none')


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``python -c PRELUDE+code *args`` in the test's cwd; kill leftovers."""
    started: list[subprocess.Popen[str]] = []

    def start(code: str, *args: object) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, '-c', PRELUDE + code, *map(str, args)],
            cwd=os.getcwd(),
            env=child_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=TIMEOUT)


def wait_until(
    condition: Callable[[], bool],
    procs: list[subprocess.Popen[str]],
    what: str,
    *,
    may_exit: bool = False,
) -> None:
    """Poll ``condition``; fail early if a child died instead."""
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        for proc in procs:
            if not may_exit and proc.poll() is not None:
                _, err = proc.communicate()
                pytest.fail(f'child exited ({proc.returncode}) before {what}:\n{err}')
        if time.monotonic() > deadline:
            pytest.fail(f'timed out waiting for {what}')
        time.sleep(0.005)


def finish(proc: subprocess.Popen[str]) -> str:
    """Wait for a child that must succeed and return its output."""
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    return out


def start_together(
    spawn: Callable[..., subprocess.Popen[str]],
    code: str,
    count: int,
    folder: pathlib.Path,
    *args: object,
) -> list[subprocess.Popen[str]]:
    """Start ``count`` children and release them at once when all are ready.

    The child gets ``ready go *args`` and must ``touch(ready)`` then
    ``wait_for(go)``.
    """
    folder.mkdir()
    go = folder / 'go'
    readies = [folder / f'ready-{n}' for n in range(count)]
    procs = [spawn(code, ready, go, *args) for ready in readies]
    wait_until(lambda: all(r.exists() for r in readies), procs, 'all children ready')
    go.touch()
    return procs


def record_files(exp: drytorch.Experiment[Any]) -> list[pathlib.Path]:
    return sorted((exp.registry.root / exp.key / 'runs').glob('*.toml'))


def parse_all(exp: drytorch.Experiment[Any]) -> dict[str, dict[str, Any]]:
    """Parse every record file with tomllib; each must be whole and valid."""
    parsed = {}
    for path in record_files(exp):
        with path.open('rb') as file:
            data = tomllib.load(file)
        assert data['id'] == path.stem
        assert data['status'] in {'created', 'running', 'completed', 'failed'}
        registry.RunRecord.from_data(data, path)
        parsed[path.stem] = data
    return parsed


def list_quietly(exp: drytorch.Experiment[Any]) -> list[registry.RunRecord]:
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        return exp.list_runs()


def load(exp: drytorch.Experiment[Any], run_id: str) -> dict[str, Any]:
    path = exp.registry.root / exp.key / 'runs' / f'{run_id}.toml'
    with path.open('rb') as file:
        return tomllib.load(file)


CREATE_MANY = """
ready, go, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
touch(ready)
wait_for(go)
ids = [exp.create_run().id for _ in range(count)]
print(' '.join(ids))
"""


def test_parallel_processes_get_distinct_ids(
    spawn: Callable[..., subprocess.Popen[str]], tmp_path: pathlib.Path
) -> None:
    procs = start_together(spawn, CREATE_MANY, 8, tmp_path / 'sync', 5)
    per_process = [finish(proc).split() for proc in procs]
    ids = [run_id for ids in per_process for run_id in ids]
    assert len(ids) == 40
    assert len(set(ids)) == 40, sorted(ids)
    exp = make_exp()
    parsed = parse_all(exp)
    assert set(parsed) == set(ids)
    assert all(data['status'] == 'created' for data in parsed.values())
    assert sorted(r.id for r in list_quietly(exp)) == sorted(ids)
    # the race was really run: runs of different processes shared a second
    seconds = [{run_id[:19] for run_id in ids} for ids in per_process]
    assert any(a & b for n, a in enumerate(seconds) for b in seconds[n + 1 :])


CLAIM = """
ready, go = sys.argv[1:3]
touch(ready)
wait_for(go)
try:
    exp.create_run('shared')
except exceptions.RunAlreadyExistsError:
    print('exists')
else:
    print('created')
"""


def test_explicit_id_is_claimed_by_one_process_only(
    spawn: Callable[..., subprocess.Popen[str]], tmp_path: pathlib.Path
) -> None:
    procs = start_together(spawn, CLAIM, 6, tmp_path / 'sync')
    outcomes = sorted(finish(proc).strip() for proc in procs)
    assert outcomes == ['created'] + ['exists'] * 5
    parsed = parse_all(make_exp())
    assert list(parsed) == ['shared']
    assert parsed['shared']['status'] == 'created'


HOLD = """
ready, go, release = sys.argv[1:4]
touch(ready)
wait_for(go)
where = 'create'
try:
    run = exp.create_run('x', resume=True)
    where = 'start'
    run.start()
except exceptions.RunInUseError:
    print(f'in use at {where}')
    sys.exit(0)
print('running', flush=True)
wait_for(release)
run.stop()
print('stopped')
"""


def test_resumed_id_is_run_by_one_process_only(
    spawn: Callable[..., subprocess.Popen[str]], tmp_path: pathlib.Path
) -> None:
    release = tmp_path / 'release'
    procs = start_together(spawn, HOLD, 6, tmp_path / 'sync', release)
    wait_until(
        lambda: sum(proc.poll() is None for proc in procs) <= 1,
        procs,
        'the losers to exit',
        may_exit=True,
    )
    (winner,) = [proc for proc in procs if proc.poll() is None]
    assert [r.status for r in list_quietly(make_exp())] == ['running']
    with pytest.raises(exceptions.RunInUseError, match=f'process {winner.pid} '):
        make_exp().create_run('x', resume=True)
    release.touch()
    outcomes = {proc.pid: finish(proc).split('\n')[0] for proc in procs}
    assert outcomes.pop(winner.pid) == 'running'
    assert set(outcomes.values()) <= {'in use at create', 'in use at start'}
    assert len(outcomes) == 5
    data = load(make_exp(), 'x')
    assert data['status'] == 'completed'
    assert [s['pid'] for s in data['sessions']] == [winner.pid]


CHURN = """
ready = sys.argv[1]
while True:
    run = exp.create_run()
    run.start()
    run.stop()
    again = drytorch.Experiment(Config(), name='exp').create_run(run.id, resume=True)
    again.start()
    again.stop()
    touch(ready)
"""


def test_sigkill_at_random_moments_leaves_whole_records(
    spawn: Callable[..., subprocess.Popen[str]], tmp_path: pathlib.Path
) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for n in range(6):
        ready = tmp_path / f'ready-{n}'
        proc = spawn(CHURN, ready)
        wait_until(ready.exists, [proc], 'a first loop')
        time.sleep(rng.uniform(0, 0.15))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=TIMEOUT)
        assert proc.returncode == -signal.SIGKILL
    exp = make_exp()
    parsed = parse_all(exp)
    assert len(parsed) >= 6, f'seed {seed}'
    listed = list_quietly(exp)
    assert sorted(r.id for r in listed) == sorted(parsed), f'seed {seed}'
    assert 'running' not in {r.status for r in listed}, f'seed {seed}'
    for record in listed:
        if parsed[record.id]['status'] == 'running':
            assert record.status == 'crashed'
    runs = exp.registry.root / exp.key / 'runs'
    leftovers = {p.name for p in runs.iterdir()} - {p.name for p in record_files(exp)}
    beside = ('.packages.txt', '.diff')  # files kept beside a record
    leftovers = {name for name in leftovers if not name.endswith(beside)}
    assert all(name.startswith('.tmp-') for name in leftovers), leftovers
    with make_exp().create_run(resume=True) as run:
        pass
    assert load(exp, run.id)['status'] == 'completed'
    with make_exp().create_run():
        pass


CRASH = """
started = sys.argv[1]
run = exp.create_run('crashy').start()
touch(started)
time.sleep(600)
"""


def test_killed_run_is_crashed_and_can_be_resumed(
    spawn: Callable[..., subprocess.Popen[str]], tmp_path: pathlib.Path
) -> None:
    started = tmp_path / 'started'
    proc = spawn(CRASH, started)
    wait_until(started.exists, [proc], 'the run to start')
    exp = make_exp()
    assert [r.status for r in list_quietly(exp)] == ['running']
    with pytest.raises(exceptions.RunInUseError, match=f'process {proc.pid} '):
        exp.create_run(resume=True)

    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=TIMEOUT)
    assert [r.status for r in list_quietly(exp)] == ['crashed']
    assert load(exp, 'crashy')['status'] == 'running'

    with warnings.catch_warnings():
        warnings.simplefilter('error')
        run = make_exp().create_run(resume=True)
    assert run.id == 'crashy'
    with run:
        assert [r.status for r in list_quietly(exp)] == ['running']
    data = load(exp, 'crashy')
    assert data['status'] == 'completed'
    crashed, resumed = data['sessions']
    assert crashed['pid'] == proc.pid
    assert 'stopped_at' not in crashed
    assert (resumed['pid'], resumed['status']) == (os.getpid(), 'completed')
    assert [r.status for r in list_quietly(exp)] == ['completed']


@pytest.mark.parametrize(
    ('ending', 'rc', 'status'),
    [('pass', 0, 'completed'), ("raise RuntimeError('boom')", 1, 'failed')],
)
def test_run_left_active_is_finalised_at_exit(
    ending: str, rc: int, status: str
) -> None:
    code = PRELUDE + f"run = exp.create_run('left').start()\n{ending}\n"
    done = run_python(code, pathlib.Path.cwd(), {'DRYTORCH_INIT_MODE': 'none'})
    assert done.returncode == rc, done.stderr
    data = load(make_exp(), 'left')
    assert data['status'] == status
    (session,) = data['sessions']
    assert session['status'] == status
    assert 'interpreter exit' in session['stop_reason']
    assert data['stopped_at'] >= data['started_at']
    if status == 'failed':
        assert data['error'] == 'RuntimeError: boom'
    else:
        assert 'error' not in data
    assert [r.status for r in list_quietly(make_exp())] == [status]


SCRIPT = """
with exp.create_run(sys.argv[1]):
    pass
"""


@pytest.mark.skipif(shutil.which('git') is None, reason='git is not installed')
def test_git_state_of_the_script_is_recorded(tmp_path: pathlib.Path) -> None:
    repo = tmp_path / 'repo'
    repo.mkdir()
    script = repo / 'train.py'
    script.write_text(PRELUDE + SCRIPT)
    git(repo, 'init', '-q')
    git(repo, 'add', 'train.py')
    git(repo, 'commit', '-q', '-m', 'first')
    commit = git(repo, 'rev-parse', 'HEAD')
    branch = git(repo, 'rev-parse', '--abbrev-ref', 'HEAD')

    def run_script(run_id: str, folder: pathlib.Path = repo) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, str(folder / 'train.py'), run_id],
            cwd=pathlib.Path.cwd(),  # not the repo: the script's folder counts
            env=child_env(),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        env: dict[str, Any] = load(make_exp(), run_id)['environment']
        assert env['command'] == [sys.executable, str(folder / 'train.py'), run_id]
        return env

    env = run_script('clean')
    assert env['git'] == {'commit': commit, 'dirty': False, 'branch': branch}

    script.write_text(PRELUDE + SCRIPT + '# edited\n')
    env = run_script('dirty')
    assert env['git'] == {'commit': commit, 'dirty': True, 'branch': branch}

    outside = tmp_path / 'outside'
    outside.mkdir()
    shutil.copy(script, outside / 'train.py')
    in_a_repo = subprocess.run(
        ['git', 'rev-parse', 'HEAD'], cwd=outside, capture_output=True, check=False
    )
    if in_a_repo.returncode != 0:
        assert 'git' not in run_script('no-git', outside)
