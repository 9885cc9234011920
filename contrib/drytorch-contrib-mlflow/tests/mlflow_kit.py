"""A tiny real experiment, shared by the tests and the processes they start.

Run as a script, it continues a run in a new process, as a relaunched
training script would::

    python mlflow_kit.py '{"experiment": "exp", "run_id": "r", "epochs": 4}'

It resumes the run, loads its latest checkpoint, trains until ``epochs``
and saves a checkpoint (with ``"keep_last": k``: one each epoch, keeping the
``k`` latest), tests, and prints the experiment's tracker names as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from typing import Any

import torch
from drytorch import DataLoader, Experiment, LearningSchema, Loss, Model, Test, Trainer
from torch import nn
from torch.utils import data

AnyTrainer = Trainer[torch.Tensor, torch.Tensor, torch.Tensor]
AnyTest = Test[torch.Tensor, torch.Tensor, torch.Tensor]
TAGS = ('mlflow', 'small')
MODEL = 'net'
NOTES = 'n' * 7000  # over MLflow's 6,000 characters for a param


@dataclasses.dataclass(frozen=True)
class Optimizer:
    lr: float = 0.05
    betas: tuple[float, float] = (0.9, 0.999)


@dataclasses.dataclass(frozen=True)
class Config:
    name: str = 'baseline'
    hidden: tuple[int, ...] = (4, 2)
    optimizer: Optimizer = dataclasses.field(default_factory=Optimizer)
    scale: int = 3
    shuffle: bool = True
    notes: str = NOTES


# the params MLflow must hold for Config(): the config flattened, as text
PARAMS = {
    'name': 'baseline',
    'hidden': '[4, 2]',
    'optimizer.lr': '0.05',
    'optimizer.betas': '[0.9, 0.999]',
    'scale': '3',
    'shuffle': 'true',
    'notes': NOTES[: 6000 - len('...[truncated]')] + '...[truncated]',
}


def experiment(name: str) -> Experiment[Config]:
    """The experiment, writing under the working directory."""
    return Experiment(Config(), name=name, par_dir='.', tags=TAGS)


def regression(n: int, seed: int) -> data.TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=generator)
    y = x @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.3
    return data.TensorDataset(x, y)


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((outputs - targets) ** 2).mean()


def build(name: str = MODEL) -> tuple[AnyTrainer, AnyTest]:
    """A trainer with a validation, and a test, of a linear model (in a run)."""
    model: Model[torch.Tensor, torch.Tensor] = Model(
        nn.Linear(3, 1), name=name, device='cpu'
    )
    trainer = Trainer(
        model,
        loader=DataLoader(regression(32, seed=0), 8, seed=0),
        loss=Loss(mse, 'MSE'),
        learning_schema=LearningSchema.adam(lr=0.05),
    )
    trainer.add_validation(DataLoader(regression(16, seed=1), 8, seed=0))
    test = Test(
        model,
        loader=DataLoader(regression(16, seed=2), 8, seed=0),
        metric=Loss(mse, 'MSE'),
    )
    return trainer, test


def resume(args: dict[str, Any]) -> list[str]:
    """Continue run ``args['run_id']`` up to ``args['epochs']``; return trackers."""
    exp = experiment(args['experiment'])
    with exp.create_run(args['run_id'], resume=True):
        trainer, test = build()
        assert trainer.resume(), 'no checkpoint to resume from'
        if args.get('keep_last'):
            trainer.checkpoint_every(epochs=1, keep_last=args['keep_last'])
            trainer.train_until(args['epochs'])
        else:
            trainer.train_until(args['epochs'])
            trainer.save_checkpoint()
        test()
    return list(exp.trackers.names)


if __name__ == '__main__':
    torch.set_num_threads(1)
    print(json.dumps({'trackers': resume(json.loads(sys.argv[1]))}))
