"""SQLConnection on real training, read back with SQLAlchemy and with sqlite3."""

from __future__ import annotations

import math
import os
import pathlib
import sqlite3
import subprocess
import sys
import textwrap
from typing import Any

import pytest
import sqlalchemy as sa
import torch
from drytorch import (
    DataLoader,
    Experiment,
    LearningSchema,
    Loss,
    MetricHistory,
    Model,
    RunView,
    Test,
    Tracker,
    Trainer,
    hookimpl,
    testing,
)
from sqlalchemy import orm
from torch import nn
from torch.utils import data

from drytorch_contrib_sqlalchemy import (
    Experiment as ExperimentRow,
)
from drytorch_contrib_sqlalchemy import (
    Log,
    Run,
    Source,
    SQLConnection,
    Tags,
)
from drytorch_contrib_sqlalchemy.reading import histories
from drytorch_contrib_sqlalchemy.tracker import DEFAULT_NAME, STATE_NAME

# --- a real, short training ------------------------------------------------------


def regression(n: int, seed: int) -> data.TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=generator)
    return data.TensorDataset(x, x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3)


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((outputs - targets) ** 2).mean()


def train(epochs: int, name: str = 'net') -> Model[Any, Any]:
    torch.manual_seed(0)
    model = Model(nn.Linear(3, 1), name=name, device='cpu')
    trainer: Trainer[Any, Any, Any] = Trainer(
        model,
        loader=DataLoader(regression(16, seed=0), 8, seed=0),
        loss=Loss(mse, 'MSE'),
        learning_schema=LearningSchema.adam(lr=0.05),
    )
    trainer.add_validation(DataLoader(regression(8, seed=1), 8))
    trainer.train(epochs)
    return model


def test_model(model: Model[Any, Any]) -> None:
    Test(model, loader=DataLoader(regression(8, seed=2), 8), metric=Loss(mse, 'MSE'))()


test_model.__test__ = False  # type: ignore[attr-defined]  # not a pytest test


def experiment(*trackers: Any, par_dir: str = '.', tags: Any = ()) -> Experiment[Any]:
    exp = Experiment(None, name='exp', par_dir=par_dir, tags=list(tags))
    exp.trackers.subscribe(*trackers)
    return exp


def expected(recorder: testing.HookRecorder) -> dict[str, dict[str, MetricHistory]]:
    """The histories that the recorded metrics events make."""
    found: dict[str, dict[str, MetricHistory]] = {}
    for event in recorder.events('on_metrics'):
        sources = found.setdefault(event.model_name, {})
        sources.setdefault(event.source_name, MetricHistory()).add(
            event.epoch, dict(event.metrics)
        )
    return found


def database(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / 'work' / DEFAULT_NAME


# --- what is written ---------------------------------------------------------------


def test_runs_sources_logs_and_tags_read_back_with_the_orm(
    tmp_path: pathlib.Path, recorder: testing.HookRecorder
) -> None:
    """``SQLConnection(engine=None)`` writes the ORM tables of the spec's row."""
    with experiment(SQLConnection(), tags=['small', 'cpu']).create_run('r1'):
        test_model(train(2))
    engine = sa.create_engine(f'sqlite:///{database(tmp_path)}')
    with orm.Session(engine) as session:
        (exp_row,) = session.scalars(sa.select(ExperimentRow)).all()
        assert exp_row.name == 'exp'
        assert exp_row.par_dir == str((tmp_path / 'work').resolve())
        (run_row,) = exp_row.runs
        assert run_row.run_id == 'r1'
        assert run_row.status == 'completed'
        assert run_row.created.year >= 2024
        assert sorted(tag.text for tag in run_row.tags) == ['cpu', 'small']
        assert sorted((s.model_name, s.source_name) for s in run_row.sources) == [
            ('net', 'Test'),
            ('net', 'Trainer'),
            ('net', 'Validation'),
        ]
        logged = [
            (log.source.source_name, log.epoch, log.metric_name, log.value)
            for log in session.scalars(sa.select(Log).order_by(Log.id))
        ]
    engine.dispose()
    wanted = [
        (event.source_name, event.epoch, name, pytest.approx(value))
        for event in recorder.events('on_metrics')
        for name, value in event.metrics.items()
    ]
    assert logged == wanted
    assert [row[:2] for row in logged] == [
        ('Trainer', 1),
        ('Validation', 1),
        ('Trainer', 2),
        ('Validation', 2),
        ('Test', 2),
    ]


def test_the_database_reads_with_plain_sqlite3(
    tmp_path: pathlib.Path, recorder: testing.HookRecorder
) -> None:
    with experiment(SQLConnection()).create_run('r1'):
        train(2)
    with sqlite3.connect(database(tmp_path)) as connection:
        rows = connection.execute(
            'SELECT r.run_id, s.source_name, l.epoch, l.metric_name, l.value '
            'FROM log l JOIN source s ON s.id = l.source_key '
            'JOIN run r ON r.id = s.run_key '
            'JOIN experiment e ON e.id = r.experiment_key '
            "WHERE e.name = 'exp' ORDER BY l.id"
        ).fetchall()
        tables = {
            name
            for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'"
            )
        }
    connection.close()
    assert tables == {'experiment', 'run', 'source', 'log', 'tags'}
    assert rows == [
        (
            'r1',
            event.source_name,
            event.epoch,
            'MSE',
            pytest.approx(event.metrics['MSE']),
        )
        for event in recorder.events('on_metrics')
    ]


def test_default_database_is_in_the_experiment_folder(tmp_path: pathlib.Path) -> None:
    """The original's ``sqlite:///metrics.db``, for the experiment's ``par_dir``."""
    tracker = SQLConnection()
    assert tracker.url.database == str((tmp_path / 'work' / DEFAULT_NAME).resolve())
    with experiment(tracker, par_dir='outputs').create_run('r1'):
        train(1)
        assert tracker.engine.url.database == str(
            (tmp_path / 'work' / 'outputs' / DEFAULT_NAME).resolve()
        )
    assert (tmp_path / 'work' / 'outputs' / DEFAULT_NAME).is_file()
    assert not database(tmp_path).exists()
    with pytest.raises(Exception, match='no engine outside a run'):
        tracker.engine  # noqa: B018


def test_a_given_engine_or_url_is_used(tmp_path: pathlib.Path) -> None:
    engine = sa.create_engine(f'sqlite:///{tmp_path / "given.db"}')
    by_engine = SQLConnection(engine)
    assert by_engine.engine is engine
    by_url = SQLConnection(f'sqlite:///{tmp_path / "url.db"}')
    by_url.name = 'SQLByURL'  # two trackers of a class need two names
    with experiment(by_engine, by_url).create_run('r1'):
        train(1)
    for tracker in (by_engine, by_url):
        found = tracker.load_metrics('exp', 'r1')
        assert found['net']['Trainer'].epochs == [1]
    assert not database(tmp_path).exists()
    engine.dispose()


def test_bad_arguments_are_explained() -> None:
    with pytest.raises(TypeError, match='Engine or a database URL'):
        SQLConnection(engine=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='timeout must be positive'):
        SQLConnection(timeout=0)


# --- reading back ------------------------------------------------------------------


def test_load_metrics_gives_the_histories_of_the_run(
    recorder: testing.HookRecorder,
) -> None:
    """The ``MetricLoader`` protocol: ``load_metrics(experiment_name, run_id)``."""
    tracker = SQLConnection()
    with experiment(tracker).create_run('r1'):
        test_model(train(3))
    assert tracker.load_metrics('exp', 'r1') == expected(recorder)
    assert tracker.load_metrics('exp', 'nope') == {}
    assert tracker.load_metrics('other', 'r1') == {}
    assert SQLConnection().load_metrics('exp', 'r1') == expected(recorder)  # by cwd


def test_load_metrics_of_a_missing_database_creates_nothing(
    tmp_path: pathlib.Path,
) -> None:
    assert SQLConnection().load_metrics('exp', 'r1') == {}
    assert not database(tmp_path).exists()


class Reader(Tracker):
    """Reads the run's metric history through the ``load_metrics`` hook."""

    found: dict[str, dict[str, MetricHistory]] | None = None

    @hookimpl
    def on_run_start(self, run: RunView) -> None:
        self.found = run.metric_history()


def test_resumed_run_appends_and_the_hook_reads_it_back(
    tmp_path: pathlib.Path, recorder: testing.HookRecorder
) -> None:
    """A resumed run keeps its run row and appends to the log."""
    with experiment(SQLConnection()).create_run('r1'):
        train(2)
    first = expected(recorder)
    reader = Reader()
    with experiment(SQLConnection(), reader).create_run('r1', resume=True):
        train(1)  # a fresh model: epoch 1 measured again
    assert reader.found == first  # the plugin's load_metrics hook, from the record
    with sqlite3.connect(database(tmp_path)) as connection:
        runs = connection.execute('SELECT run_id, status FROM run').fetchall()
        logged = connection.execute(
            'SELECT l.epoch FROM log l JOIN source s ON s.id = l.source_key '
            "WHERE s.source_name = 'Trainer' ORDER BY l.id"
        ).fetchall()
    connection.close()
    assert runs == [('r1', 'completed')]
    assert logged == [(1,), (2,), (1,)]  # appended, never rewritten
    loaded = SQLConnection().load_metrics('exp', 'r1')
    assert loaded['net']['Trainer'].epochs == [1]  # the later measurement wins
    assert loaded == expected(recorder)


class StateReader(Tracker):
    """Reads the plugin's state in the run record at the run's start."""

    state: dict[str, Any] | None = None

    @hookimpl
    def on_run_start(self, run: RunView) -> None:
        self.state = run.plugin_state(STATE_NAME)


def test_the_record_keeps_the_database_address(tmp_path: pathlib.Path) -> None:
    """So that ``drytorch plot`` finds the run's metrics later, from any folder."""
    with experiment(SQLConnection()).create_run('r1'):
        pass
    reader = StateReader()
    with experiment(reader).create_run('r1', resume=True):
        pass
    url = f'sqlite:///{database(tmp_path).resolve()}'
    assert reader.state == {'format': 1, 'url': url}


def test_a_url_with_a_password_is_not_recorded() -> None:
    from drytorch_contrib_sqlalchemy.tracker import storable_url

    assert storable_url(sa.make_url('postgresql://u:secret@host/db')) is None
    assert (
        storable_url(sa.make_url('postgresql://u@host/db')) == 'postgresql://u@host/db'
    )
    assert storable_url(sa.make_url('sqlite://')) is None
    relative = storable_url(sa.make_url('sqlite:///rel.db'))
    assert relative == f'sqlite:///{pathlib.Path("rel.db").resolve()}'


def test_the_orm_names_are_the_tables() -> None:
    import drytorch_contrib_sqlalchemy as package
    from drytorch_contrib_sqlalchemy import tables

    for name in ('Experiment', 'Run', 'Source', 'Log', 'Tags', 'Base'):
        assert getattr(package, name) is getattr(tables, name)
    assert {Run.__tablename__, Source.__tablename__, Tags.__tablename__} == {
        'run',
        'source',
        'tags',
    }


def test_histories_treat_rows_of_one_epoch_as_one_measurement() -> None:
    rows = [
        ('m', 'Trainer', 1, 'loss', 1.0),
        ('m', 'Trainer', 1, 'acc', 0.5),
        ('m', 'Validation', 1, 'loss', 2.0),
        ('m', 'Trainer', 2, 'loss', 0.8),
        ('m', 'Trainer', 2, 'acc', None),
        ('m', 'Trainer', 3, 'loss', 0.7),
        ('m', 'Trainer', 2, 'loss', 0.9),  # measured again after a checkpoint
        ('m', 'Trainer', 2, 'acc', 0.6),
    ]
    found = histories(rows)
    trainer = found['m']['Trainer']
    assert trainer.epochs == [1, 2]
    assert trainer.values == {'loss': [1.0, 0.9], 'acc': [0.5, 0.6]}
    assert found['m']['Validation'].values == {'loss': [2.0]}
    nan = histories([('m', 'T', 1, 'a', None), ('m', 'T', 2, 'b', 1.0)])['m']['T']
    assert math.isnan(nan.values['b'][0]) and nan.values['b'][1] == 1.0
    assert nan.values['a'][0] is not None and len(nan.values['a']) == 2


# --- several processes -------------------------------------------------------------

RUNS, EPOCHS = 10, 10
WRITER = f'RUNS, EPOCHS = {RUNS}, {EPOCHS}\n' + textwrap.dedent(
    """
    import datetime, pathlib, sys, time
    from drytorch import RunView
    from drytorch.log_events import MetricsEvent, RunStartEvent, RunStopEvent
    from drytorch_contrib_sqlalchemy import SQLConnection

    # the hooks called as DRYTorch calls them, without torch (slow to import)
    prefix, url, go = sys.argv[1], sys.argv[2], sys.argv[3]
    here = pathlib.Path('.').resolve()
    tracker = SQLConnection(url)
    deadline = time.monotonic() + 60
    while not pathlib.Path(go).exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    for index in range(RUNS):  # many starts: each reads rows, then writes
        run_id = f'{prefix}-{index}'
        run = RunView(
            id=run_id, experiment='exp', experiment_class='Experiment',
            par_dir=here, config=None, seed=0, tags=('t',), resumed=False,
            record_path=here / run_id,
        )
        now = datetime.datetime.now().astimezone()
        start = RunStartEvent(
            'exp', 'Experiment', run_id, False, None, here, ('t',), here / run_id, now
        )
        tracker.on_run_start(start, run)
        for epoch in range(1, EPOCHS + 1):
            metrics = {'a': epoch, 'b': -epoch}
            tracker.on_metrics(MetricsEvent('net', 'Trainer', epoch, metrics), run)
        tracker.on_run_stop(RunStopEvent('exp', run_id, 'completed', None, now))
    """
)


def test_several_processes_write_the_same_database(tmp_path: pathlib.Path) -> None:
    """Each process's transactions queue on the file; no row is lost."""
    shared = tmp_path / 'shared.db'
    go = tmp_path / 'go'
    script = tmp_path / 'writer.py'
    script.write_text(WRITER)
    writers = [
        subprocess.Popen(
            [sys.executable, str(script), run_id, f'sqlite:///{shared}', str(go)],
            cwd=tmp_path / 'work',
            env=dict(os.environ),
            stderr=subprocess.PIPE,
            text=True,
        )
        for run_id in ('p1', 'p2', 'p3')
    ]
    go.touch()
    for writer in writers:
        _, errors = writer.communicate(timeout=120)
        assert writer.returncode == 0, errors
    tracker = SQLConnection(f'sqlite:///{shared}')
    for run_id in (f'{p}-{i}' for p in ('p1', 'p2', 'p3') for i in range(RUNS)):
        history = tracker.load_metrics('exp', run_id)['net']['Trainer']
        assert history.epochs == list(range(1, EPOCHS + 1))
        assert history.values['b'] == [-float(e) for e in range(1, EPOCHS + 1)]
    with sqlite3.connect(shared) as connection:
        count = 'SELECT COUNT(*) FROM '
        assert connection.execute(count + 'experiment').fetchone() == (1,)
        assert connection.execute(count + 'tags').fetchone() == (3 * RUNS,)
        assert connection.execute(count + 'log').fetchone() == (6 * RUNS * EPOCHS,)
        statuses = connection.execute('SELECT status FROM run').fetchall()
    connection.close()
    assert statuses == [('completed',)] * (3 * RUNS)
