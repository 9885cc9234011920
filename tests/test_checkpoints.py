"""Checkpoints: layout, latest epoch, exact continuation, safety and backends."""

from __future__ import annotations

import copy
import io
import os
import pathlib
import pickle
import random
import subprocess
import sys
import time
import zipfile
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from drytorch import DataLoader, Experiment, Loss, Metric, Model, Trainer, hookimpl
from drytorch.core import checkpointing, exceptions, plugins, registering
from drytorch.lib import hooks
from tests import training_kit as kit
from tests.conftest import ROOT
from tests.training_kit import Recorder

AnyTrainer = Trainer[Any, Any, Any]


def folder(model: str = 'Model', par_dir: str = '.') -> pathlib.Path:
    return pathlib.Path(par_dir).resolve() / 'checkpoints' / 'exp' / 'r' / model


# --- layout and choice of the checkpoint -------------------------------------------


def test_layout_under_the_experiment_par_dir(rec: Recorder) -> None:
    with Experiment(None, name='exp', par_dir='outputs').create_run(run_id='r'):
        trainer = kit.trainer(kit.linear(name='net'))
        trainer.train(2)
        where = trainer.save_checkpoint()
    expected = folder('net', 'outputs') / 'epoch_2.pt'
    assert where == str(expected)
    assert expected.is_file()
    assert not pathlib.Path('checkpoints').exists()
    (event,) = rec.events('on_checkpoint_save')
    assert (event.model_name, event.epoch, event.action) == ('net', 2, 'save')
    assert event.location == where


@pytest.mark.usefixtures('run')
def test_latest_is_the_highest_epoch_not_the_newest_file() -> None:
    trainer = kit.trainer()
    trainer.train(1)
    trainer.save_checkpoint()
    at_one = kit.weights(trainer.model)
    trainer.train(2)
    trainer.save_checkpoint()
    at_three = kit.weights(trainer.model)
    later = time.time() + 3600
    os.utime(folder() / 'epoch_1.pt', (later, later))
    trainer.train(1)
    trainer.load_checkpoint()
    assert trainer.model.epoch == 3
    assert kit.same_weights(kit.weights(trainer.model), at_three)
    trainer.load_checkpoint(epoch=1)
    assert trainer.model.epoch == 1
    assert kit.same_weights(kit.weights(trainer.model), at_one)
    with pytest.raises(exceptions.CheckpointError, match=r'epoch 2.*\[1, 3\]'):
        trainer.load_checkpoint(epoch=2)


@pytest.mark.usefixtures('run')
def test_loading_without_a_checkpoint_names_the_location() -> None:
    trainer = kit.trainer(kit.linear(name='net'))
    with pytest.raises(exceptions.CheckpointError) as raised:
        trainer.load_checkpoint()
    message = str(raised.value)
    assert "model 'net'" in message and "run 'r'" in message
    assert "experiment 'exp'" in message
    with pytest.raises(exceptions.CheckpointError, match=r'epoch 4.*none'):
        trainer.load_checkpoint(epoch=4)


# --- what a checkpoint restores ------------------------------------------------------


def _draws(loader: Any) -> tuple[Any, ...]:
    """Numbers from every global generator, and the loader's next epoch order."""
    order = [t.tolist() for _, targets in loader for t in targets]
    return random.random(), float(np.random.rand()), torch.rand(3), order


def _full_trainer(model: Model[Any, Any] | None = None) -> AnyTrainer:
    trainer = kit.trainer(model)
    trainer.add_validation(DataLoader(kit.regression(16, seed=1), 16))
    trainer.post_epoch_hooks.register(hooks.EarlyStoppingCallback(patience=50))
    trainer.post_epoch_hooks.register(
        hooks.call_every(1, hooks.ReduceLROnPlateau(factor=0.5, patience=0))
    )
    return trainer


@pytest.mark.usefixtures('run')
def test_the_state_is_restored(rec: Recorder) -> None:
    trainer = _full_trainer()
    trainer.train(2)
    trainer.update_learning_rate(factor=0.5)
    trainer.save_checkpoint()
    weights = kit.weights(trainer.model)
    optimizer = copy.deepcopy(trainer.optimizer.state_dict())
    hook_states = copy.deepcopy(trainer.post_epoch_hooks.state_dict())
    draws = _draws(trainer.loader)

    trainer.train(3)
    trainer.update_learning_rate(factor=0.1)
    _draws(trainer.loader)
    trainer.load_checkpoint()

    assert trainer.model.epoch == 2
    assert kit.same_weights(kit.weights(trainer.model), weights)
    restored = trainer.optimizer.state_dict()
    assert restored['param_groups'] == optimizer['param_groups']
    for key, moments in optimizer['state'].items():
        assert set(moments) == {'step', 'exp_avg', 'exp_avg_sq'}
        for name, value in moments.items():
            assert torch.equal(restored['state'][key][name], value)
    assert trainer.lr_factor == 0.5
    assert trainer.post_epoch_hooks.state_dict() == hook_states
    assert hook_states[0]['monitor']['history']  # the counters were not empty
    again = _draws(trainer.loader)
    assert again[:2] == draws[:2]
    assert torch.equal(again[2], draws[2])
    assert again[3] == draws[3]
    (event,) = rec.events('on_checkpoint_load')
    assert (event.model_name, event.epoch, event.action) == ('Model', 2, 'load')


@pytest.mark.usefixtures('run')
def test_continuing_from_a_checkpoint_is_exact_in_process() -> None:
    trainer = _full_trainer()
    trainer.train(2)
    trainer.save_checkpoint()
    trainer.train(2)
    straight = kit.weights(trainer.model)

    trainer.load_checkpoint()
    trainer.train(2)
    assert kit.same_weights(kit.weights(trainer.model), straight)

    registering.unregister_model(trainer.model)
    fresh = _full_trainer(kit.linear(seed=123))  # a new Model of the same name
    assert fresh.model.name == 'Model'
    fresh.load_checkpoint(epoch=2)
    fresh.train(2)
    assert kit.same_weights(kit.weights(fresh.model), straight)


SCRIPT = """
import json
import random

import numpy as np
import torch
from torch import nn
from torch.utils import data

from drytorch import DataLoader, Experiment, LearningSchema, Loss, Model, Trainer
from drytorch.lib import hooks, schedulers

torch.manual_seed(0)
random.seed(0)
np.random.seed(0)
X = torch.randn(40, 4)
Y = X.sum(1, keepdim=True)


class Noisy(data.Dataset):
    def __len__(self):
        return 40

    def __getitem__(self, i):
        return X[i] + 0.01 * random.random() + 0.01 * float(np.random.rand()), Y[i]


def mse(outputs, targets):
    return ((outputs - targets) ** 2).mean()


experiment = Experiment(None, name=NAME)
with experiment.create_run(run_id=RUN, resume=MODE == 'resume'):
    # After the run start, which may seed the generators itself.
    torch.manual_seed(0)
    random.seed(0)
    np.random.seed(0)
    module = nn.Sequential(
        nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 1)
    )
    model = Model(module, device='cpu')
    schedule = schedulers.ExponentialScheduler(0.9)
    trainer = Trainer(
        model,
        loader=DataLoader(Noisy(), 8),
        loss=Loss(mse, 'MSE'),
        learning_schema=LearningSchema.adam(lr=1e-2, scheduler=schedule),
    )
    trainer.add_validation(DataLoader(Noisy(), 16))
    trainer.post_epoch_hooks.register(hooks.ReduceLROnPlateau(factor=0.5, patience=0))
    trainer.post_epoch_hooks.register(hooks.EarlyStoppingCallback(patience=50))
    if MODE == 'resume':
        trainer.load_checkpoint()
        assert model.epoch == 2
    trainer.train_until(2 if MODE == 'first' else 4)
    if MODE == 'first':
        trainer.save_checkpoint()
    else:
        torch.save(model.module.state_dict(), OUT + '.pt')
        summary = {
            'epoch': model.epoch,
            'factor': trainer.lr_factor,
            'rates': [group['lr'] for group in trainer.optimizer.param_groups],
            'train': trainer.computed_metrics,
            'validation': trainer.validation.computed_metrics,
            'hooks': repr(trainer.post_epoch_hooks.state_dict()),
        }
        with open(OUT + '.json', 'w') as file:
            json.dump(summary, file)
"""


def _process(mode: str, name: str, run_id: str, out: str = '') -> subprocess.Popen[str]:
    head = f'MODE = {mode!r}\nNAME = {name!r}\nRUN = {run_id!r}\nOUT = {out!r}\n'
    env = dict(
        os.environ,
        DRYTORCH_INIT_MODE='none',
        PYTHONPATH=str(ROOT / 'src'),
        OMP_NUM_THREADS='1',
    )
    return subprocess.Popen(
        [sys.executable, '-c', head + SCRIPT],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(process: subprocess.Popen[str]) -> None:
    try:
        output, _ = process.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
    assert process.returncode == 0, output


def test_a_resumed_process_continues_exactly(tmp_path: pathlib.Path) -> None:
    reference = _process('reference', 'reference', 'ref', str(tmp_path / 'ref'))
    first = _process('first', 'cont', 'r')
    _finish(first)
    assert (pathlib.Path('checkpoints/cont/r/Model/epoch_2.pt')).is_file()
    resumed = _process('resume', 'cont', 'r', str(tmp_path / 'resumed'))
    _finish(resumed)
    _finish(reference)
    expected = torch.load(tmp_path / 'ref.pt', weights_only=True)
    continued = torch.load(tmp_path / 'resumed.pt', weights_only=True)
    assert kit.same_weights(continued, expected)
    summaries = [(tmp_path / f'{n}.json').read_text() for n in ('ref', 'resumed')]
    assert summaries[0] == summaries[1]
    assert '"epoch": 4' in summaries[0]


# --- failures ----------------------------------------------------------------------


class Fragile:
    """A stateful hook whose state stops being picklable on request."""

    def __init__(self) -> None:
        self.broken = False

    def __call__(self, trainer: AnyTrainer) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {'fn': (lambda: 0) if self.broken else 0}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


@pytest.mark.usefixtures('run')
def test_a_failed_save_keeps_the_last_good_checkpoint() -> None:
    trainer = kit.trainer()
    fragile = Fragile()
    trainer.post_epoch_hooks.register(fragile)
    trainer.train(1)
    good = pathlib.Path(trainer.save_checkpoint())
    content = good.read_bytes()
    saved = kit.weights(trainer.model)

    fragile.broken = True  # the same file again, failing halfway through pickling
    with torch.no_grad():
        trainer.model.module.weight.zero_()
    with pytest.raises(exceptions.CheckpointError, match='epoch 1 failed') as failed:
        trainer.save_checkpoint()
    assert isinstance(
        failed.value.__cause__, pickle.PicklingError | AttributeError | TypeError
    )
    assert good.read_bytes() == content
    assert [p.name for p in good.parent.iterdir()] == ['epoch_1.pt']

    fragile.broken = False
    trainer.train(1)
    (good.parent / 'epoch_2.pt').mkdir()  # the final name is taken by a folder
    with pytest.raises(exceptions.CheckpointError, match='epoch 2 failed') as failed:
        trainer.save_checkpoint()
    assert isinstance(failed.value.__cause__, OSError)
    assert sorted(p.name for p in good.parent.iterdir()) == ['epoch_1.pt', 'epoch_2.pt']
    assert good.read_bytes() == content
    trainer.load_checkpoint()  # the folder is not a checkpoint
    assert trainer.model.epoch == 1
    assert kit.same_weights(kit.weights(trainer.model), saved)


class Payload:
    """Touches ``marker`` when unpickled."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple[Any, ...]:
        return exec, (f'import pathlib; pathlib.Path({self.marker!r}).touch()',)


@pytest.mark.usefixtures('run')
def test_a_checkpoint_carrying_code_is_refused_unrun(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / 'pwned'
    pickle.loads(pickle.dumps(Payload(marker)))  # the payload is live
    assert marker.exists()
    marker.unlink()

    trainer = kit.trainer()
    trainer.train(1)
    trainer.save_checkpoint()
    trainer.train(1)
    before = kit.weights(trainer.model)
    evil = folder() / 'epoch_5.pt'
    torch.save({'format': 1, 'epoch': 5, 'model': Payload(marker)}, evil)
    with pytest.raises(exceptions.CheckpointError, match='cannot be loaded safely'):
        trainer.load_checkpoint()
    assert not marker.exists()
    assert evil.exists()
    assert trainer.model.epoch == 2
    assert kit.same_weights(kit.weights(trainer.model), before)
    trainer.load_checkpoint(epoch=1)
    assert trainer.model.epoch == 1


def _two_layers(out: int) -> nn.Module:
    torch.manual_seed(out)
    return nn.Sequential(nn.Linear(3, 4), nn.Linear(4, out))


@pytest.mark.usefixtures('run')
def test_a_checkpoint_of_another_shape_is_refused_untouched() -> None:
    small = kit.trainer(Model(_two_layers(1), name='net', device='cpu'))
    small.train(1)
    small.save_checkpoint()
    registering.unregister_model(small.model)

    wide = Trainer(
        Model(_two_layers(2), name='net', device='cpu'),
        loader=DataLoader(kit.regression(16), 8),
        loss=kit.mse(),
        learning_schema=small.learning_schema,
    )
    before = kit.weights(wide.model)
    with pytest.raises(exceptions.CheckpointError, match='does not fit') as raised:
        wide.load_checkpoint()
    assert '1.weight' in str(raised.value)
    assert kit.same_weights(kit.weights(wide.model), before)  # nothing half-loaded
    assert wide.model.epoch == 0


@pytest.mark.usefixtures('run')
def test_other_hooks_or_format_are_refused_untouched() -> None:
    trainer = kit.trainer()
    trainer.post_epoch_hooks.register(hooks.EarlyStoppingCallback())
    trainer.train(1)
    trainer.save_checkpoint()
    registering.unregister_model(trainer.model)

    bare = kit.trainer(kit.linear(seed=5))
    before = kit.weights(bare.model)
    with pytest.raises(exceptions.CheckpointError, match='1 hooks, but 0'):
        bare.load_checkpoint()
    assert kit.same_weights(kit.weights(bare.model), before)
    assert bare.model.epoch == 0

    torch.save({'format': 99}, folder() / 'epoch_9.pt')
    with pytest.raises(exceptions.CheckpointError, match='format 99'):
        bare.load_checkpoint()


class MemoryBackend:
    """A third-party storage backend keeping checkpoints in memory."""

    def __init__(self) -> None:
        self.store: dict[tuple[checkpointing.CheckpointLocation, int, int], bytes] = {}

    @hookimpl
    def save_checkpoint(
        self,
        location: checkpointing.CheckpointLocation,
        epoch: int,
        batch: int,
        state: Mapping[str, Any],
    ) -> str:
        buffer = io.BytesIO()
        torch.save(dict(state), buffer)
        self.store[location, epoch, batch] = buffer.getvalue()
        return f'memory://{location.run_id}/{location.model_name}/{epoch}/{batch}'

    @hookimpl
    def load_checkpoint(
        self, location: checkpointing.CheckpointLocation, epoch: int, batch: int
    ) -> dict[str, Any] | None:
        content = self.store.get((location, epoch, batch))
        if content is None:
            return None
        state: dict[str, Any] = torch.load(io.BytesIO(content), weights_only=True)
        return state

    @hookimpl
    def list_checkpoints(
        self, location: checkpointing.CheckpointLocation
    ) -> list[tuple[int, int]]:
        return [
            (epoch, batch) for where, epoch, batch in self.store if where == location
        ]

    @hookimpl
    def delete_checkpoint(
        self, location: checkpointing.CheckpointLocation, epoch: int, batch: int
    ) -> bool | None:
        return self.store.pop((location, epoch, batch), None) is not None


class LegacyBackend:
    """A backend of the first contract: epochs only, no batch, no deletion."""

    def __init__(self) -> None:
        self.store: dict[int, bytes] = {}

    @hookimpl
    def save_checkpoint(self, epoch: int, state: Mapping[str, Any]) -> str:
        buffer = io.BytesIO()
        torch.save(dict(state), buffer)
        self.store[epoch] = buffer.getvalue()
        return f'legacy://{epoch}'

    @hookimpl
    def load_checkpoint(self, epoch: int) -> dict[str, Any] | None:
        content = self.store.get(epoch)
        if content is None:
            return None
        state: dict[str, Any] = torch.load(io.BytesIO(content), weights_only=True)
        return state

    @hookimpl
    def list_checkpoints(self) -> list[int]:
        return list(self.store)


@pytest.mark.usefixtures('run')
def test_a_storage_plugin_takes_over(host: plugins.PluginHost, rec: Recorder) -> None:
    backend = MemoryBackend()
    host.register(backend, 'memory')
    trainer = kit.trainer()
    trainer.train(2)
    assert trainer.save_checkpoint() == 'memory://r/Model/2/0'
    saved = kit.weights(trainer.model)
    trainer.train(1)
    trainer.load_checkpoint()
    assert trainer.model.epoch == 2
    assert kit.same_weights(kit.weights(trainer.model), saved)
    assert not pathlib.Path('checkpoints').exists()  # no local file
    assert [key[1:] for key in backend.store] == [(2, 0)]
    assert rec.events('on_checkpoint_save')[0].location == 'memory://r/Model/2/0'

    trainer.checkpoint_every(steps=4, keep_last=2)
    trainer.train(2)  # 6 batches an epoch: steps 16, 20 and 24 (an epoch end)
    assert sorted(key[1:] for key in backend.store) == [(3, 2), (4, 0)]
    trainer.load_checkpoint(3, 2)
    assert trainer.steps == 20
    assert not pathlib.Path('checkpoints').exists()


@pytest.mark.usefixtures('run')
def test_a_backend_of_the_first_contract_keeps_epoch_checkpoints(
    host: plugins.PluginHost,
) -> None:
    backend = LegacyBackend()
    host.register(backend, 'legacy')
    trainer = kit.trainer()
    trainer.train(1)
    assert trainer.save_checkpoint() == 'legacy://1'
    trainer.train(1)
    trainer.load_checkpoint()
    assert trainer.model.epoch == 1
    assert checkpointing.list_positions(trainer._location()) == [(1, 0)]
    trainer.checkpoint_every(steps=2)
    with pytest.raises(exceptions.CheckpointError, match="'legacy' does not support"):
        trainer.train(1)
    assert list(backend.store) == [1]  # the epoch's checkpoint was not overwritten
    trainer.load_checkpoint()
    trainer.checkpoint_every(epochs=1, keep_last=1)
    with pytest.warns(exceptions.DryTorchWarning, match='delete_checkpoint'):
        trainer.train(2)
    assert sorted(backend.store) == [1, 2, 3]  # nothing could be deleted


# --- checkpoints inside epochs, resume, retention ------------------------------------


def _metered_trainer(model: Model[Any, Any] | None = None) -> AnyTrainer:
    """Dropout, a per-sample metric, validation and hooks: all of the state."""
    if model is None:
        torch.manual_seed(0)
        model = Model(
            nn.Sequential(nn.Linear(3, 8), nn.Dropout(0.3), nn.Linear(8, 1)),
            device='cpu',
        )
    trainer = kit.trainer(
        model,
        loss=(kit.mse() + 0.5 * Loss(_mae, 'MAE')) | Metric(_worst, 'Worst'),
    )
    trainer.add_validation(DataLoader(kit.regression(16, seed=1), 8))
    trainer.post_epoch_hooks.register(hooks.ReduceLROnPlateau(factor=0.5, patience=0))
    return trainer


def _mae(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs - targets).abs().mean()


def _worst(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs - targets).abs().amax(1)


def test_step_and_epoch_checkpoints_are_named_by_position(rec: Recorder) -> None:
    with kit.experiment().create_run(run_id='r'):
        trainer = kit.trainer()  # 48 samples, batch 8: 6 steps an epoch
        trainer.checkpoint_every(epochs=2, steps=4)
        trainer.train(3)
        positions = checkpointing.list_positions(trainer._location())
    # Steps 4, 8 and 16 inside epochs; 12 ends epoch 2, saved once with it;
    # epoch 3 ends at step 18, not a multiple of 2 epochs.
    assert positions == [(0, 4), (1, 2), (2, 0), (2, 4)]
    assert sorted(p.name for p in folder().iterdir()) == [
        'epoch_0_batch_4.pt',
        'epoch_1_batch_2.pt',
        'epoch_2.pt',
        'epoch_2_batch_4.pt',
    ]
    assert trainer.steps == 18
    saves = rec.events('on_checkpoint_save')
    assert [event.epoch for event in saves] == [0, 1, 2, 2]


def test_every_position_continues_exactly_in_process(rec: Recorder) -> None:
    with kit.experiment().create_run(run_id='r'):
        trainer = _metered_trainer()
        trainer.checkpoint_every(epochs=1, steps=4)
        trainer.train(4)
        straight = kit.weights(trainer.model)
        history = [(e.source_name, e.epoch, e.metrics) for e in rec.metrics()]
        positions = checkpointing.list_positions(trainer._location())
        assert len(positions) == 8  # every epoch, and steps 4, 8, 16 and 20
        for epoch, batch in positions:
            registering.unregister_model(trainer.model)
            trainer = _metered_trainer()
            trainer.checkpoint_every(epochs=1, steps=4)
            rec.calls.clear()
            trainer.load_checkpoint(epoch, batch)
            assert trainer.steps == epoch * 6 + batch
            trainer.train_until(4)
            assert kit.same_weights(kit.weights(trainer.model), straight), (
                epoch,
                batch,
            )
            again = [(e.source_name, e.epoch, e.metrics) for e in rec.metrics()]
            assert again == history[len(history) - len(again) :], (epoch, batch)
            assert len(again) == 2 * (4 - epoch)  # the resumed epoch is reported
        assert checkpointing.list_positions(trainer._location()) == positions


def test_only_weights_and_optimizer_are_tensor_records_in_the_file() -> None:
    # Each tensor is a record of its own in the file, the costly part of a
    # small checkpoint's save: what exact resuming adds is plain data.
    with kit.experiment().create_run(run_id='r') as run:
        trainer = _metered_trainer()
        trainer.checkpoint_every(steps=4)
        trainer.train(1)  # a checkpoint at step 4, holding running sums
        file = folder() / 'epoch_0_batch_4.pt'
        state = torch.load(file, weights_only=True)
    assert state['objective']['sums']
    # Nothing drew from Python's or NumPy's generators since the run seeded them.
    assert state['rng']['python'] == state['rng']['numpy'] == {'seeded': run.seed}

    def tensors(value: Any) -> int:
        if isinstance(value, torch.Tensor):
            return 1
        if isinstance(value, Mapping):
            return sum(tensors(item) for item in value.values())
        if isinstance(value, list | tuple):
            return sum(tensors(item) for item in value)
        return 0

    counts = {key: tensors(value) for key, value in state.items()}
    assert {key for key, n in counts.items() if n} == {'model', 'optimizer'}
    with zipfile.ZipFile(file) as archive:
        records = [n for n in archive.namelist() if '/data/' in n and n[-1].isdigit()]
    assert len(records) == counts['model'] + counts['optimizer']


@pytest.mark.usefixtures('run')
def test_resume_loads_the_latest_position_or_does_nothing() -> None:
    trainer = kit.trainer()
    assert trainer.resume() is False
    assert trainer.model.epoch == 0 and trainer.steps == 0
    trainer.checkpoint_every(steps=5)
    trainer.train(2)  # steps 5 and 10: (0, 5) and (1, 4)
    straight = kit.weights(trainer.model)
    registering.unregister_model(trainer.model)

    again = kit.trainer(kit.linear(seed=3))
    again.checkpoint_every(steps=5)
    assert again.resume() is True
    assert (again.model.epoch, again.steps) == (1, 10)
    assert again.save_checkpoint().endswith('epoch_1_batch_4.pt')  # still there
    again.train_until(2)
    assert kit.same_weights(kit.weights(again.model), straight)
    assert again.save_checkpoint().endswith('epoch_2.pt')


@pytest.mark.usefixtures('run')
def test_a_loader_that_cannot_skip_drops_the_trained_batches() -> None:
    def plain() -> AnyTrainer:
        return Trainer(
            kit.linear(),
            loader=torch.utils.data.DataLoader(kit.regression(), batch_size=8),
            loss=kit.mse(),
            learning_schema=kit.trainer().learning_schema,
        )

    trainer = plain()
    trainer.checkpoint_every(steps=4)
    trainer.train(2)
    straight = kit.weights(trainer.model)
    metrics = trainer.computed_metrics
    for model in (trainer.model, kit.trainer().model):
        registering.unregister_model(model)
    resumed = plain()
    resumed.load_checkpoint(1, 2)
    resumed.train_until(2)
    assert kit.same_weights(kit.weights(resumed.model), straight)
    assert resumed.computed_metrics == metrics


@pytest.mark.usefixtures('run')
def test_retention_keeps_the_last_the_best_and_the_latest() -> None:
    trainer = kit.trainer()
    trainer.add_validation(DataLoader(kit.regression(16, seed=1), 8))
    losses: list[float] = []
    trainer.post_epoch_hooks.register(
        lambda t: losses.append(t.validation.computed_metrics['MSE'])
    )
    trainer.checkpoint_every(epochs=1, steps=4, keep_last=2, keep_best=('MSE', 2))
    trainer.update_learning_rate(base_lr=0.3)  # noisy: the best are not the last
    trainer.train(8)
    best = sorted(range(1, 9), key=lambda e: losses[e - 1])[:2]
    last = checkpointing.list_positions(trainer._location())[-2:]
    expected = sorted({*last, *((e, 0) for e in best)})
    assert checkpointing.list_positions(trainer._location()) == expected
    assert last[-1] == (8, 0)

    trainer.load_checkpoint(best[0])  # the best, not the latest
    trainer.checkpoint_every(keep_last=1)
    trainer.save_checkpoint()  # saving again at the best epoch
    assert checkpointing.list_positions(trainer._location()) == sorted(
        {(best[0], 0), (8, 0)}
    )  # the latest is never deleted

    with pytest.raises(ValueError, match='keep_last must be an integer >= 1'):
        trainer.checkpoint_every(keep_last=0)
    with pytest.raises(ValueError, match=r'keep_best must be \(metric, k\)'):
        trainer.checkpoint_every(keep_best=('MSE', 0))
    with pytest.raises(ValueError, match='steps must be an integer >= 1'):
        trainer.checkpoint_every(steps=0)
    with pytest.raises(ValueError, match='epochs must be an integer'):
        trainer.checkpoint_every(epochs=1.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match='keep_best must be'):
        trainer.checkpoint_every(keep_best=(3, 1))  # type: ignore[arg-type]
    trainer.checkpoint_every(epochs=1, keep_best=('Accuracy', 1))
    with pytest.raises(exceptions.CheckpointError, match="'Accuracy'"):
        trainer.train(1)


@pytest.mark.usefixtures('run')
def test_keep_best_follows_the_metric_direction() -> None:
    trainer = kit.trainer(loss=kit.mse() | Metric(_mae, 'Score', higher_is_better=True))
    scores: list[float] = []
    trainer.post_epoch_hooks.register(
        lambda t: scores.append(t.computed_metrics['Score'])
    )
    trainer.checkpoint_every(epochs=1, keep_best=('Score', 1))
    trainer.train(4)  # no validation: the trainer's metrics rank
    best = max(range(1, 5), key=lambda e: scores[e - 1])
    assert checkpointing.list_positions(trainer._location()) == sorted(
        {(best, 0), (4, 0)}
    )


def stopper() -> hooks.EarlyStoppingCallback:
    return hooks.EarlyStoppingCallback(patience=0, min_delta=1e9)  # stops at 2


@pytest.mark.usefixtures('run')
def test_a_stop_saved_in_the_checkpoint_is_honoured_once() -> None:
    trainer = kit.trainer()
    trainer.post_epoch_hooks.register(stopper())
    trainer.checkpoint_every(epochs=1)
    trainer.train(5)  # stopped at the first epoch without improvement
    stopped = trainer.model.epoch
    assert trainer.terminated is True and stopped < 5
    registering.unregister_model(trainer.model)

    again = kit.trainer(kit.linear(seed=3))
    again.post_epoch_hooks.register(stopper())
    again.resume()
    again.train_until(5)  # the uninterrupted run stopped here
    assert again.model.epoch == stopped
    again.train_until(stopped + 1)  # a new call trains again
    assert again.model.epoch == stopped + 1


@pytest.mark.usefixtures('run')
def test_a_checkpoint_of_format_one_still_loads() -> None:
    trainer = kit.trainer()
    trainer.train(2)
    trainer.save_checkpoint()
    state = torch.load(folder() / 'epoch_2.pt', weights_only=True)
    for key in ('batch', 'step', 'objective', 'terminated', 'ranks'):
        del state[key]
    state['format'] = 1
    torch.save(state, folder() / 'epoch_2.pt')
    saved = kit.weights(trainer.model)
    trainer.train(1)
    trainer.load_checkpoint()
    assert kit.same_weights(kit.weights(trainer.model), saved)
    assert (trainer.model.epoch, trainer.steps) == (2, 12)


@pytest.mark.usefixtures('run')
def test_a_mid_epoch_checkpoint_of_another_loss_is_refused() -> None:
    trainer = kit.trainer()
    trainer.checkpoint_every(steps=3)
    trainer.train(1)
    registering.unregister_model(trainer.model)
    other = kit.trainer(kit.linear(seed=2), loss=kit.mse() | FakeTorchmetricLike())
    with pytest.raises(exceptions.CheckpointError, match='does not fit this loss'):
        other.load_checkpoint(0, 3)


class FakeTorchmetricLike:
    """A torchmetrics-style member with a state of its own."""

    def update(self, outputs: torch.Tensor, targets: torch.Tensor) -> None:
        pass

    def compute(self) -> torch.Tensor:
        return torch.zeros(())

    def reset(self) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        pass


def test_a_killed_save_leaves_no_temporary_file_behind() -> None:
    with kit.experiment().create_run(run_id='r'):
        trainer = kit.trainer()
        trainer.train(1)
        folder().mkdir(parents=True)
        stale = folder() / '.tmp-999999999-0123abcd.pt'  # a killed process's
        stale.write_bytes(b'half a checkpoint')
        own = folder() / f'.tmp-{os.getpid()}-0123abcd.pt'  # a save in progress
        own.write_bytes(b'')
        assert checkpointing.list_positions(trainer._location()) == []
        trainer.save_checkpoint()
        assert not stale.exists() and own.exists()
        own.unlink()
        assert [p.name for p in folder().iterdir()] == ['epoch_1.pt']
