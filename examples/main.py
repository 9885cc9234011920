"""The main example: a small regression experiment, end to end.

Trains an MLP to fit y = sin(3x) with validation and early stopping, tests it,
checkpoints it every epoch, and prints where the outputs and the run record
are. Everything is recorded in the run registry: ``drytorch runs`` lists the
runs.

    python examples/main.py              # continue the unfinished run, or start one
    python examples/main.py --new        # always start a new run
    python examples/main.py --run-id ID  # continue run ID (or create it)
    python examples/main.py --lr 0.01    # another configuration: its own runs

Kill it at any moment (Ctrl-C, ``kill``, a closed laptop) and launch it again
the same way: the run that did not finish continues from its last checkpoint,
and the console says which run resumed and from which epoch.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Literal

import torch
from torch import nn
from torch.utils import data

from drytorch import (
    DataLoader,
    Experiment,
    LearningSchema,
    Loss,
    Metric,
    Model,
    Test,
    Trainer,
)
from drytorch.lib import hooks, schedulers


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines this experiment."""

    n_samples: int = 2048
    hidden: int = 64
    batch_size: int = 32
    lr: float = 3e-3
    max_epochs: int = 60
    patience: int = 5
    seed: int = 0


class SineRegression(Experiment[Config]):
    """Fit y = sin(3x) + noise with a small MLP."""


def make_datasets(config: Config) -> tuple[data.TensorDataset, data.TensorDataset]:
    """Return the training and test sets, made from the configured seed."""
    generator = torch.Generator().manual_seed(config.seed)
    x = torch.rand(config.n_samples, 1, generator=generator) * 4 - 2
    y = torch.sin(3 * x) + 0.05 * torch.randn(x.shape, generator=generator)
    n_test = config.n_samples // 5
    return data.TensorDataset(x[n_test:], y[n_test:]), data.TensorDataset(
        x[:n_test], y[:n_test]
    )


def mse(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean squared error of a batch."""
    return ((outputs - targets) ** 2).mean()


def abs_error(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Absolute error per sample (aggregated exactly over uneven batches)."""
    return (outputs - targets).abs().flatten()


def run_experiment() -> None:
    """Train, validate, test and checkpoint; reads the config from the run."""
    config = SineRegression.get_config()
    train_set, test_set = make_datasets(config)
    loader = DataLoader(train_set, batch_size=config.batch_size, seed=config.seed)
    train_loader, val_loader = loader.split(0.2, seed=config.seed)
    module = nn.Sequential(
        nn.Linear(1, config.hidden),
        nn.Tanh(),
        nn.Linear(config.hidden, config.hidden),
        nn.Tanh(),
        nn.Linear(config.hidden, 1),
    )
    model = Model(module, name='mlp', device='cpu')
    loss = Loss(mse, 'MSE') | Metric(abs_error, 'MAE', higher_is_better=False)
    schema = LearningSchema.adam(
        lr=config.lr, scheduler=schedulers.CosineScheduler(config.max_epochs)
    )
    trainer = Trainer(model, loader=train_loader, loss=loss, learning_schema=schema)
    trainer.add_validation(val_loader)
    trainer.post_epoch_hooks.register(
        hooks.EarlyStoppingCallback(
            metric='MSE', patience=config.patience, min_delta=1e-5
        )
    )
    trainer.checkpoint_every(epochs=1, keep_last=2)
    trainer.resume()  # the run's latest checkpoint, if it has one
    trainer.train_until(config.max_epochs)
    where = trainer.save_checkpoint()
    test = Test(model, loader=DataLoader(test_set, batch_size=256), metric=loss)
    metrics = test.test()
    print(f'\ntest MSE {metrics["MSE"]:.4f}, MAE {metrics["MAE"]:.4f}')
    print(f'checkpoint: {where}')


def main() -> None:
    """Run (or resume) the experiment and say where everything went."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument('--new', action='store_true', help='start a new run')
    choice.add_argument('--run-id', help='continue this run (or create it)')
    choice.add_argument('--resume', action='store_true', help='continue the last run')
    parser.add_argument(
        '--lr', type=float, default=Config.lr, help='learning rate (another config)'
    )
    args = parser.parse_args()
    config = Config(lr=args.lr)
    experiment = SineRegression(config, name='sine-regression', par_dir='outputs')
    resume: bool | Literal['unfinished'] = 'unfinished'
    if args.new:
        resume = False
    elif args.run_id is not None or args.resume:
        resume = True
    run = experiment.create_run(args.run_id, resume=resume, seed=config.seed)
    try:
        with run:
            run_experiment()
    except KeyboardInterrupt:
        print(f'\nInterrupted: run the same command again to continue run {run.id}.')
        raise SystemExit(130) from None
    print(f'run {run.id}: {run.status}')
    print(f'run record: {run.record_path}')
    print(f'outputs:    {experiment.par_dir}')
    print('`drytorch runs` lists every recorded run.')


if __name__ == '__main__':
    main()
