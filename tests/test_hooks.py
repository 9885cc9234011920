"""Epoch hooks: early stopping, plateaus, call_every, saving, and their state."""

from __future__ import annotations

import io
import pathlib
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch

from drytorch import DataLoader, LearningSchema, Metric, Trainer
from drytorch.core import exceptions
from drytorch.lib import hooks
from tests import training_kit as kit
from tests.training_kit import Recorder

AnyTrainer = Trainer[Any, Any, Any]


pytestmark = pytest.mark.usefixtures('run')


def scripted(
    trainer: AnyTrainer, values: Sequence[float], name: str = 'score', **kwargs: Any
) -> Metric[Any, Any]:
    """A metric worth ``values[epoch - 1]`` at each epoch of the trainer's model."""
    model = trainer.model

    def value(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.tensor(float(values[model.epoch - 1]), dtype=torch.float64)

    return Metric(value, name, **kwargs)


def validate_with(
    trainer: AnyTrainer, metric: Metric[Any, Any], interval: int = 1
) -> None:
    # one batch, so that the epoch value is the scripted one exactly
    loader = DataLoader(kit.regression(8, seed=1), 8)
    trainer.add_validation(loader, interval=interval, metric=metric)


def epochs_of(log: list[int]) -> Callable[[AnyTrainer], None]:
    return lambda t: log.append(t.model.epoch)


# --- early stopping --------------------------------------------------------------


def test_early_stopping_watches_the_validation(rec: Recorder) -> None:
    trainer = kit.trainer()  # the training loss keeps falling
    validate_with(trainer, scripted(trainer, [5, 4, 3, 3.5, 3.2, 3.0, 2, 1]))
    trainer.post_epoch_hooks.register(hooks.EarlyStoppingCallback(patience=2))
    trainer.train(8)
    assert trainer.model.epoch == 5  # best at 3, then 4 and 5 without improvement
    (termination,) = rec.events('on_termination')
    assert termination.epoch == 5
    assert 'did not improve for 2 epochs' in termination.reason
    assert 'best 3' in termination.reason


def test_early_stopping_watches_the_trainer_without_validation() -> None:
    trainer = kit.trainer(schema=LearningSchema.sgd(lr=0.0))  # a flat loss
    trainer.post_epoch_hooks.register(hooks.EarlyStoppingCallback(patience=3))
    trainer.train(10)
    assert trainer.model.epoch == 4
    learning = kit.trainer(kit.linear(name='learning'))
    learning.post_epoch_hooks.register(hooks.EarlyStoppingCallback(patience=1))
    learning.train(6)
    assert learning.model.epoch == 6 and learning.terminated is False


def test_early_stopping_by_metric_name(rec: Recorder) -> None:
    trainer = kit.trainer()
    accuracy = scripted(
        trainer, [0.5, 0.6, 0.7, 0.7, 0.7, 0.9], 'acc', higher_is_better=True
    )
    validate_with(trainer, kit.mse() | accuracy)
    trainer.post_epoch_hooks.register(
        hooks.EarlyStoppingCallback(metric='acc', patience=2)
    )
    trainer.train(6)
    assert trainer.model.epoch == 5
    assert 'acc did not improve' in rec.events('on_termination')[0].reason
    wrong = hooks.EarlyStoppingCallback(metric='accuracy')
    with pytest.raises(
        exceptions.TrainingError, match=r"no metric 'accuracy'.*MSE, acc"
    ):
        wrong(trainer)


@pytest.mark.parametrize(
    ('best_is', 'direction', 'stops_at'),
    [
        ('higher', None, None),
        ('lower', True, 3),
        ('auto', True, None),
        ('auto', None, 3),
        ('auto', False, 3),
    ],
)
def test_best_is(best_is: Any, direction: bool | None, stops_at: int | None) -> None:
    trainer = kit.trainer()
    rising = scripted(trainer, [1, 2, 3, 4, 5, 6], higher_is_better=direction)
    validate_with(trainer, rising)
    trainer.post_epoch_hooks.register(
        hooks.EarlyStoppingCallback(patience=2, best_is=best_is)
    )
    trainer.train(6)
    assert trainer.model.epoch == (stops_at or 6)
    with pytest.raises(ValueError, match='best_is'):
        hooks.EarlyStoppingCallback(best_is='max')  # type: ignore[arg-type]


def test_early_stopping_waits_for_start_from_epoch() -> None:
    trainer = kit.trainer(schema=LearningSchema.sgd(lr=0.0))
    trainer.post_epoch_hooks.register(
        hooks.EarlyStoppingCallback(patience=0, start_from_epoch=4)
    )
    trainer.train(10)
    assert trainer.model.epoch == 4


def test_early_stopping_counts_only_validated_epochs(rec: Recorder) -> None:
    trainer = kit.trainer()
    validate_with(trainer, scripted(trainer, [9, 3, 9, 3, 9, 3, 9, 3]), interval=2)
    trainer.post_epoch_hooks.register(hooks.EarlyStoppingCallback(patience=2))
    trainer.train(8)  # validations at 2 (best), 4 and 6: stops at 6
    assert trainer.model.epoch == 6
    assert [e.epoch for e in rec.metrics('Validation')] == [2, 4, 6]


def test_filter_fn_smooths_the_history() -> None:
    trainer = kit.trainer()
    validate_with(trainer, scripted(trainer, [5, 4, 4.5, 3.9, 4.2, 4.2, 4.2]))

    def mean_of_two(history: list[float]) -> float:
        return sum(history[-2:]) / len(history[-2:])

    callback = hooks.EarlyStoppingCallback(patience=1, filter_fn=mean_of_two)
    trainer.post_epoch_hooks.register(callback)
    trainer.train(7)
    # smoothed: 5, 4.5, 4.25, 4.2, 4.05, 4.2 -> no improvement first at 6
    assert trainer.model.epoch == 6
    assert callback.monitor.history == [5, 4, 4.5, 3.9, 4.2, 4.2]
    assert callback.monitor.best == pytest.approx(4.05)


# --- plateaus --------------------------------------------------------------------


def _plateau_trainer(
    reduce: hooks.ReduceLROnPlateau,
) -> tuple[AnyTrainer, list[float], list[float]]:
    trainer = kit.trainer(schema=LearningSchema.sgd(lr=0.1))
    validate_with(trainer, Metric(lambda o, t: torch.zeros(()), 'flat'))
    factors: list[float] = []
    rates: list[float] = []
    trainer.post_epoch_hooks.register(reduce)
    trainer.post_epoch_hooks.register(lambda t: factors.append(t.lr_factor))
    trainer.post_epoch_hooks.register(
        lambda t: rates.append(t.optimizer.param_groups[0]['lr'])
    )
    return trainer, factors, rates


def test_plateaus_compound(rec: Recorder) -> None:
    trainer, factors, rates = _plateau_trainer(
        hooks.ReduceLROnPlateau(factor=0.5, patience=0)
    )
    trainer.train(3)
    assert factors == [1.0, 0.5, 0.25]
    assert rates == pytest.approx([0.1, 0.05, 0.025])  # applied at once
    plateaus = [e for e in rec.events('on_learning_rate') if e.reason == 'plateau']
    assert [(e.epoch, e.learning_rates) for e in plateaus] == [
        (2, pytest.approx((0.05,))),
        (3, pytest.approx((0.025,))),
    ]
    trainer.train(1)  # the next epoch's schedule keeps the factor
    assert trainer.optimizer.param_groups[0]['lr'] == pytest.approx(0.0125)


@pytest.mark.parametrize(
    ('patience', 'cooldown', 'expected'),
    [
        (0, 1, [1, 0.5, 0.5, 0.25, 0.25, 0.125]),
        (1, 0, [1, 1, 0.5, 0.5, 0.25, 0.25]),
        (0, 2, [1, 0.5, 0.5, 0.5, 0.25, 0.25]),
    ],
)
def test_plateau_patience_and_cooldown(
    patience: int, cooldown: int, expected: list[float]
) -> None:
    reduce = hooks.ReduceLROnPlateau(factor=0.5, patience=patience, cooldown=cooldown)
    trainer, factors, _ = _plateau_trainer(reduce)
    trainer.train(6)
    assert factors == expected
    with pytest.raises(ValueError, match='factor'):
        hooks.ReduceLROnPlateau(factor=1.5)


# --- call_every and saving_hook --------------------------------------------------


def test_call_every_runs_at_the_right_epochs() -> None:
    trainer = kit.trainer(n=16)
    logs: dict[str, list[int]] = {'2': [], '3 from 2': [], '1 from 4': [], 'pre 2': []}
    trainer.post_epoch_hooks.register(hooks.call_every(2, epochs_of(logs['2'])))
    trainer.post_epoch_hooks.register(
        hooks.call_every(3, epochs_of(logs['3 from 2']), start=2)
    )
    trainer.post_epoch_hooks.register(
        hooks.call_every(1, epochs_of(logs['1 from 4']), start=4)
    )
    trainer.pre_epoch_hooks.register(hooks.call_every(2, epochs_of(logs['pre 2'])))
    trainer.train(7)
    assert logs == {
        '2': [2, 4, 6],
        '3 from 2': [2, 5],
        '1 from 4': [4, 5, 6, 7],
        'pre 2': [0, 2, 4, 6],  # before those epochs start
    }
    assert 'call_every(2' in repr(trainer.post_epoch_hooks.describe())
    with pytest.raises(ValueError, match='interval'):
        hooks.call_every(0, epochs_of([]))


def test_saving_hook_every_two_epochs(rec: Recorder) -> None:
    trainer = kit.trainer(n=16)
    trainer.post_epoch_hooks.register(hooks.call_every(2, hooks.saving_hook))
    trainer.train(5)
    folder = pathlib.Path('checkpoints/exp/r/Model')
    assert sorted(p.name for p in folder.iterdir()) == ['epoch_2.pt', 'epoch_4.pt']
    assert [e.epoch for e in rec.events('on_checkpoint_save')] == [2, 4]
    trainer.load_checkpoint()
    assert trainer.model.epoch == 4


# --- hook state ------------------------------------------------------------------


def _through_a_file(state: Any) -> Any:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


def test_hook_states_round_trip() -> None:
    trainer = kit.trainer()
    validate_with(trainer, scripted(trainer, [5, 4, 4, 4, 4, 4, 4, 4]))
    stopping = hooks.EarlyStoppingCallback(patience=3)
    reduce = hooks.ReduceLROnPlateau(factor=0.5, patience=0, cooldown=5)
    trainer.post_epoch_hooks.register_all(
        [stopping, hooks.call_every(1, reduce), lambda t: None]
    )
    trainer.train(3)
    saved = _through_a_file(trainer.post_epoch_hooks.state_dict())
    assert saved[0] == {
        'monitor': {'history': [5.0, 4.0, 4.0], 'best': 4.0},
        'waited': 1,
    }
    assert saved[1] == {
        'hook': {
            'monitor': {'history': [5.0, 4.0, 4.0], 'best': 4.0},
            'waited': 0,
            'cooldown_left': 5,
        }
    }
    assert saved[2] is None

    fresh_stopping = hooks.EarlyStoppingCallback(patience=3)
    fresh_reduce = hooks.ReduceLROnPlateau(factor=0.5, patience=0, cooldown=5)
    registry: hooks.HookRegistry[AnyTrainer] = hooks.HookRegistry()
    registry.register_all(
        [fresh_stopping, hooks.call_every(1, fresh_reduce), lambda t: None]
    )
    registry.load_state_dict(saved)
    assert registry.state_dict() == saved
    # the restored counter goes on: two more flat epochs exhaust the patience
    trainer.post_epoch_hooks = registry
    trainer.train(5)
    assert trainer.model.epoch == 5
    assert trainer.terminated is True

    with pytest.raises(exceptions.CheckpointError, match='3 hooks, but 1'):
        single: hooks.HookRegistry[AnyTrainer] = hooks.HookRegistry()
        single.register(hooks.EarlyStoppingCallback())
        single.load_state_dict(saved)


def test_a_monitor_takes_a_loss_or_metric_object_for_its_name() -> None:
    loss = kit.mse()
    assert hooks.EarlyStoppingCallback(metric=loss).monitor.metric == 'MSE'
    metric = Metric(kit.mse_fn, 'Err')
    assert hooks.ReduceLROnPlateau(metric=metric).monitor.metric == 'Err'
    assert hooks.EarlyStoppingCallback(metric=loss | metric).monitor.metric == 'MSE'
    with pytest.raises(TypeError, match='pick one'):  # a collection: 2 names
        hooks.EarlyStoppingCallback(metric=metric | Metric(kit.mse_fn, 'Other'))


def test_a_monitor_that_is_not_a_runner_fails_at_construction() -> None:
    with pytest.raises(TypeError, match=r'monitor=trainer\.validation'):
        hooks.EarlyStoppingCallback(monitor='Validation')


def test_an_unknown_metric_fails_before_an_epoch_is_spent() -> None:
    trainer = kit.trainer()
    with pytest.raises(ValueError, match="no metric 'Accuracy'"):
        hooks.EarlyStoppingCallback(metric='Accuracy', monitor=trainer)
    trainer.post_epoch_hooks.register(
        hooks.call_every(2, hooks.ReduceLROnPlateau(metric='Accuracy'))
    )
    with pytest.raises(ValueError, match="computes no metric 'Accuracy'"):
        trainer.train(3)
    assert trainer.model.epoch == 0  # refused before the first epoch
