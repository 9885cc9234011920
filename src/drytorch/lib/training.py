"""The original DRYTorch's ``drytorch.lib.training``: ``Trainer``, ``ModelOptimizer``.

``Trainer`` is ours (``drytorch.lib.train``), which keeps its optimizers
itself. ``ModelOptimizer`` is the original's optimizer object for code that
trains by hand: one optimizer over a model's module, built from a
``LearningSchema`` (per-module learning rates, schedule, gradient operation)
with a gradient scaler under mixed precision on CUDA.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import torch

from drytorch.core import exceptions
from drytorch.lib.learning import LearningSchema, SchedulerFactory
from drytorch.lib.models import Model
from drytorch.lib.schedulers import AbstractScheduler
from drytorch.lib.train import Trainer

__all__ = ['ModelOptimizer', 'Trainer']


class ModelOptimizer:
    """The optimizer of a model's module, as a ``LearningSchema`` describes it.

    The learning rates follow the schema's schedule at the model's epoch:
    call ``update_learning_rate()`` after each epoch (a ``Trainer`` does the
    equivalent itself).

    Args:
        model: the model whose module's parameters are optimized.
        learning_schema: the optimizer class, base rates, schedule and
            gradient operation. Its schedule must be a drytorch schedule
            (a torch scheduler's factory belongs in a ``Trainer``).

    Attributes:
        model: the model.
        learning_schema: the schema, with the current base rates.
        optimizer: the torch optimizer.
        scaler: the gradient scaler (enabled under mixed precision on CUDA).

    Raises:
        LearningSchemaError: the schema cannot optimize the module.
    """

    def __init__(self, model: Model[Any, Any], learning_schema: LearningSchema) -> None:
        if learning_schema.torch_scheduler:
            raise exceptions.LearningSchemaError(
                'ModelOptimizer follows drytorch schedules; a torch scheduler '
                'factory needs a Trainer (which steps and saves it).'
            )
        self.model = model
        self.learning_schema = learning_schema
        self.optimizer = learning_schema.build_optimizer(model.module)
        use_scaler = model.mixed_precision and model.device.type == 'cuda'
        self.scaler = torch.amp.GradScaler(model.device.type, enabled=use_scaler)
        self._params = [
            p for group in self.optimizer.param_groups for p in group['params']
        ]
        self.update_learning_rate()

    @property
    def base_lr(self) -> float | Mapping[str, float]:
        """The base learning rate(s); setting them applies them at once."""
        return self.learning_schema.base_lr

    @base_lr.setter
    def base_lr(self, value: float | Mapping[str, float]) -> None:
        self.update_learning_rate(base_lr=value)

    def get_opt_params(self) -> list[dict[str, Any]]:
        """Return the parameter groups, each at its scheduled rate."""
        groups = self.learning_schema.param_groups(self.model.module)
        for group, rate in zip(groups, self._scheduled(), strict=True):
            group['lr'] = rate
        return groups

    def get_scheduled_lr(
        self, lr: float | Mapping[str, float]
    ) -> float | dict[str, float]:
        """Return ``lr`` (a rate, or rates by module) scheduled at the model's epoch."""
        scheduler = self.learning_schema.scheduler
        assert isinstance(scheduler, AbstractScheduler)
        epoch = self.model.epoch
        if isinstance(lr, Mapping):
            return {name: scheduler(rate, epoch) for name, rate in lr.items()}
        return scheduler(lr, epoch)

    def update_learning_rate(
        self,
        base_lr: float | Mapping[str, float] | None = None,
        scheduler: AbstractScheduler | SchedulerFactory | None = None,
    ) -> None:
        """Change the base rates and/or the schedule; set the rates for this epoch.

        With no argument, it only moves the rates to the model's epoch.

        Raises:
            LearningSchemaError: the new rates change the parameter groups, or
                the new schedule is a torch scheduler's factory.
        """
        changes: dict[str, Any] = {}
        if base_lr is not None:
            old = self.learning_schema.base_lr
            if isinstance(old, Mapping) != isinstance(base_lr, Mapping) or (
                isinstance(old, Mapping)
                and isinstance(base_lr, Mapping)
                and set(old) != set(base_lr)
            ):
                raise exceptions.LearningSchemaError(
                    'update_learning_rate() must keep the parameter groups: give '
                    f'base rates for {old!r} again.'
                )
            changes['base_lr'] = base_lr
        if scheduler is not None:
            if not isinstance(scheduler, AbstractScheduler):
                raise exceptions.LearningSchemaError(
                    f'ModelOptimizer follows drytorch schedules, got {scheduler!r}.'
                )
            changes['scheduler'] = scheduler
        if changes:
            self.learning_schema = dataclasses.replace(self.learning_schema, **changes)
        for group, rate in zip(
            self.optimizer.param_groups, self._scheduled(), strict=True
        ):
            group['lr'] = rate

    def _scheduled(self) -> list[float]:
        return self.learning_schema.lr_at(self.model.epoch)

    def optimize(self, loss_value: torch.Tensor) -> None:
        """Backpropagate ``loss_value`` and take one optimizer step.

        The gradients are scaled under mixed precision, unscaled before the
        schema's gradient operation (clipping), and cleared after the step.

        Raises:
            LossNotScalarError: ``loss_value`` is not a scalar.
        """
        if loss_value.ndim != 0:
            raise exceptions.LossNotScalarError(tuple(loss_value.shape))
        gradient_op = self.learning_schema.gradient_op
        if self.scaler.is_enabled():
            self.scaler.scale(loss_value).backward()  # type: ignore[no-untyped-call]
            self.scaler.unscale_(self.optimizer)
            gradient_op(self._params)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss_value.backward()  # type: ignore[no-untyped-call]
            gradient_op(self._params)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(model={self.model.name!r}, '
            f'optimizer={type(self.optimizer).__name__})'
        )
