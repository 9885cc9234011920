"""Rows of the spec where ours is the same as the original, called the original's way.

Written from ``shared/spec/original-api.md``: each test uses the original's
keyword names and call forms for rows marked *same* (or close to it) that no
other compatibility test calls that way.
"""

from __future__ import annotations

import math
import pathlib
from typing import Any

import pytest
import torch

import drytorch
from drytorch import DataLoader, Experiment, LearningSchema, Test
from drytorch.core import exceptions, tracking
from drytorch.lib import gradient_ops, schedulers
from drytorch.lib.hooks import call_every, saving_hook
from drytorch.trackers.csv import CSVDumper
from tests import training_kit as kit


def test_root_default_tracker_helpers_take_the_original_keywords() -> None:
    drytorch.remove_all_default_trackers()
    assert tracking.default_trackers() == []
    dumper = CSVDumper()
    drytorch.extend_default_trackers(tracker_list=[dumper])
    assert Experiment(None, name='defaults').trackers.names == ['CSVDumper']
    assert isinstance(drytorch.__version__, str) and drytorch.__version__


def test_experiment_takes_the_original_keywords(tmp_path: pathlib.Path) -> None:
    exp = Experiment({'lr': 0.1}, name='kw', par_dir=tmp_path, tags=['a'])
    assert exp.name == 'kw' and exp.par_dir == tmp_path
    assert exp.tags == ['a'] and exp.config == {'lr': 0.1}
    exp.trackers.remove_all()
    exp.trackers.subscribe(CSVDumper())
    exp.trackers.remove('CSVDumper')
    assert len(exp.trackers) == 0
    with exp.create_run(run_id='one') as run:
        Experiment.set_current(exp=exp)  # the original's keyword
        assert Experiment.get_current() is exp and run.id == 'one'


def test_learning_schema_fields_in_the_original_order() -> None:
    schema = LearningSchema(
        torch.optim.SGD,
        0.1,
        schedulers.ConstantScheduler(),
        {'momentum': 0.5},
        gradient_ops.NoOp(),
    )
    optimizer = schema.build_optimizer(torch.nn.Linear(2, 1))
    assert optimizer.param_groups[0]['lr'] == 0.1
    assert optimizer.param_groups[0]['momentum'] == 0.5


@pytest.mark.parametrize(
    ('scheduler', 'epoch', 'expected'),
    [
        (schedulers.ConstantScheduler(), 7, 1.0),
        (schedulers.ExponentialScheduler(exp_decay=0.5, min_decay=0.0), 2, 0.25),
        (schedulers.CosineScheduler(decay_steps=10, min_decay=0.0), 10, 0.0),
        (schedulers.CosineScheduler(decay_steps=10, min_decay=0.0), 5, 0.5),
        (
            schedulers.PolynomialScheduler(max_epochs=4, power=2.0, min_decay=0.0),
            2,
            0.25,
        ),
        (schedulers.StepScheduler(milestones=[2], gamma=0.1), 3, 0.1),
    ],
)
def test_schedules_are_called_with_base_lr_and_epoch(
    scheduler: schedulers.AbstractScheduler, epoch: int, expected: float
) -> None:
    assert math.isclose(scheduler(1.0, epoch), expected, abs_tol=1e-12)


def test_get_loader_shuffles_in_training_only() -> None:
    loader = DataLoader(kit.regression(32), 8)
    inference = loader.get_loader(inference=True)
    assert isinstance(inference, torch.utils.data.DataLoader)
    first = torch.cat([x for x, _ in inference])
    again = torch.cat([x for x, _ in loader.get_loader(inference=True)])
    assert torch.equal(first, again)  # the same order every time
    assert torch.equal(first, kit.regression(32).tensors[0])
    assert len(loader) == 4


def test_trainer_checkpoints_learning_rate_and_hooks_the_original_way(
    run: Any,
) -> None:
    trainer = kit.trainer()
    trainer.post_epoch_hooks.register_all([saving_hook.bind(call_every(2))])
    trainer.train(2)
    before = kit.weights(trainer.model)
    trainer.train(1)  # the decorator form also saves at a call's last epoch
    after = kit.weights(trainer.model)
    trainer.load_checkpoint(epoch=2)
    assert trainer.model.epoch == 2
    assert kit.same_weights(kit.weights(trainer.model), before)
    trainer.load_checkpoint(epoch=-1)  # the latest
    assert trainer.model.epoch == 3
    assert kit.same_weights(kit.weights(trainer.model), after)
    trainer.update_learning_rate(
        base_lr=0.01, scheduler=schedulers.ExponentialScheduler(exp_decay=0.5)
    )
    assert trainer.optimizer.param_groups[0]['lr'] == pytest.approx(0.01 * 0.5**3)
    trainer.save_checkpoint()
    with pytest.raises(exceptions.CheckpointError):
        trainer.load_checkpoint(epoch=7)


def test_test_keeps_outputs_when_asked(run: Any) -> None:
    model = kit.linear()
    test = Test(
        model, 'final', loader=DataLoader(kit.regression(16), 4), metric=kit.mse()
    )
    assert set(test(store_outputs=True)) == {'MSE'}
    assert test.name == 'final' and len(test.outputs_list) == 4
    assert all(out.device.type == 'cpu' for out in test.outputs_list)
    test.test()
    assert test.outputs_list == []  # not kept unless asked


def test_a_non_finite_loss_raises_convergence_error(run: Any) -> None:
    dataset = kit.regression(16)
    dataset.tensors[1][3] = math.nan
    trainer = kit.trainer()
    trainer.loader = DataLoader(dataset, 8)
    with pytest.raises(exceptions.ConvergenceError) as raised:  # the original's
        trainer.train(2)
    assert isinstance(raised.value, exceptions.TrainingError)  # and ours
    assert math.isnan(raised.value.criterion)


def test_previous_runs_and_the_metadata_manager() -> None:
    exp = kit.experiment('history')
    assert exp.previous_runs == []
    with exp.create_run(run_id='a'):
        pass
    with exp.create_run(run_id='b') as run:
        description = run.metadata_manager.extract_metadata({'lr': 0.1, 'n': [1, 2]})
    assert exp.previous_runs == ['a', 'b']  # from the registry, oldest first
    assert description == {'lr': 0.1, 'n': [1, 2]}
