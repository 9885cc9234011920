"""CSVDumper: layout, rows read back with ``csv``, resumes, bad inputs."""

from __future__ import annotations

import csv
import math
import pathlib
import warnings
from typing import Any

import pytest
import torch

from drytorch import DataLoader, Experiment, Metric, Test, Trainer
from drytorch.core import plugins
from drytorch.trackers import csv as csv_tracker
from drytorch.trackers.csv import CSVColumnsWarning, CSVDumper, CSVWriteWarning
from tests import training_kit as kit
from tests.conftest import ROOT, run_python
from tests.training_kit import Recorder

Trained = Trainer[torch.Tensor, torch.Tensor, torch.Tensor]


def mae(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs - targets).abs().mean()


def experiment(dumper: CSVDumper, name: str = 'exp') -> Experiment[None]:
    exp = kit.experiment(name)
    exp.trackers.remove_all()  # only the tracker under test
    exp.trackers.subscribe(dumper)
    return exp


def validated(loss: Any = None) -> Trained:
    trainer = kit.trainer(kit.linear('Model'), n=16, loss=loss)
    trainer.add_validation(DataLoader(kit.regression(8, seed=1), 8))
    return trainer


def read(path: pathlib.Path) -> list[list[str]]:
    with path.open(newline='', encoding='utf-8') as handle:
        return list(csv.reader(handle))


def run_folder(name: str = 'exp', run_id: str = 'r') -> pathlib.Path:
    return pathlib.Path.cwd() / 'csv_metrics' / name / run_id


def epochs(path: pathlib.Path) -> list[int]:
    return [int(row[2]) for row in read(path)[1:]]


def test_one_file_per_model_and_source_with_a_row_per_metrics_event(
    host: plugins.PluginHost,
) -> None:
    recorder = Recorder()
    host.register(recorder, 'recorder')
    dumper = CSVDumper()
    with experiment(dumper).create_run(run_id='r') as run:
        trainer = validated(kit.mse() | Metric(mae, 'MAE'))
        trainer.train(3)
        Test(trainer.model, loader=DataLoader(kit.regression(8), 4), metric=kit.mse())()
        assert run.summary['outputs']['CSVDumper'] == str(run_folder())
    folder = run_folder()
    assert sorted(p.name for p in folder.iterdir()) == [
        'Model_Test.csv',
        'Model_Trainer.csv',
        'Model_Validation.csv',
    ]
    for event in recorder.metrics():
        rows = read(folder / f'Model_{event.source_name}.csv')
        assert rows[0] == ['Model', 'Source', 'Epoch', *event.metrics]
        row = next(r for r in rows[1:] if int(r[2]) == event.epoch)
        assert row[:2] == ['Model', event.source_name]
        assert [float(v) for v in row[3:]] == list(event.metrics.values())  # exact
    assert epochs(folder / 'Model_Trainer.csv') == [1, 2, 3]
    assert read(folder / 'Model_Trainer.csv')[0][3:] == ['MSE', 'MAE']
    loaded = dumper.load_metrics('exp', 'r')
    assert loaded['Model']['Validation'].epochs == [1, 2, 3]
    assert loaded['Model']['Validation'].values['MAE'] == [
        e.metrics['MAE'] for e in recorder.metrics('Validation')
    ]
    assert loaded['Model']['Test'].epochs == [3]
    with (folder / 'Model_Trainer.csv').open(newline='', encoding='utf-8') as handle:
        by_name = list(csv.DictReader(handle))  # as pandas would see it
    assert [row['Epoch'] for row in by_name] == ['1', '2', '3']


def test_rows_are_written_per_epoch_and_flushed_never_per_batch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rows_written: list[list[str]] = []
    real_writer = csv.writer

    class Counting:
        def __init__(self, handle: Any) -> None:
            self.writer = real_writer(handle)

        def writerow(self, row: list[str]) -> None:
            rows_written.append(row)
            self.writer.writerow(row)

    monkeypatch.setattr(csv_tracker.csv, 'writer', Counting)
    dumper = CSVDumper()
    with experiment(dumper).create_run(run_id='r'):
        trainer = kit.trainer(
            kit.linear('Model'), n=48, batch_size=4
        )  # 12 batches an epoch
        trainer.train(2)
        # flushed: readable while the run goes on
        assert epochs(run_folder() / 'Model_Trainer.csv') == [1, 2]
    assert [row[2] for row in rows_written] == ['Epoch', '1', '2']


RESUME = """
import sys
sys.path.insert(0, {root!r})
from drytorch.trackers.csv import CSVDumper
from tests import training_kit as kit
from drytorch import DataLoader

exp = kit.experiment()
exp.trackers.subscribe(CSVDumper())
with exp.create_run(run_id='r', resume=True):
    trainer = kit.trainer(kit.linear('Model'), n=16)
    trainer.add_validation(DataLoader(kit.regression(8, seed=1), 8))
    trainer.load_checkpoint()
    trainer.train(2)
"""


def test_resumed_run_in_a_new_process_appends_then_a_rollback_supersedes() -> None:
    dumper = CSVDumper()
    exp = experiment(dumper)
    with exp.create_run(run_id='r'):
        trainer = validated()
        trainer.train(2)
        trainer.save_checkpoint()
    path = run_folder() / 'Model_Validation.csv'
    before = path.read_bytes()

    done = run_python(
        RESUME.format(root=str(ROOT)),
        pathlib.Path.cwd(),
        {'DRYTORCH_INIT_MODE': 'none'},
    )
    assert done.returncode == 0, done.stderr
    assert 'Warning' not in done.stderr
    assert path.read_bytes().startswith(before)  # appended, never clobbered
    assert epochs(path) == [1, 2, 3, 4]
    assert epochs(run_folder() / 'Model_Trainer.csv') == [1, 2, 3, 4]

    with exp.create_run(run_id='r', resume=True):  # back to epoch 2, train again
        trainer.load_checkpoint(2)
        trainer.train(1)
        last = trainer.computed_metrics
    assert epochs(path) == [1, 2, 3]
    assert path.read_bytes().startswith(before)
    trainer_rows = read(run_folder() / 'Model_Trainer.csv')
    assert float(trainer_rows[-1][3]) == last['MSE']
    assert sorted(p.name for p in run_folder().iterdir()) == [
        'Model_Trainer.csv',
        'Model_Validation.csv',
    ]  # no temporary file left behind
    assert dumper.load_metrics('exp', 'r')['Model']['Trainer'].epochs == [1, 2, 3]


def test_a_test_repeated_at_the_same_epoch_supersedes_its_row() -> None:
    with experiment(CSVDumper()).create_run(run_id='r'):
        model = kit.linear()
        loader = DataLoader(kit.regression(8), 4)
        Test(model, loader=loader, metric=kit.mse())()
        model.epoch = 1
        Test(model, loader=loader, metric=kit.mse())()
        Test(model, loader=loader, metric=kit.mse())()
    assert epochs(run_folder() / 'Model_Test.csv') == [0, 1]


def test_resumed_run_with_other_metrics_keeps_the_old_file_and_starts_a_part() -> None:
    dumper = CSVDumper()
    exp = experiment(dumper)
    with exp.create_run(run_id='r'):
        trainer = kit.trainer(kit.linear('Model'), n=16)
        trainer.train(2)
        trainer.save_checkpoint()
    first = run_folder() / 'Model_Trainer.csv'
    before = first.read_bytes()
    with (
        pytest.warns(CSVColumnsWarning, match=r'Model_Trainer\.csv') as record,
        exp.create_run(run_id='r', resume=True),
    ):
        trainer = kit.trainer(trainer.model, n=16, loss=kit.mse() | Metric(mae, 'MAE'))
        trainer.load_checkpoint()
        trainer.train(2)
    assert len(record) == 1
    assert first.read_bytes() == before
    second = run_folder() / 'Model_Trainer.2.csv'
    assert read(second)[0] == ['Model', 'Source', 'Epoch', 'MSE', 'MAE']
    assert epochs(second) == [3, 4]
    history = dumper.load_metrics('exp', 'r')['Model']['Trainer']
    assert history.epochs == [1, 2, 3, 4]
    assert len(history.values['MSE']) == 4
    assert all(math.isnan(v) for v in history.values['MAE'][:2])
    assert not any(math.isnan(v) for v in history.values['MAE'][2:])


def test_a_row_cut_short_by_a_crash_is_dropped_on_resume() -> None:
    exp = experiment(CSVDumper())
    with exp.create_run(run_id='r'):
        trainer = kit.trainer(kit.linear('Model'), n=16)
        trainer.train(2)
        trainer.save_checkpoint()
    path = run_folder() / 'Model_Trainer.csv'
    with path.open('a', encoding='utf-8') as handle:
        handle.write('Model,Trainer,3,0.12')  # no newline: the write was cut
    assert CSVDumper().load_metrics('exp', 'r')['Model']['Trainer'].epochs == [1, 2]
    with exp.create_run(run_id='r', resume=True):
        trainer.load_checkpoint()
        trainer.train(1)
    rows = read(path)
    assert epochs(path) == [1, 2, 3]
    assert all(len(row) == 4 for row in rows)
    assert rows[-1][3] != '0.12'
    assert path.read_text().count('\n') == 4


def test_unwritable_folder_warns_once_and_training_goes_on(
    tmp_path: pathlib.Path,
) -> None:
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a folder')
    dumper = CSVDumper(par_dir=blocker)
    exp = experiment(dumper)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter('always')
        with exp.create_run(run_id='r'):
            trainer = validated()
            trainer.train(3)
    assert trainer.model.epoch == 3
    assert [type(w.message) for w in record] == [CSVWriteWarning]
    assert str(blocker) in str(record[0].message)
    assert 'CSVDumper' in exp.trackers  # not unsubscribed as a faulty tracker
    assert blocker.read_text() == 'not a folder'


def test_names_are_made_safe_and_never_share_a_file() -> None:
    dumper = CSVDumper()
    with experiment(dumper).create_run(run_id='r'):
        loader = DataLoader(kit.regression(8), 4)
        for model_name, source in [('a_b', 'c'), ('a', 'b_c'), ('net v1.0', 'x/y')]:
            model = kit.linear(model_name)
            Test(model, loader=loader, metric=kit.mse(), name=source)()
    names = sorted(p.name for p in run_folder().iterdir())
    assert len(names) == 3
    assert 'a_b_c.csv' in names
    assert all(csv_tracker._PART.match(name) for name in names)
    assert not any(' ' in name or '/' in name for name in names)
    loaded = dumper.load_metrics('exp', 'r')
    assert {(m, s) for m in loaded for s in loaded[m]} == {
        ('a_b', 'c'),
        ('a', 'b_c'),
        ('net v1.0', 'x/y'),
    }


def test_events_outside_metrics_write_nothing_and_repr_is_readable(
    host: plugins.PluginHost,
) -> None:
    dumper = CSVDumper(par_dir='out')
    assert repr(dumper) == f'CSVDumper(par_dir={str(pathlib.Path("out").resolve())!r})'
    assert repr(CSVDumper()) == 'CSVDumper(par_dir=None)'
    folder = pathlib.Path('out').resolve() / 'csv_metrics' / 'exp' / 'r'
    with experiment(dumper).create_run(run_id='r') as run:
        assert 'tracker:CSVDumper' not in host.implementers('on_batch_end')
        assert dumper.run_outputs(run.view) == {'CSVDumper': str(folder)}
        kit.trainer(n=16).train(1)  # every batch event is for others
    assert [p.name for p in folder.iterdir()] == ['Model_Trainer.csv']
    with experiment(CSVDumper(par_dir='out'), name='idle').create_run(run_id='r'):
        pass  # no metrics: no file, and no folder either
    assert not (pathlib.Path('out') / 'csv_metrics' / 'idle').exists()


def test_subscribed_in_the_middle_of_a_run_writes_where_it_should() -> None:
    from tests import training_kit as kit

    experiment = kit.experiment('midrun')
    experiment.trackers.remove('CSVDumper')  # the default one would write epoch 1
    with experiment.create_run(run_id='r'):
        trainer = kit.trainer()
        trainer.train(1)
        dumper = CSVDumper()
        experiment.trackers.subscribe(dumper)
        trainer.train(1)
    files = list((experiment.par_dir / 'csv_metrics' / 'midrun' / 'r').glob('*.csv'))
    assert [f.name for f in files] == ['Model_Trainer.csv']
    rows = files[0].read_text().splitlines()
    assert rows[0].startswith('Model,Source,Epoch') and rows[1].split(',')[2] == '2'
