"""The original DRYTorch's keyword names and call forms work beside ours.

Written from ``shared/spec/original-api.md`` (rows on signatures); each test
names the original spelling it covers. Ours stays the primary spelling.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from drytorch import Diagnostic, LearningSchema, Loss
from drytorch.core.exceptions import LearningSchemaError, ObjectiveError
from tests import training_kit as kit


@pytest.mark.parametrize('build', ['adam', 'adam_w', 'r_adam', 'sgd'])
def test_schema_constructors_take_base_lr(build: str) -> None:
    constructor = getattr(LearningSchema, build)
    assert constructor(base_lr=0.123).base_lr == 0.123
    assert constructor(base_lr={'a': 0.1}).base_lr == {'a': 0.1}
    assert constructor(base_lr=0.5) == constructor(lr=0.5)
    with pytest.raises(LearningSchemaError, match='once'):
        constructor(lr=0.2, base_lr=0.3)


def test_sgd_takes_dampening() -> None:
    schema = LearningSchema.sgd(base_lr=0.1, momentum=0.9, dampening=0.1)
    optimizer = schema.build_optimizer(torch.nn.Linear(2, 1))
    assert optimizer.param_groups[0]['dampening'] == 0.1
    with pytest.raises(LearningSchemaError, match='no dampening'):
        LearningSchema.sgd(momentum=0.9, nesterov=True, dampening=0.1)


def test_loss_takes_higher_is_better_false_only() -> None:
    loss = Loss(kit.mse_fn, 'MSE', higher_is_better=False)
    assert dict(loss.higher_is_better) == {'MSE': False}
    with pytest.raises(ObjectiveError, match='minimised'):
        Loss(kit.mse_fn, 'MSE', higher_is_better=True)


def test_add_validation_takes_val_loader_and_name(run: Any, rec: Any) -> None:
    trainer = kit.trainer()
    validation = trainer.add_validation(val_loader=kit.trainer(n=16).loader, name='Dev')
    assert validation.name == 'Dev'
    trainer.train(1)
    assert [e.source_name for e in rec.metrics('Dev')] == ['Dev']
    with pytest.raises(TypeError, match='once'):
        trainer.add_validation(trainer.loader, val_loader=trainer.loader)
    with pytest.raises(TypeError, match='val_loader'):
        trainer.add_validation()


def test_diagnostic_takes_objective(run: Any) -> None:
    trainer = kit.trainer()
    diagnostic = Diagnostic(trainer.model, loader=trainer.loader, objective=kit.mse())
    assert set(diagnostic()) == {'MSE'}
    with pytest.raises(TypeError, match='objective='):
        Diagnostic(trainer.model, loader=trainer.loader)
    with pytest.raises(TypeError, match='once'):
        Diagnostic(
            trainer.model, loader=trainer.loader, metric=kit.mse(), objective=kit.mse()
        )


def test_run_is_active_reads_as_a_property_and_as_a_method() -> None:
    run = kit.experiment().create_run(run_id='flag')
    assert not run.is_active and run.is_active() is False
    with run:
        assert run.is_active and run.is_active() is True
        assert repr(run.is_active) == 'True'
    assert run.is_active() is False
