"""The run record never loses what another process, a stale object or a crash wrote.

Every case runs real processes on one real registry: concurrent creators and
resumers, a ``Run`` object kept across another process's session, a notebook
that resumes in the same process, and SIGKILLs during training with
checkpoint retention.
"""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from drytorch.core import exceptions, files, registry
from drytorch.trackers.base import Dumper
from tests import training_kit as kit
from tests.conftest import ROOT, run_python
from tests.test_registry_processes import (
    PRELUDE,
    TIMEOUT,
    finish,
    load,
    make_exp,
    parse_all,
    wait_until,
)
from tests.test_registry_processes import spawn as spawn  # a fixture

pytestmark = pytest.mark.skipif(
    sys.platform == 'win32', reason='uses SIGKILL and POSIX process semantics'
)

UNSHARE = ('unshare', '--mount', '--propagation', 'private')
PROCESSES = 16
OPERATIONS = 50

MIXED = """
import json, random, tomllib
ready, go, out, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rng = random.Random(seed)
touch(ready)
wait_for(go)
sessions, refused, creator_refused = [], 0, 0
for _ in range(50):
    op = rng.choice(['create', 'resume-last', 'explicit'])
    try:
        if op == 'create':
            run = exp.create_run()
        elif op == 'resume-last':
            run = exp.create_run(resume=True)
        else:
            run = exp.create_run(run_id=f'shared-{rng.randrange(4)}', resume=True)
    except exceptions.RunInUseError:
        refused += 1
        continue
    time.sleep(rng.random() * 0.004)  # others act between create and start
    try:
        run.start()
    except exceptions.RunInUseError:
        if op == 'create':
            creator_refused += 1
        refused += 1
        continue
    with open(run.record_path, 'rb') as file:
        session = tomllib.load(file)['sessions'][-1]
    assert session['pid'] == os.getpid(), session
    sessions.append([run.id, session['pid'], session['started_at'].isoformat()])
    time.sleep(rng.random() * 0.002)
    run.stop()
with open(out, 'w') as file:
    json.dump({'sessions': sessions, 'refused': refused,
               'creator_refused': creator_refused}, file)
"""


def test_concurrent_creators_and_resumers_lose_no_session(
    spawn: Callable[..., subprocess.Popen[str]], tmp_path: pathlib.Path
) -> None:
    outs = [tmp_path / f'out-{n}.json' for n in range(PROCESSES)]
    procs = [
        spawn(MIXED, tmp_path / f'ready-{n}', tmp_path / 'go', out, n)
        for n, out in enumerate(outs)
    ]
    wait_until(
        lambda: all((tmp_path / f'ready-{n}').exists() for n in range(PROCESSES)),
        procs,
        'all children ready',
    )
    (tmp_path / 'go').touch()
    for proc in procs:
        _, err = proc.communicate(timeout=4 * TIMEOUT)
        assert proc.returncode == 0, err
    reports = [json.loads(out.read_text()) for out in outs]
    reported = [tuple(s) for report in reports for s in report['sessions']]
    assert sum(r['creator_refused'] for r in reports) == 0
    assert len(reported) > PROCESSES * OPERATIONS // 3
    records = parse_all(make_exp())
    recorded = {
        (run_id, session['pid'], session['started_at'].isoformat())
        for run_id, data in records.items()
        for session in data.get('sessions', [])
    }
    missing = [s for s in reported if s not in recorded]
    assert missing == [], f'{len(missing)} of {len(reported)} sessions lost'
    assert len(recorded) == len(reported)
    for data in records.values():
        assert data['status'] in {'created', 'completed'}
        assert all(s.get('status') == 'completed' for s in data.get('sessions', []))


HOLD_CREATED = """
hold, go = sys.argv[1], sys.argv[2]
run = exp.create_run(run_id=None)
print(run.id, flush=True)
touch(hold)
wait_for(go)
with run:
    pass
"""


def test_a_just_created_run_belongs_to_its_creator(
    spawn: Callable[..., subprocess.Popen[str]], tmp_path: pathlib.Path
) -> None:
    """Resuming the last run while its creator has not started it is refused."""
    proc = spawn(HOLD_CREATED, tmp_path / 'hold', tmp_path / 'go')
    wait_until((tmp_path / 'hold').exists, [proc], 'the run to be created')
    exp = make_exp()
    with pytest.raises(
        exceptions.RunInUseError, match=f'created by process {proc.pid}'
    ):
        exp.create_run(resume=True)
    (tmp_path / 'go').touch()
    run_id = finish(proc).strip()
    with exp.create_run(resume=True) as run:
        assert run.id == run_id
    sessions = load(exp, run_id)['sessions']
    assert [s['pid'] for s in sessions] == [proc.pid, os.getpid()]
    assert [s['status'] for s in sessions] == ['completed', 'completed']


TRAIN = """
import json, sys, time
from drytorch import hookimpl
from drytorch.core.plugins import get_host
from drytorch.trackers.base import Dumper
from tests import training_kit as kit

args = json.loads(sys.argv[1])


class Pace:
    @hookimpl
    def on_batch_end(self, event):
        time.sleep(args['pace'])


exp = kit.experiment()
with exp.create_run(run_id=args['run'], resume=True) as run:
    trainer = kit.trainer(kit.linear('m'))
    trainer.checkpoint_every(epochs=1, keep_last=args['keep'])
    print('RESUMED', trainer.resume(), flush=True)
    if args['pace']:
        get_host().register(Pace(), 'pace')
    trainer.train_until(args['epochs'])
print('DONE', flush=True)
"""


def train(
    cwd: pathlib.Path, run_id: str, epochs: int, *, keep: int = 2, pace: float = 0.0
) -> subprocess.Popen[str]:
    args = json.dumps({'run': run_id, 'epochs': epochs, 'keep': keep, 'pace': pace})
    return subprocess.Popen(
        [sys.executable, '-c', TRAIN, args],
        cwd=cwd,
        env=dict(
            os.environ,
            PYTHONPATH=str(ROOT),
            PYTHONUNBUFFERED='1',
            DRYTORCH_INIT_MODE='none',
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def checkpoint_files(run_id: str) -> dict[str, str]:
    """``{'m/epoch_3.pt': sha256}`` of the checkpoint files on disk."""
    folder = pathlib.Path('checkpoints', 'exp', run_id)
    found = {}
    for path in sorted(folder.glob('*/epoch_*.pt')):
        with path.open('rb') as file:
            found[f'{path.parent.name}/{path.name}'] = hashlib.file_digest(
                file, 'sha256'
            ).hexdigest()
    return found


def recorded_checkpoints(run_id: str) -> dict[str, str]:
    data = load(kit.experiment(), run_id)
    saved = data.get('summary', {}).get('checkpoints', {})
    return {name: entry['sha256'] for name, entry in saved.items()}


def test_a_stale_run_object_keeps_another_sessions_summary() -> None:
    """A notebook keeps its ``Run``; another process resumes and checkpoints."""
    exp = kit.experiment()
    run = exp.create_run(run_id='k')
    with run:
        trainer = kit.trainer(kit.linear('m'))
        trainer.checkpoint_every(epochs=1)
        trainer.train(1)
    assert list(recorded_checkpoints('k')) == ['m/epoch_1.pt']
    proc = train(pathlib.Path.cwd(), 'k', 3, keep=10)
    _, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    after_other = load(exp, 'k')['summary']
    assert after_other['metrics']['m']['Trainer']['epoch'] == 3
    # The same Run object, as a re-run notebook cell gets it back:
    again = exp.create_run(run_id='k', resume=True)
    assert again is run
    with again:
        pass
    summary = load(exp, 'k')['summary']
    assert summary['metrics'] == after_other['metrics']
    assert recorded_checkpoints('k') == checkpoint_files('k')
    assert set(checkpoint_files('k')) == {f'm/epoch_{n}.pt' for n in (1, 2, 3)}
    assert len(load(exp, 'k')['sessions']) == 3


def test_resuming_in_the_same_process_keeps_the_model_and_its_checkpoints() -> None:
    """A re-run notebook cell resumes training where it stopped."""
    exp = kit.experiment()
    with exp.create_run(run_id='k'):
        model = kit.linear('m')
        trainer = kit.trainer(model)
        trainer.checkpoint_every(epochs=1)
        trainer.train(2)
        trained = kit.weights(model)
    exp = kit.experiment()  # the cell builds everything again
    with exp.create_run(run_id='k', resume=True):
        fresh = kit.linear('m')
        assert fresh.name == 'm'
        trainer = kit.trainer(fresh)
        assert trainer.resume()
        assert fresh.epoch == 2
        assert kit.same_weights(kit.weights(fresh), trained)
    with exp.create_run(run_id='k', resume=True):  # the same Experiment again
        assert kit.linear('m').name == 'm'


def test_a_killed_run_has_a_record_that_matches_its_files() -> None:
    """SIGKILL at seeded moments: the record never lists a file that is gone.

    It lists every file on disk but at most one: the file whose save or
    deletion the kill interrupted (it is recorded once in place, and
    unrecorded before it is removed).
    """
    seed = int(os.environ.get('DRYTORCH_KILL_SEED', random.randrange(2**16)))
    rng = random.Random(seed)
    cwd = pathlib.Path.cwd()
    kills = 5
    for attempt in range(kills):
        proc = train(cwd, 'killed', 1000, keep=2, pace=0.004)
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith('RESUMED'), proc.stderr
        time.sleep(0.05 + rng.random() * 0.6)
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=TIMEOUT)
        on_disk = checkpoint_files('killed')
        recorded = recorded_checkpoints('killed')
        where = f'(seed {seed}, kill {attempt}: {sorted(on_disk)})'
        assert recorded.items() <= on_disk.items(), where
        assert len(on_disk) - len(recorded) <= 1, where
        data = load(kit.experiment(), 'killed')
        if recorded:  # an epoch ended: its metrics are recorded too
            last = max(int(name.split('_')[1][:-3]) for name in recorded)
            epoch = data['summary']['metrics']['m']['Trainer']['epoch']
            assert epoch >= last, where
    exp = kit.experiment()
    record = exp.registry.read(exp.key, 'killed')
    assert record.status == 'crashed'
    assert len(record.data['sessions']) == kills


def test_read_only_listing_creates_no_file() -> None:
    exp = make_exp()
    for n in range(3):
        with exp.create_run(run_id=f'r{n}'):
            pass
    data = load(exp, 'r1')
    data.update(status='running', pid=2**22 + 7, host=registry.this_host())
    exp.registry.write(exp.key, data)
    for lock in (exp.registry.root / exp.key / 'locks').iterdir():
        lock.unlink()
    before = sorted(p for p in exp.registry.root.rglob('*'))
    statuses = [r.status for r in make_exp().list_runs()]
    assert statuses == ['completed', 'crashed', 'completed']
    assert make_exp().registry.read(exp.key, 'r1').status == 'crashed'
    for command in (['runs'], ['show', 'r1'], ['runs', '--json']):
        done = subprocess.run(
            [sys.executable, '-m', 'drytorch.cli', *command],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    assert sorted(p for p in exp.registry.root.rglob('*')) == before


def test_temporary_files_of_dead_processes_are_removed() -> None:
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait(timeout=TIMEOUT)
    exp = make_exp()
    with exp.create_run(run_id='first'):
        pass
    runs = exp.registry.root / exp.key / 'runs'
    stale = runs / f'.tmp-{dead.pid}-0123abcd'
    fresh = runs / f'.tmp-{dead.pid}-4567cdef'  # too young to judge
    live = runs / f'.tmp-{os.getppid()}-89abcdef'
    for path in (stale, fresh, live):
        path.write_bytes(b'half a record')
    old = time.time() - 2 * files.STALE_AGE
    os.utime(stale, (old, old))
    os.utime(live, (old, old))
    # The next process that creates a run of the experiment sweeps the folder.
    done = run_python(PRELUDE + 'exp.create_run()', pathlib.Path.cwd())
    assert done.returncode == 0, done.stderr
    assert not stale.exists()
    assert fresh.exists() and live.exists()


def test_a_trackers_temporary_files_of_dead_processes_are_removed() -> None:
    dead = subprocess.Popen([sys.executable, '-c', 'pass'])
    dead.wait(timeout=TIMEOUT)
    exp = kit.experiment()
    exp.trackers.subscribe(Dumper())
    folder = pathlib.Path('outputs', 'exp', 'r')
    folder.mkdir(parents=True)
    stale = folder / f'.tmp-{dead.pid}-0123abcd.csv'
    stale.write_text('half a file')
    old = time.time() - 2 * files.STALE_AGE
    os.utime(stale, (old, old))
    with exp.create_run(run_id='r'):
        assert not stale.exists()


# -- faults: a clear drytorch error, nothing half-written -------------------


def test_a_registry_path_that_is_a_file_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    target = tmp_path / 'not-a-folder'
    target.write_text('x')
    monkeypatch.setenv('DRYTORCH_REGISTRY_DIR', str(target))
    exp = make_exp()
    with pytest.raises(exceptions.RegistryError, match='not a folder') as info:
        exp.create_run()
    assert str(target) in str(info.value)
    assert 'DRYTORCH_REGISTRY_DIR' in str(info.value)
    assert target.read_text() == 'x'


def test_a_lock_path_that_is_a_folder_is_a_clear_error() -> None:
    exp = make_exp()
    with exp.create_run(run_id='r'):
        pass
    lock = exp.registry.root / exp.key / 'locks' / 'r.lock'
    lock.unlink()
    lock.mkdir()
    before = load(exp, 'r')
    with pytest.raises(exceptions.RegistryError, match='folder stands where') as info:
        exp.create_run(run_id='r', resume=True)
    assert str(lock) in str(info.value)
    assert load(exp, 'r') == before


FAULT = """
import os, pathlib, subprocess, sys, tomllib
from drytorch.core import exceptions
root = pathlib.Path(sys.argv[1])
subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', str(root)],
               check=True)
os.environ['DRYTORCH_REGISTRY_DIR'] = str(root / 'registry')
import drytorch
exp = drytorch.Experiment(None, name='exp', par_dir=str(root / 'out'))
with exp.create_run(run_id='kept'):
    pass
record = root / 'registry' / exp.key / 'runs' / 'kept.toml'
before = record.read_bytes()
if sys.argv[2] == 'full':
    filler = open(root / 'filler', 'wb', buffering=0)
    try:
        while True:
            filler.write(b'0' * 4096)
    except OSError:
        pass
else:
    from drytorch.core import registry_index
    registry_index.close_connections()  # an open database keeps the disk busy
    subprocess.run(['mount', '-o', 'remount,ro', str(root)], check=True)
for attempt in ('new', 'resume'):
    try:
        if attempt == 'new':
            exp.create_run(run_id='next')
        else:
            with exp.create_run(run_id='kept', resume=True):
                pass
    except exceptions.RegistryError as err:
        print('ERROR', attempt, err)
    else:
        print('NO ERROR', attempt)
runs = sorted(p.name for p in record.parent.iterdir())
print('FILES', runs)
assert record.read_bytes() == before
tomllib.loads(before.decode())
"""


@pytest.mark.parametrize('fault', ['full', 'read-only'])
def test_a_full_or_read_only_disk_is_a_clear_error(
    fault: str, tmp_path: pathlib.Path
) -> None:
    """In a private mount namespace, so nothing is left mounted."""
    root = tmp_path / 'mnt'
    root.mkdir()
    probe = subprocess.run(
        [*UNSHARE, 'true'],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip('needs mount namespaces (unshare --mount) to fill a disk')
    done = subprocess.run(
        [*UNSHARE, sys.executable, '-c', FAULT, str(root), fault],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=dict(os.environ, DRYTORCH_INIT_MODE='none'),
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    reason = 'disk is full' if fault == 'full' else 'read-only'
    errors = [line for line in lines if line.startswith('ERROR')]
    assert len(errors) == 2, done.stdout
    assert all(reason in line and str(root) in line for line in errors), errors
    files_left = next(line for line in lines if line.startswith('FILES'))
    assert '.tmp-' not in files_left and 'next.toml' not in files_left
