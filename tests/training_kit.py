"""Tiny models, data and a full event recorder for the training-library tests."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils import data

from drytorch import (
    DataLoader,
    Experiment,
    LearningSchema,
    Loss,
    Model,
    Trainer,
    testing,
)
from drytorch.core import log_events

RUN_HOOKS = (
    'on_run_start',
    'on_run_stop',
    'on_model_register',
    'on_model_unregister',
)
TRUE_WEIGHTS = torch.tensor([[1.5], [-2.0], [0.5]])


def experiment(name: str = 'exp') -> Experiment[None]:
    """An experiment writing under the test's working directory."""
    return Experiment(None, name=name, par_dir='.')


def regression(n: int = 48, seed: int = 0) -> data.TensorDataset:
    """A learnable problem: ``y = x @ w + 0.3`` with a little noise."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=generator)
    y = x @ TRUE_WEIGHTS + 0.3 + 0.01 * torch.randn(n, 1, generator=generator)
    return data.TensorDataset(x, y)


def linear(name: str = '', seed: int = 0) -> Model[torch.Tensor, torch.Tensor]:
    """A linear model with fixed initial weights, on the CPU."""
    torch.manual_seed(seed)
    return Model(nn.Linear(3, 1), name=name, device='cpu')


def mse_fn(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return ((outputs - targets) ** 2).mean()


def mse() -> Loss[torch.Tensor, torch.Tensor]:
    return Loss(mse_fn, 'MSE')


def trainer(
    model: Model[torch.Tensor, torch.Tensor] | None = None,
    *,
    n: int = 48,
    batch_size: int = 8,
    schema: LearningSchema | None = None,
    loss: Any = None,
) -> Trainer[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A trainer of a linear model on ``regression(n)``."""
    return Trainer(
        model if model is not None else linear(),
        loader=DataLoader(regression(n), batch_size, seed=0),
        loss=loss if loss is not None else mse(),
        learning_schema=schema or LearningSchema.adam(lr=0.05),
    )


def weights(model: Model[Any, Any]) -> dict[str, torch.Tensor]:
    """A copy of the model's parameters and buffers."""
    return {k: v.detach().clone() for k, v in model.module.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class Recorder(testing.HookRecorder):
    """``HookRecorder`` with helpers to read training events."""

    def metrics(self, source: str = '') -> list[log_events.MetricsEvent]:
        return [
            event
            for event in self.events('on_metrics')
            if not source or event.source_name == source
        ]

    def trace(self, *, batches: bool = False) -> list[str]:
        """Runner hook names with the runner's name; run and model hooks left out."""
        skip = set(RUN_HOOKS) if batches else {*RUN_HOOKS, 'on_batch_end'}
        names = []
        for name, event in self.calls:
            if name in skip:
                continue
            source = getattr(event, 'source_name', None)
            if source is None:
                source = getattr(event, 'actor_name', None)
            names.append(f'{name}({source})' if source else name)
        return names
