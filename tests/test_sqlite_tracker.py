"""SQLiteTracker: schema, rows read with ``sqlite3``, resumes, processes, faults."""

from __future__ import annotations

import math
import os
import pathlib
import sqlite3
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from drytorch import DataLoader, Experiment, Test, Trainer
from drytorch.core import exceptions, plugins
from drytorch.trackers.sqlite import SQLiteTracker, SQLiteWarning
from tests import training_kit as kit
from tests.conftest import ROOT, run_python
from tests.training_kit import Recorder

Trained = Trainer[torch.Tensor, torch.Tensor, torch.Tensor]

ROWS = """
SELECT e.name, r.run_id, s.model, s.source, m.epoch, m.name, m.value
FROM metrics m JOIN sources s ON s.id = m.source_id
JOIN runs r ON r.id = s.run_id JOIN experiments e ON e.id = r.experiment_id
ORDER BY r.run_id, s.source, m.epoch
"""


def experiment(tracker: SQLiteTracker, name: str = 'exp') -> Experiment[None]:
    exp = kit.experiment(name)
    exp.trackers.remove_all()  # only the tracker under test
    exp.trackers.subscribe(tracker)
    return exp


def validated() -> Trained:
    trainer = kit.trainer(n=16)
    trainer.add_validation(DataLoader(kit.regression(8, seed=1), 8))
    return trainer


@pytest.fixture
def database() -> pathlib.Path:
    return pathlib.Path.cwd() / 'metrics.db'


def query(path: pathlib.Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    connection = sqlite3.connect(path)
    try:
        return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


@pytest.fixture
def caught() -> Iterator[list[warnings.WarningMessage]]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        yield record


def test_metrics_of_a_run_are_rows_of_the_documented_schema(
    host: plugins.PluginHost, database: pathlib.Path
) -> None:
    recorder = Recorder()
    host.register(recorder, 'recorder')
    tracker = SQLiteTracker()
    with experiment(tracker).create_run(run_id='r') as run:
        assert tracker.output_location(run.view) == database
        assert tracker.database == database
        trainer = validated()
        trainer.train(3)
        Test(trainer.model, loader=DataLoader(kit.regression(8), 4), metric=kit.mse())()
        assert run.summary['outputs']['SQLiteTracker'] == str(database)
    assert tracker._session is None  # closed at run stop
    tables = {
        name: {column[1] for column in query(database, f'PRAGMA table_info({name})')}
        for (name,) in query(
            database, "SELECT name FROM sqlite_master WHERE type='table'"
        )
    }
    assert tables == {
        'experiments': {'id', 'name', 'par_dir'},
        'runs': {'id', 'experiment_id', 'run_id', 'created'},
        'sources': {'id', 'run_id', 'model', 'source'},
        'metrics': {'source_id', 'epoch', 'name', 'value'},
    }
    indexes = {
        i
        for (i,) in query(database, "SELECT name FROM sqlite_master WHERE type='index'")
    }
    assert {
        'experiments_by_name',
        'runs_by_experiment',
        'sources_by_run',
        'metrics_by_source',
    } <= indexes
    assert query(database, 'PRAGMA journal_mode') == [('wal',)]
    assert query(database, 'SELECT name, par_dir FROM experiments') == [
        ('exp', str(pathlib.Path.cwd()))
    ]
    rows = query(database, ROWS)
    expected = [
        ('exp', 'r', e.model_name, e.source_name, e.epoch, name, value)
        for e in recorder.metrics()
        for name, value in e.metrics.items()
    ]
    assert sorted(rows) == sorted(expected)  # exact floats
    assert len(rows) == 7
    loaded = tracker.load_metrics('exp', 'r')
    assert loaded == SQLiteTracker.read(database, 'exp', 'r')
    assert loaded['Model']['Validation'].epochs == [1, 2, 3]
    assert loaded['Model']['Validation'].values['MSE'] == [
        e.metrics['MSE'] for e in recorder.metrics('Validation')
    ]
    assert SQLiteTracker.read(database, 'exp', 'other') == {}
    assert SQLiteTracker.read(database.with_name('none.db'), 'exp', 'r') == {}


def test_one_transaction_per_metrics_event_never_per_batch(
    database: pathlib.Path,
) -> None:
    tracker = SQLiteTracker(database)
    statements: list[str] = []
    with experiment(tracker).create_run(run_id='r'):
        session = tracker._session
        assert session is not None and session.connection is not None  # at start
        session.connection.set_trace_callback(statements.append)
        trainer = kit.trainer(n=48, batch_size=4)  # 12 batches an epoch
        trainer.add_validation(DataLoader(kit.regression(8, seed=1), 4))
        trainer.train(3)
    begins = [s for s in statements if s.startswith('BEGIN')]
    commits = [s for s in statements if s == 'COMMIT']
    assert len(begins) == len(commits) == 6  # 3 epochs x (Trainer, Validation)


RESUME = """
import sys
sys.path.insert(0, {root!r})
from drytorch.trackers.sqlite import SQLiteTracker
from tests import training_kit as kit

exp = kit.experiment()
exp.trackers.subscribe(SQLiteTracker())
with exp.create_run(run_id='r', resume=True):
    trainer = kit.trainer(n=16)
    trainer.load_checkpoint()
    trainer.train(2)
"""


def test_resumed_run_keeps_its_row_and_a_rollback_supersedes(
    database: pathlib.Path,
) -> None:
    tracker = SQLiteTracker()
    exp = experiment(tracker)
    with exp.create_run(run_id='r'):
        trainer = kit.trainer(n=16)
        trainer.train(2)
        trainer.save_checkpoint()
    (created,) = query(database, 'SELECT created FROM runs')

    done = run_python(
        RESUME.format(root=str(ROOT)),
        pathlib.Path.cwd(),
        {'DRYTORCH_INIT_MODE': 'none'},
    )
    assert done.returncode == 0, done.stderr
    assert 'Warning' not in done.stderr
    assert query(database, 'SELECT created FROM runs') == [created]
    assert [r[4] for r in query(database, ROWS)] == [1, 2, 3, 4]

    with exp.create_run(run_id='r', resume=True):  # back to epoch 2, train again
        trainer.load_checkpoint(2)
        trainer.train(1)
        last = trainer.computed_metrics['MSE']
    rows = query(database, ROWS)
    assert [r[4] for r in rows] == [1, 2, 3]
    assert rows[-1][-1] == last
    assert query(database, 'SELECT count(*) FROM runs') == [(1,)]
    assert query(database, 'SELECT count(*) FROM sources') == [(1,)]
    assert tracker.load_metrics('exp', 'r')['Model']['Trainer'].epochs == [1, 2, 3]


WRITER = """
import pathlib, sys, time
sys.path.insert(0, {root!r})
from drytorch import DataLoader, Experiment
from drytorch.trackers.sqlite import SQLiteTracker
from tests import training_kit as kit

ready, go, par_dir = sys.argv[1:4]
exp = Experiment(None, name='shared', par_dir=par_dir)
exp.trackers.subscribe(SQLiteTracker())
pathlib.Path(ready).touch()
while not pathlib.Path(go).exists():
    time.sleep(0.01)
with exp.create_run(run_id=pathlib.Path(ready).name):
    trainer = kit.trainer(n=16)
    trainer.add_validation(DataLoader(kit.regression(8, seed=1), 8))
    trainer.train(10)
"""


def test_several_processes_write_the_same_database_at_once(
    tmp_path: pathlib.Path,
) -> None:
    shared = tmp_path / 'shared'
    sync = tmp_path / 'sync'
    sync.mkdir()
    env = dict(os.environ, DRYTORCH_INIT_MODE='none', PYTHONUNBUFFERED='1')
    code = WRITER.format(root=str(ROOT))
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                '-c',
                code,
                str(sync / f'p{i}'),
                str(sync / 'go'),
                str(shared),
            ],
            cwd=pathlib.Path.cwd(),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    deadline = time.monotonic() + 60
    while len(list(sync.glob('p*'))) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    (sync / 'go').touch()  # the database does not exist yet: creation races too
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert 'Warning' not in err, err
    database = shared / 'metrics.db'
    runs = query(database, 'SELECT run_id FROM runs ORDER BY run_id')
    assert runs == [('p0',), ('p1',), ('p2',), ('p3',)]
    assert query(database, 'SELECT count(*) FROM experiments') == [(1,)]
    rows = query(database, ROWS)
    assert len(rows) == 4 * 2 * 10
    for run_id in ('p0', 'p1', 'p2', 'p3'):
        loaded = SQLiteTracker.read(database, 'shared', run_id)
        assert loaded['Model']['Trainer'].epochs == list(range(1, 11))
        assert loaded['Model']['Validation'].epochs == list(range(1, 11))
        # the same seed in every process: the same losses
        assert loaded == SQLiteTracker.read(database, 'shared', 'p0')


def test_a_locked_database_delays_rows_and_the_run_goes_on(
    database: pathlib.Path, caught: list[warnings.WarningMessage]
) -> None:
    tracker = SQLiteTracker(timeout=0.05)
    exp = experiment(tracker)
    with exp.create_run(run_id='first'):
        pass  # creates the database
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute('BEGIN EXCLUSIVE')
    try:
        with exp.create_run(run_id='r'):
            trainer = kit.trainer(n=16)
            trainer.train(2)
            assert len(caught) == 1  # warned once, not per epoch
            holder.execute('COMMIT')  # the lock goes: the waiting rows are written
            trainer.train(1)
        assert [r[4] for r in query(database, ROWS) if r[1] == 'r'] == [1, 2, 3]

        holder.execute('BEGIN EXCLUSIVE')  # locked for a whole run
        with exp.create_run(run_id='locked'):
            kit.trainer(kit.linear('other'), n=16).train(2)
            assert trainer.model.epoch == 3
        holder.execute('COMMIT')
    finally:
        holder.close()
    messages = [str(w.message) for w in caught]
    assert all(w.category is SQLiteWarning for w in caught)
    assert len(messages) == 3
    assert all(str(database) in message for message in messages)
    assert 'locked' in messages[1]
    assert 'epochs [1, 2]' in messages[2]
    assert 'SQLiteTracker' in exp.trackers
    assert query(database, 'PRAGMA integrity_check') == [('ok',)]
    assert [r[4] for r in query(database, ROWS)] == [1, 2, 3]


def test_a_corrupt_database_is_left_alone_and_the_run_goes_on(
    tmp_path: pathlib.Path, caught: list[warnings.WarningMessage]
) -> None:
    garbage = tmp_path / 'garbage.db'
    content = bytes(range(256)) * 16
    garbage.write_bytes(content)
    tracker = SQLiteTracker(garbage)
    exp = experiment(tracker)
    with exp.create_run(run_id='r'):
        trainer = validated()
        trainer.train(2)
    assert trainer.model.epoch == 2
    assert [w.category for w in caught] == [SQLiteWarning]
    assert str(garbage) in str(caught[0].message)
    assert 'not a database' in str(caught[0].message)
    assert garbage.read_bytes() == content
    assert sorted(p.name for p in tmp_path.glob('garbage*')) == ['garbage.db']
    assert 'SQLiteTracker' in exp.trackers
    with pytest.raises(exceptions.TrackerError, match=r'garbage\.db'):
        SQLiteTracker.read(garbage, 'exp', 'r')


def test_an_unusable_folder_warns_and_the_run_goes_on(
    tmp_path: pathlib.Path, caught: list[warnings.WarningMessage]
) -> None:
    blocker = tmp_path / 'a_file'
    blocker.write_text('')
    exp = experiment(SQLiteTracker(blocker / 'metrics.db'))
    with exp.create_run(run_id='r'):
        kit.trainer(n=16).train(2)
    assert [w.category for w in caught] == [SQLiteWarning]
    assert str(blocker / 'metrics.db') in str(caught[0].message)


def test_repr_and_default_location() -> None:
    assert repr(SQLiteTracker()) == 'SQLiteTracker(path=None)'
    path = pathlib.Path('m.db').resolve()
    assert repr(SQLiteTracker('m.db')) == f'SQLiteTracker(path={str(path)!r})'
    assert SQLiteTracker().database == pathlib.Path.cwd() / 'metrics.db'


def test_nan_metrics_are_null_and_read_back_as_nan(database: pathlib.Path) -> None:
    tracker = SQLiteTracker()
    with experiment(tracker).create_run(run_id='r'):
        model = kit.linear()
        with torch.no_grad():
            model.module.weight.fill_(math.nan)
        Test(model, loader=DataLoader(kit.regression(8), 4), metric=kit.mse())()
    assert query(database, 'SELECT value FROM metrics') == [(None,)]
    loaded = tracker.load_metrics('exp', 'r')
    assert math.isnan(loaded['Model']['Test'].values['MSE'][0])
