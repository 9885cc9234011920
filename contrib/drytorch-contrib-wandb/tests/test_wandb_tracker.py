"""The tracker on real training, read back from the files W&B writes offline."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import shutil
import subprocess
import sys
from typing import Any

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
    hookimpl,
    testing,
)
from drytorch.log_events import MetricsEvent, StepMetricsEvent
from torch import nn
from torch.utils import data
from wandb_records import Session, sessions

from drytorch_contrib_wandb import Wandb
from drytorch_contrib_wandb.plugin import STATE_NAME

TIMEOUT = 120  # seconds, for each child process


@dataclasses.dataclass(frozen=True)
class Config:
    lr: float = 0.05
    hidden: tuple[int, ...] = (4, 2)
    optimizer: dict[str, Any] = dataclasses.field(
        default_factory=lambda: {'name': 'adam', 'betas': [0.9, 0.999]}
    )


# --- a real, short training ------------------------------------------------------


def regression(n: int, seed: int) -> data.TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=generator)
    return data.TensorDataset(x, x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3)


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((outputs - targets) ** 2).mean()


def trainer(name: str = 'net') -> Trainer[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A linear model, validated every epoch."""
    torch.manual_seed(0)
    trained = Trainer(
        Model(nn.Linear(3, 1), name=name, device='cpu'),
        loader=DataLoader(regression(32, seed=0), 8, seed=0),
        loss=Loss(mse, 'MSE'),
        learning_schema=LearningSchema.adam(lr=0.05),
    )
    trained.add_validation(DataLoader(regression(16, seed=1), 8))
    return trained


def a_test(model: Model[Any, Any]) -> Test[Any, Any, Any]:
    return Test(
        model, loader=DataLoader(regression(8, seed=2), 4), metric=Loss(mse, 'MSE')
    )


def experiment(*trackers: Any, config: Any = None) -> Experiment[Any]:
    exp = Experiment(
        Config() if config is None else config,
        name='exp',
        par_dir='.',
        tags=('wandb-test', 'tiny'),
    )
    exp.trackers.subscribe(*(trackers or (Wandb(),)))
    return exp


class RunWatcher:
    """A plugin keeping what the run view shows at the run's stop."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    @hookimpl(trylast=True)
    def on_run_stop(self, run: Any) -> None:
        self.seen.append(
            {
                'id': run.id,
                'seed': run.seed,
                'experiment_class': run.experiment_class,
                'resumed': run.resumed,
                'config': run.config_table(),
                'state': run.plugin_state(STATE_NAME),
                'outputs': dict(run.outputs),
            }
        )


@pytest.fixture
def recorder(host: Any) -> testing.HookRecorder:
    recorder = testing.HookRecorder()
    host.register(recorder, 'recorder')
    return recorder


@pytest.fixture
def watcher(host: Any) -> RunWatcher:
    watcher = RunWatcher()
    host.register(watcher, 'watcher')
    return watcher


def work(tmp_path: pathlib.Path) -> pathlib.Path:
    return tmp_path / 'work'


def only_session(root: pathlib.Path) -> Session:
    [session] = sessions(root)
    return session


def expected_rows(
    recorder: testing.HookRecorder, prefix: bool = True
) -> dict[str, list[tuple[int, float]]]:
    """The history the recorded metrics events call for, key by key."""
    expected: dict[str, list[tuple[int, float]]] = {}
    for event in recorder.events('on_metrics'):
        for name, value in event.metrics.items():
            key = f'{event.source_name}/{name}'
            if prefix:
                key = f'{event.model_name}/{key}'
            expected.setdefault(key, []).append((event.epoch, value))
    return expected


def metric_rows(session: Session) -> dict[str, list[tuple[int, float]]]:
    return {key: session.rows(key) for key in sorted(session.keys()) if key != 'epoch'}


def steps(*of: Session) -> list[int]:
    return [row['_step'] for session in of for row in session.history]


# --- one run ---------------------------------------------------------------------


def test_a_run_is_a_wandb_run(
    tmp_path: pathlib.Path, recorder: testing.HookRecorder, watcher: RunWatcher
) -> None:
    with experiment().create_run('r1', seed=7):
        trained = trainer()
        trained.train(3)
        a_test(trained.model)()
    session = only_session(work(tmp_path))
    [seen] = watcher.seen
    state = seen['state']

    assert session.run.run_id == state['id'] and len(state['id']) == 8
    assert session.run.project == state['project'] == 'exp'
    assert session.run.display_name == 'r1'
    assert list(session.run.tags) == ['wandb-test', 'tiny']
    assert not session.run.resume
    assert session.config == {
        'lr': 0.05,
        'hidden': [4, 2],
        'optimizer': {'name': 'adam', 'betas': [0.9, 0.999]},
        'drytorch': {
            'run_id': 'r1',
            'experiment': 'exp',
            'experiment_class': seen['experiment_class'],
            'seed': 7,
        },
    }
    assert seen['config'] == {
        k: v for k, v in session.config.items() if k != 'drytorch'
    }

    found = metric_rows(session)
    assert found == expected_rows(recorder)
    assert sorted(found) == ['net/Test/MSE', 'net/Trainer/MSE', 'net/Validation/MSE']
    assert [epoch for epoch, _ in found['net/Trainer/MSE']] == [1, 2, 3]
    assert [epoch for epoch, _ in found['net/Validation/MSE']] == [1, 2, 3]
    assert [epoch for epoch, _ in found['net/Test/MSE']] == [3]  # an epoch logged
    assert steps(session) == list(range(7))  # W&B's own step: one row per event
    assert state['next_step'] == 7

    assert session.metrics['epoch'].options.defined
    for source in ('Trainer', 'Validation', 'Test'):
        assert session.metrics[f'net/{source}/*'].step_metric == 'epoch'
    assert session.summary['net/Test/MSE'] == found['net/Test/MSE'][-1][1]
    assert session.exit_code == 0

    run_dir = pathlib.Path(state['run_dir'])
    assert run_dir == session.folder
    assert run_dir.parent == work(tmp_path) / 'wandb'  # W&B's folder in par_dir
    assert seen['outputs']['Wandb'] == str(run_dir)  # what `drytorch show` lists


def test_a_failed_run_exits_with_1(tmp_path: pathlib.Path) -> None:
    with pytest.raises(RuntimeError, match='boom'), experiment().create_run('r1'):
        trainer().train(2)
        raise RuntimeError('boom')
    session = only_session(work(tmp_path))
    assert session.exit_code == 1
    assert [e for e, _ in session.rows('net/Trainer/MSE')] == [1, 2]


def test_learning_rates_are_logged(tmp_path: pathlib.Path) -> None:
    with experiment().create_run('r1'):
        trained = trainer()
        trained.train(1)
        trained.update_learning_rate(factor=0.1)
    session = only_session(work(tmp_path))
    assert session.rows('net/lr/group0') == [(1, pytest.approx(0.005))]
    assert session.metrics['net/lr/*'].step_metric == 'epoch'


def test_two_models_have_their_own_keys(tmp_path: pathlib.Path) -> None:
    with experiment().create_run('r1'):
        trainer('a').train(2)
        trainer('b').train(1)
    found = metric_rows(only_session(work(tmp_path)))
    assert [e for e, _ in found['a/Trainer/MSE']] == [1, 2]
    assert [e for e, _ in found['b/Trainer/MSE']] == [1]


def test_keys_without_the_model(
    tmp_path: pathlib.Path, recorder: testing.HookRecorder
) -> None:
    with experiment(Wandb(model_prefix=False)).create_run('r1'):
        trainer().train(2)
    session = only_session(work(tmp_path))
    assert metric_rows(session) == expected_rows(recorder, prefix=False)
    assert sorted(session.keys()) == ['Trainer/MSE', 'Validation/MSE', 'epoch']
    assert session.metrics['Trainer/*'].step_metric == 'epoch'


def test_two_runs_are_two_wandb_runs(
    tmp_path: pathlib.Path, watcher: RunWatcher
) -> None:
    exp = experiment()
    for run_id in ('a', 'b'):
        with exp.create_run(run_id):
            trainer().train(1)
    ids = [seen['state']['id'] for seen in watcher.seen]
    assert len(set(ids)) == 2
    found = sessions(work(tmp_path))
    assert sorted(s.run.run_id for s in found) == sorted(ids)
    assert sorted(s.run.display_name for s in found) == ['a', 'b']


# --- options ---------------------------------------------------------------------


def test_project_dir_and_init_kwargs(
    tmp_path: pathlib.Path, watcher: RunWatcher
) -> None:
    tracker = Wandb(
        project='my-project',
        dir=tmp_path / 'elsewhere',
        mode='offline',
        init_kwargs={'group': 'sweep-1', 'job_type': 'train', 'name': 'nice'},
    )
    with experiment(tracker).create_run('r1'):
        trainer().train(1)
    session = only_session(tmp_path / 'elsewhere')
    assert not (work(tmp_path) / 'wandb').exists()
    assert session.run.project == 'my-project'
    assert session.run.run_group == 'sweep-1'
    assert session.run.job_type == 'train'
    assert session.run.display_name == 'nice'
    assert watcher.seen[0]['state']['dir'] == str(tmp_path / 'elsewhere')


def test_init_kwargs_cannot_set_what_the_tracker_sets() -> None:
    with pytest.raises(ValueError, match='id, resume'):
        Wandb(init_kwargs={'resume': 'must', 'id': 'x', 'group': 'g'})


def test_log_checkpoints_is_checked() -> None:
    with pytest.raises(ValueError, match='log_checkpoints'):
        Wandb(log_checkpoints='weights')  # type: ignore[arg-type]


def test_values_of_your_own(tmp_path: pathlib.Path) -> None:
    tracker = Wandb()
    with pytest.raises(RuntimeError, match='no active run'):
        tracker.log({'x': 1})
    with experiment(tracker).create_run('r1'):
        trainer().train(1)
        assert tracker.wandb_run is not None
        tracker.log({'custom/value': 1.5})
        trainer('other').train(1)
    assert tracker.wandb_run is None
    session = only_session(work(tmp_path))
    assert [row.get('custom/value') for row in session.history].count(1.5) == 1
    assert steps(session) == list(range(len(session.history)))


@dataclasses.dataclass(frozen=True)
class Mine:
    drytorch: str = 'mine'
    lr: float = 0.1


def test_a_config_key_named_drytorch_is_kept(tmp_path: pathlib.Path) -> None:
    config = Mine()
    with (
        pytest.warns(UserWarning, match="'drytorch' key"),
        experiment(config=config).create_run('r1'),
    ):
        pass
    assert only_session(work(tmp_path)).config == {'drytorch': 'mine', 'lr': 0.1}


def test_without_wandb_the_factory_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, 'wandb', None)  # as if not installed
    with pytest.raises(ImportError, match='pip install wandb'):
        Wandb()


# --- checkpoints -----------------------------------------------------------------


def sha256(location: str) -> str:
    return hashlib.sha256(pathlib.Path(location).read_bytes()).hexdigest()


def test_checkpoints_are_recorded_with_their_digest(
    tmp_path: pathlib.Path, recorder: testing.HookRecorder, watcher: RunWatcher
) -> None:
    with experiment().create_run('r1'):
        trained = trainer()
        trained.train(1)
        first = trained.save_checkpoint()
        trained.train(1)
        second = trained.save_checkpoint()
    saves = recorder.events('on_checkpoint_save')
    assert [event.location for event in saves] == [first, second]
    expected = [
        {
            'model': 'net',
            'epoch': event.epoch,
            'batch': 0,
            'location': event.location,
            'sha256': sha256(event.location),
        }
        for event in saves
    ]
    assert [event.digest for event in saves] == [e['sha256'] for e in expected]
    session = only_session(work(tmp_path))
    assert session.summary['checkpoints'] == expected
    assert watcher.seen[0]['state']['checkpoints'] == expected
    assert session.artifacts == []  # nothing uploaded by default


def test_deleted_checkpoints_leave_the_list(
    tmp_path: pathlib.Path, recorder: testing.HookRecorder
) -> None:
    with experiment().create_run('r1'):
        trained = trainer()
        trained.checkpoint_every(epochs=1, keep_last=2)
        trained.train(4)
    deleted = [event.epoch for event in recorder.events('on_checkpoint_delete')]
    saved = [event.location for event in recorder.events('on_checkpoint_save')]
    assert len(saved) == 4 and sorted(deleted) == [1, 2]
    kept = only_session(work(tmp_path)).summary['checkpoints']
    assert [c['location'] for c in kept] == saved[2:]
    assert [c['epoch'] for c in kept] == [3, 4]


@pytest.mark.parametrize('mode', [True, 'file'])
def test_checkpoints_as_artifacts(tmp_path: pathlib.Path, mode: Any) -> None:
    with experiment(Wandb(log_checkpoints=mode)).create_run('r1'):
        trained = trainer()
        trained.train(1)
        location = trained.save_checkpoint()
    session = only_session(work(tmp_path))
    [artifact] = session.artifacts
    assert artifact.type == 'model'
    assert artifact.name == f'checkpoints-{session.run.run_id}-net'
    metadata = json.loads(artifact.metadata)
    assert metadata['sha256'] == sha256(location)
    assert metadata['epoch'] == 1
    assert set(artifact.aliases) == {'epoch-1', 'latest'}
    [entry] = artifact.manifest.contents
    assert entry.path == pathlib.Path(location).name
    if mode is True:  # a reference: the file stays where it is
        assert entry.ref == pathlib.Path(location).resolve().as_uri()
    else:
        assert not entry.ref and entry.local_path


# --- resume ----------------------------------------------------------------------


def test_a_resumed_run_continues_its_wandb_run(
    tmp_path: pathlib.Path, recorder: testing.HookRecorder, watcher: RunWatcher
) -> None:
    exp = experiment()
    with exp.create_run('r1'):
        trained = trainer()
        trained.train(2)
        trained.save_checkpoint()
    with exp.create_run('r1', resume=True):
        trained.train(2)
    first, second = sessions(work(tmp_path))
    assert first.run.run_id == second.run.run_id == watcher.seen[0]['state']['id']
    assert not first.run.resume and second.run.resume
    assert [e for e, _ in first.rows('net/Trainer/MSE')] == [1, 2]
    assert [e for e, _ in second.rows('net/Trainer/MSE')] == [3, 4]
    assert [e for e, _ in second.rows('net/Validation/MSE')] == [3, 4]
    assert steps(first, second) == list(range(8))  # W&B's step keeps growing
    assert second.summary['checkpoints'] == first.summary['checkpoints']
    assert first.exit_code == second.exit_code == 0
    assert watcher.seen[1]['resumed']
    assert watcher.seen[1]['outputs']['Wandb'] == str(second.folder)


def test_a_tracker_subscribed_during_a_run_starts_its_wandb_run(
    tmp_path: pathlib.Path,
) -> None:
    exp = Experiment(Config(), name='exp', par_dir='.')
    with exp.create_run('r1'):
        trained = trainer()
        trained.train(1)
        exp.trackers.subscribe(Wandb())
        trained.train(1)
    session = only_session(work(tmp_path))
    assert session.run.display_name == 'r1'
    assert [e for e, _ in session.rows('net/Trainer/MSE')] == [2]
    assert session.exit_code == 0


def test_a_run_resumed_with_the_tracker_added_starts_a_wandb_run(
    tmp_path: pathlib.Path,
) -> None:
    exp = Experiment(Config(), name='exp', par_dir='.')
    with exp.create_run('r1'):
        trainer().train(1)
    exp.trackers.subscribe(Wandb())
    with exp.create_run('r1', resume=True):
        pass
    session = only_session(work(tmp_path))
    assert not session.run.resume


CHILD = """
import sys

import torch
from torch import nn
from torch.utils import data

from drytorch import DataLoader, Experiment, LearningSchema, Loss, Model, Trainer

resume = sys.argv[1] == 'resume'
exp = Experiment(None, name='exp', par_dir='.')  # Wandb: by the settings
assert exp.trackers.names == ['Wandb'], exp.trackers.names
x = torch.randn(32, 3, generator=torch.Generator().manual_seed(0))
dataset = data.TensorDataset(x, x.sum(1, keepdim=True))
with exp.create_run('r1', resume=resume, seed=3):
    torch.manual_seed(0)
    trainer = Trainer(
        Model(nn.Linear(3, 1), name='net', device='cpu'),
        loader=DataLoader(dataset, 8, seed=0),
        loss=Loss(lambda o, t: ((o - t) ** 2).mean(), 'MSE'),
        learning_schema=LearningSchema.adam(lr=0.05),
    )
    trainer.add_validation(DataLoader(dataset, 16))
    if resume:
        trainer.load_checkpoint()
    trainer.train(2)
    trainer.save_checkpoint()
"""


def child(
    args: list[str], cwd: pathlib.Path, home: pathlib.Path
) -> subprocess.CompletedProcess[str]:
    """Run a child process with the Wandb tracker named in the settings."""
    home.mkdir(exist_ok=True)  # an empty home: W&B must write nothing there
    env = dict(os.environ, DRYTORCH_TRACKERS='Wandb', HOME=str(home))
    done = subprocess.run(
        args,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done


def test_a_relaunched_process_continues_the_wandb_run(tmp_path: pathlib.Path) -> None:
    home = tmp_path / 'home'
    for mode in ('start', 'resume'):  # two processes; the second resumes the run
        child([sys.executable, '-c', CHILD, mode], work(tmp_path), home)
    first, second = sessions(work(tmp_path))
    assert first.run.run_id == second.run.run_id
    assert not first.run.resume and second.run.resume
    assert first.run.display_name == second.run.display_name == 'r1'
    assert first.config == second.config
    identity = first.config['drytorch']
    assert identity['experiment_class'].endswith('Experiment')
    assert {k: v for k, v in identity.items() if k != 'experiment_class'} == {
        'run_id': 'r1',
        'experiment': 'exp',
        'seed': 3,
    }
    assert [e for e, _ in first.rows('net/Trainer/MSE')] == [1, 2]
    assert [e for e, _ in second.rows('net/Trainer/MSE')] == [3, 4]
    assert [e for e, _ in second.rows('net/Validation/MSE')] == [3, 4]
    assert steps(first, second) == list(range(8))
    assert [c['epoch'] for c in second.summary['checkpoints']] == [2, 4]
    for checkpoint in second.summary['checkpoints']:
        assert checkpoint['sha256'] == sha256(checkpoint['location'])
    assert first.exit_code == second.exit_code == 0

    script = shutil.which('drytorch', path=str(pathlib.Path(sys.executable).parent))
    assert script is not None, 'the drytorch console script is not installed'
    shown = json.loads(
        child([script, 'show', 'r1', '--json'], work(tmp_path), home).stdout
    )
    assert shown['summary']['outputs']['Wandb'] == str(second.folder)
    assert shown['plugins']['wandb']['id'] == second.run.run_id
    assert list(home.iterdir()) == []


def test_the_setting_enables_it_by_name(tmp_path: pathlib.Path) -> None:
    with testing.isolated(tmp_path / 'named', init_mode='none', trackers='Wandb'):
        exp = Experiment(Config(), name='exp', par_dir='.')
        assert exp.trackers.names == ['Wandb']
        assert isinstance(exp.trackers.get('Wandb'), Wandb)
        with exp.create_run('r1'):
            trainer().train(1)
        session = only_session(tmp_path / 'named' / 'work')
    assert [e for e, _ in session.rows('net/Trainer/MSE')] == [1]


def test_by_name_without_wandb_it_is_skipped_with_a_warning(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, 'wandb', None)
    with (
        testing.isolated(tmp_path / 'named', init_mode='none', trackers='Wandb'),
        pytest.warns(exceptions.DryTorchWarning, match='pip install wandb'),
    ):
        assert Experiment(Config(), name='exp', par_dir='.').trackers.names == []


# --- curves by optimizer step ----------------------------------------------------


def step_event(step: int, value: float, source: str = 'Trainer') -> StepMetricsEvent:
    return StepMetricsEvent('net', source, 1, step, {'MSE': value})


@pytest.mark.parametrize('model_prefix', [True, False])
def test_step_metrics_are_charted_against_the_global_step(
    tmp_path: pathlib.Path, model_prefix: bool
) -> None:
    tracker = Wandb(model_prefix=model_prefix)
    with experiment(tracker).create_run('r1'):
        for step in (2, 4):
            tracker.on_step_metrics(step_event(step, step / 10))
        tracker.on_step_metrics(step_event(4, 0.5, 'Validation'))
        tracker.on_metrics(MetricsEvent('net', 'Trainer', 1, {'MSE': 0.3}))
    session = only_session(work(tmp_path))
    prefix = 'net/step' if model_prefix else 'step'
    assert session.step_rows(f'{prefix}/Trainer/MSE') == [(2, 0.2), (4, 0.4)]
    assert session.step_rows(f'{prefix}/Validation/MSE') == [(4, 0.5)]
    trained = 'net/Trainer/MSE' if model_prefix else 'Trainer/MSE'
    assert session.rows(trained) == [(1, 0.3)]  # by epoch, in rows of its own
    assert not any('epoch' in row for row in session.history[:3])
    assert session.metrics['global_step'].options.defined
    for source in ('Trainer', 'Validation'):
        assert session.metrics[f'{prefix}/{source}/*'].step_metric == 'global_step'
    assert session.metrics[trained.replace('MSE', '*')].step_metric == 'epoch'
    assert steps(session) == list(range(4))  # W&B's own step still counts rows


def test_step_rows_reserve_their_numbers_ahead(
    tmp_path: pathlib.Path, watcher: RunWatcher
) -> None:
    tracker = Wandb()
    exp = experiment(tracker)
    with exp.create_run('r1'):
        for step in (2, 4, 6):
            tracker.on_step_metrics(step_event(step, 1.0))
        tracker.on_metrics(MetricsEvent('net', 'Trainer', 1, {'MSE': 1.0}))
    # one write of the record for the three step rows, numbering 100 ahead
    assert watcher.seen[0]['state']['next_step'] == 100
    with exp.create_run('r1', resume=True):
        tracker.on_step_metrics(step_event(8, 2.0))
    first, second = sessions(work(tmp_path))
    assert steps(first) == [0, 1, 2, 3]
    assert steps(second) == [100]  # after every row of the first, with a gap
    assert watcher.seen[1]['state']['next_step'] == 200


def test_training_logs_curves_by_step(
    tmp_path: pathlib.Path,
    recorder: testing.HookRecorder,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv('DRYTORCH_STEP_METRICS_EVERY', '2')
    with experiment().create_run('r1'):
        trained = trainer()
        trained.add_validation(DataLoader(regression(16, seed=1), 8), every_steps=3)
        trained.train(2)  # 4 steps an epoch
    session = only_session(work(tmp_path))
    for source, expected_steps in (('Trainer', [2, 4, 6, 8]), ('Validation', [3, 6])):
        expected = [
            (event.step, event.metrics['MSE'])
            for event in recorder.events('on_step_metrics')
            if event.source_name == source
        ]
        assert [step for step, _ in expected] == expected_steps
        assert session.step_rows(f'net/step/{source}/MSE') == expected
    by_epoch = {
        key: session.rows(key) for key in ('net/Trainer/MSE', 'net/Validation/MSE')
    }
    assert by_epoch == expected_rows(recorder)  # by epoch, unchanged
    assert [epoch for epoch, _ in by_epoch['net/Trainer/MSE']] == [1, 2]
    assert steps(session) == list(range(len(session.history)))
