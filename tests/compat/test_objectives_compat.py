"""The original DRYTorch's ``lib.objectives`` API and composed-loss spellings.

Written from ``shared/spec/original-api.md``: the ``lib.objectives`` table and
the composed-losses table of "Behaviours users see". Each test names the row
it covers.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest
import torch
import torchmetrics
from torch import Tensor

from drytorch import Loss, Metric
from drytorch.core.exceptions import ComputedMetricsTypeError, ObjectiveError
from drytorch.lib import objectives
from drytorch.lib.objectives import (
    CompositionalLoss,
    LossBase,
    MetricCollection,
    Objective,
    compute_metrics,
)
from tests import training_kit as kit

OUTPUTS = torch.ones(4, 1)
TARGETS = 3 * torch.ones(4, 1)  # MSE 4, MAE 2


def mse_fn(outputs: Tensor, targets: Tensor) -> Tensor:
    return ((outputs - targets) ** 2).mean()


def mae_fn(outputs: Tensor, targets: Tensor) -> Tensor:
    return (outputs - targets).abs().mean()


def sum_criterion(values: Any) -> Tensor:
    result: Tensor = values['MSE'] + values['MAE']
    return result


MSE = Loss(mse_fn, 'MSE')
MAE = Loss(mae_fn, 'MAE')


def floats(values: dict[str, Tensor]) -> dict[str, float]:
    return {name: value.item() for name, value in values.items()}


# --- Behaviours: composed losses (names, formulas, higher_is_better) ----------


@pytest.mark.parametrize(
    ('expression', 'name', 'formula', 'higher', 'value'),
    [
        ('mse', 'MSE', '[MSE]', False, 4.0),
        ('mse + mae', 'Combined Loss', '[MSE] + [MAE]', False, 6.0),
        ('mse**2 + 0.5 * mae', 'Combined Loss', '[MSE]^2 + 0.5 x [MAE]', False, 17.0),
        ('3 + mse', 'Combined Loss', '(3 + [MSE])', False, 7.0),
        ('mse + 3', 'Combined Loss', '(3 + [MSE])', False, 7.0),
        ('2 * mse', 'Combined Loss', '(2 x [MSE])', False, 8.0),
        ('mse / 3', 'Combined Loss', '(0.3333333333333333 x [MSE])', False, 4 / 3),
        ('-mse', 'Negative MSE', '(-[MSE])', True, -4.0),
        ('2 - mse', 'Combined Loss', '(2 - [MSE])', True, -2.0),
        ('1 / mse', 'Loss', '(1 / [MSE])', True, 0.25),
        ('mse ** -1', 'Loss', '(1 / [MSE])', True, 0.25),
        ('mse ** 0.5', 'Loss', '([MSE]^0.5)', False, 2.0),
    ],
)
def test_composed_losses_table(
    expression: str, name: str, formula: str, higher: bool, value: float
) -> None:
    loss = eval(expression, {'mse': MSE, 'mae': MAE})  # the table's text
    assert loss.name == name
    assert loss.formula == formula
    assert loss.higher_is_better == higher  # read as a bool, as the original
    assert bool(loss.higher_is_better) is higher
    assert loss.higher_is_better[name] is higher  # and as ours, a mapping
    assert loss(OUTPUTS, TARGETS).item() == pytest.approx(value)
    assert loss.compute()[name].item() == pytest.approx(value)


def test_composed_loss_computes_its_name_first_then_each_component() -> None:
    loss = -(MSE + MAE)
    loss(OUTPUTS, TARGETS)
    assert loss.name == 'Negative Combined Loss'
    assert floats(loss.compute()) == {
        'Negative Combined Loss': -6.0,
        'MSE': 4.0,
        'MAE': 2.0,
    }
    assert dict(loss.higher_is_better) == {
        'Negative Combined Loss': True,
        'MSE': False,
        'MAE': False,
    }


def test_constants_inside_a_larger_formula_lose_the_outer_parentheses() -> None:
    assert (2 * (3 + MSE)).formula == '(2 x (3 + [MSE]))'
    assert (MSE + 2 * MAE).formula == '[MSE] + 2 x [MAE]'
    assert (MSE + -MAE).formula == '[MSE] + (-[MAE])'


def test_difference_of_losses_is_accepted_unlike_the_original() -> None:
    # D: the original refuses mse - mae; ours computes it, as a loss.
    loss = MSE - MAE
    assert loss.formula == '[MSE] - [MAE]'
    assert loss(OUTPUTS, TARGETS).item() == 2.0
    assert loss.higher_is_better == False  # noqa: E712 - the bool reading


def test_a_component_named_like_the_combination_keeps_both() -> None:
    own = Loss(mse_fn, 'Loss')
    squared = own**2
    assert squared.name == 'Combined Loss'  # 'Loss' is the component's
    squared(OUTPUTS, TARGETS)
    assert floats(squared.compute()) == {'Combined Loss': 16.0, 'Loss': 4.0}


def test_loss_repr_is_the_originals() -> None:
    assert repr(MSE) == 'Loss([MSE])'
    assert repr(MSE + MAE) == 'CompositionalLoss([MSE] + [MAE])'
    assert repr(2 * MSE) == 'CompositionalLoss((2 x [MSE]))'


def test_loss_or_metric_keeps_name_and_formula_and_adds_the_key() -> None:
    accuracy: Metric[Tensor, Tensor] = Metric(
        lambda o, t: (o == t).float().mean(), 'Accuracy', True
    )
    reported = (-MSE) | accuracy
    assert reported.name == 'Negative MSE'
    assert reported.formula == '(-[MSE])'
    assert reported(OUTPUTS, TARGETS).item() == -4.0
    assert list(reported.compute()) == ['Negative MSE', 'MSE', 'Accuracy']
    assert reported.higher_is_better == True  # noqa: E712 - the loss's direction


def test_composed_losses_pickle_with_their_spelling() -> None:
    restored = pickle.loads(pickle.dumps(-MSE + 3))
    assert restored.name == 'Combined Loss'
    assert restored.formula == '(3 + (-[MSE]))'
    assert restored.higher_is_better == True  # noqa: E712
    assert (2 * restored).formula == '(2 x (3 + (-[MSE])))'


# --- lib.objectives rows ------------------------------------------------------


def test_objective_copy_has_independent_state() -> None:
    metric = Metric(mse_fn, 'MSE')
    metric.update(OUTPUTS, TARGETS)
    copied = metric.copy()
    assert type(copied) is Metric
    copied.update(OUTPUTS, OUTPUTS)
    assert floats(metric.compute()) == {'MSE': 4.0}
    assert floats(copied.compute()) == {'MSE': 2.0}


def test_objective_merge_state_adds_the_others_batches() -> None:
    first = MSE + MAE
    second = first.copy()
    first(OUTPUTS, TARGETS)
    second(OUTPUTS, OUTPUTS)
    second(OUTPUTS, OUTPUTS)
    first.merge_state(second)
    assert floats(first.compute()) == {
        'Combined Loss': 2.0,
        'MSE': 4 / 3,
        'MAE': 2 / 3,
    }
    with pytest.raises(ObjectiveError, match='same class'):
        Metric(mse_fn, 'MSE').merge_state(MSE)


def test_collection_merge_state_includes_its_members() -> None:
    fake = torchmetrics.MeanSquaredError()
    collection: MetricCollection[Tensor, Tensor] = MetricCollection(
        Metric(mae_fn, 'MAE'), fake
    )
    other = collection.copy()
    collection.update(OUTPUTS, TARGETS)
    other.update(OUTPUTS, OUTPUTS)
    collection.merge_state(other)
    assert compute_metrics(collection) == {'MAE': 1.0, 'MeanSquaredError': 2.0}


def test_objective_sync_is_a_no_op_without_a_process_group() -> None:
    loss = MSE + MAE
    loss(OUTPUTS, TARGETS)
    loss.sync()
    assert floats(loss.compute()) == {'Combined Loss': 6.0, 'MSE': 4.0, 'MAE': 2.0}


def test_metric_collection_of_named_functions() -> None:
    collection = MetricCollection(MSE=mse_fn, MAE=mae_fn)
    assert isinstance(collection, Objective)
    collection.update(OUTPUTS, TARGETS)
    assert compute_metrics(collection) == {'MSE': 4.0, 'MAE': 2.0}
    assert dict(collection.higher_is_better) == {'MSE': None, 'MAE': None}


def test_metric_collections_merge_with_or() -> None:
    merged = MetricCollection(MSE=mse_fn) | MetricCollection(MAE=mae_fn)
    merged.update(OUTPUTS, TARGETS)
    assert compute_metrics(merged) == {'MSE': 4.0, 'MAE': 2.0}


def test_metric_takes_name_positionally_and_reads_its_direction_as_a_bool() -> None:
    better = Metric(mse_fn, 'Score', True)
    unknown = Metric(mse_fn, 'Other')
    assert better.name == 'Score'
    assert better.higher_is_better == True  # noqa: E712 - the original's reading
    assert unknown.higher_is_better == None  # noqa: E711
    assert not unknown.higher_is_better
    assert dict(better.higher_is_better) == {'Score': True}  # ours


def test_loss_accepts_higher_is_better_false() -> None:
    loss = Loss(mse_fn, 'MSE', higher_is_better=False)
    assert loss.higher_is_better == False  # noqa: E712
    assert not loss.higher_is_better


def test_loss_base_call_form_of_the_original() -> None:
    loss: LossBase[Tensor, Tensor] = LossBase(  # type: ignore[abstract]
        sum_criterion, 'Sum', MSE=mse_fn, MAE=mae_fn
    )
    assert isinstance(loss, LossBase)
    assert loss.name == 'Sum'
    assert loss.higher_is_better == False  # noqa: E712
    assert loss(OUTPUTS, TARGETS).item() == 6.0
    assert floats(loss.compute()) == {'Sum': 6.0, 'MSE': 4.0, 'MAE': 2.0}
    assert (2 * loss).formula == '(2 x [Sum])'
    restored = pickle.loads(pickle.dumps(loss))
    assert floats(restored.calculate(OUTPUTS, TARGETS))['Sum'] == 6.0


def test_loss_base_stays_abstract_without_arguments() -> None:
    with pytest.raises(TypeError):
        LossBase()  # type: ignore[abstract]


def test_compositional_loss_call_form_of_the_original() -> None:
    loss = CompositionalLoss(
        sum_criterion,
        higher_is_better=False,
        formula='[MSE] + [MAE]',
        MSE=mse_fn,
        MAE=mae_fn,
    )
    assert loss.name == 'Loss'
    assert repr(loss) == 'CompositionalLoss([MSE] + [MAE])'
    assert loss(OUTPUTS, TARGETS).item() == 6.0
    assert list(loss.compute()) == ['Loss', 'MSE', 'MAE']
    named = CompositionalLoss(
        sum_criterion, name='Total', higher_is_better=True, MSE=mse_fn, MAE=mae_fn
    )
    assert named.name == 'Total'
    assert named.higher_is_better == True  # noqa: E712


def test_compositional_loss_refuses_mixed_call_forms() -> None:
    with pytest.raises(ObjectiveError, match='not both'):
        CompositionalLoss(sum_criterion, sum_criterion)
    with pytest.raises(ObjectiveError, match='needs'):
        CompositionalLoss([MSE], None, 'x')


def test_compute_metrics_of_objectives_and_torchmetrics() -> None:
    loss = 2 * MSE
    loss(OUTPUTS, TARGETS)
    assert compute_metrics(loss) == {'Combined Loss': 8.0, 'MSE': 4.0}
    metric = torchmetrics.MeanSquaredError()
    metric.update(OUTPUTS, TARGETS)
    assert compute_metrics(metric) == {'MeanSquaredError': 4.0}
    collection = torchmetrics.MetricCollection([torchmetrics.MeanAbsoluteError()])
    collection.update(OUTPUTS, TARGETS)
    assert compute_metrics(collection) == {'MeanAbsoluteError': 2.0}


def test_compute_metrics_refuses_other_results() -> None:
    class Odd:
        def compute(self) -> object:
            return 'text'

        def update(self, *args: object) -> None: ...

        def reset(self) -> None: ...

    with pytest.raises(ComputedMetricsTypeError):
        compute_metrics(Odd())


def test_metric_tracker_importable_from_objectives() -> None:
    from drytorch.lib import hooks

    if not hasattr(hooks, 'MetricTracker'):
        pytest.skip('MetricTracker is not in lib.hooks yet')
    assert objectives.MetricTracker is hooks.MetricTracker


def test_composed_loss_in_a_real_training_run(run: Any) -> None:
    loss = kit.mse() ** 0.5 + 2 * Loss(mae_fn, 'MAE')
    trainer = kit.trainer(loss=loss, n=16)
    trainer.train(1)
    assert list(trainer.computed_metrics) == ['Combined Loss', 'MSE', 'MAE']
    metrics = trainer.computed_metrics
    assert metrics['Combined Loss'] > 0
    assert metrics['MAE'] > 0
