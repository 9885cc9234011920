"""``Trainer``: the training loop, its validation, hooks and checkpoints."""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import torch

from drytorch.core import checkpointing, exceptions, log_events, scope
from drytorch.core.plugins import get_host
from drytorch.lib import hooks, objectives, rng
from drytorch.lib.learning import LearningSchema
from drytorch.lib.models import Model
from drytorch.lib.runners import (
    Input,
    ModelRunner,
    Output,
    SizedLoader,
    Target,
    Validation,
    describe,
)
from drytorch.lib.schedulers import AbstractScheduler

__all__ = ['CHECKPOINT_FORMAT', 'Trainer']

CHECKPOINT_FORMAT = 1


class Trainer(ModelRunner[Input, Target, Output]):
    """Trains a model with a loss and a learning schema, epoch by epoch.

    Args:
        model: the model; it must belong to the active run.
        loader: the training batches (shuffled, last partial batch dropped).
        loss: the loss to minimise; its metrics are reported per epoch.
        learning_schema: the optimizer, learning rates, schedule and
            gradient operation.
        name: the name in reports; defaults to ``Trainer``.

    Attributes:
        validation: the validation added with ``add_validation``, if any.
        pre_epoch_hooks: hooks run before each epoch.
        post_epoch_hooks: hooks run after each epoch and its validation.
        optimizer: the optimizer built from the learning schema.
        lr_factor: the multiplier applied to the scheduled learning rates.
    """

    def __init__(
        self,
        model: Model[Input, Output],
        *,
        loader: SizedLoader,
        loss: objectives.LossBase[Output, Target],
        learning_schema: LearningSchema,
        name: str = '',
    ) -> None:
        super().__init__(model, loader=loader, objective=loss, name=name)
        self.loss = loss
        self.learning_schema = learning_schema
        self.optimizer = learning_schema.build_optimizer(model.module)
        use_scaler = model.mixed_precision and model.device.type == 'cuda'
        self.scaler = torch.amp.GradScaler(model.device.type, enabled=use_scaler)
        self.validation: Validation[Input, Target, Output] | None = None
        self.validation_interval = 1
        self.pre_epoch_hooks: hooks.HookRegistry[Trainer[Input, Target, Output]] = (
            hooks.HookRegistry()
        )
        self.post_epoch_hooks: hooks.HookRegistry[Trainer[Input, Target, Output]] = (
            hooks.HookRegistry()
        )
        self.lr_factor = 1.0
        self._terminated: str | None = None
        self._params = [p for p in model.module.parameters() if p.requires_grad]

    @property
    def terminated(self) -> str | None:
        """Why training was terminated, or ``None`` while it may go on."""
        return self._terminated

    def describe(self) -> dict[str, Any]:
        """Return a readable description of the trainer and its parts."""
        description = super().describe()
        description['learning_schema'] = describe(self.learning_schema)
        if self.validation is not None:
            description['validation'] = self.validation.describe()
            description['validation_interval'] = self.validation_interval
        description['pre_epoch_hooks'] = self.pre_epoch_hooks.describe()
        description['post_epoch_hooks'] = self.post_epoch_hooks.describe()
        return description

    def add_validation(
        self,
        loader: SizedLoader,
        interval: int = 1,
        metric: objectives.Objective[Output, Target] | None = None,
    ) -> Validation[Input, Target, Output]:
        """Validate every ``interval`` epochs on ``loader``.

        Args:
            loader: the validation batches.
            interval: validate at epochs that are multiples of it.
            metric: what to measure; defaults to a fresh copy of the loss.
        """
        if interval < 1:
            raise ValueError(f'The validation interval must be >= 1, got {interval}.')
        if metric is None:  # a copy: the two runners must not share aggregates
            metric = copy.deepcopy(self.loss)
            metric.reset()
        chosen = metric
        self.validation = Validation(self.model, loader=loader, metric=chosen)
        self.validation_interval = interval
        return self.validation

    def train(self, n_epochs: int) -> None:
        """Train for ``n_epochs`` more epochs (fewer if terminated)."""
        self.train_until(self.model.epoch + n_epochs)

    def train_until(self, epoch: int) -> None:
        """Train until the model has completed ``epoch`` epochs.

        Raises:
            TrainingError: the loss was not finite in an epoch.
            ModuleNotRegisteredError: the model belongs to another run.
        """
        self._check_run()
        host = get_host()
        name = self.model.name
        self._terminated = None
        host.broadcast(
            'on_training_start',
            log_events.TrainingStartEvent(name, self.name, self.model.epoch, epoch),
        )
        while self.model.epoch < epoch and self._terminated is None:
            self.pre_epoch_hooks.execute(self)
            if self._terminated is not None:
                break
            self._train_epoch(epoch)
        host.broadcast(
            'on_training_end',
            log_events.TrainingEndEvent(name, self.name, self.model.epoch),
        )

    def terminate_training(self, reason: str) -> None:
        """Stop training at the end of the current epoch, for ``reason``."""
        self._terminated = reason
        get_host().broadcast(
            'on_termination',
            log_events.TerminationEvent(
                self.model.name, self.name, self.model.epoch, reason
            ),
        )

    def update_learning_rate(
        self,
        base_lr: float | Mapping[str, float] | None = None,
        scheduler: AbstractScheduler | None = None,
        factor: float | None = None,
        *,
        reason: str = 'update',
    ) -> None:
        """Change the base rates, the schedule or the factor; applies at once.

        Args:
            base_lr: new base rates, with the same groups as before.
            scheduler: a new schedule.
            factor: a new multiplier of the scheduled rates.
            reason: why, for the trackers.
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
            changes['scheduler'] = scheduler
        if changes:
            self.learning_schema = dataclasses.replace(self.learning_schema, **changes)
        if factor is not None:
            if factor <= 0:
                raise exceptions.LearningSchemaError(f'factor must be > 0: {factor}.')
            self.lr_factor = factor
        self._apply_learning_rate(self.model.epoch, reason)

    def save_checkpoint(self) -> str:
        """Save everything needed to continue exactly; return where it went."""
        self._check_run()
        state = {
            'format': CHECKPOINT_FORMAT,
            'epoch': self.model.epoch,
            'model': self.model.module.state_dict(),
            'optimizer': self.optimizer.state_dict(),
            'scaler': self.scaler.state_dict(),
            'learning': {
                'factor': self.lr_factor,
                'base_lr': _plain(self.learning_schema.base_lr),
            },
            'pre_epoch_hooks': self.pre_epoch_hooks.state_dict(),
            'post_epoch_hooks': self.post_epoch_hooks.state_dict(),
            'rng': rng.get_states(),
            'loader': _loader_state(self.loader),
        }
        where = checkpointing.save(self._location(), self.model.epoch, state)
        get_host().broadcast(
            'on_checkpoint_save',
            log_events.CheckpointEvent(
                self.model.name, self.model.epoch, 'save', where
            ),
        )
        return where

    def load_checkpoint(self, epoch: int = checkpointing.LATEST) -> None:
        """Restore the state saved at ``epoch`` (default: the latest).

        Raises:
            CheckpointError: no such checkpoint, or it does not fit this trainer.
        """
        self._check_run()
        location = self._location()
        state = checkpointing.load(location, epoch)
        if state.get('format') != CHECKPOINT_FORMAT:
            raise exceptions.CheckpointError(
                f'The checkpoint of {location} has format {state.get("format")!r}; '
                f'this version reads format {CHECKPOINT_FORMAT}.'
            )
        self._check_fits(location, state)  # refuse before changing anything
        try:
            self.model.module.load_state_dict(state['model'])
            self.optimizer.load_state_dict(state['optimizer'])
        except (RuntimeError, ValueError, KeyError) as err:
            raise exceptions.CheckpointError(
                f'The checkpoint of {location} does not fit this model or optimizer: '
                f'{err}'
            ) from err
        self.scaler.load_state_dict(state['scaler'])
        self.lr_factor = float(state['learning']['factor'])
        self.learning_schema = dataclasses.replace(
            self.learning_schema, base_lr=state['learning']['base_lr']
        )
        self.pre_epoch_hooks.load_state_dict(state['pre_epoch_hooks'])
        self.post_epoch_hooks.load_state_dict(state['post_epoch_hooks'])
        rng.set_states(state['rng'])
        loader_state = state.get('loader')
        if loader_state is not None and hasattr(self.loader, 'load_sampler_state'):
            self.loader.load_sampler_state(loader_state)
        self.model.epoch = int(state['epoch'])
        self._terminated = None
        get_host().broadcast(
            'on_checkpoint_load',
            log_events.CheckpointEvent(
                self.model.name, self.model.epoch, 'load', str(location)
            ),
        )

    def _check_fits(
        self, location: checkpointing.CheckpointLocation, state: Mapping[str, Any]
    ) -> None:
        """Raise ``CheckpointError`` if ``state`` cannot be loaded in full.

        Torch copies the parameters that fit before it reports those that do
        not; checking first keeps a refused checkpoint from half-loading.
        """
        problems = []
        saved = state.get('model')
        if not isinstance(saved, Mapping):
            problems.append('it holds no model weights')
            saved = {}
        current = self.model.module.state_dict()
        if missing := [key for key in current if key not in saved]:
            problems.append(f'missing {missing}')
        if unexpected := [key for key in saved if key not in current]:
            problems.append(f'unexpected {unexpected}')
        problems.extend(
            f'{key} has shape {tuple(value.shape)}, the model '
            f'{tuple(current[key].shape)}'
            for key, value in saved.items()
            if key in current
            and isinstance(value, torch.Tensor)
            and value.shape != current[key].shape
        )
        optimizer = state.get('optimizer')
        groups = (
            optimizer.get('param_groups') if isinstance(optimizer, Mapping) else None
        )
        sizes = [len(group['params']) for group in self.optimizer.param_groups]
        if (
            groups is None
            or [len(group.get('params', ())) for group in groups] != sizes
        ):
            problems.append('the optimizer has other parameter groups')
        if problems:
            raise exceptions.CheckpointError(
                f'The checkpoint of {location} does not fit this model or '
                f'optimizer: {"; ".join(problems)}.'
            )
        for key, registry in (
            ('pre_epoch_hooks', self.pre_epoch_hooks),
            ('post_epoch_hooks', self.post_epoch_hooks),
        ):
            if len(state.get(key, ())) != len(registry):
                raise exceptions.CheckpointError(
                    f'The checkpoint of {location} holds the state of '
                    f'{len(state.get(key, ()))} hooks, but {len(registry)} are '
                    f'registered in {key}: register the same hooks, in the same '
                    'order, before loading.'
                )

    def _train_epoch(self, end_epoch: int) -> None:
        host = get_host()
        model = self.model
        self._apply_learning_rate(model.epoch, 'schedule')
        model.epoch += 1
        host.broadcast(
            'on_epoch_start',
            log_events.EpochStartEvent(model.name, self.name, model.epoch, end_epoch),
        )
        model.module.train()
        metrics = self._run_epoch()
        loss_value = metrics.get(self.loss.name, math.nan)
        if not math.isfinite(loss_value):
            raise exceptions.TrainingError(
                f'The loss {self.loss.name!r} of model {model.name!r} was '
                f'{loss_value} in epoch {model.epoch}: training stopped. Lower the '
                'learning rate, clip gradients, or check the data for NaN.'
            )
        self._report()
        validation = self.validation
        if validation is not None and model.epoch % self.validation_interval == 0:
            validation()
        self.post_epoch_hooks.execute(self)
        host.broadcast(
            'on_epoch_end', log_events.EpochEndEvent(model.name, self.name, model.epoch)
        )

    def _run_batch(self, inputs: Input, targets: Target) -> Output:
        outputs = self.model(inputs)
        loss = self.loss.forward(outputs, targets)
        if loss.ndim != 0:
            raise exceptions.TrainingError(
                f'The loss {self.loss.name!r} has shape {tuple(loss.shape)}: a '
                'training loss must be a scalar.'
            )
        schema = self.learning_schema
        if self.scaler.is_enabled():
            self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
            self.scaler.unscale_(self.optimizer)
            schema.gradient_op(self._params)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            loss.backward()  # type: ignore[no-untyped-call]
            schema.gradient_op(self._params)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return outputs

    def _apply_learning_rate(self, epoch: int, reason: str) -> None:
        rates = self.learning_schema.lr_at(epoch, self.lr_factor)
        groups = self.optimizer.param_groups
        if [group['lr'] for group in groups] == rates:
            return
        for group, rate in zip(groups, rates, strict=True):
            group['lr'] = rate
        get_host().broadcast(
            'on_learning_rate',
            log_events.LearningRateEvent(
                self.model.name, self.name, epoch, tuple(rates), reason
            ),
        )

    def _location(self) -> checkpointing.CheckpointLocation:
        run = scope.require_active_run('Checkpoints')
        return checkpointing.CheckpointLocation(
            run.experiment.par_dir, run.experiment.name, run.id, self.model.name
        )


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


def _loader_state(loader: Any) -> Any:
    method = getattr(loader, 'sampler_state', None)
    return method() if callable(method) else None
