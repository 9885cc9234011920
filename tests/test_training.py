"""The Trainer, Validation, Test and Diagnostic end to end, with tiny real models."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import pytest
import tomli_w
import torch
from torch import nn
from torch.utils import data

from drytorch import (
    DataLoader,
    Diagnostic,
    LearningSchema,
    Loss,
    Metric,
    Model,
    Test,
    Trainer,
    Validation,
    hookimpl,
)
from drytorch.core import exceptions, plugins, tracking
from drytorch.lib import schedulers
from tests import training_kit as kit
from tests.training_kit import Recorder

# --- training ------------------------------------------------------------------


@pytest.mark.usefixtures('run')
def test_train_and_train_until_advance_the_epoch_and_learn(rec: Recorder) -> None:
    trainer = kit.trainer()
    trainer.train(3)
    assert trainer.model.epoch == 3
    trainer.train_until(8)
    assert trainer.model.epoch == 8
    with pytest.warns(exceptions.PastEpochWarning):
        trainer.train_until(5)  # already past: nothing to do
    assert trainer.model.epoch == 8
    losses = [event.metrics['MSE'] for event in rec.metrics('Trainer')]
    assert [event.epoch for event in rec.metrics('Trainer')] == list(range(1, 9))
    assert losses[-1] < losses[0] / 10
    assert all(b < a for a, b in itertools.pairwise(losses[:5]))
    assert trainer.computed_metrics == {'MSE': losses[-1]}
    starts = rec.events('on_training_start')
    assert [(e.start_epoch, e.end_epoch) for e in starts] == [(0, 3), (3, 8), (8, 5)]


@pytest.mark.usefixtures('run')
def test_validation_runs_only_at_multiples_of_its_interval(rec: Recorder) -> None:
    trainer = kit.trainer()
    validation = trainer.add_validation(DataLoader(kit.regression(20, seed=1), 8), 2)
    assert trainer.validation is validation
    trainer.train(5)
    assert [e.epoch for e in rec.metrics('Validation')] == [2, 4]
    assert [e.epoch for e in rec.metrics('Trainer')] == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match='interval'):
        trainer.add_validation(DataLoader(kit.regression(20), 8), 0)


def _per_sample_mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((outputs - targets) ** 2).mean(1)


def _mae(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs - targets).abs().mean(1)


@pytest.mark.usefixtures('run')
def test_computed_metrics_of_trainer_and_validation_are_exact() -> None:
    loss = Loss(_per_sample_mse, 'MSE') | Metric(_mae, 'MAE', higher_is_better=False)
    trainer = kit.trainer(loss=loss)
    val_set = kit.regression(21, seed=1)  # 21 = 8 + 8 + 5: uneven batches
    trainer.add_validation(DataLoader(val_set, 8))
    trainer.train(2)
    assert list(trainer.computed_metrics) == ['MSE', 'MAE']
    assert all(isinstance(v, float) for v in trainer.computed_metrics.values())
    assert trainer.validation is not None
    measured = trainer.validation.computed_metrics
    assert list(measured) == ['MSE', 'MAE']
    x, y = val_set.tensors
    with torch.no_grad():
        out = trainer.model.module(x)
    assert measured['MSE'] == pytest.approx(((out - y) ** 2).mean().item(), rel=1e-6)
    assert measured['MAE'] == pytest.approx((out - y).abs().mean().item(), rel=1e-6)
    diagnostic = Diagnostic(trainer.model, loader=DataLoader(val_set, 5), metric=loss)
    assert diagnostic() == pytest.approx(measured, rel=1e-9)


@pytest.mark.usefixtures('run')
def test_hooks_run_in_order_around_each_epoch(rec: Recorder) -> None:
    trainer = kit.trainer()
    trainer.add_validation(DataLoader(kit.regression(16, seed=1), 8))

    def hook(label: str) -> Callable[[Trainer[Any, Any, Any]], None]:
        def run_hook(t: Trainer[Any, Any, Any]) -> None:
            assert t.validation is not None
            rec.calls.append(
                (label, (t.model.epoch, dict(t.validation.computed_metrics)))
            )

        return run_hook

    trainer.pre_epoch_hooks.register(hook('pre1'))
    trainer.pre_epoch_hooks.register(hook('pre2'))
    trainer.post_epoch_hooks.register_all([hook('post1'), hook('post2')])
    assert len(trainer.post_epoch_hooks) == 2
    trainer.train(2)
    epoch_one = [
        'pre1',
        'pre2',
        'on_epoch_start(Trainer)',
        'on_metrics(Trainer)',
        'on_metrics(Validation)',
        'post1',
        'post2',
        'on_epoch_end(Trainer)',
    ]
    trace = [n for n in rec.trace() if not n.startswith('on_actor_register')]
    assert trace == [
        'on_training_start(Trainer)',
        *epoch_one,
        *epoch_one,
        'on_training_end(Trainer)',
    ]
    # pre hooks see the completed epochs; post hooks this epoch's validation
    seen = {label: [v[0] for v in rec.events(label)] for label in ('pre1', 'post1')}
    assert seen == {'pre1': [0, 1], 'post1': [1, 2]}
    validation = rec.metrics('Validation')
    assert [v[1] for v in rec.events('post1')] == [dict(e.metrics) for e in validation]
    with pytest.raises(TypeError, match='callable'):
        trainer.post_epoch_hooks.register(42)  # type: ignore[arg-type]


@pytest.mark.usefixtures('run')
def test_terminate_training_stops_at_the_end_of_the_epoch(rec: Recorder) -> None:
    trainer = kit.trainer()

    def stop_at_two(t: Trainer[Any, Any, Any]) -> None:
        if t.model.epoch == 2:
            t.terminate_training('enough')

    trainer.post_epoch_hooks.register(stop_at_two)
    trainer.train(5)
    assert trainer.model.epoch == 2
    assert trainer.terminated is True and trainer.termination_reason == 'enough'
    (termination,) = rec.events('on_termination')
    assert (termination.epoch, termination.reason) == (2, 'enough')
    assert rec.trace()[-3:] == [
        'on_termination(Trainer)',
        'on_epoch_end(Trainer)',
        'on_training_end(Trainer)',
    ]
    assert rec.events('on_training_end')[-1].epoch == 2
    trainer.train(1)  # a new call trains again
    assert trainer.model.epoch == 3
    assert trainer.terminated is False and trainer.termination_reason is None


@pytest.mark.usefixtures('run')
def test_termination_mid_epoch_finishes_the_epoch(host: plugins.PluginHost) -> None:
    trainer = kit.trainer()  # 48 samples, batches of 8: 6 batches
    batches: list[int] = []

    class Stopper:
        @hookimpl
        def on_batch_end(self, event: Any) -> None:
            batches.append(event.batch)
            if event.batch == 2:
                trainer.terminate_training('from a tracker')

    host.register(Stopper(), 'stopper')

    def stop_before_six(t: Trainer[Any, Any, Any]) -> None:
        if t.model.epoch == 5:
            t.terminate_training('pre')

    trainer.pre_epoch_hooks.register(stop_before_six)
    trainer.train(3)
    assert trainer.model.epoch == 1
    assert batches == [1, 2, 3, 4, 5, 6]
    host.unregister('stopper')
    trainer.train_until(10)  # the pre-epoch hook stops before epoch 6 starts
    assert trainer.model.epoch == 5
    assert trainer.termination_reason == 'pre'


@pytest.mark.usefixtures('run')
def test_update_learning_rate_applies_at_once(rec: Recorder) -> None:
    module = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    model = Model(module, device='cpu')
    schema = LearningSchema.sgd(lr={'0': 0.1, '2': 0.01})
    trainer = kit.trainer(model, schema=schema)

    def rates() -> list[float]:
        return [group['lr'] for group in trainer.optimizer.param_groups]

    assert rates() == [0.1, 0.01]
    trainer.update_learning_rate(base_lr={'0': 0.2, '2': 0.02})
    assert rates() == [0.2, 0.02]
    trainer.update_learning_rate(factor=0.5, reason='halve')
    assert rates() == pytest.approx([0.1, 0.01])
    assert trainer.lr_factor == 0.5
    trainer.update_learning_rate(scheduler=schedulers.StepScheduler([1], gamma=0.1))
    assert rates() == pytest.approx([0.1, 0.01])  # epoch 0: before the milestone
    trainer.train(2)  # epoch 2 trains at the rate of epoch 1
    assert rates() == pytest.approx([0.01, 0.001])
    events = rec.events('on_learning_rate')
    assert [e.reason for e in events] == ['update', 'halve', 'schedule']
    assert events[1].learning_rates == pytest.approx((0.1, 0.01))
    assert events[2].epoch == 1
    with pytest.raises(exceptions.LearningSchemaError, match='groups'):
        trainer.update_learning_rate(base_lr=0.1)
    with pytest.raises(exceptions.LearningSchemaError, match='factor'):
        trainer.update_learning_rate(factor=0)


@pytest.mark.usefixtures('run')
def test_a_scheduler_changes_the_rates_every_epoch(rec: Recorder) -> None:
    scheduler = schedulers.StepScheduler([1, 2], gamma=0.5)
    trainer = kit.trainer(schema=LearningSchema.adam(lr=0.1, scheduler=scheduler))
    used: list[float] = []
    trainer.post_epoch_hooks.register(
        lambda t: used.append(t.optimizer.param_groups[0]['lr'])
    )
    trainer.train(4)
    assert used == pytest.approx([0.1, 0.05, 0.025, 0.025])
    events = rec.events('on_learning_rate')
    assert [(e.epoch, e.reason) for e in events] == [(1, 'schedule'), (2, 'schedule')]
    assert events[-1].learning_rates == pytest.approx((0.025,))


@pytest.mark.usefixtures('run')
def test_a_nan_loss_stops_training_at_the_end_of_the_epoch(rec: Recorder) -> None:
    dataset = kit.regression(48)
    dataset.tensors[1][5] = math.nan
    trainer = Trainer(
        kit.linear(),
        loader=DataLoader(dataset, 8),
        loss=kit.mse(),
        learning_schema=LearningSchema.adam(),
    )
    with pytest.raises(exceptions.TrainingError) as raised:
        trainer.train(3)
    message = str(raised.value)
    assert "'MSE'" in message and 'epoch 1' in message and 'nan' in message
    assert 'NaN' in message  # the hint
    batches = [e.batch for e in rec.events('on_batch_end')]
    assert batches == [1, 2, 3, 4, 5, 6]  # the whole epoch ran first
    assert rec.metrics('Trainer') == []


@pytest.mark.usefixtures('run')
def test_a_loss_that_is_not_a_scalar_is_refused() -> None:
    def matrix_loss(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return ((outputs - targets) ** 2).mean() * torch.ones(2, 2)

    trainer = kit.trainer(loss=Loss(matrix_loss, 'Matrix'))
    before = kit.weights(trainer.model)
    with pytest.raises(exceptions.DryTorchError, match=r'\(2, 2\)') as raised:
        trainer.train(1)
    assert isinstance(
        raised.value, exceptions.ObjectiveError | exceptions.TrainingError
    )
    assert kit.same_weights(before, kit.weights(trainer.model))  # no step taken


def test_a_model_of_another_run_is_refused() -> None:
    exp = kit.experiment()
    with exp.create_run(run_id='first'):
        trainer = kit.trainer()
        model = trainer.model
        test = Test(model, loader=DataLoader(kit.regression(8), 4), metric=kit.mse())
    with exp.create_run(run_id='second'):
        with pytest.raises(exceptions.ModuleNotRegisteredError, match='Model'):
            trainer.train(1)
        with pytest.raises(exceptions.ModuleNotRegisteredError):
            test.test()
        with pytest.raises(exceptions.ModuleNotRegisteredError):
            trainer.save_checkpoint()
    assert model.epoch == 0


@pytest.mark.parametrize('same_object', [True, False])
def test_resuming_the_run_in_process_keeps_the_trainer(
    rec: Recorder, same_object: bool
) -> None:
    exp = kit.experiment()
    with exp.create_run(run_id='r'):
        trainer = kit.trainer()
        trainer.add_validation(DataLoader(kit.regression(16, seed=1), 8))
        trainer.train(2)
        trainer.save_checkpoint()
    again = exp if same_object else kit.experiment()
    with again.create_run(run_id='r', resume=True):
        trainer.train(1)
        assert trainer.model.epoch == 3
        trainer.load_checkpoint()
        assert trainer.model.epoch == 2
        Test(trainer.model, loader=DataLoader(kit.regression(8), 4), metric=kit.mse())()
    assert [e.epoch for e in rec.metrics('Validation')] == [1, 2, 3]
    actors = [e.actor_name for e in rec.events('on_actor_register')]
    assert actors == ['Trainer', 'Validation', 'Test']  # once per run and runner


# --- events ----------------------------------------------------------------------


@pytest.mark.usefixtures('run')
def test_event_order_of_training_with_validation(rec: Recorder) -> None:
    trainer = kit.trainer(n=16)  # 2 training batches
    trainer.add_validation(DataLoader(kit.regression(12, seed=1), 8))  # 2 batches
    trainer.train(2)
    trainer.train(1)

    def epoch(first: bool) -> list[str]:
        validation_register = ['on_actor_register(Validation)'] if first else []
        return [
            'on_epoch_start(Trainer)',
            'on_batch_end(Trainer)',
            'on_batch_end(Trainer)',
            'on_metrics(Trainer)',
            *validation_register,
            'on_batch_end(Validation)',
            'on_batch_end(Validation)',
            'on_metrics(Validation)',
            'on_epoch_end(Trainer)',
        ]

    assert rec.trace(batches=True) == [
        'on_actor_register(Trainer)',
        'on_training_start(Trainer)',
        *epoch(True),
        *epoch(False),
        'on_training_end(Trainer)',
        'on_training_start(Trainer)',
        *epoch(False),
        'on_training_end(Trainer)',
    ]
    batch = rec.events('on_batch_end')[0]
    assert (batch.batch, batch.n_batches, batch.batch_size) == (1, 2, 8)
    assert [e.epoch for e in rec.events('on_epoch_start')] == [1, 2, 3]
    assert [e.end_epoch for e in rec.events('on_epoch_start')] == [2, 2, 3]
    register = rec.events('on_actor_register')[0]
    assert (register.model_name, register.run_id) == ('Model', 'r')


@pytest.mark.usefixtures('run')
def test_metrics_events_carry_model_source_epoch_and_loss_first(
    rec: Recorder,
) -> None:
    loss = Metric(_mae, 'MAE') | kit.mse()  # a metric first, then the loss
    assert list(loss.higher_is_better) == ['MAE', 'MSE']
    loss = kit.mse() | Metric(_mae, 'MAE')
    model = kit.linear(name='net')
    trainer = kit.trainer(model, loss=loss)
    trainer.add_validation(DataLoader(kit.regression(16, seed=1), 8))
    trainer.train(1)
    first, second = rec.metrics()
    assert (first.model_name, first.source_name, first.epoch) == ('net', 'Trainer', 1)
    assert (second.model_name, second.source_name, second.epoch) == (
        'net',
        'Validation',
        1,
    )
    assert list(first.metrics) == ['MSE', 'MAE']
    assert list(second.metrics) == ['MSE', 'MAE']
    assert dict(first.metrics) == trainer.computed_metrics


@pytest.mark.usefixtures('run')
def test_test_emits_start_metrics_end(rec: Recorder) -> None:
    model = kit.linear()
    model.epoch = 7
    test = Test(model, loader=DataLoader(kit.regression(10), 4), metric=kit.mse())
    metrics = test.test()
    test()
    assert rec.trace() == [
        'on_actor_register(Test)',
        'on_test_start(Test)',
        'on_metrics(Test)',
        'on_test_end(Test)',
        'on_test_start(Test)',
        'on_metrics(Test)',
        'on_test_end(Test)',
    ]
    assert rec.metrics()[0].epoch == 7
    assert dict(rec.metrics()[0].metrics) == metrics == test.computed_metrics
    named = Test(
        model,
        loader=DataLoader(kit.regression(10), 4),
        metric=kit.mse(),
        name='holdout',
    )
    named.test()
    assert rec.metrics()[-1].source_name == 'holdout'


@pytest.mark.usefixtures('run')
def test_actor_description_is_toml_and_names_formula_and_optimizer(
    rec: Recorder,
) -> None:
    mse = kit.mse()
    mae = Loss(lambda o, t: (o - t).abs().mean(), 'MAE')
    trainer = kit.trainer(loss=mse**2 + 0.5 * mae)
    trainer.add_validation(DataLoader(kit.regression(16, seed=1), 8), interval=2)
    trainer.post_epoch_hooks.register(lambda t: None)
    trainer.train(2)
    Test(trainer.model, loader=DataLoader(kit.regression(8), 4), metric=kit.mse())()
    descriptions = {
        e.actor_name: e.description for e in rec.events('on_actor_register')
    }
    assert set(descriptions) == {'Trainer', 'Validation', 'Test'}
    for description in descriptions.values():
        tomli_w.dumps(dict(description))
    trainer_toml = tomli_w.dumps(dict(descriptions['Trainer']))
    assert '[MSE]^2 + 0.5 x [MAE]' in trainer_toml
    assert 'torch.optim.Adam' in trainer_toml
    assert '[MSE]' in tomli_w.dumps(dict(descriptions['Test']))


def test_builtin_logger_prints_epochs_and_metrics(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with kit.experiment().create_run():
        trainer = kit.trainer(n=16)
        trainer.add_validation(DataLoader(kit.regression(16, seed=1), 8))
        trainer.train(2)
        Test(trainer.model, loader=DataLoader(kit.regression(8), 4), metric=kit.mse())()
    err = capsys.readouterr().err
    assert 'Running experiment: exp.' in err
    assert 'Epoch: 1 / 2' in err and 'Epoch: 2 / 2' in err
    assert err.count('Trainer: MSE=') == 2
    assert err.count('Validation: MSE=') == 2
    assert 'Testing Model at epoch 2.' in err and 'Test: MSE=' in err


# --- the hot path --------------------------------------------------------------

SYNCING = ('item', 'tolist', '__float__', '__int__', '__bool__')


@pytest.fixture
def sync_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Count the calls that read a tensor on the host (device synchronisations)."""
    counts = dict.fromkeys(SYNCING, 0)
    for name in SYNCING:
        original = getattr(torch.Tensor, name)

        def counted(
            self: torch.Tensor, *args: Any, _n: str = name, _f: Any = original
        ) -> Any:
            counts[_n] += 1
            return _f(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    return counts


@pytest.mark.parametrize('trackers', ['none', 'default'])
def test_no_host_read_per_batch(
    trackers: str, sync_calls: dict[str, int], rec: Recorder, host: plugins.PluginHost
) -> None:
    if trackers == 'none':
        tracking.remove_all_default_trackers()
        host.unregister('rec')
    with kit.experiment().create_run():
        loss = kit.mse() | Metric(_mae, 'MAE')
        small, large = (
            kit.trainer(
                n=4 * n,
                batch_size=4,
                loss=loss,
                schema=LearningSchema.sgd(lr=0.01, momentum=0.9),
            )
            for n in (5, 20)
        )
        for trainer, n in ((small, 5), (large, 20)):
            trainer.add_validation(DataLoader(kit.regression(4 * n, seed=1), 4))
        totals = []
        for trainer in (small, large):
            before = dict(sync_calls)
            trainer.train(1)
            totals.append({k: sync_calls[k] - before[k] for k in SYNCING})
    assert totals[0] == totals[1]
    assert sum(totals[0].values()) <= 10  # the epoch-end reads
    assert large.computed_metrics and large.validation is not None
    assert large.validation.computed_metrics


@pytest.mark.usefixtures('run')
def test_live_metrics_work_when_called(host: plugins.PluginHost) -> None:
    trainer = kit.trainer(loss=kit.mse() | Metric(_mae, 'MAE'))
    trainer.add_validation(DataLoader(kit.regression(16, seed=1), 8))
    live: list[tuple[str, int, dict[str, float]]] = []

    class Progress:
        @hookimpl
        def on_batch_end(self, event: Any) -> None:
            if event.batch == event.n_batches:
                live.append(
                    (event.source_name, event.batch, dict(event.live_metrics()))
                )

    host.register(Progress(), 'progress')
    trainer.train(1)
    (name, _, train_live), (val_name, _, val_live) = live
    assert (name, val_name) == ('Trainer', 'Validation')
    assert train_live == pytest.approx(trainer.computed_metrics)
    assert trainer.validation is not None
    assert val_live == pytest.approx(trainer.validation.computed_metrics)
    assert list(train_live) == ['MSE', 'MAE']


# --- data in the runners ---------------------------------------------------------


class Spy(nn.Module):
    """Returns ``x * w`` and records which samples each forward pass saw."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1))
        self.seen: list[tuple[bool, bool, list[int]]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = [int(i) for i in x[:, 0].tolist()]
        self.seen.append((self.training, torch.is_inference_mode_enabled(), ids))
        return x * self.w


def _indexed(n: int) -> data.TensorDataset:
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    return data.TensorDataset(x, x.clone())


def _joined(batches: list[tuple[bool, bool, list[int]]]) -> list[int]:
    return [i for *_, ids in batches for i in ids]


@pytest.mark.usefixtures('run')
def test_loaders_shuffle_in_training_and_keep_everything_in_inference() -> None:
    spy = Spy()
    model = Model(spy, device='cpu')
    trainer = Trainer(
        model,
        loader=DataLoader(_indexed(10), 3, seed=0),
        loss=kit.mse(),
        learning_schema=LearningSchema.sgd(lr=0.0),
    )
    trainer.add_validation(DataLoader(_indexed(10), 3))
    trainer.train(3)
    training = [s for s in spy.seen if s[0]]
    evaluating = [s for s in spy.seen if not s[0]]
    assert all(not inference for _, inference, _ in training)
    assert [len(ids) for _, _, ids in training] == [3] * 9  # last partial dropped
    orders = [_joined(training[i : i + 3]) for i in (0, 3, 6)]
    assert all(len(set(order)) == 9 for order in orders)
    assert len({tuple(order) for order in orders}) > 1  # reshuffled
    assert any(order != sorted(order) for order in orders)
    assert all(inference for _, inference, _ in evaluating)
    val_orders = [_joined(evaluating[i : i + 4]) for i in (0, 4, 8)]
    assert val_orders == [list(range(10))] * 3
    spy.seen.clear()
    Test(model, loader=DataLoader(_indexed(10), 4), metric=kit.mse())()
    assert [ids for *_, ids in spy.seen] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert model.module.training  # evaluation restored the mode


@dataclasses.dataclass
class Prediction:
    mean: torch.Tensor
    label: str = 'prediction'


class DataclassNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> Prediction:
        return Prediction(self.linear(x))


def _prediction_mse(outputs: Prediction, targets: torch.Tensor) -> torch.Tensor:
    return ((outputs.mean - targets) ** 2).mean()


@pytest.mark.usefixtures('run')
def test_store_outputs_keeps_detached_cpu_outputs() -> None:
    model = Model(DataclassNet(), device='cpu')
    loss = Loss(_prediction_mse, 'MSE')
    trainer = Trainer(
        model,
        loader=DataLoader(kit.regression(16), 4),
        loss=loss,
        learning_schema=LearningSchema.adam(),
    )
    trainer.train(1)
    dataset = kit.regression(10, seed=3)
    test = Test(model, loader=DataLoader(dataset, 4), metric=loss)
    test.test()
    assert test.outputs_list == []
    test.test(store_outputs=True)
    outputs = test.outputs_list
    assert [type(o) for o in outputs] == [Prediction] * 3
    assert all(o.label == 'prediction' for o in outputs)
    stacked = torch.cat([o.mean for o in outputs])
    assert all(
        o.mean.device.type == 'cpu' and not o.mean.requires_grad for o in outputs
    )
    with torch.no_grad():
        expected = model.module(dataset.tensors[0]).mean
    assert torch.allclose(stacked, expected)
    diagnostic = Diagnostic(model, loader=DataLoader(dataset, 4), metric=loss)
    diagnostic(store_outputs=True)
    assert torch.equal(torch.cat([o.mean for o in diagnostic.outputs_list]), stacked)


class NoInput(NamedTuple):
    pass


class EmptyInputs(data.Dataset[tuple[NoInput, torch.Tensor]]):
    def __len__(self) -> int:
        return 12

    def __getitem__(self, index: int) -> tuple[NoInput, torch.Tensor]:
        return NoInput(), torch.tensor([2.0])


class Constant(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.value = nn.Parameter(torch.zeros(1))

    def forward(self, inputs: NoInput) -> torch.Tensor:
        assert isinstance(inputs, NoInput)
        return self.value


@pytest.mark.usefixtures('run')
def test_an_empty_namedtuple_input_trains(rec: Recorder) -> None:
    model = Model(Constant(), device='cpu')
    trainer = Trainer(
        model,
        loader=DataLoader(EmptyInputs(), 4),
        loss=kit.mse(),
        learning_schema=LearningSchema.sgd(lr=0.2),
    )
    trainer.add_validation(DataLoader(EmptyInputs(), 5))
    trainer.train(10)
    assert model.module.value.item() == pytest.approx(2.0, abs=1e-3)
    assert trainer.computed_metrics['MSE'] < 1e-4
    assert rec.events('on_batch_end')[0].batch_size == 0  # nothing to count


@pytest.mark.usefixtures('run')
def test_diagnostic_reports_nothing_to_trackers(rec: Recorder) -> None:
    model = kit.linear()
    diagnostic = Diagnostic(
        model, loader=DataLoader(kit.regression(10), 4), metric=kit.mse()
    )
    metrics = diagnostic()
    assert list(metrics) == ['MSE'] and diagnostic.computed_metrics == metrics
    calls = [name for name in rec.names() if name != 'on_model_register']
    assert calls == []
    validation = Validation(
        model, loader=DataLoader(kit.regression(10), 4), metric=kit.mse()
    )
    assert validation() == metrics
    assert 'on_metrics' in rec.names()
