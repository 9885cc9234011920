"""The main example: a small regression experiment, trained, validated and tested.

Run it with ``python examples/main.py``. Every run is recorded in the run
registry (``drytorch runs`` lists them); run the script again with
``--resume`` to continue the last run of the experiment.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
from torch import nn
from torch.utils import data

import drytorch
from drytorch import Experiment, Model


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines this experiment."""

    n_samples: int = 512
    hidden: int = 32
    batch_size: int = 32
    lr: float = 1e-2
    epochs: int = 20
    seed: int = 0


class RegressionExperiment(Experiment[Config]):
    """Fit y = sin(3x) + noise with a small MLP."""


def make_data(config: Config) -> tuple[data.TensorDataset, ...]:
    """Build train, validation and test sets from the configured seed."""
    generator = torch.Generator().manual_seed(config.seed)
    x = torch.rand(config.n_samples, 1, generator=generator) * 2 - 1
    y = torch.sin(3 * x) + 0.05 * torch.randn(x.shape, generator=generator)
    n_train, n_val = int(0.7 * len(x)), int(0.15 * len(x))
    splits = (
        slice(0, n_train),
        slice(n_train, n_train + n_val),
        slice(n_train + n_val, None),
    )
    return tuple(data.TensorDataset(x[s], y[s]) for s in splits)


def evaluate(model: Model[torch.Tensor, torch.Tensor], dataset: data.Dataset) -> float:
    """Return the mean squared error of ``model`` on ``dataset``."""
    loader = data.DataLoader(
        dataset, batch_size=RegressionExperiment.get_config().batch_size
    )
    total, count = torch.zeros(()), 0
    with torch.inference_mode():
        for inputs, targets in loader:
            total += nn.functional.mse_loss(model(inputs), targets, reduction='sum')
            count += len(inputs)
    return total.item() / count


def train() -> None:
    """Train, validate every epoch, then test; reads the config from the run."""
    config = RegressionExperiment.get_config()
    torch.manual_seed(config.seed)
    train_set, val_set, test_set = make_data(config)
    model = Model(
        nn.Sequential(
            nn.Linear(1, config.hidden), nn.Tanh(), nn.Linear(config.hidden, 1)
        ),
        name='mlp',
        device='cpu',
    )
    optimizer = torch.optim.Adam(model.module.parameters(), lr=config.lr)
    loader = data.DataLoader(
        train_set, batch_size=config.batch_size, shuffle=True, drop_last=True
    )
    for epoch in range(1, config.epochs + 1):
        model.module.train()
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(inputs), targets)
            loss.backward()
            optimizer.step()
        model.module.eval()
        if epoch % 5 == 0 or epoch == config.epochs:
            print(f'epoch {epoch:3d}  validation MSE {evaluate(model, val_set):.4f}')
    print(f'test MSE {evaluate(model, test_set):.4f}')


def main() -> None:
    """Run (or resume) the experiment."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument('--resume', action='store_true', help='resume the last run')
    args = parser.parse_args()
    experiment = RegressionExperiment(
        Config(), name='sine-regression', par_dir='outputs'
    )
    with experiment.create_run(resume=args.resume) as run:
        train()
    print(f'run {run.id}: {run.status} (drytorch {drytorch.__version__})')
    print('`drytorch runs` lists every recorded run')


if __name__ == '__main__':
    main()
