"""A training job the distributed tests launch with torchrun (or plainly).

The same script runs in one process and under ``torchrun``: that is what it
checks. Rank 0 writes ``result.json`` in the working folder (the run id, the
world size, the metrics, the weights' path); the tests compare it with files
on disk and with single-process numbers. Environment variables steer it:

    JOB_EPOCHS     epochs to train (default 3)
    JOB_RUN_ID     the run id (default: the relaunch pattern, resume='unfinished')
    JOB_KILL_AT    SIGKILL the whole job (torchrun included) at this checkpoint
    JOB_FAIL_RANK  this rank raises in epoch 2
    JOB_DROPOUT    add dropout (random numbers that differ per rank)
    JOB_HANG_RANK  this rank sleeps for a minute in epoch 2 (a hung process)
    JOB_PLATEAU    early stopping and LR-on-plateau, which must stop every
                   rank at the same epoch, with the same rates
    JOB_COMPILE    compile the model with this torch.compile backend
    JOB_ACCUMULATE accumulate the gradients of this many batches per step
    JOB_OWN_GROUP  the script initialises the process group itself (with
                   JOB_GROUP_TIMEOUT seconds; and with JOB_RANK0_ONLY, only
                   rank 0 goes on to create the run: a mistake)
    JOB_AGAIN_UNTIL  after the run stops, resume it in the same process and
                   train until this epoch
    JOB_TORCH_LOADER  train from a torch DataLoader with a DistributedSampler,
                   then one more epoch from one without
    JOB_STEP_CONTROL  an EMA model, a per-step torch scheduler, validation
                   every 4 steps with early stopping after the step, and
                   the training as step budgets (train_steps)

Every rank writes ``final_<rank>.json``: its epoch, steps and learning rate.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import json
import os
import pathlib
import signal
import time
import tomllib

import torch
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.utils import data

import drytorch
from drytorch import (
    DataLoader,
    EMAModel,
    Experiment,
    LearningSchema,
    Loss,
    Metric,
    Model,
    Test,
    Trainer,
)
from drytorch.core import distributed
from drytorch.lib import hooks


@dataclasses.dataclass(frozen=True)
class Config:
    n_samples: int = 203  # divides by neither the world size nor the batch size
    batch_size: int = 8
    dropout: float = 0.0


class Job(Experiment[Config]):
    """A small regression, trained data-parallel."""


def datasets() -> tuple[data.TensorDataset, data.TensorDataset]:
    """Return the training and test sets (the same on every rank)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.rand(Config.n_samples, 3, generator=generator) * 4 - 2
    y = x.sum(dim=1, keepdim=True).sin() + 0.1 * torch.randn(
        Config.n_samples, 1, generator=generator
    )
    return data.TensorDataset(x[:160], y[:160]), data.TensorDataset(x[160:], y[160:])


def network(dropout: float) -> nn.Module:
    layers: list[nn.Module] = [nn.Linear(3, 16), nn.Tanh()]
    if dropout:
        layers.append(nn.Dropout(dropout))
    layers.append(nn.Linear(16, 1))
    return nn.Sequential(*layers)


def squared_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample squared error: its epoch mean is exact over uneven shares."""
    return ((outputs - targets) ** 2).flatten()


def absolute_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (outputs - targets).abs().flatten()


class EpochSampler(data.DistributedSampler[int]):
    """A DistributedSampler that remembers the epochs it was set to."""

    def __init__(self, dataset: data.Dataset[object]) -> None:
        super().__init__(dataset, shuffle=True, seed=3, drop_last=True)
        self.epochs: list[int] = []

    def set_epoch(self, epoch: int) -> None:
        self.epochs.append(epoch)
        super().set_epoch(epoch)


class Killer(drytorch.Tracker):
    """SIGKILLs the whole job at its N-th checkpoint save: workers and torchrun.

    torchrun starts each worker in a session of its own, so one signal to a
    process group cannot reach them all: the workers' pids come from the
    run's record, torchrun is the parent.
    """

    def __init__(self, at: int) -> None:
        super().__init__()
        self.at = at
        self.saves = 0

    @drytorch.hookimpl
    def on_checkpoint_save(self, event: object, run: drytorch.RunView) -> None:
        self.saves += 1
        if self.saves != self.at:
            return
        record = tomllib.loads(run.record_path.read_text())
        workers = [entry['pid'] for entry in record['sessions'][-1]['processes']]
        for pid in [os.getppid(), *(p for p in workers if p != os.getpid())]:
            os.kill(pid, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)


class RankWitness(drytorch.Tracker):
    """Runs on every rank: writes which ranks saw the run start."""

    all_ranks = True

    @drytorch.hookimpl
    def on_run_start(self, event: object, run: drytorch.RunView) -> None:
        pathlib.Path(f'witness_{run.rank}.json').write_text(
            json.dumps({'rank': run.rank, 'world_size': run.world_size, 'id': run.id})
        )


def shards() -> dict[str, list[int]]:
    """Return the samples this process loads: two training epochs, inference."""
    loader = DataLoader(data.TensorDataset(torch.arange(23)), 1, seed=5)
    seen: dict[str, list[int]] = {}
    for epoch in ('epoch_1', 'epoch_2'):
        seen[epoch] = [int(batch) for (batch,) in loader]
    with torch.inference_mode():
        seen['inference'] = [int(batch) for (batch,) in loader]
    return seen


def main() -> None:
    if os.environ.get('JOB_OWN_GROUP'):  # the script's own group: used as it is
        seconds = float(os.environ.get('JOB_GROUP_TIMEOUT', '600'))
        torch.distributed.init_process_group(
            'gloo', timeout=datetime.timedelta(seconds=seconds)
        )
        if os.environ.get('JOB_RANK0_ONLY') and distributed.current().rank > 0:
            time.sleep(60)  # the mistake: only rank 0 creates the run
            return
    config = Config(dropout=float(os.environ.get('JOB_DROPOUT', '0')))
    epochs = int(os.environ.get('JOB_EPOCHS', '3'))  # not in the config: resumable
    experiment = Job(config, name='job', par_dir=pathlib.Path('outputs'))
    experiment.trackers.subscribe(RankWitness())
    kill_at = int(os.environ.get('JOB_KILL_AT', '0'))
    if kill_at:
        experiment.trackers.subscribe(Killer(kill_at))
    run_id = os.environ.get('JOB_RUN_ID')
    if run_id:
        run = experiment.create_run(run_id, resume=True, seed=7)
    else:
        run = experiment.create_run(resume='unfinished', seed=7)
    with run:
        session(run, config, epochs)
    again = os.environ.get('JOB_AGAIN_UNTIL')
    if again:  # a second session in this process, in the same process group
        with experiment.create_run(run.id, resume=True) as resumed:
            session(resumed, config, int(again))


def session(run: drytorch.Run[Config], config: Config, epochs: int) -> None:
    """Train, validate and test in the active run; rank 0 writes result.json."""
    shard_file = pathlib.Path(f'shard_{run.world.rank}.json')
    shard_file.write_text(json.dumps(shards()))
    train_set, test_set = datasets()
    loader: object = DataLoader(train_set, Config.batch_size, seed=11)
    torch_loader = os.environ.get('JOB_TORCH_LOADER')
    if torch_loader:
        sampler = EpochSampler(train_set)
        loader = data.DataLoader(
            train_set, Config.batch_size, sampler=sampler, drop_last=True
        )
    options = {'find_unused_parameters': True} if torch_loader else None
    backend = os.environ.get('JOB_COMPILE')
    step_control = bool(os.environ.get('JOB_STEP_CONTROL'))
    model_class = EMAModel if step_control else Model
    model = model_class(
        network(config.dropout),
        device='cpu',
        distributed_options=options,
        compile={'backend': backend} if backend else False,
    )
    schema = LearningSchema.adam(0.01)
    if step_control:
        schema = LearningSchema.adam(
            0.01,
            scheduler=functools.partial(
                torch.optim.lr_scheduler.OneCycleLR, max_lr=0.05, total_steps=60
            ),
            interval='step',
        )
    loss = Loss(squared_error, name='MSE') | Metric(
        absolute_error, name='MAE', higher_is_better=False
    )
    trainer = Trainer(
        model,
        loader=loader,
        loss=loss,
        learning_schema=schema,
        accumulate_grad_batches=int(os.environ.get('JOB_ACCUMULATE', '1')),
    )
    syncs = [0]  # gradient all-reduces, counted by a DDP communication hook

    def counting(state, bucket):  # type: ignore[no-untyped-def]  # DDP reads them
        syncs[0] += 1
        return default_hooks.allreduce_hook(None, bucket)  # type: ignore[arg-type]

    if model.distributed is not None:
        model.distributed.register_comm_hook(None, counting)  # type: ignore[operator]
    if step_control:
        trainer.add_validation(DataLoader(test_set, 5), interval=None, every_steps=4)
        trainer.post_step_hooks.register(
            hooks.EarlyStoppingCallback(min_delta=0.01, patience=3)
        )
    else:
        trainer.add_validation(DataLoader(test_set, 5))
    trainer.checkpoint_every(steps=3)
    fail_rank = os.environ.get('JOB_FAIL_RANK')
    if fail_rank is not None and int(fail_rank) == run.world.rank:

        def fail(instance: Trainer) -> None:
            if instance.model.epoch == 2:
                raise ValueError(f'rank {run.world.rank} failed on purpose')

        trainer.post_epoch_hooks.register(fail)
    hang_rank = os.environ.get('JOB_HANG_RANK')
    if hang_rank is not None and int(hang_rank) == run.world.rank:

        def hang(instance: Trainer) -> None:
            if instance.model.epoch == 2:
                pathlib.Path(f'hanging_{run.world.rank}').touch()
                time.sleep(60)

        trainer.post_epoch_hooks.register(hang)
    if os.environ.get('JOB_PLATEAU'):
        trainer.post_epoch_hooks.register(
            hooks.ReduceLROnPlateau(min_delta=0.03, patience=0, factor=0.5)
        )
        trainer.post_epoch_hooks.register(
            hooks.EarlyStoppingCallback(min_delta=0.01, patience=3)
        )
    trainer.resume()
    if step_control:  # budgets that end inside epochs: 10 steps an epoch
        while trainer.steps < 10 * epochs and not trainer.terminated:
            trainer.train_steps(min(7, 10 * epochs - trainer.steps))
    else:
        trainer.train_until(epochs)
    extra: dict[str, object] = {}
    if torch_loader:
        extra['set_epoch'] = sampler.epochs
        extra['find_unused'] = model.distributed.find_unused_parameters  # type: ignore[union-attr]
        unsharded = data.DataLoader(train_set, Config.batch_size, shuffle=True)
        Trainer(
            model,
            loader=unsharded,
            loss=loss,
            learning_schema=LearningSchema.adam(0.01),
            name='Unsharded',
        ).train(1)
    tested = Test(model, loader=DataLoader(test_set, 7), metric=loss)()
    pathlib.Path(f'final_{run.world.rank}.json').write_text(
        json.dumps(
            {
                'epoch': model.epoch,
                'steps': trainer.steps,
                'lr': trainer.optimizer.param_groups[0]['lr'],
                'terminated': trainer.termination_reason,
                'world': list(distributed.current()),
                'syncs': syncs[0],
                **extra,
            }
        )
    )
    if run.world.rank == 0:
        torch.save(model.module.state_dict(), 'weights.pt')
        pathlib.Path('result.json').write_text(
            json.dumps(
                {
                    'id': run.id,
                    'world_size': run.world.size,
                    'group': distributed.current().size,
                    'validation': trainer.validation.computed_metrics,  # type: ignore[union-attr]
                    'test': tested,
                    'train': trainer.computed_metrics,
                    'steps': trainer.steps,
                    'batches': len(loader),  # type: ignore[arg-type]
                }
            )
        )


if __name__ == '__main__':
    main()
