"""The original DRYTorch's ``lib.hooks`` (and ``objectives.MetricTracker``) on ours.

Written from ``shared/spec/original-api.md`` (section ``lib.hooks`` and the
``MetricTracker`` row of ``lib.objectives``); each test names the row it
covers. The callbacks run in real trainings of a tiny model.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
import torch

from drytorch import DataLoader, LearningSchema, Metric, Trainer
from drytorch.core import exceptions
from drytorch.lib import hooks, schedulers
from tests import training_kit as kit
from tests.training_kit import Recorder

AnyTrainer = Trainer[Any, Any, Any]

pytestmark = pytest.mark.usefixtures('run')


def scripted(
    trainer: AnyTrainer, values: Sequence[float], name: str = 'score', **kwargs: Any
) -> Metric[Any, Any]:
    """A metric worth ``values[epoch - 1]`` at each epoch of the trainer."""
    model = trainer.model

    def value(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return torch.tensor(float(values[model.epoch - 1]), dtype=torch.float64)

    return Metric(value, name, **kwargs)


def validate_with(trainer: AnyTrainer, metric: Any) -> None:
    trainer.add_validation(DataLoader(kit.regression(8, seed=1), 8), metric=metric)


def epochs_into(log: list[int]) -> Any:
    def hook(trainer: AnyTrainer) -> None:
        log.append(trainer.model.epoch)

    return hook


# --- the callbacks are generic; metric and monitor -------------------------------


def test_callbacks_are_generic_classes() -> None:
    assert isinstance(
        hooks.EarlyStoppingCallback[Any, Any](), hooks.EarlyStoppingCallback
    )
    assert hooks.ReduceLROnPlateau[Any, Any]().factor == 0.1
    assert hooks.RestartScheduleOnPlateau[Any, Any]().patience == 0
    assert hooks.PruneCallback[Any, Any]({3: 1.0}).thresholds == {3: 1.0}


def test_a_loss_object_as_metric_survives_the_epoch_ends() -> None:
    trainer = kit.trainer()
    loss = kit.mse()
    validate_with(trainer, loss)
    stopping = hooks.EarlyStoppingCallback(metric=loss, patience=5)
    on_trainer = hooks.EarlyStoppingCallback(metric=trainer.loss, monitor=trainer)
    trainer.post_epoch_hooks.register_all([stopping, on_trainer])
    trainer.train(3)
    assert trainer.model.epoch == 3
    assert stopping.monitor.metric_name == 'MSE'
    assert len(stopping.monitor.history) == 3
    assert stopping.monitor.history[-1] == pytest.approx(
        trainer.validation.computed_metrics['MSE']  # type: ignore[union-attr]
    )
    assert on_trainer.monitor.history[-1] == pytest.approx(
        trainer.computed_metrics['MSE']
    )


def test_metric_none_reads_the_validation_else_the_trainer() -> None:
    trainer = kit.trainer()
    validate_with(trainer, scripted(trainer, [3.0, 2.0]))
    callback = hooks.EarlyStoppingCallback()
    trainer.post_epoch_hooks.register(callback)
    trainer.train(2)
    assert callback.monitor.history == [3.0, 2.0]  # the validation's first metric
    assert callback.monitor.metric_name == 'score'

    alone = kit.trainer(kit.linear(name='alone'))
    monitor = hooks.MetricMonitor()
    alone.post_epoch_hooks.register(monitor.record_metric_value)
    alone.train(2)
    assert monitor.metric_name == 'MSE'  # the loss
    assert monitor.history[-1] == pytest.approx(alone.computed_metrics['MSE'])


# --- MetricTracker (lib.objectives row, defined in lib.monitors) ----------------


def test_metric_tracker_follows_best_value_and_patience() -> None:
    tracker = hooks.MetricTracker(metric_name='loss', patience=2)
    with pytest.raises(exceptions.ResultNotAvailableError):
        _ = tracker.best_value
    with pytest.raises(exceptions.ResultNotAvailableError):
        _ = tracker.filtered_value
    for value in [3.0, 2.0]:
        tracker.add_value(value)
        assert tracker.is_improving() and tracker.is_patient()
    tracker.add_value(2.5)
    assert not tracker.is_improving() and tracker.is_patient()
    tracker.add_value(2.0)  # not better by more than min_delta
    assert not tracker.is_patient()
    assert tracker.best_value == 2.0 and tracker.filtered_value == 2.0
    assert tracker.history == [3.0, 2.0, 2.5, 2.0]
    tracker.reset_patience()
    assert tracker.is_patient()
    tracker.best_value = 1.0
    assert tracker.best_value == 1.0
    assert tracker.is_better(0.5, 1.0) and not tracker.is_better(1.0, 1.0)
    assert not tracker.is_better(math.nan, 1.0) and tracker.is_better(1.0, math.nan)


def test_metric_tracker_best_is_and_filter_fn() -> None:
    higher = hooks.MetricTracker(best_is='higher', min_delta=0.1)
    assert higher.is_better(1.2, 1.0) and not higher.is_better(1.05, 1.0)
    smooth = hooks.MetricTracker(filter_fn=lambda h: sum(h[-2:]) / len(h[-2:]))
    for value in [4.0, 2.0, 3.0]:
        smooth.add_value(value)
    assert smooth.filtered_value == 2.5 and smooth.best_value == 2.5
    with pytest.raises(ValueError, match='best_is'):
        hooks.MetricTracker(best_is='max')  # type: ignore[arg-type]


# --- MetricExtractor and MetricMonitor -------------------------------------------


def test_metric_extractor_resolves_name_value_and_direction() -> None:
    trainer = kit.trainer()
    accuracy = Metric(kit.mse_fn, 'Acc', higher_is_better=True)
    validate_with(trainer, accuracy)
    extractor = hooks.MetricExtractor(metric=accuracy)
    assert extractor.metric_name == 'Acc'
    assert extractor.get_metric_best_is() == 'higher'
    assert hooks.MetricExtractor(metric=kit.mse()).get_metric_best_is() == 'lower'
    unnamed = hooks.MetricExtractor()
    assert unnamed.metric_name is None and unnamed.get_metric_best_is() is None
    trainer.train(1)
    tracker = hooks.MetricTracker()
    value = extractor.extract_metric_value(trainer, tracker)
    assert value == pytest.approx(trainer.validation.computed_metrics['Acc'])  # type: ignore[union-attr]
    assert tracker.higher()  # 'auto' learnt the direction
    assert unnamed.extract_metric_value(trainer) == pytest.approx(value)
    assert unnamed.metric_name == 'Acc'
    with pytest.raises(exceptions.MetricNotFoundError):
        hooks.MetricExtractor(metric='F1').extract_metric_value(trainer)


def test_metric_monitor_original_signature_and_names() -> None:
    trainer = kit.trainer(schema=LearningSchema.sgd(lr=0.0))  # a flat loss
    monitor = hooks.MetricMonitor(None, trainer, 1e-8, 1, 'lower', None)
    assert monitor.patience == 1 and monitor.best_is == 'lower'
    ours = hooks.MetricMonitor(None, None, 1e-8, 'higher', None)  # type: ignore[arg-type]
    assert ours.best_is == 'higher' and ours.patience == 0
    trainer.post_epoch_hooks.register(monitor.record_metric_value)
    trainer.train(1)
    assert monitor.is_improving() and monitor.is_patient()
    first = monitor.best_value
    assert monitor.filtered_value == first == monitor.best
    trainer.train(1)
    assert not monitor.is_improving() and not monitor.is_patient()
    assert monitor.is_better(first - 1, first)
    monitor.best_value = 0.0
    assert monitor.best == 0.0
    with pytest.raises(exceptions.MetricNotFoundError):
        hooks.MetricMonitor('Accuracy', trainer)  # refused at construction


# --- PruneCallback --------------------------------------------------------------


def test_prune_callback_stops_a_run_missing_its_threshold(rec: Recorder) -> None:
    trainer = kit.trainer()
    validate_with(trainer, scripted(trainer, [5.0, 4.0, 3.0, 2.0]))
    prune = hooks.PruneCallback({2: 4.5, 3: 2.5})
    trainer.post_epoch_hooks.register(prune)
    trainer.train(4)
    assert trainer.model.epoch == 3  # 4 beats 4.5 at 2; 3 misses 2.5 at 3
    (termination,) = rec.events('on_termination')
    assert 'pruned' in termination.reason and 'epoch 3' in termination.reason

    kept = kit.trainer(kit.linear(name='kept'))
    validate_with(kept, scripted(kept, [0.1, 0.9], higher_is_better=True))
    kept.post_epoch_hooks.register(hooks.PruneCallback({2: 0.5}))
    kept.train(2)
    assert not kept.terminated  # higher is better: 0.9 beats 0.5


# --- ChangeSchedulerOnPlateauCallback, RestartScheduleOnPlateau, ReduceLROnPlateau ---


class HalveOnPlateau(hooks.ChangeSchedulerOnPlateauCallback[Any, Any]):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[tuple[int, schedulers.AbstractScheduler]] = []

    def get_scheduler(
        self, epoch: int, scheduler: schedulers.AbstractScheduler
    ) -> schedulers.AbstractScheduler:
        self.calls.append((epoch, scheduler))
        return schedulers.RescaleScheduler(scheduler, 0.5)


def _flat_trainer(name: str = '') -> tuple[AnyTrainer, list[float]]:
    trainer = kit.trainer(kit.linear(name=name), schema=LearningSchema.sgd(lr=0.1))
    validate_with(trainer, Metric(lambda o, t: torch.zeros(()), 'flat'))
    return trainer, []


def test_change_scheduler_on_plateau_swaps_then_cools_down() -> None:
    with pytest.raises(TypeError):
        hooks.ChangeSchedulerOnPlateauCallback()  # type: ignore[abstract]
    trainer, rates = _flat_trainer()
    callback = HalveOnPlateau(patience=0, cooldown=1)
    trainer.post_epoch_hooks.register(callback)
    trainer.post_epoch_hooks.register(
        lambda t: rates.append(t.optimizer.param_groups[0]['lr'])
    )
    trainer.train(5)
    # flat from epoch 2: change at 2, cool down at 3, change at 4, cool down at 5
    assert [epoch for epoch, _ in callback.calls] == [2, 4]
    assert rates == pytest.approx([0.1, 0.05, 0.05, 0.025, 0.025])
    assert callback.calls[0][1] == schedulers.ConstantScheduler()
    assert callback.state_dict()['changes'] == [2, 4]


def test_restart_schedule_on_plateau_restarts_and_resumes() -> None:
    schema = LearningSchema.sgd(
        lr=0.8, scheduler=schedulers.ExponentialScheduler(exp_decay=0.5)
    )
    trainer = kit.trainer(schema=schema)
    validate_with(trainer, scripted(trainer, [3, 2, 2, 2, 2, 2]))
    restart = hooks.RestartScheduleOnPlateau(patience=1)
    rates: list[float] = []
    trainer.post_epoch_hooks.register(  # the rate each epoch trained with
        lambda t: rates.append(t.optimizer.param_groups[0]['lr'])
    )
    trainer.post_epoch_hooks.register(restart)
    trainer.train(6)
    # 3 and 4 do not improve: restart at 4, epoch 5 runs at 0.8 again; 5, 6 neither
    assert restart.changes == [4, 6]
    assert rates == pytest.approx([0.8, 0.4, 0.2, 0.1, 0.8, 0.4])

    again = kit.trainer(kit.linear(name='again'), schema=schema)
    fresh = hooks.RestartScheduleOnPlateau(patience=1)
    fresh.load_state_dict(restart.state_dict())
    fresh.check(again)  # what training does first: rebuild the schedule
    assert again.learning_schema.scheduler == trainer.learning_schema.scheduler
    assert again.learning_schema.scheduler == schedulers.ShiftedScheduler(
        schedulers.ExponentialScheduler(exp_decay=0.5), 6
    )


def test_reduce_lr_on_plateau_keeps_our_default_patience() -> None:
    assert hooks.ReduceLROnPlateau().patience == 10  # the original's is 0
    assert isinstance(hooks.ReduceLROnPlateau(), hooks.ChangeSchedulerOnPlateauCallback)
    trainer, rates = _flat_trainer()
    trainer.post_epoch_hooks.register(hooks.ReduceLROnPlateau(patience=0, factor=0.5))
    trainer.post_epoch_hooks.register(
        lambda t: rates.append(t.optimizer.param_groups[0]['lr'])
    )
    trainer.train(3)
    assert rates == pytest.approx([0.1, 0.05, 0.025])


# --- Hook, StaticHook, static_hook_class, TrainerHook, CallEvery, call_every ------


def test_hook_remembers_name_and_parameters_and_binds() -> None:
    log: list[int] = []
    hook = hooks.Hook(epochs_into(log), 'logger', {'to': 'list'})
    assert repr(hook) == "logger(to='list')"
    every = hook.bind(hooks.call_every(2))
    assert isinstance(every, hooks.CallEvery) and every.interval == 2
    trainer = kit.trainer()
    trainer.post_epoch_hooks.register(every)
    trainer.train(4)
    assert log == [2, 4]


def test_call_every_decorator_form_and_ours() -> None:
    decorated: list[int] = []
    ours: list[int] = []

    @hooks.call_every(2, start=1)
    def every_other(trainer: AnyTrainer) -> None:
        decorated.append(trainer.model.epoch)

    assert isinstance(every_other, hooks.CallEvery) and every_other.start == 1
    positional_start = hooks.call_every(3, 1)  # type: ignore[call-overload]
    assert isinstance(positional_start(epochs_into([])), hooks.CallEvery)
    trainer = kit.trainer(schema=LearningSchema.sgd(lr=0.0))  # a flat loss
    trainer.post_epoch_hooks.register_all(
        [
            hooks.EarlyStoppingCallback(patience=1, start_from_epoch=4),
            every_other,  # at 1, 3 and at the last epoch, where training stopped
            hooks.call_every(2, epochs_into(ours), start=1),  # ours: 1, 3 only
        ]
    )
    trainer.train(10)
    assert trainer.model.epoch == 4
    assert decorated == [1, 3, 4]
    assert ours == [1, 3]
    with pytest.raises(ValueError, match='interval'):
        hooks.call_every(0)


def test_class_call_every_with_original_arguments() -> None:
    log: list[int] = []
    hook = hooks.CallEvery(epochs_into(log), None, 3, 0)
    trainer = kit.trainer()
    trainer.post_epoch_hooks.register(hook)
    trainer.train(6)
    assert log == [3, 6]


def test_static_hooks_take_no_argument() -> None:
    calls: list[str] = []

    def ping() -> None:
        calls.append('ping')

    @hooks.static_hook_class
    class Say:
        def __init__(self, word: str) -> None:
            self.word = word

        def __call__(self) -> None:
            calls.append(self.word)

    say = Say('hello')
    assert isinstance(say, hooks.StaticHook)
    assert repr(say) == "Say(word='hello')"
    trainer = kit.trainer()
    trainer.pre_epoch_hooks.register_all([hooks.StaticHook(ping), say])
    trainer.train(2)
    assert calls == ['ping', 'hello', 'ping', 'hello']


def test_trainer_hook_is_an_abstract_base() -> None:
    with pytest.raises(TypeError):
        hooks.TrainerHook()  # type: ignore[abstract]

    class Count(hooks.TrainerHook[Any, Any]):
        def __init__(self) -> None:
            self.epochs: list[int] = []

        def __call__(self, trainer: Trainer[Any, Any, Any]) -> None:
            self.epochs.append(trainer.model.epoch)

    count = Count()
    trainer = kit.trainer()
    trainer.post_epoch_hooks.register(count)
    trainer.train(2)
    assert count.epochs == [1, 2]


def test_hook_registry_hooks_list() -> None:
    registry: hooks.HookRegistry[list[int]] = hooks.HookRegistry()
    first = hooks.Hook(lambda box: box.append(1))

    def second(box: list[int]) -> None:
        box.append(2)

    registry.register(first)
    registry.register_all([second])
    assert registry.hooks == [first, second]
    box: list[int] = []
    registry.execute(box)
    assert box == [1, 2]


def test_saving_hook_binds_call_every(rec: Recorder) -> None:
    trainer = kit.trainer(n=16)
    trainer.post_epoch_hooks.register(hooks.saving_hook.bind(hooks.call_every(2)))
    trainer.train(4)
    saved = [event.epoch for event in rec.events('on_checkpoint_save')]
    assert saved[:2] == [2, 4]


def test_change_scheduler_refuses_a_torch_scheduler_before_training() -> None:
    def step_lr(optimizer: torch.optim.Optimizer) -> Any:
        return torch.optim.lr_scheduler.StepLR(optimizer, 1)

    trainer = kit.trainer(schema=LearningSchema.sgd(lr=0.1, scheduler=step_lr))
    trainer.post_epoch_hooks.register(hooks.RestartScheduleOnPlateau(monitor=trainer))
    with pytest.raises(TypeError, match='drytorch schedule'):
        trainer.train(1)
    assert trainer.model.epoch == 0
