"""Per-step schedules, torch schedulers, several optimizers, a public training step.

In-process tests check the rates each optimizer step used and the refusals;
subprocess tests SIGKILL a training inside an epoch and relaunch it, and the
weights at the end must equal those of an uninterrupted run, tensor for
tensor (the torch schedulers' and post-step hooks' states are in the
checkpoints, and so is everything a GAN's two optimizers need).
"""

from __future__ import annotations

import functools
import json
import math
import os
import pathlib
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils import data

from drytorch import LearningSchema, Loss, Model, Trainer
from drytorch.core.exceptions import CheckpointError, LearningSchemaError
from drytorch.lib import hooks, schedulers
from tests import training_kit as kit
from tests.conftest import ROOT

TIMEOUT = 120


class Killer:
    """A post-step hook that SIGKILLs its process at step ``at`` (0: never)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def __call__(self, trainer: Trainer[Any, Any, Any]) -> None:
        if trainer.steps == self.at:
            os.kill(os.getpid(), signal.SIGKILL)


class Rates:
    """A post-step hook that records the rate each step used, with saved state."""

    def __init__(self) -> None:
        self.seen: list[list[float]] = []

    def __call__(self, trainer: Trainer[Any, Any, Any]) -> None:
        self.seen.append(
            [g['lr'] for o in trainer.optimizers.values() for g in o.param_groups]
        )

    def state_dict(self) -> dict[str, Any]:
        return {'seen': self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.seen = [list(rates) for rates in state['seen']]


def trained_rates(schema: LearningSchema, epochs: int = 2) -> list[float]:
    trainer = kit.trainer(schema=schema)  # 6 steps per epoch
    rates = Rates()
    trainer.post_step_hooks.register(rates)
    trainer.train(epochs)
    assert trainer.steps == 6 * epochs
    return [seen[0] for seen in rates.seen]


def test_a_drytorch_schedule_moves_at_every_step(run: Any) -> None:
    ramp = schedulers.warmup(schedulers.CosineScheduler(20), 4)
    schema = LearningSchema.sgd(lr=0.1, scheduler=ramp, interval='step')
    used = trained_rates(schema)
    assert used == pytest.approx([ramp(0.1, step) for step in range(12)])
    assert used[0] == pytest.approx(0.1 / 5) and used[0] > 0  # no step at rate 0
    by_epoch = trained_rates(LearningSchema.sgd(lr=0.1, scheduler=ramp))
    assert by_epoch == pytest.approx([ramp(0.1, 0)] * 6 + [ramp(0.1, 1)] * 6)


def test_restart_works_per_step(run: Any) -> None:
    cycle = schedulers.restart(schedulers.CosineScheduler(5), 5)
    used = trained_rates(LearningSchema.sgd(lr=0.1, scheduler=cycle, interval='step'))
    assert used[0] == used[5] == used[10] == pytest.approx(0.1)
    assert used[4] < used[1]


def test_a_torch_scheduler_steps_as_a_hand_written_loop(run: Any) -> None:
    factory = functools.partial(
        torch.optim.lr_scheduler.OneCycleLR, max_lr=0.2, total_steps=12
    )
    used = trained_rates(LearningSchema.sgd(lr=0.1, scheduler=factory, interval='step'))
    optimizer = torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1)
    reference = factory(optimizer)
    expected = []
    for _ in range(12):
        expected.append(optimizer.param_groups[0]['lr'])
        optimizer.step()
        reference.step()
    assert used == pytest.approx(expected)
    assert max(used) == pytest.approx(0.2, rel=0.01)


def test_a_torch_scheduler_by_epoch_steps_after_each_epoch(run: Any) -> None:
    factory = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    used = trained_rates(LearningSchema.sgd(lr=0.1, scheduler=factory), epochs=3)
    assert used == pytest.approx([0.1] * 6 + [0.05] * 6 + [0.025] * 6)


def test_plateau_factor_scales_a_torch_scheduler_once(run: Any) -> None:
    factory = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    trainer = kit.trainer(schema=LearningSchema.sgd(lr=0.1, scheduler=factory))
    trainer.train(1)
    trainer.update_learning_rate(factor=0.1, reason='plateau')
    assert trainer.optimizer.param_groups[0]['lr'] == pytest.approx(0.005)
    trainer.train(1)
    assert trainer.optimizer.param_groups[0]['lr'] == pytest.approx(0.0025)


@pytest.mark.parametrize(
    ('scheduler', 'message'),
    [
        (
            functools.partial(torch.optim.lr_scheduler.ReduceLROnPlateau),
            'hooks.ReduceLROnPlateau',
        ),
        (
            torch.optim.lr_scheduler.StepLR(
                torch.optim.SGD(nn.Linear(1, 1).parameters(), lr=0.1), 1
            ),
            'already built',
        ),
        (lambda lr, epoch: lr, 'a factory that takes the optimizer'),
        (3, 'drytorch schedule'),
    ],
)
def test_schedulers_that_cannot_work_are_refused_at_once(
    scheduler: Any, message: str
) -> None:
    with pytest.raises(LearningSchemaError, match=message):
        LearningSchema.sgd(lr=0.1, scheduler=scheduler)


def test_a_failing_factory_is_reported_when_the_trainer_builds_it(run: Any) -> None:
    factory = functools.partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.5)
    with pytest.raises(LearningSchemaError, match='total_steps'):
        kit.trainer(schema=LearningSchema.sgd(lr=0.1, scheduler=factory))
    with pytest.raises(LearningSchemaError, match="'epoch' or 'step'"):
        LearningSchema.sgd(lr=0.1, interval='batch')  # type: ignore[arg-type]


def test_checkpoints_must_match_the_torch_schedulers(run: Any) -> None:
    factory = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1)
    trainer = kit.trainer(schema=LearningSchema.sgd(lr=0.1, scheduler=factory))
    trainer.train(1)
    trainer.save_checkpoint()
    plain = kit.trainer(model=trainer.model, schema=LearningSchema.sgd(lr=0.1))
    with pytest.raises(CheckpointError, match='torch schedulers differ'):
        plain.load_checkpoint()


class Pair(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Linear(3, 3)
        self.head = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def test_one_schema_per_submodule_builds_one_optimizer_each(run: Any) -> None:
    torch.manual_seed(0)
    model = Model(Pair(), device='cpu')
    schemas = {
        'body': LearningSchema.sgd(lr=0.01),
        'head': LearningSchema.adam(lr=0.05, scheduler=schedulers.CosineScheduler(4)),
    }
    trainer = kit.trainer(model=model, schema=schemas)
    assert set(trainer.optimizers) == {'body', 'head'}
    assert isinstance(trainer.optimizers['body'], torch.optim.SGD)
    before = kit.weights(model)
    trainer.train(2)
    after = kit.weights(model)
    assert not torch.equal(before['body.weight'], after['body.weight'])
    assert not torch.equal(before['head.weight'], after['head.weight'])
    cosine = schedulers.CosineScheduler(4)
    assert trainer.optimizers['head'].param_groups[0]['lr'] == pytest.approx(
        cosine(0.05, 1)
    )
    with pytest.raises(LearningSchemaError, match=r'optimizers\[name\]'):
        _ = trainer.optimizer
    trainer.save_checkpoint()
    again = kit.trainer(model=model, schema=schemas)
    again.load_checkpoint()
    for part in ('body', 'head'):
        saved = trainer.optimizers[part].state_dict()['state']
        loaded = again.optimizers[part].state_dict()['state']
        assert saved.keys() == loaded.keys()
    trainer.update_learning_rate(base_lr=0.02, optimizer='body')
    assert trainer.optimizers['body'].param_groups[0]['lr'] == pytest.approx(0.02)
    with pytest.raises(LearningSchemaError, match='one optimizer per submodule'):
        trainer.update_learning_rate(base_lr=0.02)


def test_submodule_schemas_must_cover_the_parameters_once(run: Any) -> None:
    model = Model(Pair(), device='cpu')
    with pytest.raises(LearningSchemaError, match=r"\['head.weight', 'head.bias'\]"):
        kit.trainer(model=model, schema={'body': LearningSchema.sgd()})
    with pytest.raises(LearningSchemaError, match='share parameters'):
        kit.trainer(
            model=model, schema={'': LearningSchema.sgd(), 'head': LearningSchema.sgd()}
        )
    with pytest.raises(LearningSchemaError, match='not a submodule'):
        kit.trainer(model=model, schema={'tail': LearningSchema.sgd()})


class Twice(Trainer[torch.Tensor, torch.Tensor, torch.Tensor]):
    """Two forward passes per batch, each with its own optimizer step."""

    def training_step(
        self, inputs: torch.Tensor, targets: torch.Tensor
    ) -> torch.Tensor:
        for _ in range(2):
            outputs = self.model(inputs)
            self.backward(self.loss(outputs, targets))
            self.optimizer_step()
        return outputs


def test_an_overridden_training_step_keeps_the_bookkeeping(run: Any) -> None:
    model = kit.linear()
    trainer = Twice(
        model,
        loader=kit.trainer().loader,
        loss=kit.mse(),
        learning_schema=LearningSchema.sgd(lr=0.01),
    )
    rates = Rates()
    trainer.post_step_hooks.register(rates)
    trainer.checkpoint_every(steps=4)
    trainer.train(2)
    assert trainer.steps == 12 and len(rates.seen) == 12  # one per batch
    assert math.isfinite(trainer.computed_metrics['MSE'])
    saved = {p.name for p in pathlib.Path().rglob('*.pt')}
    assert {'epoch_0_batch_4.pt', 'epoch_1_batch_2.pt', 'epoch_2.pt'} <= saved
    with pytest.raises(ValueError, match='accumulate gradients there'):
        Twice(
            model,
            loader=trainer.loader,
            loss=kit.mse(),
            learning_schema=LearningSchema.sgd(),
            accumulate_grad_batches=2,
        )


def test_post_step_hooks_must_be_registered_again_before_loading(run: Any) -> None:
    trainer = kit.trainer()
    trainer.post_step_hooks.register(Rates())
    trainer.train(1)
    trainer.save_checkpoint()
    bare = kit.trainer(model=trainer.model)
    with pytest.raises(CheckpointError, match='post_step_hooks'):
        bare.load_checkpoint()


SCHEDULED = r"""
import functools, json, os, signal, sys
import torch
from drytorch import DataLoader, Experiment, LearningSchema, Trainer
from drytorch.lib import schedulers
from tests import training_kit as kit
from tests.test_training_control import Killer, Rates

args = json.loads(sys.argv[1])
torch.set_num_threads(1)


if args['kind'] == 'torch':
    scheduler = functools.partial(
        torch.optim.lr_scheduler.OneCycleLR, max_lr=0.2, total_steps=18
    )
else:
    scheduler = schedulers.warmup(schedulers.CosineScheduler(18), 5)
schema = LearningSchema.sgd(lr=0.05, momentum=0.9, scheduler=scheduler, interval='step')
with Experiment(None, name='exp', par_dir='.').create_run(
    run_id=args['run'], resume=True, seed=0
):
    trainer = kit.trainer(schema=schema)
    rates = Rates()
    trainer.post_step_hooks.register_all([rates, Killer(args['kill_at'])])
    trainer.checkpoint_every(steps=4)
    trainer.resume()
    trainer.train_until(3)
    json.dump(
        {'weights': {k: v.tolist() for k, v in kit.weights(trainer.model).items()},
         'rates': rates.seen, 'steps': trainer.steps},
        open(args['out'], 'w'),
    )
"""

GAN = r"""
import json, os, signal, sys
import torch
sys.path.insert(0, os.path.join(sys.argv[2], 'examples'))
import gan
from tests.test_training_control import Killer

args = json.loads(sys.argv[1])
torch.set_num_threads(1)


config = gan.Config(n_samples=512, epochs=3, checkpoint_steps=5)
with gan.RingGAN(config, name='ring-gan', par_dir='.').create_run(
    args['run'], resume=True, seed=0
):
    model = gan.run_experiment([Killer(args['kill_at'])])
json.dump(
    {'weights': {k: v.tolist() for k, v in model.module.state_dict().items()}},
    open(args['out'], 'w'),
)
"""


STREAMED = r"""
import json, os, signal, sys
import torch
from tests import training_kit as kit
from tests.test_training_control import Killer, stream_trainer
from drytorch import Experiment

args = json.loads(sys.argv[1])
torch.set_num_threads(1)


with Experiment(None, name='exp', par_dir='.').create_run(
    run_id=args['run'], resume=True, seed=0
):
    trainer = stream_trainer(5, accumulate=2)  # windows of 2, 2, 1 per epoch
    trainer.post_step_hooks.register(Killer(args['kill_at']))
    trainer.checkpoint_every(steps=2)
    trainer.resume()
    trainer.train_steps(10 - trainer.steps)
    json.dump(
        {'weights': {k: v.tolist() for k, v in kit.weights(trainer.model).items()},
         'steps': trainer.steps, 'epoch': trainer.model.epoch},
        open(args['out'], 'w'),
    )
"""


def launch(
    code: str, cwd: pathlib.Path, **args: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, '-c', code, json.dumps(args), str(ROOT)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
        env={**__import__('os').environ, 'PYTHONPATH': str(ROOT)},
    )


def killed_and_resumed(code: str, cwd: pathlib.Path, kill_at: int, **args: Any) -> Any:
    """Return the outputs of an uninterrupted run and of a killed, resumed one."""
    whole = launch(code, cwd, run='whole', kill_at=0, out='whole.json', **args)
    assert whole.returncode == 0, whole.stderr
    killed = launch(code, cwd, run='killed', kill_at=kill_at, out='x.json', **args)
    assert killed.returncode == -9, killed.stderr  # SIGKILL, inside an epoch
    resumed = launch(code, cwd, run='killed', kill_at=0, out='resumed.json', **args)
    assert resumed.returncode == 0, resumed.stderr
    return (
        json.loads((cwd / 'whole.json').read_text()),
        json.loads((cwd / 'resumed.json').read_text()),
    )


@pytest.mark.parametrize('kind', ['torch', 'drytorch'])
def test_per_step_schedules_resume_exactly_after_sigkill(
    kind: str, tmp_path: pathlib.Path
) -> None:
    whole, resumed = killed_and_resumed(SCHEDULED, pathlib.Path(), 10, kind=kind)
    assert resumed['steps'] == whole['steps'] == 18
    assert resumed['weights'] == whole['weights']  # bit for bit
    assert resumed['rates'] == whole['rates']  # the post-step hook's saved state
    first = whole['rates'][0][0]
    assert first > 0 and len({r[0] for r in whole['rates']}) > 10  # it moved


def test_the_gan_example_resumes_exactly_after_sigkill() -> None:
    whole, resumed = killed_and_resumed(
        GAN, pathlib.Path(), 11
    )  # saved at step 10: (1, 4)
    assert resumed['weights'] == whole['weights']


class Recorded:
    """The MSE of each training batch, as the loss computed it."""

    def __init__(self) -> None:
        self.values: list[float] = []

    def __call__(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        value = kit.mse_fn(outputs, targets)
        if torch.is_grad_enabled():
            self.values.append(value.item())
        return value


def test_step_metrics_are_the_means_of_the_recent_steps(
    rec: Any, run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv('DRYTORCH_STEP_METRICS_EVERY', '4')
    recorded = Recorded()
    trainer = kit.trainer(loss=Loss(recorded, 'MSE'))  # 6 steps per epoch
    trainer.train(2)
    events = [e for e in rec.events('on_step_metrics') if e.source_name == 'Trainer']
    assert [(e.step, e.epoch) for e in events] == [(4, 1), (8, 2), (12, 2)]
    values = recorded.values
    for event, (start, stop) in zip(events, [(0, 4), (4, 8), (8, 12)], strict=True):
        expected = sum(values[start:stop]) / (stop - start)  # across the epoch end
        assert event.metrics['MSE'] == pytest.approx(expected, rel=1e-6)


def test_step_metrics_cost_nothing_without_a_tracker_that_takes_them(
    run: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv('DRYTORCH_STEP_METRICS_EVERY', '1')
    trainer = kit.trainer()
    calls: list[int] = []
    original = trainer.loss.running_sums
    monkeypatch.setattr(
        trainer.loss, 'running_sums', lambda: calls.append(1) or original()
    )
    trainer.train(1)
    assert calls == []  # no tracker implements on_step_metrics: never read


def test_validation_every_n_steps_reports_with_the_step(rec: Any, run: Any) -> None:
    trainer = kit.trainer()
    trainer.add_validation(kit.trainer(n=16).loader, interval=None, every_steps=4)
    trainer.train(2)
    steps = [
        (e.step, e.epoch)
        for e in rec.events('on_step_metrics')
        if e.source_name == 'Validation'
    ]
    assert steps == [(4, 1), (8, 2), (12, 2)]
    assert not [e for e in rec.metrics('Validation')]  # no epoch-end validation
    assert trainer.validation is not None
    assert trainer.validation.computed_step == 12
    with pytest.raises(ValueError, match='needs an interval'):
        trainer.add_validation(trainer.loader, interval=None)


def test_early_stopping_on_step_validations_stops_inside_the_epoch(
    rec: Any, run: Any
) -> None:
    trainer = kit.trainer(schema=LearningSchema.sgd(lr=1.5))  # diverges
    trainer.add_validation(kit.trainer(n=16).loader, interval=None, every_steps=2)
    trainer.post_step_hooks.register(hooks.EarlyStoppingCallback(patience=1))
    trainer.train(10)
    assert trainer.terminated is True
    assert trainer.steps % 6 != 0  # inside an epoch, right after a validation
    assert trainer.steps % 2 == 0 and trainer.model.epoch == trainer.steps // 6 + 1
    assert rec.metrics('Trainer')[-1].epoch == trainer.model.epoch  # reported


def test_train_steps_pauses_inside_an_epoch_and_goes_on_exactly(run: Any) -> None:
    reference = kit.trainer(model=kit.linear('reference'))
    reference.train(3)
    trainer = kit.trainer()  # 6 steps per epoch
    trainer.train_steps(8)
    assert trainer.steps == 8 and trainer.model.epoch == 1  # epoch 2 is paused
    trainer.train_steps(3)
    assert trainer.steps == 11 and trainer.model.epoch == 1
    trainer.train(2)  # finishes epoch 2, then trains epoch 3
    assert trainer.steps == 18 and trainer.model.epoch == 3
    assert kit.same_weights(kit.weights(trainer.model), kit.weights(reference.model))
    assert trainer.computed_metrics == reference.computed_metrics
    with pytest.raises(ValueError, match='>= 1'):
        trainer.train_steps(0)


def test_a_checkpoint_of_a_paused_epoch_resumes_it(run: Any) -> None:
    reference = kit.trainer(model=kit.linear('reference'))
    reference.train(2)
    trainer = kit.trainer()
    trainer.train_steps(9)
    assert pathlib.Path(trainer.save_checkpoint()).name == 'epoch_1_batch_3.pt'
    again = kit.trainer(model=trainer.model)
    again.load_checkpoint()
    again.train_until(2)
    assert again.steps == 12
    assert kit.same_weights(kit.weights(again.model), kit.weights(reference.model))


class Stream(data.IterableDataset[tuple[torch.Tensor, torch.Tensor]]):
    """Batches of regression data, drawn afresh (the same each time): no length."""

    def __init__(self, n_batches: int) -> None:
        self.x, self.y = kit.regression(8 * n_batches).tensors
        self.n_batches = n_batches

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for i in range(self.n_batches):
            yield self.x[8 * i : 8 * i + 8], self.y[8 * i : 8 * i + 8]


def stream_trainer(
    n_batches: int, accumulate: int = 1, name: str = ''
) -> Trainer[Any, Any, Any]:
    return Trainer(
        kit.linear(name),
        loader=data.DataLoader(Stream(n_batches), batch_size=None),
        loss=kit.mse(),
        learning_schema=LearningSchema.sgd(lr=0.05),
        accumulate_grad_batches=accumulate,
    )


def test_a_loader_without_length_trains_by_epochs_and_steps(rec: Any, run: Any) -> None:
    trainer = stream_trainer(5)
    trainer.train(2)
    assert trainer.steps == 10 and trainer.model.epoch == 2
    totals = {e.n_batches for e in rec.events('on_batch_end')}
    assert totals == {None}  # progress without a total
    trainer.train_steps(7)  # a whole epoch, then 2 steps into the next
    assert trainer.steps == 17 and trainer.model.epoch == 3
    trainer.checkpoint_every(steps=3)
    trainer.train_steps(2)  # step 18 saves inside the paused epoch
    assert 'epoch_3_batch_3.pt' in {p.name for p in pathlib.Path().rglob('*.pt')}


def test_a_stream_resumes_from_a_step_checkpoint_exactly(run: Any) -> None:
    reference = stream_trainer(5, name='reference')
    reference.train(2)
    trainer = stream_trainer(5)
    trainer.checkpoint_every(steps=7)
    trainer.train(1)
    trainer.train_steps(2)  # step 7: saved at epoch 1, batch 2
    fresh = Trainer(
        trainer.model,
        loader=data.DataLoader(Stream(5), batch_size=None),
        loss=kit.mse(),
        learning_schema=LearningSchema.sgd(lr=0.05),
    )
    fresh.load_checkpoint()
    fresh.train_until(2)  # draws and drops the 2 batches trained, then goes on
    assert fresh.steps == 10
    assert kit.same_weights(kit.weights(fresh.model), kit.weights(reference.model))


def test_accumulation_over_a_stream_steps_on_its_last_short_window(run: Any) -> None:
    sized = Trainer(
        kit.linear('sized'),
        loader=data.DataLoader(
            data.TensorDataset(*kit.regression(40).tensors), batch_size=8
        ),
        loss=kit.mse(),
        learning_schema=LearningSchema.sgd(lr=0.05),
        accumulate_grad_batches=2,
    )
    sized.train(2)
    unsized = stream_trainer(5, accumulate=2)
    unsized.train(2)
    assert unsized.steps == sized.steps == 6  # windows of 2, 2 and 1
    assert kit.same_weights(kit.weights(unsized.model), kit.weights(sized.model))


def test_a_stream_with_a_step_budget_resumes_exactly_after_sigkill() -> None:
    # killed at step 5, saved at step 4: inside epoch 2 (3 steps an epoch)
    whole, resumed = killed_and_resumed(STREAMED, pathlib.Path(), 5)
    assert whole['steps'] == resumed['steps'] == 10
    assert whole['epoch'] == resumed['epoch'] == 3  # epoch 4 paused inside
    assert resumed['weights'] == whole['weights']
