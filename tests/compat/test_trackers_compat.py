"""The original DRYTorch's ``trackers.csv`` and ``trackers.tqdm`` spellings work.

Written from ``shared/spec/original-api.md``: the ``trackers.tqdm`` rows, the
``trackers.csv.CSVDumper`` row of "Other trackers" and "Progress bars" in
"Behaviours users see". Real runs of a tiny model; the CSV files are read
back with the ``csv`` module, the bars drawn into ``io.StringIO``.
"""

from __future__ import annotations

import csv
import io
import pathlib
import sys
from typing import Any

import pytest
import torch
from tqdm import std as tqdm_std  # type: ignore[import-untyped]

from drytorch import DataLoader, Experiment, Trainer
from drytorch.core.exceptions import DryTorchError
from drytorch.trackers.base_classes import MemoryMetrics
from drytorch.trackers.csv import CSVDumper, CSVDumperError, DryTorchDialect
from drytorch.trackers.tqdm import EpochBar, TqdmLogger, TrainingBar
from tests import training_kit as kit
from tests.training_kit import Recorder

Trained = Trainer[torch.Tensor, torch.Tensor, torch.Tensor]


class NonNumeric(csv.Dialect):
    """The original's own dialect: every text quoted, numbers bare."""

    delimiter = ';'
    quotechar = "'"
    doublequote = True
    skipinitialspace = False
    lineterminator = '\n'
    quoting = csv.QUOTE_NONNUMERIC


def only(*trackers: Any, name: str = 'exp') -> Experiment[None]:
    exp = kit.experiment(name)
    exp.trackers.remove_all()
    exp.trackers.subscribe(*trackers)
    return exp


def validated() -> Trained:
    trainer = kit.trainer(kit.linear('Model'), n=16)
    trainer.add_validation(DataLoader(kit.regression(8, seed=1), 8))
    return trainer


def csv_file(name: str = 'exp', source: str = 'Trainer') -> pathlib.Path:
    return pathlib.Path.cwd() / 'csv_metrics' / name / 'r' / f'Model_{source}.csv'


def rows(path: pathlib.Path, dialect: Any = 'excel') -> list[list[Any]]:
    with path.open(newline='', encoding='utf-8') as handle:
        return list(csv.reader(handle, dialect))


def trained(dumper: CSVDumper, name: str = 'exp', epochs: int = 2) -> Trained:
    """Train ``epochs`` with validation in run ``r``, and save a checkpoint."""
    with only(dumper, name=name).create_run(run_id='r'):
        trainer = validated()
        trainer.train(epochs)
        trainer.save_checkpoint()
    return trainer


# --- Other trackers: CSVDumper(par_dir=None, dialect=DryTorchDialect()) ------------


@pytest.mark.parametrize(
    'dialect', [DryTorchDialect, DryTorchDialect(), csv.excel, 'excel']
)
def test_csv_dialect_default_is_drytorch_dialect_and_its_bytes_are_excels(
    dialect: Any,
) -> None:
    trained(CSVDumper(), name='plain')
    trained(CSVDumper(dialect=dialect), name='given')
    plain = csv_file('plain').read_bytes()
    assert plain.startswith(b'Model,Source,Epoch,MSE\r\nModel,Trainer,1,')
    assert csv_file('given').read_bytes() == plain  # byte for byte
    assert isinstance(CSVDumper().dialect, DryTorchDialect)
    assert repr(CSVDumper(dialect=dialect)) == 'CSVDumper(par_dir=None)'


def test_csv_dialect_tab_files_read_back_by_csv_the_dumper_and_the_readers(
    rec: Recorder,
) -> None:
    dumper = CSVDumper(dialect=csv.excel_tab)
    exp = only(dumper)
    with exp.create_run(run_id='r') as run:
        validated().train(2)
    assert b'Model\tSource\tEpoch\tMSE\r\n' in csv_file().read_bytes()
    table = rows(csv_file('exp', 'Validation'), csv.excel_tab)
    assert table[0] == ['Model', 'Source', 'Epoch', 'MSE']
    expected = [e.metrics['MSE'] for e in rec.metrics('Validation')]
    assert [float(row[3]) for row in table[1:]] == expected
    # this dumper, a default one (as `drytorch plot` uses) and the readers
    for loader in (dumper, CSVDumper()):
        history = loader.load_metrics('exp', 'r')['Model']['Validation']
        assert history.epochs == [1, 2]
        assert history.values['MSE'] == expected
    assert run.view is not None
    readers = run.view.metric_history()  # the load_metrics hook: `drytorch plot`
    assert readers['Model']['Validation'].values['MSE'] == expected
    assert repr(dumper) == 'CSVDumper(par_dir=None, dialect=excel_tab)'


def test_csv_dialect_quoting_by_type_keeps_numbers_numbers_across_a_resume() -> None:
    dumper = CSVDumper(dialect=NonNumeric())
    trainer = trained(dumper)
    with only(dumper).create_run(run_id='r', resume=True):
        trainer.load_checkpoint()
        trainer.train(1)
        trainer.load_checkpoint(2)  # roll back: epoch 3 is measured again
        trainer.train(1)
    text = csv_file().read_bytes().decode()
    assert text.startswith("'Model';'Source';'Epoch';'MSE'\n'Model';'Trainer';1;")
    table = rows(csv_file(), NonNumeric)  # the original's reading: floats
    assert [row[2] for row in table[1:]] == [1.0, 2.0, 3.0]
    assert all(isinstance(row[3], float) for row in table[1:])
    assert CSVDumper().load_metrics('exp', 'r')['Model']['Trainer'].epochs == [1, 2, 3]


def test_csv_dialect_of_a_file_is_kept_when_resumed_with_another() -> None:
    trainer = trained(CSVDumper(dialect=csv.excel_tab))
    default = CSVDumper()
    with only(default).create_run(run_id='r', resume=True):
        trainer.load_checkpoint()
        trainer.train(1)
    table = rows(csv_file(), csv.excel_tab)
    assert [row[2] for row in table[1:]] == ['1', '2', '3']
    assert all(len(row) == 4 for row in table)  # one format in the whole file
    assert default.read_csv('Model', 'Trainer')[0] == [1, 2, 3]


@pytest.mark.parametrize('dialect', [42, 'no-such-dialect', csv.Dialect, object()])
def test_csv_dialect_that_csv_cannot_use_is_refused(dialect: Any) -> None:
    with pytest.raises(CSVDumperError, match='not a csv dialect') as caught:
        CSVDumper(dialect=dialect)
    assert isinstance(caught.value, DryTorchError)
    assert isinstance(caught.value, ValueError)
    assert 'DryTorchDialect' in str(caught.value)


def test_csv_read_csv_returns_epochs_and_values_of_one_model_and_source(
    rec: Recorder,
) -> None:
    dumper = CSVDumper()
    with only(dumper).create_run(run_id='r'):
        trainer = validated()
        trainer.train(3)
        during = dumper.read_csv('Model', 'Validation')  # the current run
    after = dumper.read_csv('Model', 'Validation')  # the last run
    expected = [e.metrics['MSE'] for e in rec.metrics('Validation')]
    assert during == after == ([1, 2, 3], {'MSE': expected})
    # the same rows as the file read with csv
    table = rows(csv_file('exp', 'Validation'))
    assert [int(row[2]) for row in table[1:]] == after[0]
    assert [float(row[3]) for row in table[1:]] == after[1]['MSE']
    assert dumper.read_csv('Model', 'Validation', max_epoch=2) == (
        [1, 2],
        {'MSE': expected[:2]},
    )
    assert dumper.read_csv('Model', 'Trainer', 1)[0] == [1]


def test_csv_read_csv_names_what_is_missing() -> None:
    dumper = CSVDumper()
    with pytest.raises(CSVDumperError, match=r'load_metrics\(experiment_name, run_id'):
        dumper.read_csv('Model', 'Trainer')  # no run seen yet
    trained(dumper)
    with pytest.raises(CSVDumperError, match="'Model'/'Trainer'") as caught:
        dumper.read_csv('Model', 'Test')
    assert "'Model'/'Validation'" in str(caught.value)
    with pytest.raises(CSVDumperError, match='max_epoch'):
        dumper.read_csv('Model', 'Trainer', max_epoch=-2)


def test_csv_load_metrics_original_form_beside_ours() -> None:
    dumper = CSVDumper()
    trained(dumper, epochs=3)
    ours = dumper.load_metrics('exp', 'r')  # MetricLoader: (experiment, run id)
    assert ours['Model']['Trainer'].epochs == [1, 2, 3]
    assert dumper.load_metrics(experiment_name='exp', run_id='r') == ours
    whole = {
        source: (history.epochs, history.values)
        for source, history in ours['Model'].items()
    }
    assert dumper.load_metrics('Model') == whole  # the original's form
    assert dumper.load_metrics('Model', -1) == whole
    assert dumper.load_model_metrics('Model') == whole
    first = dumper.load_metrics(model_name='Model', max_epoch=1)
    assert set(first) == {'Trainer', 'Validation'}
    assert first['Trainer'] == (
        [1],
        {'MSE': ours['Model']['Trainer'].values['MSE'][:1]},
    )
    assert dumper.load_metrics('Model', 2)['Validation'][0] == [1, 2]
    assert dumper.load_metrics('Model', 0) == {}
    assert dumper.load_metrics('Other') == {}
    with pytest.raises(CSVDumperError, match='max_epoch'):
        dumper.load_metrics('Model', -3)


@pytest.mark.parametrize(
    ('args', 'kwargs'),
    [
        (('exp', 2.5), {}),
        (('exp',), {'run_id': 'r', 'max_epoch': 1}),
        ((), {'run_id': 'r'}),
        ((1, 'r'), {}),
    ],
)
def test_csv_load_metrics_that_fits_neither_form_names_both(
    args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    dumper = CSVDumper()
    trained(dumper, epochs=1)
    with pytest.raises(CSVDumperError) as caught:
        dumper.load_metrics(*args, **kwargs)
    message = str(caught.value)
    assert '(experiment_name: str, run_id: str)' in message
    assert '(model_name: str, max_epoch: int = -1)' in message
    assert 'load_model_metrics' in message


def test_csv_load_metrics_as_a_metric_loader_on_resume() -> None:
    dumper = CSVDumper()
    trainer = trained(dumper)
    memory = MemoryMetrics(metric_loader=dumper)
    with only(dumper, memory).create_run(run_id='r', resume=True):
        trainer.load_checkpoint()
        trainer.train(1)
    assert memory.model_dict['Model']['Trainer'].epochs == [1, 2, 3]


def test_csv_on_resume_earlier_rows_are_kept() -> None:
    dumper = CSVDumper()
    trainer = trained(dumper)
    before = csv_file().read_bytes()
    with only(dumper).create_run(run_id='r', resume=True):
        trainer.load_checkpoint()
        trainer.train(1)
    assert csv_file().read_bytes().startswith(before)
    assert [row[2] for row in rows(csv_file())[1:]] == ['1', '2', '3']
    assert dumper.read_csv('Model', 'Trainer')[0] == [1, 2, 3]
    assert dumper.load_metrics('Model')['Validation'][0] == [1, 2, 3]


# --- trackers.tqdm: EpochBar, TrainingBar, TqdmLogger -------------------------------


def last_lines(output: str) -> list[str]:
    """What stays on screen of each finished bar: its last redraw."""
    return [line.rsplit('\r', 1)[-1] for line in output.split('\n') if line.strip()]


def test_tqdm_epoch_bar_counts_batches_and_samples_with_metrics() -> None:
    stream = io.StringIO()
    bar = EpochBar(4, 3, 10, True, stream, 'Trainer', 0)  # the original's order
    bar.update({'loss': 1.5}, 1)
    bar.update({'loss': 0.25}, 1)
    assert bar.seen == 8
    assert bar.pbar in tqdm_std.tqdm._instances  # still open
    bar.update({'loss': 0.125}, 1)  # the last batch: short, and closes the bar
    assert bar.pbar not in tqdm_std.tqdm._instances
    [line] = last_lines(stream.getvalue())
    assert line.startswith('Trainer:')
    assert '3/3' in line
    assert 'Samples=10' in line
    assert 'loss=1.250e-01' in line


def test_tqdm_epoch_bar_samples_grow_by_the_processes_and_may_be_unknown() -> None:
    stream = io.StringIO()
    bar = EpochBar(
        batch_size=4,
        n_iter=4,
        n_samples=30,
        leave=True,
        file=stream,
        desc='Validation',
        position=0,
    )
    bar.update({}, n_processes=2)
    assert bar.seen == 8
    bar.close()
    unknown = io.StringIO()
    sized = EpochBar(None, 2, 8, True, unknown, 'Test')
    sized.update({'MSE': 2.0}, 1)
    sized.update({'MSE': 2.0}, 1)
    assert 'Samples=?' in last_lines(unknown.getvalue())[-1]
    assert not tqdm_std.tqdm._instances


def test_tqdm_training_bar_moves_to_the_current_epoch() -> None:
    stream = io.StringIO()
    bar = TrainingBar(2, 5, stream, True)  # resumed at epoch 2
    assert bar.pbar.n == 2
    bar.update(3)
    bar.update(5)
    assert bar.pbar.n == 5
    bar.close()
    [line] = last_lines(stream.getvalue())
    assert line.startswith('Epoch:')
    assert '5/5' in line
    TrainingBar(start_epoch=0, end_epoch=1, file=stream, leave=False).close()
    assert not tqdm_std.tqdm._instances


def test_tqdm_logger_original_call_keeps_our_off_terminal_default(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logger = TqdmLogger(leave=True, enable_training_bar=True, file=sys.stderr)
    assert logger.file is sys.stderr  # pytest's capture: not a terminal
    with only(logger).create_run():
        kit.trainer().train(2)
    assert capsys.readouterr().err == ''  # D: no bars in a redirected log
    assert not tqdm_std.tqdm._instances
    ours = TqdmLogger()
    assert (ours.leave, ours.enable_training_bar, ours.disable) == (False, False, None)


def test_tqdm_progress_bars_forced_onto_a_non_terminal_with_disable_false() -> None:
    stream = io.StringIO()  # a CI log or a captured stream
    logger = TqdmLogger(
        leave=True, enable_training_bar=True, file=stream, disable=False
    )
    with only(logger).create_run(run_id='bars'):
        trainer = kit.trainer(n=48, batch_size=8)
        trainer.train(2)
    lines = last_lines(stream.getvalue())
    epoch_bars = [line for line in lines if line.startswith('bars | Trainer:')]
    assert len(epoch_bars) == 2
    assert all('6/6' in line and 'MSE=' in line for line in epoch_bars)
    training = [line for line in lines if 'bars | Model (Trainer):' in line]
    assert '0/2' in training[0]  # drawn above the epoch bars, then finished
    assert '2/2' in training[-1]
    assert 'epoch/s' in training[-1]
    assert not tqdm_std.tqdm._instances
