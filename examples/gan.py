"""A small GAN: two networks, two optimizers, one overridden training step.

A generator learns to draw points on a ring of radius 2 from 4-dimensional
noise, against a discriminator that tells its points from real ones. The
``GANTrainer`` overrides ``Trainer.training_step``: one discriminator step,
then one generator step, each with its own optimizer (``learning_schema``
maps the two submodules to their schemas). Everything else is the trainer's:
step counting, schedules, checkpoints, validation and the trackers.

    python examples/gan.py              # continue the unfinished run, or start one
    python examples/gan.py --new        # always start a new run

Kill it at any moment and launch it again: it continues from the last step
checkpoint, and ends with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Iterable
from typing import Any, Literal, NamedTuple

import torch
from torch import nn
from torch.nn import functional
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


@dataclasses.dataclass(frozen=True)
class Config:
    """Everything that defines this experiment."""

    n_samples: int = 4096
    noise: int = 4
    hidden: int = 64
    batch_size: int = 64
    generator_lr: float = 1e-3
    discriminator_lr: float = 1e-3
    epochs: int = 20
    checkpoint_steps: int = 100
    seed: int = 0


class RingGAN(Experiment[Config]):
    """Learn to draw points on a ring with a GAN."""


class Scores(NamedTuple):
    """What the GAN's forward pass returns: the discriminator's logits, the fakes."""

    real: torch.Tensor
    fake: torch.Tensor
    samples: torch.Tensor


class GAN(nn.Module):
    """A generator and a discriminator; ``forward`` scores real and fake points."""

    def __init__(self, noise: int, hidden: int) -> None:
        super().__init__()
        self.noise = noise
        self.generator = nn.Sequential(
            nn.Linear(noise, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, hidden),
            nn.LeakyReLU(0.2),
            nn.Linear(hidden, 2),
        )
        self.discriminator = nn.Sequential(
            nn.Linear(2, hidden), nn.LeakyReLU(0.2), nn.Linear(hidden, 1)
        )

    def generate(self, n: int) -> torch.Tensor:
        """Draw ``n`` points from the generator (the noise from torch's RNG)."""
        device = next(self.parameters()).device
        return self.generator(torch.randn(n, self.noise, device=device))

    def forward(self, real: torch.Tensor) -> Scores:
        """Score ``real`` and as many generated points."""
        samples = self.generate(len(real))
        return Scores(self.discriminator(real), self.discriminator(samples), samples)


def generator_loss(scores: Scores, _: torch.Tensor) -> torch.Tensor:
    """The generator wins when its points are taken for real ones."""
    return functional.binary_cross_entropy_with_logits(
        scores.fake, torch.ones_like(scores.fake)
    )


def discriminator_loss(scores: Scores, _: torch.Tensor) -> torch.Tensor:
    """The discriminator wins when it tells real points from fake ones."""
    real = functional.binary_cross_entropy_with_logits(
        scores.real, torch.ones_like(scores.real)
    )
    fake = functional.binary_cross_entropy_with_logits(
        scores.fake, torch.zeros_like(scores.fake)
    )
    return real + fake


def ring_distance(scores: Scores, _: torch.Tensor) -> torch.Tensor:
    """How far each generated point is from the ring (radius 2), per sample."""
    return (scores.samples.norm(dim=1) - 2.0).abs()


class GANTrainer(Trainer[torch.Tensor, torch.Tensor, Scores]):
    """Alternates a discriminator step and a generator step on each batch."""

    def training_step(self, inputs: torch.Tensor, targets: torch.Tensor) -> Scores:
        """Train the discriminator on the batch, then the generator against it."""
        gan: GAN = self.model.module
        with torch.no_grad():
            fakes = gan.generate(len(inputs))
        scores = Scores(gan.discriminator(inputs), gan.discriminator(fakes), fakes)
        self.backward(discriminator_loss(scores, targets))
        self.optimizer_step('discriminator')
        outputs = self.model(inputs)  # through the updated discriminator
        self.backward(self.loss(outputs, targets))  # recorded in the metrics
        self.optimizer_step('generator')
        # the generator's pass left gradients on the discriminator: drop them
        self.optimizers['discriminator'].zero_grad(set_to_none=True)
        return outputs


def ring(config: Config) -> data.TensorDataset:
    """Real points: on a ring of radius 2, with a little noise."""
    generator = torch.Generator().manual_seed(config.seed)
    angle = torch.rand(config.n_samples, generator=generator) * 2 * math.pi
    points = 2.0 * torch.stack([angle.cos(), angle.sin()], dim=1)
    points += 0.05 * torch.randn(points.shape, generator=generator)
    return data.TensorDataset(points, points)


def run_experiment(post_step_hooks: Iterable[Any] = ()) -> Model[Any, Any]:
    """Train, validate and test the GAN; reads the config from the run."""
    config = RingGAN.get_config()
    loader = DataLoader(ring(config), batch_size=config.batch_size, seed=config.seed)
    train_loader, val_loader = loader.split(0.25, seed=config.seed)
    model = Model(GAN(config.noise, config.hidden), name='gan', device='cpu')
    loss = Loss(generator_loss, 'Generator') | (
        Metric(discriminator_loss, 'Discriminator', higher_is_better=False)
        | Metric(ring_distance, 'Ring distance', higher_is_better=False)
    )
    schemas = {
        'generator': LearningSchema.adam(config.generator_lr, betas=(0.5, 0.999)),
        'discriminator': LearningSchema.adam(
            config.discriminator_lr, betas=(0.5, 0.999)
        ),
    }
    trainer = GANTrainer(model, loader=train_loader, loss=loss, learning_schema=schemas)
    trainer.add_validation(val_loader)
    trainer.post_step_hooks.register_all(post_step_hooks)
    trainer.checkpoint_every(epochs=1, steps=config.checkpoint_steps, keep_last=2)
    trainer.resume()  # the run's latest checkpoint, if it has one
    trainer.train_until(config.epochs)
    test = Test(model, loader=DataLoader(ring(config), batch_size=256), metric=loss)
    metrics = test.test()
    print(f'\ntest ring distance {metrics["Ring distance"]:.3f}')
    return model


def main() -> None:
    """Run (or resume) the experiment."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument('--new', action='store_true', help='start a new run')
    parser.add_argument('--run-id', help='continue this run (or create it)')
    args = parser.parse_args()
    config = Config()
    experiment = RingGAN(config, name='ring-gan', par_dir='outputs')
    resume: bool | Literal['unfinished'] = False if args.new else 'unfinished'
    if args.run_id is not None:
        resume = True
    with experiment.create_run(args.run_id, resume=resume, seed=config.seed) as run:
        run_experiment()
    print(f'run {run.id}: {run.status}')


if __name__ == '__main__':
    main()
