"""Objectives: exact aggregation, no device syncs, collections, loss algebra."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import pytest
import torch

from drytorch.core.exceptions import ComputedBeforeUpdatedError, ObjectiveError
from drytorch.lib.objectives import (
    CompositionalLoss,
    Loss,
    LossBase,
    LossWithMetrics,
    Metric,
    MetricCollection,
    Objective,
    as_objective,
)

Tensor = torch.Tensor

OUTPUTS = torch.ones(1, 1)
TARGETS = 3 * torch.ones(1, 1)


def mse(outputs: Tensor, targets: Tensor) -> Tensor:
    return ((outputs - targets) ** 2).mean()


def mae(outputs: Tensor, targets: Tensor) -> Tensor:
    return (outputs - targets).abs().mean()


def identity(outputs: Tensor, targets: Tensor) -> Tensor:
    """The outputs themselves: lets a test choose each batch's value."""
    return outputs


def per_sample_error(outputs: Tensor, targets: Tensor) -> Tensor:
    return (outputs - targets).abs().flatten(1).mean(1)


def floats(values: dict[str, Tensor]) -> dict[str, float]:
    return {name: value.item() for name, value in values.items()}


class FakeTorchmetric:
    """Mimics a torchmetrics metric: own state, update/compute/reset."""

    higher_is_better = True

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.reset()

    def update(self, preds: Tensor, target: Tensor) -> None:
        self.calls.append('update')
        self.correct = self.correct + (preds == target).sum()
        self.total += target.numel()

    def compute(self) -> Tensor:
        self.calls.append('compute')
        return self.correct / self.total

    def reset(self) -> None:
        self.calls = [*getattr(self, 'calls', []), 'reset']
        self.correct = torch.tensor(0)
        self.total = 0


class DictTorchmetric(FakeTorchmetric):
    """A torchmetrics-style object whose compute returns several values."""

    def compute(self) -> dict[str, Any]:  # type: ignore[override]
        return {'correct': self.correct, 'total': self.total}


# --- Metric: aggregation ------------------------------------------------------


def test_metric_calculates_its_named_value() -> None:
    positional = Metric(mse, 'MSE', False)
    keyword = Metric(fn=mse, name='MSE', higher_is_better=False)
    for metric in (positional, keyword):
        assert floats(metric.calculate(OUTPUTS, TARGETS)) == {'MSE': 4.0}
        assert metric.higher_is_better == {'MSE': False}
    assert Metric(mse, 'MSE').higher_is_better == {'MSE': None}


def test_scalar_values_average_over_batches() -> None:
    metric = Metric(identity, 'value')
    for value in (1.0, 2.0, 6.0):
        metric.update(torch.tensor(value), None)
    assert floats(metric.compute()) == {'value': 3.0}


def test_per_sample_values_are_exact_over_uneven_batches() -> None:
    metric = Metric(identity, 'value')
    metric.update(torch.tensor([1.0, 2.0, 3.0]), None)
    metric.update(torch.tensor([10.0]), None)
    # The mean over samples, not the mean of the batch means (6).
    assert floats(metric.compute()) == {'value': 4.0}


def test_mixed_batch_sizes_with_a_real_per_sample_metric() -> None:
    metric = Metric(per_sample_error, 'error')
    outputs = torch.arange(10.0).reshape(5, 2)
    targets = torch.zeros(5, 2)
    metric.update(outputs[:3], targets[:3])
    metric.update(outputs[3:], targets[3:])
    expected = per_sample_error(outputs, targets).mean()
    assert metric.compute()['error'].item() == pytest.approx(expected.item())


def test_boolean_and_integer_values_aggregate() -> None:
    accuracy = Metric(lambda o, t: o == t, 'Accuracy', higher_is_better=True)
    accuracy.update(torch.tensor([1, 2, 3]), torch.tensor([1, 2, 0]))
    accuracy.update(torch.tensor([4]), torch.tensor([4]))
    assert floats(accuracy.compute()) == {'Accuracy': 0.75}
    count = Metric(lambda o, t: (o == t).sum(), 'Correct')
    count.update(torch.tensor([1, 2]), torch.tensor([1, 2]))
    count.update(torch.tensor([1, 2]), torch.tensor([1, 0]))
    assert floats(count.compute()) == {'Correct': 1.5}


def test_accumulation_is_float64() -> None:
    metric = Metric(identity, 'value')
    for _ in range(10_000):
        metric.update(torch.tensor(0.1), None)
    value = metric.compute()['value']
    assert value.dtype == torch.float64
    # float32 running sums drift by ~1e-5 here.
    assert value.item() == pytest.approx(torch.tensor(0.1).item(), abs=1e-12)


def test_compute_returns_zero_dim_tensors() -> None:
    metric = Metric(identity, 'value')
    metric.update(torch.tensor([1.0, 2.0]), None)
    computed = metric.compute()['value']
    assert isinstance(computed, torch.Tensor)
    assert computed.ndim == 0


def test_compute_before_update_raises() -> None:
    metric = Metric(mse, 'MSE')
    with pytest.raises(ComputedBeforeUpdatedError, match='update'):
        metric.compute()


def test_reset_forgets_every_batch() -> None:
    metric = Metric(identity, 'value')
    metric.update(torch.tensor(100.0), None)
    metric.reset()
    with pytest.raises(ComputedBeforeUpdatedError):
        metric.compute()
    metric.update(torch.tensor(1.0), None)
    assert floats(metric.compute()) == {'value': 1.0}


def test_update_returns_the_calculated_values_in_the_graph() -> None:
    weight = torch.tensor(2.0, requires_grad=True)
    metric = Metric(lambda o, t: (weight * o).mean(), 'scaled')
    returned = metric.update(torch.ones(3), None)['scaled']
    assert returned.requires_grad
    returned.backward()
    assert weight.grad is not None
    assert weight.grad.item() == 1.0


def test_gradients_do_not_leak_into_the_accumulators() -> None:
    weight = torch.tensor(2.0, requires_grad=True)
    scalar = Metric(lambda o, t: (weight * o).mean(), 'scalar')
    vector = Metric(lambda o, t: weight * o, 'vector')
    for _ in range(2):  # the first update creates, the second adds
        scalar.update(torch.ones(3), None)
        vector.update(torch.ones(3), None)
    for metric in (scalar, vector):
        assert not any(total.requires_grad for total in metric._running.sums.values())
        assert not any(value.requires_grad for value in metric.compute().values())


def test_accumulators_do_not_alias_the_values() -> None:
    value = torch.tensor(1.0, dtype=torch.float64)
    metric = Metric(lambda o, t: value, 'value')
    metric.update(None, None)
    value += 100  # the caller reuses its tensor
    metric.update(None, None)
    assert floats(metric.compute()) == {'value': 51.0}


DEVICES = [
    'cpu',
    # 'meta' tensors have no data: any read of a value would fail there.
    'meta',
    pytest.param(
        'cuda',
        marks=pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA'),
    ),
]


@pytest.mark.parametrize('device', DEVICES)
def test_values_stay_on_the_input_device(device: str) -> None:
    scalar = Metric(mse, 'MSE')
    vector = Metric(per_sample_error, 'error')
    outputs = torch.ones(4, 2, device=device)
    targets = torch.zeros(4, 2, device=device)
    for metric in (scalar, vector):
        metric.update(outputs, targets)
        metric.update(outputs[:1], targets[:1])
        for total in metric._running.sums.values():
            assert total.device.type == device
        for value in metric.compute().values():
            assert value.device.type == device
            assert value.ndim == 0


@pytest.fixture
def no_host_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every way of reading a tensor on the host fail."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError('a tensor was read on the host (device sync)')

    for method in ('item', 'tolist', '__bool__', '__float__', '__int__', '__index__'):
        monkeypatch.setattr(torch.Tensor, method, refuse)


@pytest.mark.usefixtures('no_host_reads')
def test_update_never_reads_values_on_the_host() -> None:
    loss = Loss(mse, 'MSE') ** 2 + 0.5 * Loss(per_sample_error, 'error')
    objective = loss | Metric(per_sample_error, 'e') | FakeMetricNoSync()
    outputs = torch.ones(3, 2, requires_grad=True)
    targets = torch.zeros(3, 2)
    for _ in range(2):
        objective(outputs, targets).backward()
        objective(outputs[:1], targets[:1])
    objective.compute()


class FakeMetricNoSync(FakeTorchmetric):
    def update(self, preds: Tensor, target: Tensor) -> None:
        self.correct = self.correct + (preds == target).sum()
        self.total += target.numel()


@pytest.mark.skipif(not torch.cuda.is_available(), reason='no CUDA')
def test_update_never_synchronizes_cuda() -> None:
    metrics = Metric(mse, 'mse metric') | Metric(per_sample_error, 'error')
    loss = (Loss(mse, 'MSE') + 2 * Loss(mae, 'MAE')) | metrics
    outputs = torch.ones(8, 2, device='cuda', requires_grad=True)
    targets = torch.zeros(8, 2, device='cuda')
    loss(outputs, targets)  # the first call allocates
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode('error')
    try:
        for size in (8, 3):
            loss(outputs[:size], targets[:size]).backward()
        loss.compute()
    finally:
        torch.cuda.set_sync_debug_mode('default')


def test_two_dimensional_values_are_refused_naming_the_metric() -> None:
    metric = Metric(lambda o, t: o, 'Raw')
    with pytest.raises(ObjectiveError, match=r"'Raw'.*\(2, 3\)"):
        metric.update(torch.ones(2, 3), None)


def test_non_tensor_values_are_refused() -> None:
    metric = Metric(lambda o, t: 1.0, 'Number')  # type: ignore[arg-type,return-value]
    with pytest.raises(ObjectiveError, match="'Number'"):
        metric.update(None, None)


def test_invalid_metric_definitions_are_refused() -> None:
    with pytest.raises(ObjectiveError):
        Metric(mse, '')
    with pytest.raises(ObjectiveError):
        Metric('mse', 'MSE')  # type: ignore[arg-type]


def test_reprs_are_readable() -> None:
    assert repr(Metric(mse, 'MSE', False)) == (
        "Metric(name='MSE', fn=mse, higher_is_better=False)"
    )
    assert repr(Loss(mse, 'MSE')) == 'Loss([MSE])'
    collection = Metric(mse, 'a') | Metric(mae, 'b')
    assert repr(collection).startswith("MetricCollection(Metric(name='a'")
    combined = Loss(mse, 'MSE') + Loss(mae, 'MAE')
    assert repr(combined) == 'CompositionalLoss([MSE] + [MAE])'
    assert repr(as_objective(FakeTorchmetric())).startswith('as_objective(')


def test_copies_have_independent_state() -> None:
    metric = Metric(identity, 'value')
    metric.update(torch.tensor(1.0), None)
    duplicate = copy.deepcopy(metric)
    duplicate.update(torch.tensor(3.0), None)
    assert floats(metric.compute()) == {'value': 1.0}
    assert floats(duplicate.compute()) == {'value': 2.0}
    restored = pickle.loads(pickle.dumps(Metric(mse, 'M', True) | MSE))
    assert restored.higher_is_better == {'M': True, 'MSE': False}


def test_custom_objective_needs_only_calculate() -> None:
    class Stats(Objective[Tensor, Tensor]):
        def __init__(self, scale: float) -> None:  # no super().__init__()
            self.scale = scale

        def calculate(self, outputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
            return {'mean': self.scale * outputs.mean(), 'per_sample': outputs}

    stats = Stats(2.0)
    stats.update(torch.tensor([1.0, 2.0, 3.0]), torch.zeros(3))
    stats.update(torch.tensor([5.0]), torch.zeros(1))
    assert floats(stats.compute()) == {'mean': 7.0, 'per_sample': 2.75}
    assert stats.higher_is_better == {}
    assert repr(stats) == 'Stats()'


def test_objective_is_abstract() -> None:
    with pytest.raises(TypeError):
        Objective()  # type: ignore[abstract]
    with pytest.raises(TypeError):
        LossBase()  # type: ignore[abstract]


# --- MetricCollection ---------------------------------------------------------


def test_collection_merges_values_in_order() -> None:
    collection = MetricCollection(Metric(mse, 'MSE'), Metric(mae, 'MAE'))
    calculated = collection.update(OUTPUTS, TARGETS)
    assert list(calculated) == ['MSE', 'MAE']
    assert floats(collection.compute()) == {'MSE': 4.0, 'MAE': 2.0}


def test_or_flattens_into_one_collection() -> None:
    a, b, c = Metric(mse, 'a'), Metric(mae, 'b', True), Metric(mse, 'c')
    collection = a | b | c
    assert type(collection) is MetricCollection
    assert collection.objectives == (a, b, c)
    assert collection.higher_is_better == {'a': None, 'b': True, 'c': None}
    assert list(collection.calculate(OUTPUTS, TARGETS)) == ['a', 'b', 'c']
    nested = MetricCollection(a | b, MetricCollection(c))
    assert nested.objectives == (a, b, c)


def test_duplicate_names_are_refused_naming_them() -> None:
    with pytest.raises(ObjectiveError, match="'MSE'"):
        Metric(mse, 'MSE') | Metric(mae, 'MAE') | Metric(mae, 'MSE')
    metric = Metric(mse, 'MSE')
    with pytest.raises(ObjectiveError, match="'MSE'"):
        metric | metric


def test_duplicates_found_only_when_calculated_are_refused() -> None:
    class Anonymous(Objective[Tensor, Tensor]):
        def calculate(self, outputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
            return {'MSE': outputs.mean()}

    collection = Metric(mse, 'MSE') | Anonymous()
    with pytest.raises(ObjectiveError, match="'MSE'"):
        collection.update(OUTPUTS, TARGETS)


def test_collection_state_is_its_own() -> None:
    shared = Metric(identity, 'value')
    train = shared | Metric(identity, 'other')
    validation = shared | Metric(identity, 'more')
    train.update(torch.tensor(1.0), None)
    validation.update(torch.tensor(5.0), None)
    assert floats(train.compute())['value'] == 1.0
    assert floats(validation.compute())['value'] == 5.0
    with pytest.raises(ComputedBeforeUpdatedError):
        shared.compute()


def test_collection_reset_and_compute_before_update() -> None:
    collection = Metric(mse, 'MSE') | Metric(mae, 'MAE')
    with pytest.raises(ComputedBeforeUpdatedError):
        collection.compute()
    collection.update(OUTPUTS, TARGETS)
    collection.reset()
    with pytest.raises(ComputedBeforeUpdatedError):
        collection.compute()


def test_or_with_anything_else_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        Metric(mse, 'MSE') | 3  # type: ignore[operator]


# --- update/compute/reset protocol (torchmetrics) -----------------------------


def test_as_objective_delegates_to_a_torchmetrics_style_object() -> None:
    fake = FakeTorchmetric()
    wrapped = as_objective(fake)
    assert wrapped.higher_is_better == {'FakeTorchmetric': True}
    with pytest.raises(ComputedBeforeUpdatedError):
        wrapped.compute()
    assert wrapped.update(torch.tensor([1, 2]), torch.tensor([1, 0])) == {}
    assert floats(wrapped.compute()) == {'FakeTorchmetric': 0.5}
    wrapped.reset()
    assert fake.calls[-1] == 'reset'
    assert fake.total == 0
    renamed = as_objective(FakeTorchmetric(), name='Accuracy')
    assert renamed.higher_is_better == {'Accuracy': True}


def test_as_objective_returns_objectives_unchanged_and_refuses_others() -> None:
    metric = Metric(mse, 'MSE')
    assert as_objective(metric) is metric
    with pytest.raises(ObjectiveError, match='update'):
        as_objective(object())  # type: ignore[arg-type]


def test_metric_or_torchmetric_keeps_the_order() -> None:
    fake = FakeTorchmetric()
    collection = Metric(mse, 'MSE') | fake | Metric(mae, 'MAE')
    assert collection.higher_is_better == {
        'MSE': None,
        'FakeTorchmetric': True,
        'MAE': None,
    }
    outputs = torch.tensor([1.0, 2.0, 3.0, 4.0])
    targets = torch.tensor([1.0, 2.0, 0.0, 0.0])
    assert list(collection.update(outputs, targets)) == ['MSE', 'MAE']
    computed = floats(collection.compute())
    assert list(computed) == ['MSE', 'FakeTorchmetric', 'MAE']
    assert computed['FakeTorchmetric'] == 0.5
    collection.reset()
    assert fake.total == 0
    with pytest.raises(ComputedBeforeUpdatedError):
        collection.compute()


def test_torchmetric_on_the_left_and_dict_results() -> None:
    collection = DictTorchmetric() | Metric(mse, 'MSE')
    assert isinstance(collection, MetricCollection)
    collection.update(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 0.0]))
    assert floats(collection.compute()) == {'correct': 1.0, 'total': 2.0, 'MSE': 2.0}


def test_torchmetric_clashing_with_a_metric_name_is_refused() -> None:
    collection = Metric(mse, 'total') | DictTorchmetric()
    collection.update(torch.tensor([1.0]), torch.tensor([1.0]))
    with pytest.raises(ObjectiveError, match="'total'"):
        collection.compute()


# --- Loss ---------------------------------------------------------------------


def test_loss_forward_updates_and_returns_the_attached_value() -> None:
    outputs = torch.ones(2, 1, requires_grad=True)
    loss = Loss(mse, 'MSE')
    value = loss(outputs, 3 * torch.ones(2, 1))
    assert value.requires_grad
    assert value.item() == 4.0
    value.backward()
    assert outputs.grad is not None
    assert loss.forward(torch.ones(2, 1), torch.ones(2, 1)).item() == 0.0
    assert floats(loss.compute()) == {'MSE': 2.0}
    assert loss.higher_is_better == {'MSE': False}
    assert loss.name == 'MSE'
    assert loss.formula == '[MSE]'


def test_per_sample_loss_is_averaged_for_backward() -> None:
    loss = Loss(per_sample_error, 'error')
    outputs = torch.tensor([[1.0], [3.0]], requires_grad=True)
    value = loss(outputs, torch.zeros(2, 1))
    assert value.ndim == 0
    assert value.item() == 2.0
    value.backward()
    assert outputs.grad is not None
    assert outputs.grad.flatten().tolist() == [0.5, 0.5]


def test_two_dimensional_loss_is_refused_showing_the_shape() -> None:
    loss = Loss(lambda o, t: o - t, 'Raw')
    with pytest.raises(
        ObjectiveError, match=r'scalar or a per-sample vector.*\(2, 3\)'
    ):
        loss(torch.ones(2, 3), torch.zeros(2, 3))


def test_custom_loss_base_subclass() -> None:
    class Hinge(LossBase[Tensor, Tensor]):
        name = 'Hinge'
        formula = '[Hinge]'

        def calculate(self, outputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
            return {'Hinge': (1 - outputs * targets).clamp(min=0)}

    hinge = Hinge()
    assert hinge(torch.tensor([0.0, 2.0]), torch.tensor([1.0, 1.0])).item() == 0.5
    combined = 2 * hinge
    assert combined.formula == '(2 x [Hinge])'


def test_missing_loss_value_is_reported() -> None:
    class Misnamed(LossBase[Tensor, Tensor]):
        name = 'Expected'
        formula = '[Expected]'

        def calculate(self, outputs: Tensor, targets: Tensor) -> dict[str, Tensor]:
            return {'Other': outputs.mean()}

    with pytest.raises(ObjectiveError, match="'Expected'"):
        Misnamed()(OUTPUTS, TARGETS)
    with pytest.raises(ObjectiveError, match="'Expected'"):
        (Misnamed() + 1)(OUTPUTS, TARGETS)


# --- CompositionalLoss --------------------------------------------------------


def test_known_combination_values_order_and_formula() -> None:
    combined = Loss(mse, 'MSE') ** 2 + 0.5 * Loss(mae, 'MAE')
    assert isinstance(combined, CompositionalLoss)
    assert combined.name == 'Combined Loss'
    assert combined.formula == '[MSE]^2 + 0.5 x [MAE]'
    calculated = combined.calculate(OUTPUTS, TARGETS)
    assert list(calculated) == ['Combined Loss', 'MSE', 'MAE']
    assert floats(calculated) == {'Combined Loss': 17.0, 'MSE': 4.0, 'MAE': 2.0}
    assert combined(OUTPUTS, TARGETS).item() == 17.0
    computed = combined.compute()
    assert list(computed) == ['Combined Loss', 'MSE', 'MAE']
    assert floats(computed) == {'Combined Loss': 17.0, 'MSE': 4.0, 'MAE': 2.0}
    assert combined.higher_is_better == {
        'Combined Loss': False,
        'MSE': False,
        'MAE': False,
    }


A = Loss(mse, 'A')
B = Loss(mae, 'B')
C = Loss(mse, 'C')
NEG_A = -A


@pytest.mark.parametrize(
    ('loss', 'formula'),
    [
        (A + B, '[A] + [B]'),
        (A - B, '[A] - [B]'),
        (A * B, '[A] x [B]'),
        (A / B, '[A] / [B]'),
        (A**B, '[A]^[B]'),
        (-A, '(-[A])'),
        (A**2, '([A]^2)'),
        (2 * A, '(2 x [A])'),
        (A * 2, '(2 x [A])'),
        (0.5 * A, '(0.5 x [A])'),
        (2.0 * A, '(2 x [A])'),
        (1e-05 * A, '(1e-05 x [A])'),
        (A + 1, '(1 + [A])'),
        (1 + A, '(1 + [A])'),
        (1 - A, '(1 - [A])'),
        (1 / A, '(1 / [A])'),
        (2**A, '(2^[A])'),
        ((A + B) ** 2, '(([A] + [B])^2)'),
        (2 * (A + B), '(2 x ([A] + [B]))'),
        ((A + B) * 2, '(2 x ([A] + [B]))'),
        (A - (B + C), '[A] - ([B] + [C])'),
        (A - B - C, '[A] - [B] - [C]'),
        (A + B + C, '[A] + [B] + [C]'),
        (A + B * C, '[A] + [B] x [C]'),
        (A / (B * C), '[A] / ([B] x [C])'),
        (A / B / C, '[A] / [B] / [C]'),
        ((A * B) ** 2, '(([A] x [B])^2)'),
        ((A**2) ** 3, '(([A]^2)^3)'),
        (A ** (B + 1), '[A]^(1 + [B])'),
        (A**-1, '(1 / [A])'),
        (-(A + B), '(-([A] + [B]))'),
        (-NEG_A, '(-(-[A]))'),
        ((-A) ** 2, '((-[A])^2)'),
        (2 * (-A), '(2 x (-[A]))'),
        (A - (-B), '[A] - (-[B])'),
        (A + -1, '(-1 + [A])'),
        (A * True, '(1 x [A])'),
    ],
)
def test_formula(loss: CompositionalLoss[Tensor, Tensor], formula: str) -> None:
    assert loss.formula == formula


MSE = Loss(mse, 'MSE')  # 4 on OUTPUTS, TARGETS
MAE = Loss(mae, 'MAE')  # 2 on OUTPUTS, TARGETS


@pytest.mark.parametrize(
    ('loss', 'expected'),
    [
        (MSE + MAE, 6.0),
        (MSE - MAE, 2.0),
        (MSE * MAE, 8.0),
        (MSE / MAE, 2.0),
        (MSE**MAE, 16.0),
        (MSE + 1, 5.0),
        (1 + MSE, 5.0),
        (MSE - 1, 3.0),
        (10 - MSE, 6.0),
        (MSE * 3, 12.0),
        (3 * MSE, 12.0),
        (MSE / 8, 0.5),
        (8 / MSE, 2.0),
        (2**MAE, 4.0),
        (-MSE, -4.0),
        (MSE - (MAE + MAE), 0.0),
        (-(MSE - MAE) * 2 + 1, -3.0),
    ],
)
def test_algebra_values(
    loss: CompositionalLoss[Tensor, Tensor], expected: float
) -> None:
    assert loss(OUTPUTS, TARGETS).item() == expected
    assert floats(loss.compute())[loss.name] == expected


def test_combined_value_comes_from_each_batch_value() -> None:
    squared = Loss(per_sample_error, 'error') ** 2
    squared.update(torch.tensor([[1.0], [3.0]]), torch.zeros(2, 1))
    squared.update(torch.tensor([[4.0]]), torch.zeros(1, 1))
    # Per batch: mean error 2 then 4, squared 4 then 16; the error itself is
    # averaged over the 3 samples.
    assert floats(squared.compute()) == {'Loss': 10.0, 'error': 8 / 3}


def test_composition_gradients_reach_the_inputs() -> None:
    outputs = torch.ones(1, 1, requires_grad=True)
    (MSE**2 + 0.5 * MAE)(outputs, TARGETS).backward()
    # d/do [(o-3)^4 + 0.5 |o-3|] at o=1: 4(-2)^3 - 0.5
    assert outputs.grad is not None
    assert outputs.grad.item() == -32.5


def test_combined_losses_pickle() -> None:
    combined = (MSE**2 + 0.5 * -MAE) | Metric(mse, 'metric')
    restored = pickle.loads(pickle.dumps(combined))
    assert restored.formula == '[MSE]^2 + 0.5 x (-[MAE])'
    assert floats(restored.calculate(OUTPUTS, TARGETS)) == {
        'Combined Loss': 15.0,
        'MSE': 4.0,
        'MAE': 2.0,
        'metric': 4.0,
    }


def test_a_loss_used_twice_is_computed_once() -> None:
    doubled = MSE + MSE * 2
    calculated = doubled.calculate(OUTPUTS, TARGETS)
    assert floats(calculated) == {'Combined Loss': 12.0, 'MSE': 4.0}
    assert doubled.components == (MSE,)


def test_components_keep_the_order_of_first_appearance() -> None:
    combined = (MAE + MSE) * (MSE + C)
    assert list(combined.calculate(OUTPUTS, TARGETS)) == [
        'Combined Loss',
        'MAE',
        'MSE',
        'C',
    ]


def test_different_losses_with_one_name_are_refused() -> None:
    with pytest.raises(ObjectiveError, match="'MSE'"):
        Loss(mse, 'MSE') + Loss(mae, 'MSE')


def test_a_component_named_combined_loss_is_refused() -> None:
    with pytest.raises(ObjectiveError, match='Combined Loss'):
        Loss(mse, 'Combined Loss') + 1


def test_unsupported_operands_are_type_errors() -> None:
    with pytest.raises(TypeError):
        MSE + 'a'  # type: ignore[operator]
    with pytest.raises(TypeError):
        MSE * Metric(mse, 'metric')  # type: ignore[operator]


def test_compositional_loss_from_a_custom_combination() -> None:
    worst = CompositionalLoss(
        [MSE, MAE],
        lambda values: torch.maximum(values['MSE'], values['MAE']),
        'max([MSE], [MAE])',
    )
    assert floats(worst.calculate(OUTPUTS, TARGETS)) == {
        'Combined Loss': 4.0,
        'MSE': 4.0,
        'MAE': 2.0,
    }
    # A custom formula is parenthesized when nested.
    assert (2 * worst).formula == '(2 x (max([MSE], [MAE])))'


# --- loss | metrics -----------------------------------------------------------


def test_loss_with_metrics_reports_the_loss_first() -> None:
    loss = MSE**2 + 0.5 * MAE
    accuracy = Metric(lambda o, t: (o == t).float().mean(), 'Accuracy', True)
    reported = loss | accuracy
    assert isinstance(reported, LossBase)
    assert isinstance(reported, LossWithMetrics)
    assert reported.name == 'Combined Loss'
    assert reported.formula == '[MSE]^2 + 0.5 x [MAE]'
    assert list(reported.calculate(OUTPUTS, TARGETS)) == [
        'Combined Loss',
        'MSE',
        'MAE',
        'Accuracy',
    ]
    assert reported(OUTPUTS, TARGETS).item() == 17.0
    assert floats(reported.compute()) == {
        'Combined Loss': 17.0,
        'MSE': 4.0,
        'MAE': 2.0,
        'Accuracy': 0.0,
    }
    assert reported.higher_is_better == {
        'Combined Loss': False,
        'MSE': False,
        'MAE': False,
        'Accuracy': True,
    }


def test_loss_with_metrics_flattens_and_accepts_torchmetrics() -> None:
    first, second = Metric(mae, 'first'), Metric(mae, 'second')
    fake = FakeTorchmetric()
    reported = MSE | first | (second | fake)
    assert isinstance(reported, LossWithMetrics)
    assert reported.loss is MSE
    assert reported.metrics[:2] == (first, second)
    assert reported(OUTPUTS, TARGETS).item() == 4.0
    assert list(reported.compute()) == ['MSE', 'first', 'second', 'FakeTorchmetric']


def test_loss_with_metrics_refuses_clashing_names() -> None:
    with pytest.raises(ObjectiveError, match="'MSE'"):
        MSE | Metric(mae, 'MSE')


def test_loss_with_metrics_cannot_enter_the_algebra() -> None:
    reported = MSE | Metric(mae, 'metric')
    with pytest.raises(ObjectiveError, match='combine the losses first'):
        reported + MAE
    with pytest.raises(ObjectiveError, match='combine the losses first'):
        2 * reported
    with pytest.raises(ObjectiveError, match='combine the losses first'):
        _ = -reported


def test_metric_or_loss_is_a_plain_collection() -> None:
    collection = Metric(mae, 'metric') | MSE
    assert type(collection) is MetricCollection
    assert list(collection.calculate(OUTPUTS, TARGETS)) == ['metric', 'MSE']


# --- state_dict: resuming an epoch's aggregates -------------------------------------


class SavableTorchmetric(FakeTorchmetric):
    """A torchmetrics-style metric whose state can be saved."""

    def state_dict(self) -> dict[str, Any]:
        return {'correct': self.correct.clone(), 'total': self.total}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.correct = state['correct'].clone()
        self.total = state['total']


def _batches(n: int) -> list[tuple[Tensor, Tensor]]:
    generator = torch.Generator().manual_seed(n)
    return [
        (
            torch.randn(size, 2, generator=generator),
            torch.randn(size, 2, generator=generator),
        )
        for size in (3, 5, 2, 4, 1, 6)[:n]
    ]


def _objectives() -> list[Objective[Tensor, Tensor]]:
    return [
        Metric(per_sample_error, 'Error'),
        Loss(mse, 'MSE') - Loss(mae, 'MAE') / 3,
        Loss(mse, 'MSE') | Metric(per_sample_error, 'Error'),
        (Loss(mse, 'MSE') ** 2 + 0.5 * Loss(mae, 'MAE')) | Metric(mae, 'L1'),
        MetricCollection(Metric(mae, 'L1'), as_objective(SavableTorchmetric(), 'Acc')),
    ]


@pytest.mark.parametrize('index', range(5))
def test_a_state_restored_in_a_copy_ends_with_the_same_means(index: int) -> None:
    batches = _batches(6)
    straight = _objectives()[index]
    for outputs, targets in batches:
        straight.update(outputs, targets)
    expected = straight.compute()

    first = _objectives()[index]
    for outputs, targets in batches[:4]:
        first.update(outputs, targets)
    state = pickle.loads(pickle.dumps(first.state_dict()))  # as through a file
    for outputs, targets in batches[4:]:
        first.update(outputs, targets)  # the state is a copy: unchanged
    resumed = _objectives()[index]
    resumed.load_state_dict(state)
    for outputs, targets in batches[4:]:
        resumed.update(outputs, targets)
    computed = resumed.compute()
    assert list(computed) == list(expected)
    for name, value in expected.items():
        assert torch.equal(computed[name], value), name  # bit for bit


def test_the_state_is_plain_data() -> None:
    loss = Loss(mse, 'MSE') | Metric(per_sample_error, 'Error')
    assert loss.state_dict() == {'sums': {}, 'counts': {}, 'batches': 0}
    loss.update(OUTPUTS, TARGETS)
    state = loss.state_dict()
    assert state['counts'] == {'MSE': 1, 'Error': 1}
    assert state['batches'] == 1
    assert type(state['sums']['MSE']) is float  # no tensor: no file record
    assert state['sums']['MSE'] == loss._running.sums['MSE'].item()


def test_sums_saved_as_numbers_are_restored_exactly_on_the_given_device() -> None:
    loss = Loss(mse, 'MSE')
    loss.update(OUTPUTS, TARGETS)
    loss.update(OUTPUTS * 1.1, TARGETS)
    saved = loss._running.sums['MSE'].clone()
    resumed = Loss(mse, 'MSE')
    resumed.load_state_dict(loss.state_dict(), device='meta')
    assert resumed._running.sums['MSE'].device.type == 'meta'  # created there
    resumed.load_state_dict(loss.state_dict())
    assert resumed._running.sums['MSE'].device.type == 'cpu'  # the default
    assert resumed._running.sums['MSE'].dtype == torch.float64
    assert torch.equal(resumed._running.sums['MSE'], saved)  # every bit of the float64


def test_sums_saved_as_tensors_by_earlier_versions_still_load() -> None:
    loss = Loss(mse, 'MSE')
    loss.update(OUTPUTS, TARGETS)
    state = loss.state_dict()
    earlier = dict(state, sums={'MSE': torch.tensor(state['sums']['MSE'])})
    resumed = Loss(mse, 'MSE')
    resumed.load_state_dict(earlier)
    assert torch.equal(resumed.compute()['MSE'], loss.compute()['MSE'])


def test_invalid_states_are_refused_naming_the_objective() -> None:
    metric = Metric(mae, 'L1')
    for state in (
        {},
        {'sums': {'L1': torch.zeros(())}, 'counts': {}, 'batches': 1},
        {'sums': {'L1': '1.0'}, 'counts': {'L1': 1}, 'batches': 1},
        {'sums': {'L1': True}, 'counts': {'L1': 1}, 'batches': 1},
        {'sums': {'L1': torch.zeros(2)}, 'counts': {'L1': 1}, 'batches': 1},
        [],
    ):
        with pytest.raises(ObjectiveError, match="Metric\\(name='L1'"):
            metric.load_state_dict(state)  # type: ignore[arg-type]
    collection = MetricCollection(metric, as_objective(SavableTorchmetric(), 'Acc'))
    with pytest.raises(ObjectiveError, match='0 torchmetrics-style members'):
        collection.load_state_dict({'sums': {}, 'counts': {}, 'batches': 0})


def test_a_wrapped_metric_without_state_dict_cannot_be_saved() -> None:
    wrapped = as_objective(FakeTorchmetric(), 'Acc')
    with pytest.raises(ObjectiveError, match='no state_dict'):
        wrapped.state_dict()
    with pytest.raises(ObjectiveError, match='no load_state_dict'):
        wrapped.load_state_dict({'batches': 0, 'wrapped': {}})
    with pytest.raises(ObjectiveError, match='no state_dict'):
        (Loss(mse, 'MSE') | FakeTorchmetric()).state_dict()
