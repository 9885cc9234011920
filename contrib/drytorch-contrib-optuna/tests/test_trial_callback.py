"""TrialCallback on real Optuna studies (in-memory) with a tiny model."""

from __future__ import annotations

import pathlib
import subprocess
import sys
from typing import Any

import optuna
import pytest
import torch
from drytorch import (
    DataLoader,
    Experiment,
    LearningSchema,
    Loss,
    Metric,
    Model,
    Trainer,
)
from torch.utils import data

from drytorch_contrib_optuna import (
    PRUNED_TAG,
    OptunaError,
    TrialCallback,
    get_final_value,
)

optuna.logging.set_verbosity(optuna.logging.WARNING)


def mse_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((outputs - targets) ** 2).mean()


def trainer(lr: float = 0.05, validate: bool = True) -> Trainer[Any, Any, Any]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(32, 3, generator=generator)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5]])
    torch.manual_seed(0)
    model = Model(torch.nn.Linear(3, 1), device='cpu')
    loss = Loss(mse_fn, 'MSE') | Metric(lambda o, t: (o - t).abs().mean(), 'MAE')
    built = Trainer(
        model,
        loader=DataLoader(data.TensorDataset(x, y), 8, seed=0),
        loss=loss,
        learning_schema=LearningSchema.sgd(lr=lr),
    )
    if validate:
        built.add_validation(DataLoader(data.TensorDataset(x[:16], y[:16]), 8))
    return built


class PruneAt(optuna.pruners.BasePruner):
    """Prunes every trial once it reported ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def prune(self, study: Any, trial: Any) -> bool:
        return trial.last_step is not None and trial.last_step >= self.step


def test_reports_each_epoch_and_the_final_value(tmp_path: pathlib.Path) -> None:
    """The original's TrialCallback(trial): trial.report(value, epoch) each epoch."""
    study = optuna.create_study(direction='minimize')
    seen: list[dict[str, float]] = []

    def objective(trial: optuna.Trial) -> float:
        exp = Experiment(None, name='tune', par_dir=tmp_path)
        with exp.create_run(run_id=f't{trial.number}') as run:
            built = trainer()
            built.post_epoch_hooks.register(TrialCallback(trial, run=run))
            built.post_epoch_hooks.register(
                lambda t: seen.append(dict(t.validation.computed_metrics))
            )
            built.train(3)
        return get_final_value(trial)

    study.optimize(objective, n_trials=1)
    [frozen] = study.trials
    assert frozen.state == optuna.trial.TrialState.COMPLETE
    assert frozen.intermediate_values == {
        epoch: metrics['MSE'] for epoch, metrics in enumerate(seen, start=1)
    }
    assert frozen.value == seen[-1]['MSE']
    assert get_final_value(frozen, min) == min(m['MSE'] for m in seen)
    assert frozen.user_attrs['drytorch_run'] == 'tune/t0'
    [record] = Experiment(None, name='tune', par_dir=tmp_path).list_runs()
    assert record.status == 'completed'
    assert PRUNED_TAG not in record.tags
    assert record.data['plugins']['optuna'] == {
        'format': 1, 'trial': 0, 'study': study.study_name,
    }  # fmt: skip


def test_a_pruned_trial_leaves_a_completed_run_tagged_pruned(
    tmp_path: pathlib.Path,
) -> None:
    study = optuna.create_study(direction='minimize', pruner=PruneAt(2))
    epochs: list[int] = []

    def objective(trial: optuna.Trial) -> float:
        exp = Experiment(None, name='tune', par_dir=tmp_path)
        with exp.create_run(run_id='pruned') as run:
            built = trainer()
            built.post_epoch_hooks.register(TrialCallback(trial, metric='MAE', run=run))
            try:
                built.train(5)
            finally:
                epochs.append(built.model.epoch)
        raise AssertionError('TrialPruned must leave the run block')

    study.optimize(objective, n_trials=1)
    [frozen] = study.trials
    assert frozen.state == optuna.trial.TrialState.PRUNED
    assert epochs == [2]
    assert sorted(frozen.intermediate_values) == [1, 2]
    [record] = Experiment(None, name='tune', par_dir=tmp_path).list_runs()
    assert record.status == 'completed'
    assert PRUNED_TAG in record.tags
    state = record.data['plugins']['optuna']
    assert state['pruned_at'] == 2
    assert state['value'] == frozen.intermediate_values[2]
    [session] = record.data['sessions']
    assert session['stop_reason'].startswith('Optuna pruned trial 0 at epoch 2 (MAE')
    assert 'error' not in record.data
    assert Experiment(None, name='tune', par_dir=tmp_path).list_runs(
        tags=[PRUNED_TAG]
    ).ids == ['pruned']


def test_without_the_run_the_trial_is_still_pruned(tmp_path: pathlib.Path) -> None:
    study = optuna.create_study(direction='minimize', pruner=PruneAt(1))

    def objective(trial: optuna.Trial) -> float:
        with Experiment(None, name='tune', par_dir=tmp_path).create_run(run_id='r'):
            built = trainer()
            built.post_epoch_hooks.register(TrialCallback(trial))
            built.train(3)
        return get_final_value(trial)

    study.optimize(objective, n_trials=1)
    assert study.trials[0].state == optuna.trial.TrialState.PRUNED
    [record] = Experiment(None, name='tune', par_dir=tmp_path).list_runs()
    if hasattr(Experiment, 'get_current') and hasattr(Experiment, 'run'):  # found
        assert record.status == 'completed'
        assert PRUNED_TAG in record.tags
    else:
        assert record.status == 'failed'
        assert record.data['error'].startswith('TrialPruned: Optuna pruned trial 0')


def test_a_median_pruner_prunes_the_worse_trials(tmp_path: pathlib.Path) -> None:
    study = optuna.create_study(
        direction='minimize',
        pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0),
    )
    for lr in (0.05, 0.04, 1e-5):  # the last one barely learns
        study.enqueue_trial({'lr': lr})

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_float('lr', 1e-6, 1.0, log=True)
        exp = Experiment(None, name='median', par_dir=tmp_path)
        with exp.create_run(run_id=f'trial-{trial.number}') as run:
            built = trainer(lr)
            built.post_epoch_hooks.register(TrialCallback(trial, run=run))
            built.train(3)
        return get_final_value(trial)

    study.optimize(objective, n_trials=3)
    states = [t.state for t in study.trials]
    assert states[:2] == [optuna.trial.TrialState.COMPLETE] * 2
    assert states[2] == optuna.trial.TrialState.PRUNED
    assert study.trials[2].intermediate_values.keys() == {1}
    records = Experiment(None, name='median', par_dir=tmp_path).list_runs()
    assert [r.status for r in records] == ['completed'] * 3
    assert [PRUNED_TAG in r.tags for r in records] == [False, False, True]


def test_monitor_the_trainer_and_metric_objects(tmp_path: pathlib.Path) -> None:
    """metric= may be a Metric object and monitor= the trainer, as in the original."""
    study = optuna.create_study()
    trial = study.ask()
    with Experiment(None, name='tune', par_dir=tmp_path).create_run():
        built = trainer(validate=True)
        mae = Metric(lambda o, t: (o - t).abs().mean(), 'MAE')
        callback = TrialCallback(trial, metric=mae, monitor=built)
        built.post_epoch_hooks.register(callback)
        built.train(2)
    assert callback.metric == 'MAE'
    assert sorted(callback.reported) == [1, 2]
    assert get_final_value(trial) == callback.reported[2]
    assert callback.state_dict() == {'history': callback.history}


def test_bad_input_is_refused(tmp_path: pathlib.Path) -> None:
    study = optuna.create_study(direction='maximize')
    trial = study.ask()
    with pytest.raises(OptunaError, match='best_is'):
        TrialCallback(trial, best_is='max')  # type: ignore[arg-type]
    with pytest.raises(OptunaError, match='optuna Trial'):
        TrialCallback(object())
    with pytest.raises(OptunaError, match='no reported values'):
        get_final_value(trial)
    with Experiment(None, name='tune', par_dir=tmp_path).create_run():
        built = trainer()
        built.post_epoch_hooks.register(TrialCallback(trial, metric='Accuracy'))
        with pytest.raises(OptunaError, match="no metric 'Accuracy'"):
            built.train(1)
        assert built.model.epoch == 0  # refused before an epoch is spent
    with Experiment(None, name='tune2', par_dir=tmp_path).create_run():
        built = trainer()
        built.post_epoch_hooks.register(TrialCallback(trial))
        with pytest.raises(OptunaError, match="direction='minimize'"):
            built.train(1)


def test_importing_the_package_imports_no_optuna() -> None:
    code = (
        'import sys, drytorch_contrib_optuna as p, drytorch.contrib.optuna\n'
        'assert p.__version__\n'
        'heavy = [m for m in sys.modules if m.split(".")[0] in ("optuna", "torch")]\n'
        'assert not heavy, heavy\n'
    )
    done = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
