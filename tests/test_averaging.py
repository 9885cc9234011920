"""Weight averaging: ``EMAModel`` and ``SWAModel`` train live, evaluate the average.

The averages are checked against ones computed by hand from the weights the
trainer produced, the evaluation metrics against the averaged weights run by
hand, and a run killed inside an epoch must resume to the same averaged weights
and metrics as an uninterrupted one. One test trains both under DDP (torchrun,
2 processes on gloo): every process must end with the same averaged copy.
"""

from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
from typing import Any

import pytest
import torch
from torch import nn

from drytorch import (
    DataLoader,
    Diagnostic,
    EMAModel,
    Model,
    SWAModel,
    Test,
    exceptions,
    testing,
)
from drytorch.lib import averaging, models
from tests import training_kit as kit
from tests.conftest import ROOT

TIMEOUT = 120


def linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(3, 1)


def with_batch_norm(seed: int = 0) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.3), nn.Linear(4, 1)
    )


def mse_of(module: nn.Module, dataset: Any) -> float:
    """The MSE of ``module`` on a whole dataset, computed by hand."""
    x, y = dataset.tensors
    module.eval()
    with torch.no_grad():
        return kit.mse_fn(module(x), y).item()


def plain_copy(model: averaging.AveragedModel[Any, Any]) -> nn.Module:
    """A fresh module loaded with the model's averaged weights."""
    copy = type(model.module)(3, 1)
    copy.load_state_dict(model.averaged_module.module.state_dict())
    return copy


def test_the_names_of_the_original_api() -> None:
    assert models.EMAModel is averaging.EMAModel
    assert models.SWAModel is averaging.SWAModel
    assert issubclass(EMAModel, models.AveragedModel)
    assert issubclass(SWAModel, models.AveragedModel)
    assert issubclass(models.AveragedModel, Model)


def test_ema_follows_the_weights_after_every_step(run: Any) -> None:
    decay = 0.8
    model = EMAModel(with_batch_norm(), device='cpu', decay=decay)
    trainer = kit.trainer(model)
    seen: list[dict[str, torch.Tensor]] = []
    trainer.post_step_hooks.register(lambda t: seen.append(kit.weights(t.model)))
    trainer.train(2)

    assert len(seen) == trainer.steps == 12
    assert int(model.averaged_module.n_averaged) == 12
    expected = dict(seen[0])  # the first step copies the weights
    for weights in seen[1:]:
        for key, value in weights.items():
            if value.is_floating_point():  # buffers too: BatchNorm statistics
                expected[key] = torch.lerp(expected[key], value, 1 - decay)
    averaged = model.averaged_module.module.state_dict()
    for key, value in expected.items():
        if value.is_floating_point():
            assert torch.allclose(averaged[key], value, rtol=1e-6, atol=1e-7), key
    assert not torch.equal(averaged['0.weight'], model.module.state_dict()['0.weight'])
    assert all(not p.requires_grad for p in model.averaged_module.parameters())


def test_evaluation_runs_the_average_and_training_the_live_weights(
    run: Any,
) -> None:
    model = EMAModel(linear(), device='cpu', decay=0.9)
    trainer = kit.trainer(model)
    validation_set = kit.regression(16, seed=1)
    trainer.add_validation(DataLoader(validation_set, 8))
    trainer.train(2)

    averaged = mse_of(plain_copy(model), validation_set)
    live = mse_of(model.module, validation_set)
    assert averaged != pytest.approx(live, rel=1e-3)
    assert trainer.validation is not None
    assert trainer.validation.computed_metrics['MSE'] == pytest.approx(averaged)
    test = Test(model, loader=DataLoader(validation_set, 8), metric=kit.mse())
    assert test.test()['MSE'] == pytest.approx(averaged)
    diagnostic = Diagnostic(
        model, loader=DataLoader(validation_set, 4), metric=kit.mse()
    )
    assert diagnostic()['MSE'] == pytest.approx(averaged)

    x = validation_set.tensors[0]
    with torch.inference_mode():
        assert torch.equal(model(x), model.averaged_module.module(x))
    assert torch.equal(model(x), model.module(x))  # with gradients: live


def test_the_average_runs_in_the_mode_the_runners_set(run: Any) -> None:
    """Dropout is off in evaluation, in the averaged copy too."""
    model = EMAModel(with_batch_norm(), device='cpu', decay=0.9)
    kit.trainer(model).train(1)
    validation_set = kit.regression(16, seed=1)
    test = Test(model, loader=DataLoader(validation_set, 8), metric=kit.mse())
    first, second = test.test()['MSE'], test.test()['MSE']
    copy = with_batch_norm()
    copy.load_state_dict(model.averaged_module.module.state_dict())
    assert first == second == pytest.approx(mse_of(copy, validation_set))


def test_before_the_first_average_evaluation_runs_the_live_weights(
    run: Any,
) -> None:
    model = EMAModel(linear(), device='cpu')
    model.module.load_state_dict(linear(seed=5).state_dict())  # after the copy
    x = torch.randn(4, 3)
    with torch.inference_mode():
        assert torch.equal(model(x), model.module(x))


def test_swa_averages_the_epochs_from_start_epoch(run: Any) -> None:
    model = SWAModel(linear(), 2, device='cpu')
    trainer = kit.trainer(model)
    validation_set = kit.regression(16, seed=1)
    trainer.add_validation(DataLoader(validation_set, 8))
    ends: list[dict[str, torch.Tensor]] = []
    validated: list[float] = []

    def record(instance: Any) -> None:
        ends.append(kit.weights(instance.model))
        validated.append(instance.validation.computed_metrics['MSE'])

    trainer.post_epoch_hooks.register(record)
    trainer.train(4)

    assert int(model.averaged_module.n_averaged) == 3  # epochs 2, 3 and 4
    averaged = model.averaged_module.module.state_dict()
    for key in averaged:
        mean = torch.stack([weights[key] for weights in ends[1:]]).mean(0)
        assert torch.allclose(averaged[key], mean, rtol=1e-6, atol=1e-7), key
    first = linear()
    first.load_state_dict(ends[0])
    assert validated[0] == pytest.approx(mse_of(first, validation_set))  # live
    assert validated[-1] == pytest.approx(mse_of(plain_copy(model), validation_set))


def test_swa_measures_batch_norm_statistics_for_the_averaged_weights(
    run: Any,
) -> None:
    measured = kit.regression(40, seed=3)
    loader = DataLoader(measured, 8)
    model = SWAModel(with_batch_norm(), 1, device='cpu', bn_loader=loader)
    kit.trainer(model).train(2)

    copy = model.averaged_module.module
    assert isinstance(copy, nn.Sequential)
    with torch.no_grad():
        features = copy[0](measured.tensors[0]).split(8)  # in the loader's order
    mean = torch.stack([batch.mean(0) for batch in features]).mean(0)
    var = torch.stack([batch.var(0) for batch in features]).mean(0)
    norm = copy[1]
    assert isinstance(norm, nn.BatchNorm1d)
    assert torch.allclose(norm.running_mean, mean, atol=1e-6)
    assert torch.allclose(norm.running_var, var, atol=1e-6)
    assert norm.momentum == 0.1  # put back
    state = torch.get_rng_state()
    model.update_batch_norm(loader)  # dropout stays off: no random draws
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.allclose(norm.running_mean, mean, atol=1e-6)


def test_swa_without_a_loader_averages_the_statistics(run: Any) -> None:
    model = SWAModel(with_batch_norm(), 1, device='cpu')
    trainer = kit.trainer(model)
    ends: list[torch.Tensor] = []
    trainer.post_epoch_hooks.register(
        lambda t: ends.append(t.model.module[1].running_mean.clone())
    )
    trainer.train(3)
    norm = model.averaged_module.module[1]
    assert torch.allclose(norm.running_mean, torch.stack(ends).mean(0), atol=1e-6)


def test_a_compiled_model_evaluates_the_compiled_average(run: Any) -> None:
    model = EMAModel(linear(), device='cpu', decay=0.9, compile={'backend': 'eager'})
    calls: list[int] = []
    model._averaged_evaluating.register_forward_pre_hook(lambda *_: calls.append(1))
    trainer = kit.trainer(model)
    validation_set = kit.regression(16, seed=1)
    trainer.add_validation(DataLoader(validation_set, 8))
    trainer.train(1)
    assert len(calls) == 2  # the two validation batches
    assert trainer.validation is not None
    expected = mse_of(plain_copy(model), validation_set)
    assert trainer.validation.computed_metrics['MSE'] == pytest.approx(expected)


def test_mixed_precision_applies_to_the_average(run: Any) -> None:
    model = EMAModel(linear(), device='cpu', mixed_precision=True)
    kit.trainer(model).train(1)
    with torch.inference_mode():
        assert model(torch.randn(4, 3)).dtype == torch.bfloat16  # CPU autocast


def test_checkpoints_hold_the_average_and_restore_it() -> None:
    with kit.experiment().create_run(run_id='c') as first:
        model = EMAModel(linear(), device='cpu', decay=0.9)
        trainer = kit.trainer(model)
        trainer.train(1)
        saved = torch.load(trainer.save_checkpoint(), weights_only=True)['model_own']
        assert saved['kind'] == 'ema'
        assert int(saved['averaged']['n_averaged']) == 6
        averaged = {
            key: value.clone()
            for key, value in model.averaged_module.state_dict().items()
        }
        assert kit.same_weights(saved['averaged'], averaged)
    with kit.experiment().create_run(run_id=first.id, resume=True):
        restored = EMAModel(linear(seed=1), device='cpu', decay=0.9)
        kit.trainer(restored).load_checkpoint()
        assert kit.same_weights(restored.averaged_module.state_dict(), averaged)


def test_a_plain_checkpoint_restarts_the_average_from_its_weights() -> None:
    with kit.experiment().create_run(run_id='p') as first:
        plain = Model(linear(), 'net', device='cpu')
        trainer = kit.trainer(plain)
        trainer.train(1)
        trainer.save_checkpoint()
        trained = kit.weights(plain)
    with kit.experiment().create_run(run_id=first.id, resume=True):
        model = EMAModel(linear(seed=1), 'net', device='cpu', decay=0.9)
        trainer = kit.trainer(model)
        trainer.load_checkpoint()
        assert int(model.averaged_module.n_averaged) == 0
        assert kit.same_weights(model.averaged_module.module.state_dict(), trained)
        seen: list[dict[str, torch.Tensor]] = []
        trainer.post_step_hooks.register(lambda t: seen.append(kit.weights(t.model)))
        trainer.train(1)
        assert model.epoch == 2
        assert int(model.averaged_module.n_averaged) == 6
        expected = seen[0]  # the average started over at the first step
        for weights in seen[1:]:
            expected = {k: torch.lerp(expected[k], weights[k], 0.1) for k in expected}
        averaged = model.averaged_module.module.state_dict()
        assert all(
            torch.allclose(averaged[k], expected[k], atol=1e-7) for k in expected
        )


def test_an_average_of_another_kind_is_refused() -> None:
    with kit.experiment().create_run(run_id='k') as first:
        trainer = kit.trainer(EMAModel(linear(), 'net', device='cpu'))
        trainer.train(1)
        trainer.save_checkpoint()
    with kit.experiment().create_run(run_id=first.id, resume=True):
        swa = SWAModel(linear(), 1, 'net', device='cpu')
        before = kit.weights(swa)
        with pytest.raises(exceptions.CheckpointError, match="of kind 'ema'"):
            kit.trainer(swa).load_checkpoint()
        assert kit.same_weights(kit.weights(swa), before)  # refused up front


def test_an_average_that_does_not_fit_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with kit.experiment().create_run(run_id='s') as first:
        model = EMAModel(linear(), device='cpu')
        good = model.own_state_dict()
        bad = {
            **good,
            'averaged': {**good['averaged'], 'module.weight': torch.ones(2, 3)},
        }
        monkeypatch.setattr(model, 'own_state_dict', lambda: bad)
        kit.trainer(model).save_checkpoint()
    with kit.experiment().create_run(run_id=first.id, resume=True):
        model = EMAModel(linear(), device='cpu')
        with pytest.raises(exceptions.CheckpointError, match=r'has shape \(2, 3\)'):
            kit.trainer(model).load_checkpoint()
        missing = {**good, 'averaged': {'n_averaged': torch.tensor(1)}}
        with pytest.raises(ValueError, match=r'missing module\.weight'):
            model.load_own_state_dict(missing)
        assert int(model.averaged_module.n_averaged) == 0  # left as it was


@pytest.mark.parametrize(
    'decay', [0, 1, 0.0, 1.0, -0.5, 1.5, float('nan'), True, '0.9', None]
)
def test_a_decay_outside_0_1_is_refused(run: Any, decay: Any) -> None:
    with pytest.raises(ValueError, match=r'decay must be a number strictly between'):
        EMAModel(linear(), device='cpu', decay=decay)
    assert Model(linear(), 'EMAModel', device='cpu').name == 'EMAModel'  # unused


@pytest.mark.parametrize('start_epoch', [0, -1, 1.5, True, '2', None])
def test_a_start_epoch_below_1_is_refused(run: Any, start_epoch: Any) -> None:
    with pytest.raises(ValueError, match=r'start_epoch must be an integer >= 1'):
        SWAModel(linear(), start_epoch, device='cpu')
    assert Model(linear(), 'SWAModel', device='cpu').name == 'SWAModel'  # unused


CHILD = r"""
import json
import sys
import time

import torch
from torch import nn
from torch.utils import data

from drytorch import (
    DataLoader, EMAModel, Experiment, LearningSchema, Loss, SWAModel, Test, Trainer,
    hookimpl,
)
from drytorch.core.plugins import get_host

args = json.loads(sys.argv[1])
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)


def dataset(n, seed):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    return data.TensorDataset(x, x @ torch.tensor([[1.0], [-2.0], [0.5], [0.0]]))


def mse(outputs, targets):
    return ((outputs - targets) ** 2).mean()


class Marker:
    def __init__(self, trainer):
        self.trainer = trainer

    @hookimpl
    def on_batch_end(self, event):
        if event.source_name == 'Trainer' and self.trainer.steps == args['kill_at']:
            print('MARK', flush=True)
            time.sleep(600)  # the parent kills the process here


experiment = Experiment(None, name=args['name'], par_dir='.')
with experiment.create_run(run_id='r', resume=True):
    torch.manual_seed(0)
    module = nn.Sequential(
        nn.Linear(4, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.2),
        nn.Linear(16, 1),
    )
    train_set = dataset(48, 0)
    if args['kind'] == 'ema':
        model = EMAModel(module, device='cpu', decay=0.8)
    else:
        model = SWAModel(module, 2, device='cpu', bn_loader=DataLoader(train_set, 8))
    loss = Loss(mse, 'MSE')
    trainer = Trainer(
        model,
        loader=DataLoader(train_set, 8, seed=0),
        loss=loss,
        learning_schema=LearningSchema.adam(lr=1e-2),
    )
    trainer.add_validation(DataLoader(dataset(16, 1), 8))
    trainer.checkpoint_every(epochs=1, steps=5)
    get_host().register(Marker(trainer), 'marker')
    trainer.resume()
    print('READY', model.epoch, trainer.steps, flush=True)
    trainer.train_until(4)
    test = Test(model, loader=DataLoader(dataset(16, 2), 8), metric=loss)
    torch.save(
        {
            'averaged': model.averaged_module.state_dict(),
            'live': model.module.state_dict(),
            'validation': trainer.validation.computed_metrics,
            'test': test.test(),
        },
        args['out'],
    )
print('DONE', flush=True)
"""

KILL_AT = 16  # epoch 3, batch 4; the latest checkpoint is at step 15


def _spawn(kind: str, name: str, out: pathlib.Path, kill_at: int = 0) -> Any:
    args = {'kind': kind, 'name': name, 'out': str(out), 'kill_at': kill_at}
    env = dict(
        os.environ,
        DRYTORCH_INIT_MODE='none',
        PYTHONPATH=str(ROOT / 'src'),
        PYTHONUNBUFFERED='1',
        OMP_NUM_THREADS='1',
    )
    return subprocess.Popen(
        [sys.executable, '-c', CHILD, json.dumps(args)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _read_until(process: Any, prefix: str) -> str:
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith(prefix):
            return line
    process.wait(timeout=TIMEOUT)
    raise AssertionError(f'no {prefix} (rc {process.returncode}):\n' + ''.join(lines))


def _finish(process: Any) -> str:
    output, _ = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, output
    return str(output)


@pytest.mark.parametrize('kind', ['ema', 'swa'])
def test_a_run_killed_inside_an_epoch_resumes_to_the_same_average(
    tmp_path: pathlib.Path, kind: str
) -> None:
    reference = _spawn(kind, 'reference', tmp_path / 'reference.pt')
    killed = _spawn(kind, 'killed', tmp_path / 'unused.pt', kill_at=KILL_AT)
    _read_until(killed, 'MARK')
    killed.send_signal(signal.SIGKILL)
    killed.communicate(timeout=TIMEOUT)
    assert killed.returncode == -signal.SIGKILL
    resumed = _spawn(kind, 'killed', tmp_path / 'resumed.pt')
    assert _read_until(resumed, 'READY').split()[1:] == ['2', '15']  # mid-epoch
    _finish(resumed)
    _finish(reference)

    expected = torch.load(tmp_path / 'reference.pt', weights_only=True)
    got = torch.load(tmp_path / 'resumed.pt', weights_only=True)
    n_averaged = {'ema': 24, 'swa': 3}[kind]  # 24 steps; epochs 2 to 4
    assert int(expected['averaged']['n_averaged']) == n_averaged
    for part in ('averaged', 'live'):
        assert expected[part].keys() == got[part].keys()
        for key, value in expected[part].items():
            assert torch.equal(got[part][key], value), f'{part}: {key}'
    assert got['validation'] == expected['validation']
    assert got['test'] == expected['test']


DDP_JOB = r"""
import pathlib

import torch
from torch import nn
from torch.utils import data

from drytorch import (
    DataLoader, EMAModel, Experiment, LearningSchema, Loss, SWAModel, Trainer,
)
from drytorch.core import distributed

generator = torch.Generator().manual_seed(0)
x = torch.randn(64, 3, generator=generator)
train_set = data.TensorDataset(x, x.sum(1, keepdim=True))


def network():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))


def mse(outputs, targets):
    return ((outputs - targets) ** 2).mean()


with Experiment(None, name='ddp', par_dir='.').create_run(run_id='r'):
    ema = EMAModel(network(), 'ema', device='cpu', decay=0.8)
    swa = SWAModel(
        network(), 1, 'swa', device='cpu', bn_loader=DataLoader(train_set, 8)
    )
    for model in (ema, swa):
        assert model.distributed is not None
        assert isinstance(model.averaged_module.module, nn.Sequential)
        Trainer(
            model,
            loader=DataLoader(train_set, 8, seed=0),
            loss=Loss(mse, 'MSE'),
            learning_schema=LearningSchema.adam(1e-2),
        ).train(2)
    rank = distributed.current().rank
    torch.save(
        {
            'ema': ema.averaged_module.state_dict(),
            'swa': swa.averaged_module.state_dict(),
        },
        pathlib.Path(f'averaged_{rank}.pt'),
    )
"""


def test_under_ddp_every_process_keeps_the_same_average(
    tmp_path: pathlib.Path,
) -> None:
    script = tmp_path / 'job.py'
    script.write_text(DDP_JOB, encoding='utf-8')
    done = testing.torchrun(
        script,
        cwd=tmp_path,
        env={'DRYTORCH_INIT_MODE': 'none', 'OMP_NUM_THREADS': '1'},
        timeout=180,
    )
    assert done.returncode == 0, done.stdout
    first, second = (
        torch.load(tmp_path / f'averaged_{rank}.pt', weights_only=True)
        for rank in (0, 1)
    )
    assert int(first['ema']['n_averaged']) == 8  # 32 samples a process, 2 epochs
    assert int(first['swa']['n_averaged']) == 2
    for kind in ('ema', 'swa'):
        for key, value in first[kind].items():
            assert torch.equal(second[kind][key], value), f'{kind}: {key}'
