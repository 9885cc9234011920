"""Torchmetrics metrics as drytorch metrics and losses, with real torchmetrics.

Runners wrap a torchmetrics metric given as their metric and refuse what is
neither an objective nor a metric when they are built; ``as_loss`` turns a
differentiable metric into a loss; a wrapped metric's states, which
torchmetrics leaves out of ``state_dict`` by default, survive a checkpoint
taken inside an epoch, up to a process killed and resumed.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import warnings
from typing import Any

import pytest
import torch
import torchmetrics
from torch.utils import data

from drytorch import DataLoader, Diagnostic, Loss, Metric, Test
from drytorch.core.exceptions import ObjectiveError
from drytorch.lib import objectives
from drytorch.lib.objectives import LossBase, MetricCollection, as_loss, as_objective
from tests import training_kit as kit
from tests.conftest import ROOT
from tests.test_exact_resume import TIMEOUT, _kill, _read_until

Tensor = torch.Tensor


def mae_fn(outputs: Tensor, targets: Tensor) -> Tensor:
    return (outputs - targets).abs().mean()


def _all_mse(model: Any, dataset: data.TensorDataset) -> float:
    """The MSE over every sample at once: what torchmetrics computes."""
    x, y = dataset.tensors
    with torch.no_grad():
        return float(((model.module(x) - y) ** 2).mean())


# --- runners wrap torchmetrics metrics and refuse anything else ---------------


@pytest.mark.usefixtures('run')
def test_test_takes_a_torchmetrics_metric_and_reports_its_exact_value() -> None:
    model = kit.linear()
    dataset = kit.regression(10)  # batches of 4, 4 and 2
    test = Test(
        model,
        loader=DataLoader(dataset, 4),
        metric=torchmetrics.MeanSquaredError(),  # type: ignore[arg-type]
    )
    assert isinstance(test.objective, objectives.Objective)
    metrics = test()
    assert list(metrics) == ['MeanSquaredError']
    assert metrics['MeanSquaredError'] == pytest.approx(_all_mse(model, dataset))


@pytest.mark.usefixtures('run')
def test_diagnostic_takes_a_torchmetrics_collection() -> None:
    model = kit.linear()
    collection = torchmetrics.MetricCollection(
        [torchmetrics.MeanSquaredError(), torchmetrics.MeanAbsoluteError()]
    )
    diagnostic = Diagnostic(
        model,
        loader=DataLoader(kit.regression(10), 4),
        metric=collection,  # type: ignore[arg-type]
    )
    metrics = diagnostic()
    assert set(metrics) == {'MeanSquaredError', 'MeanAbsoluteError'}
    assert metrics['MeanSquaredError'] == pytest.approx(
        _all_mse(model, kit.regression(10))
    )


@pytest.mark.usefixtures('run')
def test_validation_of_a_trainer_takes_a_torchmetrics_metric() -> None:
    trainer = kit.trainer()
    validation_set = kit.regression(10, seed=1)
    trainer.add_validation(
        DataLoader(validation_set, 4),
        metric=torchmetrics.MeanSquaredError(),  # type: ignore[arg-type]
    )
    trainer.train(1)
    assert trainer.validation is not None
    assert trainer.validation.computed_metrics['MeanSquaredError'] == pytest.approx(
        _all_mse(trainer.model, validation_set)
    )


@pytest.mark.usefixtures('run')
@pytest.mark.parametrize('wrong', [kit.mse_fn, object(), 3.0])
def test_runners_refuse_what_is_neither_an_objective_nor_a_metric(
    wrong: object,
) -> None:
    with pytest.raises(ObjectiveError, match=r'Metric\(fn, name\)') as info:
        Test(kit.linear(), loader=DataLoader(kit.regression(8), 4), metric=wrong)  # type: ignore[arg-type]
    assert type(wrong).__name__ in str(info.value)
    assert 'torchmetrics' in str(info.value)


# --- as_loss -------------------------------------------------------------------


def test_as_loss_returns_a_loss_as_is() -> None:
    loss = kit.mse()
    assert as_loss(loss) is loss
    combined = loss + 0.5 * Loss(mae_fn, 'MAE')
    assert as_loss(combined) is combined


def test_as_loss_names_the_loss_after_the_metric() -> None:
    loss = as_loss(torchmetrics.MeanSquaredError())
    assert isinstance(loss, LossBase)
    assert loss.name == 'MeanSquaredError'
    assert loss.formula == '[MeanSquaredError]'
    assert dict(loss.higher_is_better) == {'MeanSquaredError': False}
    renamed = as_loss(torchmetrics.MeanSquaredError(), name='MSE')
    assert renamed.name == 'MSE'
    assert repr(renamed) == "as_loss(MeanSquaredError(), name='MSE')"


def test_a_torchmetrics_loss_has_the_gradients_of_the_batch() -> None:
    outputs = torch.tensor([1.0, 2.0, 3.0], requires_grad=True)
    targets = torch.tensor([0.0, 1.0, 1.0])
    value = as_loss(torchmetrics.MeanSquaredError())(outputs, targets)
    value.backward()  # type: ignore[no-untyped-call]
    expected = outputs.detach().clone().requires_grad_()
    reference = torch.nn.functional.mse_loss(expected, targets)
    reference.backward()  # type: ignore[no-untyped-call]
    assert value.item() == pytest.approx(reference.item())
    assert outputs.grad is not None and expected.grad is not None
    assert torch.allclose(outputs.grad, expected.grad)


def test_a_torchmetrics_loss_counts_each_batch_once_in_the_epoch() -> None:
    metric = torchmetrics.MeanSquaredError()
    loss = as_loss(metric)
    first = (torch.tensor([1.0, 0.0]), torch.zeros(2))  # MSE 0.5
    second = (torch.tensor([2.0, 2.0]), torch.zeros(2))  # MSE 4
    for batch in (first, second):
        loss(*batch)
    exact = torchmetrics.MeanSquaredError()
    exact.update(torch.tensor([1.0, 0.0, 2.0, 2.0]), torch.zeros(4))
    # Equal batches: the mean of the batch values is the metric over the epoch.
    assert loss.compute()['MeanSquaredError'].item() == pytest.approx(2.25)
    assert exact.compute().item() == pytest.approx(2.25)
    assert loss.running_sums() == {'MeanSquaredError': (pytest.approx(4.5), 2)}
    # The metric itself keeps nothing: it cannot count a batch twice.
    states = metric.metric_state.values()
    assert all(isinstance(state, Tensor) and not state.any() for state in states)


def test_a_torchmetrics_loss_averages_uneven_batches_by_batch() -> None:
    loss = as_loss(torchmetrics.MeanSquaredError())
    loss(torch.tensor([1.0, 0.0]), torch.zeros(2))  # 0.5
    loss(torch.tensor([2.0]), torch.zeros(1))  # 4
    # As for Loss(fn, name) with a scalar fn: the mean of the batch values.
    assert loss.compute()['MeanSquaredError'].item() == pytest.approx(2.25)


def test_calculate_of_a_torchmetrics_loss_leaves_the_epoch_alone() -> None:
    loss = as_loss(torchmetrics.MeanSquaredError())
    loss(torch.tensor([1.0, 0.0]), torch.zeros(2))
    batch = loss.calculate(torch.tensor([3.0]), torch.zeros(1))
    assert batch['MeanSquaredError'].item() == pytest.approx(9.0)
    assert loss.compute()['MeanSquaredError'].item() == pytest.approx(0.5)


def test_a_torchmetrics_loss_can_be_copied_after_training_on_a_batch() -> None:
    # add_validation copies the loss; torchmetrics cannot copy a metric that
    # still holds the graph of its last forward.
    loss = as_loss(torchmetrics.MeanSquaredError())
    loss(torch.tensor([1.0, 0.0], requires_grad=True) * 2, torch.zeros(2))
    copied = copy.deepcopy(loss)
    assert copied.compute() == loss.compute()


def test_a_torchmetrics_loss_measures_in_inference_mode() -> None:
    loss = as_loss(torchmetrics.MeanSquaredError())
    with torch.inference_mode():  # as a validation measures it
        batch = loss.update(torch.tensor([1.0, 0.0]), torch.zeros(2))
    assert not batch['MeanSquaredError'].requires_grad
    assert loss.compute()['MeanSquaredError'].item() == pytest.approx(0.5)
    loss.reset()
    outputs = torch.tensor([2.0, 2.0], requires_grad=True)
    assert loss(outputs, torch.zeros(2)).requires_grad  # the metric trains again


def test_a_torchmetrics_loss_combines_with_losses_and_metrics() -> None:
    loss = (
        as_loss(torchmetrics.MeanSquaredError()) + 0.5 * Loss(mae_fn, 'MAE')
    ) | torchmetrics.MeanAbsoluteError()
    outputs = torch.tensor([1.0, 3.0], requires_grad=True)
    value = loss(outputs, torch.zeros(2))
    value.backward()  # type: ignore[no-untyped-call]
    assert value.item() == pytest.approx(5.0 + 0.5 * 2.0)
    assert outputs.grad is not None
    assert torch.allclose(outputs.grad, torch.tensor([1.0 + 0.25, 3.0 + 0.25]))
    computed = {name: v.item() for name, v in loss.compute().items()}
    assert computed == {
        'Combined Loss': pytest.approx(6.0),
        'MeanSquaredError': pytest.approx(5.0),
        'MAE': pytest.approx(2.0),
        'MeanAbsoluteError': pytest.approx(2.0),
    }


def test_a_torchmetrics_loss_resumes_its_epoch_from_its_state() -> None:
    loss = as_loss(torchmetrics.MeanSquaredError())
    loss(torch.tensor([1.0, 0.0]), torch.zeros(2))
    fresh = as_loss(torchmetrics.MeanSquaredError())
    fresh.load_state_dict(loss.state_dict())
    for resumed in (loss, fresh):
        resumed(torch.tensor([2.0, 2.0]), torch.zeros(2))
    assert fresh.compute() == loss.compute()


def test_a_torchmetrics_loss_must_compute_a_scalar() -> None:
    loss = as_loss(torchmetrics.MeanSquaredError(num_outputs=2))
    with pytest.raises(ObjectiveError, match=r'shape \(2,\).*scalar'):
        loss(torch.ones(3, 2), torch.zeros(3, 2))


@pytest.mark.parametrize(
    ('wrong', 'why'),
    [
        (torchmetrics.classification.BinaryAccuracy(), 'not differentiable'),
        (
            torchmetrics.MetricCollection([torchmetrics.MeanSquaredError()]),
            'not a single metric',
        ),
        (Metric(mae_fn, 'MAE'), 'Metric'),
        (kit.mse_fn, 'function'),
        (object(), 'object'),
    ],
)
def test_as_loss_refuses_what_is_neither_a_loss_nor_a_differentiable_metric(
    wrong: object, why: str
) -> None:
    with pytest.raises(ObjectiveError, match='A loss must be a drytorch Loss') as info:
        as_loss(wrong)  # type: ignore[call-overload]
    assert why in str(info.value)


# --- the states torchmetrics does not persist ----------------------------------


def _mean_metric() -> torchmetrics.Metric:
    return torchmetrics.MeanMetric()  # update(value, weight): targets weigh


def _mse_metric() -> torchmetrics.Metric:
    return torchmetrics.MeanSquaredError()


@pytest.mark.parametrize('build', [_mean_metric, _mse_metric])
def test_a_wrapped_metric_restores_its_non_persistent_state(build: Any) -> None:
    wrapped = as_objective(build())
    wrapped.update(torch.tensor([1.0, 0.0]), torch.ones(2))  # mean 0.5
    wrapped.update(torch.tensor([0.0, 1.0]), torch.ones(2))  # MSE 0.5 too
    state = wrapped.state_dict()
    fresh = as_objective(build())
    with warnings.catch_warnings():
        warnings.simplefilter('error')  # torchmetrics' compute-before-update
        fresh.load_state_dict(state)
        restored = fresh.compute()
    name = type(fresh.wrapped).__name__  # type: ignore[attr-defined]
    assert restored[name].item() == pytest.approx(0.5)
    assert restored == wrapped.compute()


def test_wrapping_makes_the_states_persistent() -> None:
    metric = torchmetrics.MeanSquaredError()
    assert metric.state_dict() == {}  # torchmetrics' default
    as_objective(metric)
    assert set(metric.state_dict()) == {'sum_squared_error', 'total'}


def test_a_collection_restores_its_torchmetrics_members() -> None:
    def build() -> MetricCollection[Tensor, Tensor]:
        members = torchmetrics.MetricCollection(
            [torchmetrics.MeanSquaredError(), torchmetrics.MeanAbsoluteError()]
        )
        return Metric(mae_fn, 'MAE') | members

    collection = build()
    collection.update(torch.tensor([1.0, 0.0]), torch.zeros(2))
    fresh = build()
    fresh.load_state_dict(collection.state_dict())
    assert {name: v.item() for name, v in fresh.compute().items()} == {
        'MAE': pytest.approx(0.5),
        'MeanSquaredError': pytest.approx(0.5),
        'MeanAbsoluteError': pytest.approx(0.5),
    }


# --- the trainer (needs Trainer.__init__ to call objectives.as_loss) -----------


@pytest.mark.usefixtures('run')
def test_a_trainer_trains_with_a_torchmetrics_loss() -> None:
    reference = kit.trainer(kit.linear(), loss=Loss(kit.mse_fn, 'MeanSquaredError'))
    trainer = kit.trainer(kit.linear(), loss=torchmetrics.MeanSquaredError())
    assert isinstance(trainer.loss, LossBase)
    for each in (reference, trainer):
        each.add_validation(DataLoader(kit.regression(10, seed=1), 4))
        each.train(2)
    trained, expected = kit.weights(trainer.model), kit.weights(reference.model)
    assert all(torch.allclose(trained[k], expected[k]) for k in expected)
    assert trainer.computed_metrics == pytest.approx(reference.computed_metrics)
    assert trainer.validation is not None and reference.validation is not None
    assert trainer.validation.computed_metrics == pytest.approx(
        reference.validation.computed_metrics
    )


@pytest.mark.usefixtures('run')
def test_a_trainer_refuses_a_non_differentiable_loss_when_built() -> None:
    with pytest.raises(ObjectiveError, match='not differentiable'):
        kit.trainer(loss=torchmetrics.classification.BinaryAccuracy())


# --- a process killed inside an epoch and resumed ------------------------------

EPOCHS = 2
EVERY_STEPS = 3
KILL_AFTER = 14  # epoch 2, batch 6: the latest checkpoint is at step 12

CHILD = r"""
import json
import sys
import time

import torch
import torchmetrics
from torch import nn
from torch.utils import data

from drytorch import DataLoader, Experiment, LearningSchema, Loss, Model, Trainer
from drytorch import hookimpl
from drytorch.core.plugins import get_host
from drytorch.lib.objectives import as_loss

name, kill_after, epochs, every_steps = json.loads(sys.argv[1])
torch.set_num_threads(1)


class Marker:
    def __init__(self, trainer):
        self.trainer = trainer

    @hookimpl
    def on_batch_end(self, event):
        if event.source_name == 'Trainer' and self.trainer.steps == kill_after:
            print('MARK', flush=True)
            time.sleep(600)  # the parent kills the process here


def mse(outputs, targets):
    return ((outputs - targets) ** 2).mean()


generator = torch.Generator().manual_seed(0)
x = torch.randn(64, 3, generator=generator)
y = x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3
with Experiment(None, name=name, par_dir='.').create_run(run_id='r', resume=True):
    torch.manual_seed(0)
    model = Model(nn.Linear(3, 1), device='cpu')
    mae = as_loss(torchmetrics.MeanAbsoluteError())
    loss = (Loss(mse, 'MSE') + 0.1 * mae) | torchmetrics.MeanSquaredError()
    trainer = Trainer(
        model,
        loader=DataLoader(data.TensorDataset(x, y), 8, seed=0),
        loss=loss,
        learning_schema=LearningSchema.adam(lr=0.05),
    )
    trainer.add_validation(
        DataLoader(data.TensorDataset(x[:20], y[:20]), 8),
        metric=torchmetrics.MeanSquaredError(),
    )
    trainer.checkpoint_every(steps=every_steps)
    get_host().register(Marker(trainer), 'marker')
    trainer.resume()
    print('READY', model.epoch, trainer.steps, flush=True)
    trainer.train_until(epochs)
    metrics = {
        'trainer': trainer.computed_metrics,
        'validation': trainer.validation.computed_metrics,
    }
    print('RESULT', json.dumps(metrics), flush=True)
"""


def _spawn(name: str, kill_after: int) -> subprocess.Popen[str]:
    env = dict(
        os.environ,
        DRYTORCH_INIT_MODE='none',
        PYTHONPATH=str(ROOT / 'src'),
        PYTHONUNBUFFERED='1',
        OMP_NUM_THREADS='1',
    )
    args = json.dumps([name, kill_after, EPOCHS, EVERY_STEPS])
    return subprocess.Popen(
        [sys.executable, '-c', CHILD, args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _complete(name: str) -> tuple[list[str], dict[str, dict[str, float]]]:
    """Run the script to its end; return its READY line and final metrics."""
    process = _spawn(name, kill_after=-1)
    ready = _read_until(process, 'READY')[-1].split()
    output, _ = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, output
    result = next(line for line in output.splitlines() if line.startswith('RESULT'))
    return ready, json.loads(result.removeprefix('RESULT '))


def test_a_run_killed_inside_an_epoch_ends_with_the_uninterrupted_metrics() -> None:
    ready, expected = _complete('reference')
    assert ready[1:] == ['0', '0']
    process = _spawn('killed', kill_after=KILL_AFTER)
    _read_until(process, 'MARK')
    _kill(process)
    ready, resumed = _complete('killed')
    assert ready[1:] == ['1', '12']  # inside epoch 2, 4 batches of it done
    assert resumed == expected
    assert set(resumed['trainer']) == {
        'Combined Loss',
        'MSE',
        'MeanAbsoluteError',
        'MeanSquaredError',
    }
