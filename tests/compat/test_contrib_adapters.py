"""The original DRYTorch's ``contrib.torchmetrics`` and ``contrib.torcheval``.

Written from ``shared/spec/original-api.md`` (the ``contrib`` table): each
test names the row it covers.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any

import pytest
import torch
import torcheval.metrics
import torchmetrics

from drytorch import DataLoader
from drytorch.contrib.torcheval import from_torcheval
from drytorch.contrib.torchmetrics import from_torchmetrics
from drytorch.core.exceptions import ObjectiveError
from drytorch.lib.objectives import LossBase, Metric, compute_metrics
from tests import training_kit as kit

OUTPUTS = torch.ones(4, 1)
TARGETS = 3 * torch.ones(4, 1)  # MSE 4, MAE 2


def floats(values: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: value.item() for name, value in values.items()}


# --- contrib.torchmetrics.from_torchmetrics -----------------------------------


def test_from_torchmetrics_composed_metric_is_a_loss() -> None:
    loss = from_torchmetrics(1 + torchmetrics.MeanSquaredError())
    assert isinstance(loss, LossBase)
    assert loss.formula == '(1 + [MeanSquaredError])'
    outputs = OUTPUTS.clone().requires_grad_()
    value = loss(outputs, TARGETS)
    assert value.item() == 5.0
    value.backward()  # type: ignore[no-untyped-call]
    assert outputs.grad is not None
    assert floats(loss.compute()) == {'Combined Loss': 5.0, 'MeanSquaredError': 4.0}


def test_from_torchmetrics_two_metrics_and_numbers() -> None:
    metric = torchmetrics.MeanSquaredError() + 0.5 * torchmetrics.MeanAbsoluteError()
    loss = from_torchmetrics(metric)
    assert loss(OUTPUTS, TARGETS).item() == 5.0
    assert list(loss.compute()) == [
        'Combined Loss',
        'MeanSquaredError',
        'MeanAbsoluteError',
    ]


def test_from_torchmetrics_single_metric_reports_the_combined_key() -> None:
    loss = from_torchmetrics(torchmetrics.MeanSquaredError())
    assert loss(OUTPUTS, TARGETS).item() == 4.0
    assert floats(loss.compute()) == {'Combined Loss': 4.0, 'MeanSquaredError': 4.0}


def test_from_torchmetrics_negation_keeps_the_combined_key() -> None:
    loss = from_torchmetrics(-torchmetrics.MeanSquaredError())
    assert loss(OUTPUTS, TARGETS).item() == -4.0
    assert list(loss.compute()) == ['Combined Loss', 'MeanSquaredError']
    assert loss.higher_is_better == True  # noqa: E712


def test_from_torchmetrics_refuses_what_cannot_be_a_loss() -> None:
    with pytest.raises(ObjectiveError, match='torchmetrics Metric'):
        from_torchmetrics(Metric(kit.mse_fn, 'MSE'))
    with pytest.raises(ObjectiveError, match='not differentiable'):
        from_torchmetrics(torchmetrics.classification.BinaryAccuracy())
    with pytest.raises(ObjectiveError, match='abs'):
        from_torchmetrics(abs(torchmetrics.MeanSquaredError()))


def test_from_torchmetrics_trains_in_a_real_run(run: Any) -> None:
    trainer = kit.trainer(loss=from_torchmetrics(torchmetrics.MeanSquaredError()), n=16)
    trainer.train(1)
    assert list(trainer.computed_metrics) == ['Combined Loss', 'MeanSquaredError']


# --- contrib.torcheval.from_torcheval -----------------------------------------


def test_from_torcheval_computes_a_metric_already_updated() -> None:
    metric = torcheval.metrics.MeanSquaredError()
    metric.update(OUTPUTS, TARGETS)
    objective = from_torcheval(metric)
    assert compute_metrics(objective) == {'MeanSquaredError': 4.0}
    objective.update(OUTPUTS, OUTPUTS)
    assert compute_metrics(objective) == {'MeanSquaredError': 2.0}
    objective.reset()
    objective.update(OUTPUTS, OUTPUTS)
    assert compute_metrics(objective) == {'MeanSquaredError': 0.0}


def test_from_torcheval_sync_is_a_no_op_without_a_process_group() -> None:
    objective = from_torcheval(torcheval.metrics.MeanSquaredError(), name='mse')
    objective.update(OUTPUTS, TARGETS)
    objective.sync()
    assert compute_metrics(objective) == {'mse': 4.0}


def test_from_torcheval_merge_state() -> None:
    objective = from_torcheval(torcheval.metrics.MeanSquaredError())
    other = copy.deepcopy(objective)
    objective.update(OUTPUTS, TARGETS)
    other.update(OUTPUTS, OUTPUTS)
    objective.merge_state(other)
    assert compute_metrics(objective) == {'MeanSquaredError': 2.0}


def test_from_torcheval_refuses_other_objects() -> None:
    with pytest.raises(ObjectiveError, match='torcheval Metric'):
        from_torcheval(torchmetrics.MeanSquaredError())


def test_from_torcheval_in_a_real_validation(run: Any) -> None:
    trainer = kit.trainer(n=16)
    metric = from_torcheval(torcheval.metrics.MeanSquaredError())
    trainer.add_validation(DataLoader(kit.regression(8), 4), metric=metric)
    trainer.train(1)
    assert trainer.validation is not None
    assert list(trainer.validation.computed_metrics) == ['MeanSquaredError']


def test_contrib_adapters_import_lazily() -> None:
    code = (
        'import sys, drytorch.contrib.torchmetrics, drytorch.contrib.torcheval\n'
        "assert 'torchmetrics' not in sys.modules, 'torchmetrics'\n"
        "assert 'torcheval' not in sys.modules, 'torcheval'\n"
    )
    subprocess.run([sys.executable, '-c', code], check=True, timeout=120)
