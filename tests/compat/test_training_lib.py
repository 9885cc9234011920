"""The original DRYTorch's training library works on ours (issue 13, point 2).

Written from ``shared/spec/original-api.md``, sections ``lib.training``,
``lib.evaluations``, ``lib.runners``, ``lib.models``, ``lib.checkpoints``,
``lib.loading``, ``lib.aggregators`` and ``lib.learning``; each test names the
row it covers. Real runs in the test's temporary registry, real files read back.
"""

from __future__ import annotations

import pathlib
import warnings
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils import data

from drytorch import DataLoader, LearningSchema, Model
from drytorch.core import exceptions, registering
from drytorch.lib import aggregators, checkpoints, evaluations, runners, training
from drytorch.lib import models as lib_models
from drytorch.lib.loading import take_from_dataset
from drytorch.lib.schedulers import ExponentialScheduler
from tests import training_kit as kit
from tests.training_kit import Recorder


def _loader(n: int = 16, batch_size: int = 4) -> DataLoader[Any]:
    return DataLoader(kit.regression(n), batch_size, seed=0)


# --- lib.training ------------------------------------------------------------------


def test_training_module_exports_trainer_and_model_optimizer() -> None:
    from drytorch.lib.train import Trainer

    assert training.Trainer is Trainer
    assert set(training.__all__) == {'ModelOptimizer', 'Trainer'}


@pytest.mark.usefixtures('run')
def test_trainer_takes_name_positionally() -> None:
    trainer: Any = training.Trainer(
        kit.linear(),
        'Fit',
        loader=_loader(),
        loss=kit.mse(),
        learning_schema=LearningSchema.adam(base_lr=0.05),
    )
    assert trainer.name == 'Fit'
    assert trainer.objective is trainer.loss


@pytest.mark.usefixtures('run')
def test_calling_a_trainer_trains_one_epoch_and_can_store_outputs() -> None:
    trainer = kit.trainer(n=16, batch_size=4)
    metrics = trainer()
    assert trainer.model.epoch == 1
    assert set(metrics) == {'MSE'} and metrics == trainer.computed_metrics
    assert trainer.outputs_list == []
    trainer(store_outputs=True)
    assert trainer.model.epoch == 2
    assert len(trainer.outputs_list) == 4  # 16 samples, batches of 4
    assert all(not out.requires_grad for out in trainer.outputs_list)
    assert all(out.shape == (4, 1) for out in trainer.outputs_list)


@pytest.mark.usefixtures('run')
def test_train_until_a_past_epoch_warns_past_epoch_warning() -> None:
    trainer = kit.trainer()
    assert trainer.end_epoch is None
    trainer.train(2)
    assert trainer.end_epoch == 2
    before = kit.weights(trainer.model)
    with pytest.warns(exceptions.PastEpochWarning, match='Epoch 1 has already passed'):
        trainer.train_until(1)
    assert trainer.model.epoch == 2
    assert kit.same_weights(before, kit.weights(trainer.model))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        trainer.train_until(2)  # the current epoch: nothing, and no warning


@pytest.mark.usefixtures('run')
def test_terminated_is_a_bool_and_termination_reason_says_why() -> None:
    trainer = kit.trainer()
    assert trainer.terminated is False and trainer.termination_reason is None

    def stop(t: Any) -> None:
        t.terminate_training('enough')

    trainer.post_epoch_hooks.register(stop)
    trainer.train(3)
    assert trainer.model.epoch == 1
    assert trainer.terminated is True
    assert trainer.termination_reason == 'enough'


@pytest.mark.usefixtures('run')
def test_model_optimizer_optimizes_with_the_schema() -> None:
    model = kit.linear()
    schema = LearningSchema.sgd(base_lr=0.1, scheduler=ExponentialScheduler(0.5))
    optimizer = training.ModelOptimizer(model, schema)
    assert optimizer.base_lr == 0.1
    assert isinstance(optimizer.optimizer, torch.optim.SGD)
    x, y = kit.regression(32).tensors
    losses = []
    for _ in range(20):
        loss = kit.mse_fn(model(x), y)
        losses.append(loss.item())
        optimizer.optimize(loss)
    assert losses[-1] < losses[0] / 2
    assert all(p.grad is None for p in model.module.parameters())  # cleared
    with pytest.raises(exceptions.LossNotScalarError):
        optimizer.optimize((model(x) - y) ** 2)


@pytest.mark.usefixtures('run')
def test_model_optimizer_schedules_and_updates_learning_rates() -> None:
    model = kit.linear()
    schema = LearningSchema.sgd(base_lr=0.1, scheduler=ExponentialScheduler(0.5))
    optimizer = training.ModelOptimizer(model, schema)
    model.increment_epoch()
    model.increment_epoch()
    assert optimizer.get_scheduled_lr(0.1) == pytest.approx(0.1 * 0.5**2)
    scheduled: Any = optimizer.get_scheduled_lr({'a': 1.0})
    assert scheduled == {'a': pytest.approx(0.25)}
    optimizer.update_learning_rate()  # to the model's epoch
    assert optimizer.optimizer.param_groups[0]['lr'] == pytest.approx(0.025)
    optimizer.base_lr = 0.4
    assert optimizer.base_lr == 0.4
    assert optimizer.optimizer.param_groups[0]['lr'] == pytest.approx(0.1)
    (group,) = optimizer.get_opt_params()
    assert group['lr'] == pytest.approx(0.1)
    assert len(group['params']) == 2
    optimizer.update_learning_rate(scheduler=ExponentialScheduler(1.0))
    assert optimizer.optimizer.param_groups[0]['lr'] == pytest.approx(0.4)
    with pytest.raises(exceptions.LearningSchemaError, match='parameter groups'):
        optimizer.update_learning_rate(base_lr={'weight': 0.1})


# --- lib.evaluations -----------------------------------------------------------


def test_evaluations_module_holds_the_evaluation_runners() -> None:
    assert evaluations.Validation is runners.Validation
    assert evaluations.Test is runners.Test
    assert evaluations.Diagnostic is runners.Diagnostic
    assert issubclass(evaluations.Test, evaluations.EvaluationMixin)


def test_evaluations_take_name_positionally(run: Any, rec: Recorder) -> None:
    model = kit.linear()
    loader = _loader()
    validation: Any = evaluations.Validation(
        model, 'Dev', loader=loader, metric=kit.mse()
    )
    test: Any = evaluations.Test(model, 'Final', loader=loader, metric=kit.mse())
    diagnostic: Any = evaluations.Diagnostic(
        model, 'Probe', loader=loader, objective=kit.mse()
    )
    validation()
    assert [e.source_name for e in rec.metrics()] == ['Dev']
    metrics = test(store_outputs=True)
    assert len(test.outputs_list) == 4
    assert [e.source_name for e in rec.metrics()] == ['Dev', 'Final']
    assert diagnostic() == metrics  # same model, same data; reports nothing
    assert [e.source_name for e in rec.metrics()] == ['Dev', 'Final']


def test_evaluation_mixin_makes_a_call_an_inference_pass(run: Any) -> None:
    class Probe(
        evaluations.EvaluationMixin, runners.ModelRunnerWithObjective[Any, Any, Any]
    ):
        pass

    model = kit.linear()
    seen: list[tuple[bool, bool]] = []
    model.module.register_forward_hook(
        lambda module, args, out: seen.append(
            (module.training, torch.is_inference_mode_enabled())
        )
    )
    probe = Probe(model, loader=_loader(), objective=kit.mse())
    probe()
    assert seen and set(seen) == {(False, True)}
    assert model.module.training  # the mode is restored
    assert len(seen) == 4  # inference: every sample, in order


# --- lib.runners -------------------------------------------------------------------


def test_model_runner_without_objective_is_a_plain_pass(run: Any) -> None:
    model = kit.linear()
    runner: runners.ModelRunner[Any, Any, Any] = runners.ModelRunner(
        model, loader=_loader()
    )
    assert runner.name == 'ModelRunner'
    assert runner(store_outputs=True) == {}
    assert runner.computed_metrics == {}
    assert len(runner.outputs_list) == 4
    with torch.inference_mode():
        named: Any = runners.ModelRunner(model, 'Pass', loader=_loader(18))
        named(store_outputs=True)
    assert named.name == 'Pass'
    assert len(named.outputs_list) == 5  # inference: the partial batch too


def test_model_runner_refuses_a_model_of_another_run() -> None:
    with kit.experiment().create_run(run_id='first'):
        model = kit.linear()
        runner: Any = runners.ModelRunner(model, loader=_loader())
    with kit.experiment().create_run(run_id='second'):
        with pytest.raises(exceptions.ModuleNotRegisteredError):
            runners.ModelRunner(model, loader=_loader())
        with pytest.raises(exceptions.ModuleNotRegisteredError):
            runner()


def test_runners_with_objective_and_with_logs(run: Any, rec: Recorder) -> None:
    model = kit.linear()
    quiet: Any = runners.ModelRunnerWithObjective(
        model, 'Quiet', loader=_loader(), objective=kit.mse()
    )
    assert set(quiet()) == {'MSE'} and quiet.objective.name == 'MSE'
    assert rec.metrics() == []
    logged: Any = runners.ModelRunnerWithLogs(
        model, 'Logged', loader=_loader(), objective=kit.mse()
    )
    metrics = logged()
    (event,) = rec.metrics()
    assert event.source_name == 'Logged' and event.metrics == metrics
    with pytest.raises(TypeError):
        runners.ModelRunnerWithObjective(model, loader=_loader())  # type: ignore[call-arg]
    assert issubclass(runners.ModelRunner, runners.ModelCaller)


def test_max_stored_output_caps_stored_outputs_with_a_warning(run: Any) -> None:
    class Capped(runners.ModelRunner[Any, Any, Any]):
        max_stored_output = 2

    assert runners.ModelRunner.max_stored_output >= 10**9
    runner = Capped(kit.linear(), loader=_loader())
    with pytest.warns(exceptions.CannotStoreOutputWarning, match='max_stored_output=2'):
        runner(store_outputs=True)
    assert len(runner.outputs_list) == 2


# --- lib.models ----------------------------------------------------------------------


def test_model_takes_the_original_positional_order(run: Any) -> None:
    checkpoint = checkpoints.LocalCheckpoint()
    model: Any = Model(nn.Linear(3, 1), 'net', 'cpu', checkpoint, False)
    assert (model.name, model.device, model.mixed_precision) == (
        'net',
        torch.device('cpu'),
        False,
    )
    assert model.checkpoint is checkpoint and checkpoint.model is model
    default: Any = Model(nn.Linear(3, 1), device='cpu', should_compile=False)
    assert isinstance(default.checkpoint, checkpoints.LocalCheckpoint)
    assert default.checkpoint.model is default
    with pytest.raises(TypeError, match='checkpoint'):
        Model(nn.Linear(3, 1), 'bad', 'cpu', 'not a checkpoint')  # type: ignore[arg-type]


def test_model_save_state_and_load_state_without_a_trainer(run: Any) -> None:
    model = kit.linear('net')
    model.increment_epoch()
    saved = kit.weights(model)
    where = pathlib.Path(model.save_state())
    assert where.is_file() and where.name == 'epoch_1.pt'
    assert 'net' in where.parts
    with torch.no_grad():
        model.module.weight.add_(1.0)  # type: ignore[operator]
    model.increment_epoch()
    model.save_state()
    model.load_state(1)
    assert model.epoch == 1 and kit.same_weights(saved, kit.weights(model))
    model.load_state()  # -1: the last saved epoch
    assert model.epoch == 2 and not kit.same_weights(saved, kit.weights(model))


def test_model_save_state_with_a_trainer_saves_the_trainer_checkpoint(run: Any) -> None:
    trainer = kit.trainer()
    trainer.train(2)
    where = trainer.model.save_state()
    after_two = kit.weights(trainer.model)
    trainer.train(1)
    trainer.model.load_state(2)
    assert trainer.model.epoch == 2 and trainer.steps == 12
    assert kit.same_weights(after_two, kit.weights(trainer.model))
    assert pathlib.Path(where).is_file()


def test_model_unregister_and_register() -> None:
    with kit.experiment().create_run(run_id='first'):
        model = kit.linear('net')
        model.register()  # already in this run: nothing happens
        assert model.name == 'net'
        model.unregister()
        assert registering.owner_of(model.module) is None
    with kit.experiment().create_run(run_id='second'):
        model.register()
        assert registering.owner_of(model.module) is not None
        runners.ModelRunner(model, loader=_loader())()  # usable in this run


def test_model_prepare_module_and_update_hooks(run: Any) -> None:
    model = kit.linear()
    extra = model.prepare_module(nn.Linear(3, 1))
    assert next(extra.parameters()).device == model.device
    model.post_batch_update()
    model.post_epoch_update()
    model.increment_epoch()
    assert model.epoch == 1


def test_averaged_models_take_the_original_signatures(run: Any) -> None:
    assert lib_models.EMAModel.__name__ == 'EMAModel'
    ema: Any = lib_models.EMAModel(nn.Linear(3, 1), 'ema', 'cpu', None, False, 0.9)
    assert (ema.name, ema.decay) == ('ema', 0.9)
    swa: Any = lib_models.SWAModel(
        nn.Linear(3, 1), start_epoch=2, name='swa', device='cpu'
    )
    assert (swa.name, swa.start_epoch) == ('swa', 2)
    assert isinstance(swa, lib_models.AveragedModel)
    trainer = kit.trainer(ema)
    trainer.train(1)
    assert int(ema.averaged_module.n_averaged) == 6  # once per step


# --- lib.checkpoints --------------------------------------------------------------


def test_an_unbound_checkpoint_raises_checkpoint_not_initialized(run: Any) -> None:
    checkpoint = checkpoints.LocalCheckpoint()
    with pytest.raises(exceptions.CheckpointNotInitializedError):
        checkpoint.save()
    with pytest.raises(exceptions.CheckpointNotInitializedError):
        _ = checkpoint.model
    model = kit.linear()
    checkpoint.bind_model(model)
    checkpoint.remove_model()
    with pytest.raises(exceptions.CheckpointNotInitializedError):
        checkpoint.load()
    assert issubclass(checkpoints.LocalCheckpoint, checkpoints.AbstractCheckpoint)


def test_local_checkpoint_par_dir_and_missing_checkpoints(
    run: Any, tmp_path: pathlib.Path
) -> None:
    checkpoint = checkpoints.LocalCheckpoint(par_dir=tmp_path / 'elsewhere')
    model: Any = Model(nn.Linear(3, 1), 'net', 'cpu', checkpoint)
    with pytest.raises(exceptions.ModelNotFoundError):
        model.load_state()
    where = pathlib.Path(checkpoint.save())
    assert where.is_relative_to(tmp_path / 'elsewhere')
    assert torch.load(where, weights_only=True)['format'] == 'model-state'
    with pytest.raises(exceptions.EpochNotFoundError, match='epoch 3'):
        checkpoint.load(3)
    assert isinstance(exceptions.EpochNotFoundError(1, 'x'), exceptions.CheckpointError)


def test_trainer_checkpoints_go_under_the_checkpoint_par_dir(
    run: Any, tmp_path: pathlib.Path
) -> None:
    model: Any = Model(
        nn.Linear(3, 1), 'net', 'cpu', checkpoints.LocalCheckpoint(tmp_path / 'ck')
    )
    trainer = kit.trainer(model)
    trainer.train(1)
    where = pathlib.Path(trainer.save_checkpoint())
    assert where.is_relative_to(tmp_path / 'ck') and where.is_file()


def test_bound_modules_and_optimizer_are_saved_and_loaded(run: Any) -> None:
    model = kit.linear()
    head = nn.Linear(1, 1)
    optimizer = torch.optim.Adam(model.module.parameters(), lr=0.1)
    checkpoint = model.checkpoint
    checkpoint.bind_module('head', head)
    checkpoint.bind_optimizer(optimizer)
    assert checkpoint.optimizer is optimizer
    x, y = kit.regression(8).tensors
    kit.mse_fn(model(x), y).backward()  # type: ignore[no-untyped-call]
    optimizer.step()
    saved_head = {k: v.clone() for k, v in head.state_dict().items()}
    saved_step = optimizer.state_dict()['state'][0]['step'].clone()
    model.save_state()
    with torch.no_grad():
        head.weight.add_(1.0)
    optimizer.step()
    model.load_state()
    assert torch.equal(head.weight, saved_head['weight'])
    assert torch.equal(optimizer.state_dict()['state'][0]['step'], saved_step)


# --- lib.loading -----------------------------------------------------------------


class _Reversed(data.Sampler[int]):
    def __init__(self, n: int) -> None:
        self.n = n

    def __iter__(self) -> Any:
        return iter(range(self.n - 1, -1, -1))

    def __len__(self) -> int:
        return self.n


def test_data_loader_takes_the_original_positional_order() -> None:
    dataset = data.TensorDataset(torch.arange(10.0))
    loader = DataLoader(dataset, 4, None, _Reversed(10), 0)
    assert loader.pin_memory is False  # None: no pinning (ours)
    assert loader.dataset_len == 10 and loader.batch_size == 4
    assert isinstance(loader.sampler, _Reversed)
    batches = [batch[0].tolist() for batch in loader]
    assert batches == [[9.0, 8.0, 7.0, 6.0], [5.0, 4.0, 3.0, 2.0]]
    assert len(loader) == 2
    with torch.inference_mode():
        assert next(b[0].tolist() for b in loader) == [0.0, 1.0, 2.0, 3.0]
        assert len(loader) == 3


def test_data_loader_with_a_sampler_resumes_inside_an_epoch() -> None:
    dataset = data.TensorDataset(torch.arange(12.0))
    loader = DataLoader(dataset, 4, sampler=_Reversed(12))
    loader.load_sampler_state(loader.sampler_state(), skip_batches=1)
    assert [b[0].tolist()[0] for b in loader] == [7.0, 3.0]
    assert [b[0].tolist()[0] for b in loader] == [11.0, 7.0, 3.0]
    with pytest.raises(exceptions.LoaderError, match='sampler'):
        DataLoader(dataset, 4, sampler=object())  # type: ignore[arg-type]


def test_data_loader_refuses_a_dataset_without_length() -> None:
    class Stream(data.IterableDataset[int]):
        def __iter__(self) -> Any:
            return iter(range(3))

    with pytest.raises(exceptions.DatasetHasNoLengthError, match='__len__'):
        DataLoader(Stream(), 2)


def test_split_takes_the_original_keyword_and_order() -> None:
    loader = DataLoader(data.TensorDataset(torch.arange(20.0)), 2, seed=0)
    train, val = loader.split(split=0.25, seed=1)
    assert (train.dataset_len, val.dataset_len) == (15, 5)
    ordered_train, ordered_val = loader.split(0.25, False, 7)  # (split, shuffle, seed)
    with torch.inference_mode():
        assert [x for b in ordered_val for x in b[0].tolist()] == [
            15.0,
            16.0,
            17.0,
            18.0,
            19.0,
        ]
    assert ordered_train.dataset_len == 15
    with pytest.raises(TypeError, match='once'):
        loader.split(0.2, split=0.3)


def test_take_from_dataset_collates_first_or_random_samples() -> None:
    dataset = kit.regression(10)
    inputs, targets = take_from_dataset(dataset, 3, device='cpu')
    assert torch.equal(inputs, dataset.tensors[0][:3])
    assert torch.equal(targets, dataset.tensors[1][:3])
    torch.manual_seed(0)
    drawn, _ = take_from_dataset(
        dataset, n_samples=4, preserve_order=False, device='cpu'
    )
    assert drawn.shape == (4, 3)
    rows = {tuple(row.tolist()) for row in dataset.tensors[0]}
    assert all(tuple(row.tolist()) in rows for row in drawn)
    single, _ = take_from_dataset(dataset, device='cpu')
    assert single.shape == (1, 3)
    with pytest.raises(exceptions.LoaderError, match='n_samples'):
        take_from_dataset(dataset, 11)


# --- lib.aggregators -------------------------------------------------------------


def test_averager_running_means_merge_and_reduce() -> None:
    first = aggregators.Averager(loss=1.0, accuracy=0.5)
    second = aggregators.Averager(loss=3.0)
    merged = first + second
    assert merged.reduce() == {'loss': 2.0, 'accuracy': 0.5}
    assert first.reduce() == {'loss': 1.0, 'accuracy': 0.5}  # unchanged
    assert set(merged.keys()) == {'loss', 'accuracy'}
    assert merged.all_reduce() == merged.reduce()  # no process group: the same
    first += aggregators.Averager(loss=2.0)
    assert first.reduce()['loss'] == 1.5
    merged.clear()
    assert merged.reduce() == {} and len(merged) == 0


def test_accumulators_and_torch_averager() -> None:
    acc = aggregators.MeanAccumulator(6.0, 3) + aggregators.MeanAccumulator(2.0, 1)
    assert (acc.total, acc.count, acc.reduce()) == (8.0, 4, 2.0)
    batch = aggregators.TorchAverager(loss=torch.tensor([1.0, 2.0, 3.0]))
    scalar = aggregators.TorchAverager(loss=torch.tensor(6.0))
    means = (batch + scalar).all_reduce()
    assert torch.equal(means['loss'], torch.tensor(3.0))  # (1 + 2 + 3 + 6) / 4
    assert isinstance(batch.aggregate['loss'], aggregators.TorchMeanAccumulator)
    assert issubclass(aggregators.Averager, aggregators.AbstractAggregator)
    assert issubclass(aggregators.TorchMeanAccumulator, aggregators.AbstractAccumulator)
    with pytest.raises(ZeroDivisionError):
        aggregators.MeanAccumulator(0.0, 0).reduce()


# --- lib.learning ---------------------------------------------------------------


def test_base_lr_mapping_missing_parameters_raises_missing_param_error() -> None:
    module = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    schema = LearningSchema.adam(base_lr={'0': 0.1})
    with pytest.raises(exceptions.MissingParamError, match='gives no learning rate'):
        schema.build_optimizer(module)
    with pytest.raises(exceptions.LearningSchemaError):
        schema.build_optimizer(module)


# --- torchmetrics as loss and metrics ---------------------------------------------


def test_torchmetrics_are_adapted_or_refused_at_construction(run: Any) -> None:
    torchmetrics = pytest.importorskip('torchmetrics')
    trainer = kit.trainer(loss=torchmetrics.MeanSquaredError())
    trainer.train(1)
    assert set(trainer.computed_metrics) == {'MeanSquaredError'}
    test = evaluations.Test(
        trainer.model, loader=_loader(), metric=torchmetrics.MeanAbsoluteError()
    )
    assert set(test()) == {'MeanAbsoluteError'}
    validation = evaluations.Validation(
        trainer.model, loader=_loader(), metric=torchmetrics.MeanSquaredError()
    )
    assert set(validation()) == {'MeanSquaredError'}
    with pytest.raises(exceptions.ObjectiveError):  # not differentiable: refused now
        kit.trainer(
            kit.linear('other'), loss=torchmetrics.classification.BinaryAccuracy()
        )
