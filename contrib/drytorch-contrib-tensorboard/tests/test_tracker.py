"""The tracker on real training, read back with TensorBoard's own reader."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess
import sys
import time
import tomllib
from typing import Any

import numpy as np
import pytest
import torch
from drytorch import (
    DataLoader,
    Experiment,
    LearningSchema,
    Loss,
    Model,
    Test,
    Trainer,
    exceptions,
    testing,
)
from drytorch.lib import schedulers
from drytorch.log_events import CheckpointEvent, MetricsEvent, StepMetricsEvent
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util
from torch import nn
from torch.utils import data

from drytorch_contrib_tensorboard import TensorBoard
from drytorch_contrib_tensorboard.tracker import (
    CONFIG_TAG,
    STEPS_FOLDER,
    config_text,
    step_tag,
)

TEXT_TAG = f'{CONFIG_TAG}/text_summary'  # torch's SummaryWriter.add_text suffix


@dataclasses.dataclass(frozen=True)
class Config:
    lr: float = 0.05
    hidden: tuple[int, ...] = (4, 2)
    name: str = 'linear'
    note: str | None = None


# --- a real, short training ------------------------------------------------------


def regression(n: int, seed: int) -> data.TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=generator)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3
    return data.TensorDataset(x, y)


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((outputs - targets) ** 2).mean()


def trainer(name: str = 'net') -> Trainer[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A linear model trained with a learning rate halved after epoch 2."""
    torch.manual_seed(0)
    model = Model(nn.Linear(3, 1), name=name, device='cpu')
    schema = LearningSchema.adam(lr=0.05, scheduler=schedulers.StepScheduler([2], 0.5))
    trained = Trainer(
        model,
        loader=DataLoader(regression(32, seed=0), 8, seed=0),
        loss=Loss(mse, 'MSE'),
        learning_schema=schema,
    )
    trained.add_validation(DataLoader(regression(16, seed=1), 8))
    return trained


def a_test(model: Model[Any, Any]) -> Test[Any, Any, Any]:
    return Test(
        model, loader=DataLoader(regression(8, seed=2), 4), metric=Loss(mse, 'MSE')
    )


@pytest.fixture
def recorder(host: Any) -> testing.HookRecorder:
    recorder = testing.HookRecorder()
    host.register(recorder, 'recorder')
    return recorder


def experiment(*trackers: Any, config: Any = None) -> Experiment[Any]:
    exp = Experiment(
        config if config is not None else Config(), name='exp', par_dir='.'
    )
    exp.trackers.subscribe(*(trackers or (TensorBoard(),)))
    return exp


# --- reading event files back ----------------------------------------------------


def read(folder: pathlib.Path) -> EventAccumulator:
    assert folder.is_dir(), f'{folder} was not written'
    accumulator = EventAccumulator(
        str(folder), size_guidance={'scalars': 0, 'tensors': 0}
    )
    accumulator.Reload()
    return accumulator


def scalars(folder: pathlib.Path) -> dict[str, list[tuple[int, float]]]:
    accumulator = read(folder)
    return {
        tag: [(event.step, event.value) for event in accumulator.Scalars(tag)]
        for tag in accumulator.Tags()['scalars']
    }


def texts(folder: pathlib.Path) -> list[tuple[int, str]]:
    accumulator = read(folder)
    if TEXT_TAG not in accumulator.Tags()['tensors']:
        return []
    return [
        (event.step, tensor_util.make_ndarray(event.tensor_proto).item().decode())
        for event in accumulator.Tensors(TEXT_TAG)
    ]


def f32(value: float) -> float:
    """What TensorBoard stores of a float: a float32."""
    return float(np.float32(value))


def expected_scalars(
    recorder: testing.HookRecorder,
) -> dict[str, list[tuple[int, float]]]:
    """The scalars the recorded events call for."""
    expected: dict[str, list[tuple[int, float]]] = {}
    for event in recorder.events('on_metrics'):
        for name, value in event.metrics.items():
            tag = f'{event.model_name}/{event.source_name}-{name}'
            expected.setdefault(tag, []).append((event.epoch, f32(value)))
    for event in recorder.events('on_learning_rate'):
        for group, rate in enumerate(event.learning_rates):
            tag = f'{event.model_name}/lr-group{group}'
            expected.setdefault(tag, []).append((event.epoch, f32(rate)))
    return expected


def expected_step_scalars(
    recorder: testing.HookRecorder,
) -> dict[str, list[tuple[int, float]]]:
    """The scalars by step the recorded events call for; a later point replaces."""
    points: dict[str, dict[int, float]] = {}
    for event in recorder.events('on_step_metrics'):
        for name, value in event.metrics.items():
            tag = f'{event.model_name}/step/{event.source_name}-{name}'
            points.setdefault(tag, {})[event.step] = f32(value)
    return {tag: sorted(by_step.items()) for tag, by_step in points.items()}


def run_folder(
    tmp_path: pathlib.Path, run_id: str, par_dir: str = 'work'
) -> pathlib.Path:
    return tmp_path / par_dir / 'tensorboard' / 'exp' / run_id


# --- tests -----------------------------------------------------------------------


def test_scalars_are_the_metrics_of_training(
    tmp_path: pathlib.Path, recorder: testing.HookRecorder
) -> None:
    with experiment().create_run('r1'):
        trained = trainer()
        trained.train(3)
        a_test(trained.model)()
    found = scalars(run_folder(tmp_path, 'r1'))
    assert found == expected_scalars(recorder)
    assert sorted(found) == [
        'net/Test-MSE',
        'net/Trainer-MSE',
        'net/Validation-MSE',
        'net/lr-group0',
    ]
    assert [step for step, _ in found['net/Trainer-MSE']] == [1, 2, 3]
    assert [step for step, _ in found['net/Validation-MSE']] == [1, 2, 3]
    assert [step for step, _ in found['net/Test-MSE']] == [3]
    assert found['net/lr-group0'] == [(2, f32(0.025))]  # the schedule's milestone


def test_each_parameter_group_has_its_learning_rate(
    tmp_path: pathlib.Path, recorder: testing.HookRecorder
) -> None:
    with experiment().create_run('r1'):
        trained = trainer()
        trained.train(1)
        trained.update_learning_rate(factor=0.1)
    found = scalars(run_folder(tmp_path, 'r1'))
    assert found['net/lr-group0'] == [(1, f32(0.005))]
    assert found == expected_scalars(recorder)


def test_the_configuration_is_toml_text(tmp_path: pathlib.Path) -> None:
    config = Config(lr=0.01, hidden=(8, 4, 2), note=None)
    with experiment(config=config).create_run('r1') as run:
        table = run.view.config_table()
    [(step, text)] = texts(run_folder(tmp_path, 'r1'))
    assert step == 0
    assert text.startswith('```toml\n') and text.endswith('```')
    body = text.removeprefix('```toml\n').removesuffix('```')
    assert tomllib.loads(body) == table
    assert tomllib.loads(body) == {
        'lr': 0.01,
        'hidden': [8, 4, 2],
        'name': 'linear',
        'note': '<None>',
    }


def test_a_resumed_run_appends_to_its_folder(
    tmp_path: pathlib.Path, recorder: testing.HookRecorder
) -> None:
    exp = experiment()
    with exp.create_run('r1'):
        trained = trainer()
        trained.train(2)
    folder = run_folder(tmp_path, 'r1')
    first_files = sorted(folder.iterdir())
    with exp.create_run('r1', resume=True):
        trained.train(2)
    files = sorted(folder.iterdir())
    assert len(first_files) == 1
    assert len(files) == 2 and set(first_files) < set(files)
    found = scalars(folder)
    assert [step for step, _ in found['net/Trainer-MSE']] == [1, 2, 3, 4]
    assert [step for step, _ in found['net/Validation-MSE']] == [1, 2, 3, 4]
    assert found == expected_scalars(recorder)
    assert [step for step, _ in texts(folder)] == [0, 0]  # one per session


RELAUNCH = """
import sys

import torch
from torch import nn
from torch.utils import data

from drytorch import DataLoader, Experiment, LearningSchema, Loss, Model, Trainer
from drytorch_contrib_tensorboard import TensorBoard

resume = sys.argv[1] == 'resume'
exp = Experiment(None, name='exp', par_dir='.')
exp.trackers.subscribe(TensorBoard())
x = torch.randn(32, 3, generator=torch.Generator().manual_seed(0))
dataset = data.TensorDataset(x, x.sum(1, keepdim=True))
with exp.create_run('r1', resume=resume):
    torch.manual_seed(0)
    trainer = Trainer(
        Model(nn.Linear(3, 1), name='net', device='cpu'),
        loader=DataLoader(dataset, 8, seed=0),
        loss=Loss(lambda o, t: ((o - t) ** 2).mean(), 'MSE'),
        learning_schema=LearningSchema.adam(lr=0.05),
    )
    if resume:
        trainer.load_checkpoint()
    trainer.train(2)
    trainer.save_checkpoint()
"""


def test_a_relaunched_process_appends_to_the_run(tmp_path: pathlib.Path) -> None:
    for mode in ('start', 'resume'):  # two processes; the second resumes the run
        done = subprocess.run(
            [sys.executable, '-c', RELAUNCH, mode],
            cwd=tmp_path / 'work',
            env=dict(os.environ),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    folder = run_folder(tmp_path, 'r1')
    assert len(list(folder.glob('events.out.tfevents.*'))) == 2
    found = scalars(folder)
    assert [step for step, _ in found['net/Trainer-MSE']] == [1, 2, 3, 4]
    assert [step for step, _ in texts(folder)] == [0, 0]


def test_two_runs_have_two_folders(tmp_path: pathlib.Path) -> None:
    exp = experiment()
    for run_id in ('a', 'b'):
        with exp.create_run(run_id):
            trainer().train(1)
    for run_id in ('a', 'b'):
        assert [
            s for s, _ in scalars(run_folder(tmp_path, run_id))['net/Trainer-MSE']
        ] == [1]


def test_par_dir_overrides_the_experiment_folder(tmp_path: pathlib.Path) -> None:
    with experiment(TensorBoard(par_dir=tmp_path / 'boards')).create_run('r1'):
        trainer().train(1)
    assert 'net/Trainer-MSE' in scalars(run_folder(tmp_path, 'r1', par_dir='boards'))
    assert not (tmp_path / 'work' / 'tensorboard').exists()


def test_a_failed_run_keeps_what_was_written(tmp_path: pathlib.Path) -> None:
    tracker = TensorBoard()
    with (
        pytest.raises(RuntimeError, match='boom'),
        experiment(tracker).create_run('r1'),
    ):
        trainer().train(2)
        raise RuntimeError('boom')
    assert tracker._session is None  # closed at the run's stop
    found = scalars(run_folder(tmp_path, 'r1'))
    assert [step for step, _ in found['net/Trainer-MSE']] == [1, 2]


def test_the_writer_is_open_during_the_run_only(tmp_path: pathlib.Path) -> None:
    tracker = TensorBoard(flush_secs=1)
    with experiment(tracker).create_run('r1'):
        tracker.writer.add_scalar('custom/value', 1.5, global_step=7)
    assert tracker._session is None
    with pytest.raises(exceptions.TrackerError):
        tracker.writer  # noqa: B018
    assert scalars(run_folder(tmp_path, 'r1'))['custom/value'] == [(7, 1.5)]


def test_flush_secs_must_be_positive() -> None:
    with pytest.raises(ValueError, match='flush_secs'):
        TensorBoard(flush_secs=0)


def test_config_text_of_a_table() -> None:
    assert config_text({'value': '<None>'}) == '```toml\nvalue = "<None>"\n```'
    assert config_text({}) == '```toml\n```'
    assert config_text({'x': None}) == '```json\n{\n  "x": null\n}\n```'


def test_drytorch_show_lists_the_folder(tmp_path: pathlib.Path) -> None:
    with experiment().create_run('r1') as run:
        pass
    assert run.summary['outputs']['TensorBoard'] == str(run_folder(tmp_path, 'r1'))


def test_only_the_public_names_of_drytorch_are_imported() -> None:
    import ast

    import drytorch_contrib_tensorboard

    public = {'drytorch', 'drytorch.log_events', 'drytorch.exceptions'}
    package = pathlib.Path(drytorch_contrib_tensorboard.__file__).parent
    for path in package.glob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            for name in names:
                if name.split('.')[0] == 'drytorch':
                    assert name in public, f'{path.name} imports {name}'


def test_epochs_after_a_loaded_checkpoint_are_not_duplicated(
    tmp_path: pathlib.Path,
) -> None:
    exp = experiment()
    with exp.create_run('r1'):
        trained = trainer()
        trained.train(2)
        trained.save_checkpoint()
        trained.train(1)  # epoch 3: logged, then superseded by the resume
    with exp.create_run('r1', resume=True):
        trained.load_checkpoint()  # back at epoch 2
        trained.train(2)  # epochs 3 and 4 again
        kept = trained.computed_metrics['MSE']
    found = scalars(run_folder(tmp_path, 'r1'))
    steps = [step for step, _ in found['net/Trainer-MSE']]
    assert steps == [1, 2, 3, 4]  # epoch 3 once, from the second session
    assert found['net/Trainer-MSE'][-1][1] == pytest.approx(kept)


# --- curves by optimizer step ----------------------------------------------------


def step_event(step: int, value: float, source: str = 'Trainer') -> StepMetricsEvent:
    return StepMetricsEvent('net', source, 1 + (step - 1) // 4, step, {'MSE': value})


def test_step_metrics_are_scalars_by_step_in_their_own_folder(
    tmp_path: pathlib.Path,
) -> None:
    tracker = TensorBoard()
    with experiment(tracker).create_run('r1') as run:
        for step in (2, 4, 6):
            tracker.on_step_metrics(step_event(step, step / 10), run.view)
        tracker.on_step_metrics(step_event(4, 0.5, 'Validation'), run.view)
    folder = run_folder(tmp_path, 'r1')
    assert scalars(folder / STEPS_FOLDER) == {
        'net/step/Trainer-MSE': [(2, f32(0.2)), (4, f32(0.4)), (6, f32(0.6))],
        'net/step/Validation-MSE': [(4, 0.5)],
    }
    assert scalars(folder) == {}  # the epoch tags' folder has no step points
    assert step_tag('net', 'Trainer', 'MSE') == 'net/step/Trainer-MSE'


def test_a_loaded_checkpoint_purges_the_steps_after_it_only(
    tmp_path: pathlib.Path,
) -> None:
    tracker = TensorBoard()
    exp = experiment(tracker)
    with exp.create_run('r1') as run:
        for step in (2, 4, 6, 8):
            tracker.on_step_metrics(step_event(step, 1.0), run.view)
        for epoch in (1, 2):
            tracker.on_metrics(
                MetricsEvent('net', 'Trainer', epoch, {'MSE': 1.0}), run.view
            )
    with exp.create_run('r1', resume=True) as run:
        # back at epoch 1 (step 4): the epoch purge must keep steps 2 and 4
        tracker.on_checkpoint_load(CheckpointEvent('net', 1, 'load', 'ckpt'), run.view)
        for step in (6, 8):
            tracker.on_step_metrics(step_event(step, 2.0), run.view)
    folder = run_folder(tmp_path, 'r1')
    assert scalars(folder / STEPS_FOLDER)['net/step/Trainer-MSE'] == [
        (2, 1.0),
        (4, 1.0),
        (6, 2.0),
        (8, 2.0),
    ]
    assert scalars(folder)['net/Trainer-MSE'] == [(1, 1.0)]  # epoch 2 purged


def step_trainer() -> Trainer[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The trainer, validated every epoch and every 3 optimizer steps too."""
    trained = trainer()
    trained.add_validation(DataLoader(regression(16, seed=1), 8), every_steps=3)
    return trained


def test_training_writes_curves_by_step(
    tmp_path: pathlib.Path,
    recorder: testing.HookRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv('DRYTORCH_STEP_METRICS_EVERY', '2')
    with experiment().create_run('r1'):
        step_trainer().train(2)  # 4 steps an epoch
    folder = run_folder(tmp_path, 'r1')
    found = scalars(folder / STEPS_FOLDER)
    assert found == expected_step_scalars(recorder)
    assert [step for step, _ in found['net/step/Trainer-MSE']] == [2, 4, 6, 8]
    assert [step for step, _ in found['net/step/Validation-MSE']] == [3, 6]
    assert scalars(folder) == expected_scalars(recorder)  # by epoch, unchanged


def test_training_again_from_a_checkpoint_keeps_each_step_once(
    tmp_path: pathlib.Path,
    recorder: testing.HookRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv('DRYTORCH_STEP_METRICS_EVERY', '2')
    exp = experiment()
    with exp.create_run('r1'):
        trained = step_trainer()
        trained.train(2)  # steps 1 to 8
        trained.save_checkpoint()
        trained.train(1)  # steps 9 to 12: logged, then superseded by the resume
    with exp.create_run('r1', resume=True):
        trained.load_checkpoint()  # back at step 8
        trained.train(2)  # steps 9 to 16 again
    found = scalars(run_folder(tmp_path, 'r1') / STEPS_FOLDER)
    assert found == expected_step_scalars(recorder)  # the later point of each step
    assert [step for step, _ in found['net/step/Trainer-MSE']] == list(range(2, 17, 2))
    assert [step for step, _ in found['net/step/Validation-MSE']] == [3, 6, 9, 12, 15]


def test_the_steps_purge_waits_for_the_model_of_the_checkpoint(
    tmp_path: pathlib.Path,
) -> None:
    tracker = TensorBoard()
    exp = experiment(tracker)
    with exp.create_run('r1') as run:
        for step in (2, 4, 6):
            tracker.on_step_metrics(step_event(step, 1.0), run.view)
    with exp.create_run('r1', resume=True) as run:
        tracker.on_checkpoint_load(CheckpointEvent('net', 1, 'load', 'ckpt'), run.view)
        other = StepMetricsEvent('aux', 'Trainer', 1, 2, {'MSE': 3.0})
        tracker.on_step_metrics(other, run.view)  # another model: no purge yet
        tracker.on_step_metrics(step_event(6, 2.0), run.view)  # purges from 6
    found = scalars(run_folder(tmp_path, 'r1') / STEPS_FOLDER)
    assert found == {
        'net/step/Trainer-MSE': [(2, 1.0), (4, 1.0), (6, 2.0)],
        'aux/step/Trainer-MSE': [(2, 3.0)],
    }


def test_the_original_server_and_queue_options(tmp_path: pathlib.Path) -> None:
    import urllib.request

    quiet = TensorBoard()
    served = TensorBoard(start_server=True, max_queue_size=3)
    with experiment(served).create_run('r1'):
        trainer('net').train(1)
        assert served.writer.max_queue == 3
    assert quiet.server_url is None and quiet.max_queue_size == 10
    assert served.server_url is not None
    with urllib.request.urlopen(served.server_url, timeout=30) as response:
        assert response.status == 200  # a real server, on localhost
    deadline, runs = time.monotonic() + 60, ''
    while 'exp/r1' not in runs and time.monotonic() < deadline:
        time.sleep(0.5)  # the server rescans its folder every few seconds
        with urllib.request.urlopen(served.server_url + 'data/runs') as response:
            runs = response.read().decode()
    assert 'exp/r1' in runs  # it serves the runs under par_dir
    with pytest.raises(ValueError, match='max_queue_size'):
        TensorBoard(max_queue_size=0)
