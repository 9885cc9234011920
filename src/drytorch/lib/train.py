"""``Trainer``: the training loop, its validation, hooks and checkpoint calls.

The loop decides when a checkpoint is saved or loaded; what a checkpoint holds,
when the next one is due and which are kept live in ``drytorch.lib.checkpoints``
(``CheckpointPolicy`` and ``CHECKPOINT_FORMAT`` are still importable from here).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import torch

from drytorch.core import (
    checkpointing,
    distributed,
    exceptions,
    log_events,
    scope,
    settings,
)
from drytorch.core.plugins import get_host
from drytorch.lib import (
    hooks,
    objectives,
    rng,  # noqa: F401  bench/checkpoint_cost.py patches train.rng
)
from drytorch.lib.checkpoints import (
    CHECKPOINT_FORMAT,
    Checkpointer,
    CheckpointPolicy,
    Resumed,
)
from drytorch.lib.gradient_ops import NoOp
from drytorch.lib.learning import LearningSchema, SchedulerFactory
from drytorch.lib.models import Model
from drytorch.lib.runners import (
    Input,
    ModelRunnerWithLogs,
    Output,
    SizedLoader,
    Target,
    Validation,
    describe,
    loader_length,
)
from drytorch.lib.schedulers import AbstractScheduler

__all__ = ['CHECKPOINT_FORMAT', 'CheckpointPolicy', 'Trainer']


class Trainer(ModelRunnerWithLogs[Input, Target, Output]):
    """Trains a model with a loss and a learning schema, epoch by epoch.

    Each batch goes through ``training_step``, which subclasses may override
    (several forward passes, custom losses, several optimizers); the trainer
    keeps its bookkeeping around it: step count, learning rates, post-step
    hooks, checkpoints and events.

    Called (``trainer()``, as in the original DRYTorch), it trains one
    epoch, as ``train(1)`` does.

    Args:
        model: the model; it must belong to the active run.
        name: the name in reports; defaults to ``Trainer`` (positional as
            in the original DRYTorch, or keyword).
        loader: the training batches (shuffled, last partial batch dropped).
        loss: the loss to minimise; its metrics are reported per epoch. A
            differentiable torchmetrics metric is wrapped (``as_loss``).
        learning_schema: the optimizer, learning rates, schedule and
            gradient operation; or a mapping from submodule names to
            schemas, one optimizer each (``trainer.optimizers[name]``): the
            submodules must hold every trainable parameter, once.
        accumulate_grad_batches: accumulate the gradients of this many
            batches per optimizer step (each batch's loss divided by the
            window's size, so k batches of size b update as one batch of
            k * b; the epoch's last window may be shorter). Under DDP only
            the window's last batch synchronises the gradients.

    Attributes:
        validation: the validation added with ``add_validation``, if any.
        pre_epoch_hooks: hooks run before each epoch.
        post_epoch_hooks: hooks run after each epoch and its validation.
        post_step_hooks: hooks run after each optimizer step (their state is
            saved in checkpoints, as the epoch hooks').
        optimizers: the optimizers, by submodule name (``''``: the single
            one of a single schema, also ``trainer.optimizer``).
        learning_schemas: the schemas, by the same names.
        objective: the loss (``loss``), as the original DRYTorch names it.
        end_epoch: the epoch the running (or last) ``train`` call trains
            until; ``None`` before the first (hooks read it to act at the
            last epoch).
        lr_schedulers: the torch schedulers built from the schemas that
            have one, by the same names.
        lr_factor: the multiplier applied to the scheduled learning rates.
        steps: the optimizer steps taken so far, over all epochs (saved in
            checkpoints); with accumulation, fewer than the batches.
        checkpoint_policy: when checkpoints are saved automatically and
            which are kept; see ``checkpoint_every``.
    """

    def __init__(
        self,
        model: Model[Input, Output],
        name: str = '',
        *,
        loader: SizedLoader,
        loss: objectives.LossBase[Output, Target] | objectives.BatchMetric,
        learning_schema: LearningSchema | Mapping[str, LearningSchema],
        accumulate_grad_batches: int = 1,
    ) -> None:
        if (
            isinstance(accumulate_grad_batches, bool)
            or not isinstance(accumulate_grad_batches, int)
            or accumulate_grad_batches < 1
        ):
            raise ValueError(
                'accumulate_grad_batches must be an integer >= 1, got '
                f'{accumulate_grad_batches!r}.'
            )
        checked_loss: objectives.LossBase[Output, Target] = objectives.as_loss(loss)
        if accumulate_grad_batches > 1 and _overrides_training_step(self):
            raise ValueError(
                f'{type(self).__name__} overrides training_step, which takes its '
                'own optimizer steps: accumulate gradients there, and leave '
                'accumulate_grad_batches at 1.'
            )
        super().__init__(model, name, loader=loader, objective=checked_loss)
        self.accumulate_grad_batches = accumulate_grad_batches
        self.loss = checked_loss
        self.learning_schemas = _named_schemas(model.module, learning_schema)
        self.optimizers = {
            part: schema.build_optimizer(_submodule(model.module, part))
            for part, schema in self.learning_schemas.items()
        }
        self.lr_schedulers: dict[str, torch.optim.lr_scheduler.LRScheduler] = {}
        for part, schema in self.learning_schemas.items():
            built = schema.build_lr_scheduler(self.optimizers[part])
            if built is not None:
                self.lr_schedulers[part] = built
        use_scaler = model.mixed_precision and model.device.type == 'cuda'
        self.scaler = torch.amp.GradScaler(model.device.type, enabled=use_scaler)
        self.validation: Validation[Input, Target, Output] | None = None
        self.validation_interval: int | None = 1
        self.validation_every_steps: int | None = None
        self.pre_epoch_hooks: hooks.HookRegistry[Trainer[Input, Target, Output]] = (
            hooks.HookRegistry()
        )
        self.post_epoch_hooks: hooks.HookRegistry[Trainer[Input, Target, Output]] = (
            hooks.HookRegistry()
        )
        self.post_step_hooks: hooks.HookRegistry[Trainer[Input, Target, Output]] = (
            hooks.HookRegistry()
        )
        self.lr_factor = 1.0
        self.steps = 0
        self.end_epoch: int | None = None
        self._checkpoints = Checkpointer()
        self._terminated: str | None = None
        self._keep_termination = False  # loaded from a checkpoint: honour once
        self._params = [p for p in model.module.parameters() if p.requires_grad]
        self._next_step_save = 0  # the step that saves next; 0: none
        self._next_step_validation = 0  # the step that validates next; 0: none
        self._next_step_metrics = 0  # the step that reports metrics next; 0: none
        self._step_metrics_every = 0
        self._step_sums: dict[str, tuple[float, int]] = {}  # at the last report
        self._step_carry: dict[str, tuple[float, int]] = {}  # from ended epochs
        self._stop_step = 0  # train_steps: the step that pauses the epoch
        self._done = 0  # batches trained in the running epoch
        self._window = 0  # batches whose gradients wait for the next step
        self._window_size = 1  # batches of the running accumulation window
        self._epoch_batches: int | None = 0  # None: a loader without length
        self._in_epoch = False
        self._save_at_end = False
        self._resumed: Resumed | None = None
        self._step_params = {
            part: [p for g in optimizer.param_groups for p in g['params']]
            for part, optimizer in self.optimizers.items()
        }
        self._reported_rates = [  # what trackers know: the rates built
            float(group['lr'])
            for optimizer in self.optimizers.values()
            for group in optimizer.param_groups
        ]
        self._step_rated: list[str] = []  # drytorch schedules moved every step
        self._step_schedulers: list[torch.optim.lr_scheduler.LRScheduler] = []
        self._epoch_schedulers: list[torch.optim.lr_scheduler.LRScheduler] = []
        self._plain_optimizer: torch.optim.Optimizer | None = None
        self._scaling = self.scaler.is_enabled()
        self._model_updates = (  # an averaging model: called after every step
            type(model).post_batch_update is not Model.post_batch_update
        )
        self._sort_schedules()
        model.checkpoint.bind_trainer(self)  # model.save_state() saves it all

    def __call__(self, store_outputs: bool = False) -> dict[str, float]:
        """Train one epoch, as ``train(1)``; return its metrics.

        Args:
            store_outputs: keep the epoch's outputs, detached and on the CPU,
                in ``outputs_list``.
        """
        self._train(self.model.epoch + 1, None, store_outputs)
        return dict(self.computed_metrics)

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimizer of a single learning schema.

        Raises:
            LearningSchemaError: the trainer has one optimizer per submodule.
        """
        return self.optimizers[self._single('optimizer')]

    @property
    def learning_schema(self) -> LearningSchema:
        """The learning schema, when there is one (see ``learning_schemas``).

        Raises:
            LearningSchemaError: the trainer has one schema per submodule.
        """
        return self.learning_schemas[self._single('learning_schema')]

    def _single(self, what: str) -> str:
        if len(self.learning_schemas) == 1:
            return next(iter(self.learning_schemas))
        raise exceptions.LearningSchemaError(
            f'This trainer has one optimizer per submodule '
            f'({", ".join(map(repr, self.learning_schemas))}): use '
            f'trainer.{what}s[name] instead of trainer.{what}.'
        )

    def _sort_schedules(self) -> None:
        """List what moves the rates at each step, and what at each epoch."""
        self._step_rated = [
            part
            for part, schema in self.learning_schemas.items()
            if schema.interval == 'step' and not schema.torch_scheduler
        ]
        self._step_schedulers = []
        self._epoch_schedulers = []
        self._plain_optimizer = None  # one optimizer, nothing around its step
        if len(self.optimizers) == 1 and not self._scaling:
            ((part, optimizer),) = self.optimizers.items()
            if isinstance(self.learning_schemas[part].gradient_op, NoOp):
                self._plain_optimizer = optimizer
        for part, scheduler in self.lr_schedulers.items():
            if self.learning_schemas[part].interval == 'step':
                self._step_schedulers.append(scheduler)
            else:
                self._epoch_schedulers.append(scheduler)

    @property
    def checkpoint_policy(self) -> CheckpointPolicy:
        """When checkpoints are saved automatically, and which are kept."""
        return self._checkpoints.policy

    @checkpoint_policy.setter
    def checkpoint_policy(self, policy: CheckpointPolicy) -> None:
        self._checkpoints.policy = policy

    @property
    def terminated(self) -> bool:
        """Whether training was terminated (``termination_reason`` says why)."""
        return self._terminated is not None

    @property
    def termination_reason(self) -> str | None:
        """Why training was terminated, or ``None`` while it may go on."""
        return self._terminated

    def describe(self) -> dict[str, Any]:
        """Return a readable description of the trainer and its parts."""
        description = super().describe()
        if len(self.learning_schemas) == 1:
            description['learning_schema'] = describe(self.learning_schema)
        else:
            description['learning_schemas'] = {
                part: describe(schema) for part, schema in self.learning_schemas.items()
            }
        if self.accumulate_grad_batches > 1:
            description['accumulate_grad_batches'] = self.accumulate_grad_batches
        if self.validation is not None:
            description['validation'] = self.validation.describe()
            if self.validation_interval is not None:
                description['validation_interval'] = self.validation_interval
            if self.validation_every_steps is not None:
                description['validation_every_steps'] = self.validation_every_steps
        description['pre_epoch_hooks'] = self.pre_epoch_hooks.describe()
        description['post_epoch_hooks'] = self.post_epoch_hooks.describe()
        if len(self.post_step_hooks):
            description['post_step_hooks'] = self.post_step_hooks.describe()
        policy = self.checkpoint_policy
        if policy != CheckpointPolicy():
            description['checkpoints'] = {
                key: describe(value)
                for key, value in dataclasses.asdict(policy).items()
                if value is not None
            }
        return description

    def checkpoint_every(
        self,
        epochs: int | None = None,
        steps: int | None = None,
        *,
        keep_last: int | None = None,
        keep_best: tuple[str | None, int] | None = None,
    ) -> None:
        """Save checkpoints while training, and delete the ones not worth keeping.

        Checkpoints inside an epoch hold what finishing that epoch exactly
        needs (the loader's permutation and position, the loss's running
        sums), so ``resume()`` after a crash continues as if nothing happened.
        Without ``keep_last`` and ``keep_best`` every checkpoint is kept; with
        either, a save deletes (through the storage hooks) every checkpoint
        that no rule keeps. The latest checkpoint and the one just saved are
        always kept. Calling it again replaces the policy.

        Args:
            epochs: save at the end of every ``epochs``-th epoch.
            steps: save after every ``steps``-th optimizer step, counted over
                the whole training (a step that ends an epoch saves at the
                end of that epoch instead).
            keep_last: keep the ``keep_last`` latest checkpoints.
            keep_best: ``(metric, k)``: keep the ``k`` epoch-end checkpoints
                with the best ``metric`` (``None``: the first one, the loss),
                measured by the validation, or by the trainer without one.

        Raises:
            ValueError: a number is below 1.
            ObjectiveError: ``steps`` is given but the loss cannot save its
                running sums (a torchmetrics-style member without
                ``state_dict``).
        """
        policy = CheckpointPolicy.validated(epochs, steps, keep_last, keep_best)
        if steps is not None:
            self.loss.state_dict()  # fails now rather than at the first save
        self._checkpoints.policy = policy
        self._schedule_step_save()

    def resume(self) -> bool:
        """Load the latest checkpoint of the model in this run, if there is one.

        One script then serves the first launch and every relaunch::

            with experiment.create_run(run_id='baseline', resume=True):
                ...  # build the model, trainer and hooks as before
                trainer.resume()
                trainer.train_until(100)

        A checkpoint taken inside an epoch finishes that epoch on the batches
        it had left, in the same order.

        Returns:
            Whether a checkpoint was loaded.

        Raises:
            CheckpointError: the latest checkpoint cannot be read or does not
                fit this trainer.
        """
        self._check_run()
        location = self._location()
        if distributed.current().size > 1:  # rank 0's storage answers
            found = _from_rank_zero(lambda: checkpointing.latest(location))
        else:
            found = checkpointing.latest(location)
        if found is None:
            return False
        self.load_checkpoint()
        return True

    def add_validation(
        self,
        loader: SizedLoader | None = None,
        interval: int | None = 1,
        metric: objectives.Objective[Output, Target]
        | objectives.StatefulMetric
        | None = None,
        *,
        every_steps: int | None = None,
        name: str = '',
        val_loader: SizedLoader | None = None,
    ) -> Validation[Input, Target, Output]:
        """Validate on ``loader`` every ``interval`` epochs or ``every_steps`` steps.

        A validation at a step reports its metrics with the step
        (``on_step_metrics``); hooks in ``post_step_hooks`` that monitor the
        validation (early stopping, ``ReduceLROnPlateau``) follow it, and step
        checkpoints saved at that step hold its state.

        Args:
            loader: the validation batches.
            interval: validate at epochs that are multiples of it; ``None``:
                never at epoch ends (with ``every_steps``).
            metric: what to measure; defaults to a fresh copy of the loss.
            every_steps: also validate after every ``every_steps``-th
                optimizer step, counted over the whole training.
            name: the validation's name in reports (default ``Validation``).
            val_loader: the same as ``loader``, as the original DRYTorch
                names it.

        Raises:
            ValueError: a number is below 1, or neither is given.
            TypeError: neither or both of ``loader`` and ``val_loader``.
        """
        if (loader is None) == (val_loader is None):
            raise TypeError(
                'add_validation() needs the validation batches: pass loader= (or '
                'val_loader=, its name in the original DRYTorch), once.'
            )
        batches = loader if loader is not None else val_loader
        assert batches is not None
        for what, value in (('interval', interval), ('every_steps', every_steps)):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f'The validation {what} must be >= 1, got {value!r}.')
        if interval is None and every_steps is None:
            raise ValueError(
                'add_validation() needs an interval in epochs or every_steps (or both).'
            )
        if metric is None:  # a copy: the two runners must not share aggregates
            metric = copy.deepcopy(self.loss)
            metric.reset()
        chosen = metric
        self.validation = Validation(
            self.model, loader=batches, metric=chosen, name=name
        )
        self.validation_interval = interval
        self.validation_every_steps = every_steps
        self._next_step_validation = _next_multiple(self.steps, every_steps)
        return self.validation

    def train(self, n_epochs: int) -> None:
        """Train for ``n_epochs`` more epochs (fewer if terminated)."""
        self.train_until(self.model.epoch + n_epochs)

    def train_until(self, epoch: int) -> None:
        """Train until the model has completed ``epoch`` epochs.

        An epoch paused by ``train_steps`` is finished first. An ``epoch``
        the model has passed already trains nothing and warns.

        Raises:
            ConvergenceError: the loss was not finite in an epoch (a
                ``TrainingError``).
            ModuleNotRegisteredError: the model belongs to another run.

        Warns:
            PastEpochWarning: the model has completed more than ``epoch``.
        """
        if epoch < self.model.epoch:
            warnings.warn(
                exceptions.PastEpochWarning(epoch, self.model.epoch), stacklevel=2
            )
        self._train(epoch, None)

    def train_steps(self, n_steps: int) -> None:
        """Train ``n_steps`` more optimizer steps, over as many epochs as they take.

        The last epoch may stop inside: it is paused, not completed (no
        metrics, validation or epoch hooks yet), and the next ``train_steps``,
        ``train`` or ``train_until`` goes on with its next batch, as a
        checkpoint saved meanwhile does. With a loader that has no length
        (a stream), this is how to train for a budget of steps.

        Raises:
            ValueError: ``n_steps`` is below 1.
            ConvergenceError: the loss was not finite in an epoch (a
                ``TrainingError``).
        """
        if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 1:
            raise ValueError(f'train_steps() needs a number >= 1, got {n_steps!r}.')
        per_epoch = loader_length(self.loader)
        if per_epoch:  # for the trackers: the epoch the steps end in
            per_epoch = max(1, per_epoch // self.accumulate_grad_batches)
            done = self._position()[1] // self.accumulate_grad_batches
            end = self.model.epoch + math.ceil((n_steps + done) / per_epoch)
        else:
            end = self.model.epoch + 1
        self._train(end, self.steps + n_steps)

    def _train(
        self, epoch: int, stop_step: int | None, store_outputs: bool = False
    ) -> None:
        self._check_run()
        _check_sharding(self.loader)
        self.pre_epoch_hooks.check(self)  # before an epoch is spent on them
        self.post_epoch_hooks.check(self)
        self.post_step_hooks.check(self)
        host = get_host()
        every = settings.get_settings().step_metrics_every
        self._step_metrics_every = every if host.handles_step_metrics() else 0
        self._next_step_metrics = _next_multiple(self.steps, self._step_metrics_every)
        self._next_step_validation = _next_multiple(
            self.steps, self.validation_every_steps
        )
        self._stop_step = stop_step or 0
        self.end_epoch = epoch
        name = self.model.name
        if self._keep_termination:  # the checkpoint's run had stopped there
            self._keep_termination = False
        else:
            self._terminated = None
        host.on_training_start(
            log_events.TrainingStartEvent(
                name, self.name, self.model.epoch, epoch, self._terminated
            ),
        )
        try:
            while self._terminated is None and (
                self.steps < stop_step if stop_step else self.model.epoch < epoch
            ):
                if self._resumed is None:  # a resumed epoch ran its hooks already
                    self.pre_epoch_hooks.execute(self)
                    if self._terminated is not None:
                        break
                self._train_epoch(epoch, store_outputs)
        finally:
            self._stop_step = 0
        host.on_training_end(
            log_events.TrainingEndEvent(name, self.name, self.model.epoch),
        )

    def terminate_training(self, reason: str) -> None:
        """Stop training for ``reason``.

        Training stops at the end of the current epoch, or before the next
        one from an epoch hook. From a post-step hook (early stopping on a
        validation every N steps), the epoch ends after that step: its
        metrics cover the batches trained, and validation, epoch hooks and
        the epoch's checkpoint follow as at any epoch end.
        """
        self._terminated = reason
        get_host().on_termination(
            log_events.TerminationEvent(
                self.model.name, self.name, self.model.epoch, reason
            ),
        )

    def update_learning_rate(
        self,
        base_lr: float | Mapping[str, float] | None = None,
        scheduler: AbstractScheduler | SchedulerFactory | None = None,
        factor: float | None = None,
        *,
        reason: str = 'update',
        optimizer: str | None = None,
    ) -> None:
        """Change the base rates, the schedule or the factor; applies at once.

        A torch scheduler given here (its factory) is built on the optimizer
        at once, from the base rates; a torch scheduler already running keeps
        its own course when only ``factor`` changes: the rates are scaled by
        the change once (as torch's ``ReduceLROnPlateau`` does).

        Args:
            base_lr: new base rates, with the same groups as before.
            scheduler: a new schedule.
            factor: a new multiplier of the scheduled rates (of every
                optimizer).
            reason: why, for the trackers.
            optimizer: with one schema per submodule, the submodule whose
                ``base_lr`` or ``scheduler`` changes.
        """
        if base_lr is not None or scheduler is not None:
            part = self._single('learning_schema') if optimizer is None else optimizer
            if part not in self.learning_schemas:
                raise exceptions.LearningSchemaError(
                    f'No optimizer is named {part!r}; the trainer has '
                    f'{list(self.learning_schemas)}.'
                )
            self._change_schema(part, base_lr, scheduler)
        if factor is not None:
            if factor <= 0:
                raise exceptions.LearningSchemaError(f'factor must be > 0: {factor}.')
            for part in self.lr_schedulers:  # they own the rates: scale once
                for group in self.optimizers[part].param_groups:
                    group['lr'] *= factor / self.lr_factor
            self.lr_factor = factor
        self._apply_learning_rate(self.model.epoch, reason)

    def _change_schema(
        self,
        part: str,
        base_lr: float | Mapping[str, float] | None,
        scheduler: AbstractScheduler | SchedulerFactory | None,
    ) -> None:
        schema = self.learning_schemas[part]
        changes: dict[str, Any] = {}
        if base_lr is not None:
            old = schema.base_lr
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
        schema = dataclasses.replace(schema, **changes)
        self.learning_schemas[part] = schema
        optimizer = self.optimizers[part]
        if schema.torch_scheduler:  # rebuilt from the base rates
            for group, rate in zip(
                optimizer.param_groups, schema.lr_at(0, self.lr_factor), strict=True
            ):
                group['lr'] = rate
                group.pop('initial_lr', None)
            built = schema.build_lr_scheduler(optimizer)
            assert built is not None
            self.lr_schedulers[part] = built
        else:
            self.lr_schedulers.pop(part, None)
        self._sort_schedules()

    def save_checkpoint(self) -> str:
        """Save everything needed to continue exactly; return where it went.

        Between epochs the checkpoint sits at ``(epoch, 0)``; inside an epoch
        (a step checkpoint, or a resumed epoch not finished yet) at
        ``(completed epochs, batches trained in the next)``. With a retention
        policy (``checkpoint_every``), older checkpoints are deleted after
        the save succeeded.

        Raises:
            CheckpointError: the save failed; earlier checkpoints are intact.
        """
        self._check_run()
        epoch, batch = position = self._position()
        location = self._location()
        if batch == 0 and not self._in_epoch:
            self._checkpoints.record_rank(self, position)
        world = distributed.current()
        if world.size == 1:
            return self._store(location, position, self._state(epoch, batch))
        # every rank: its random states and running sums, saved by rank 0
        processes = distributed.gather(self._checkpoints.process_state(self, batch))
        return _from_rank_zero(
            lambda: self._store(
                location, position, self._checkpoints.state(self, *position, processes)
            )
        )

    def _store(
        self,
        location: checkpointing.CheckpointLocation,
        position: checkpointing.Position,
        state: dict[str, Any],
    ) -> str:
        """Store ``state`` at ``position``, tell the trackers, apply retention."""
        epoch, batch = position
        where, digest = checkpointing.store(location, epoch, state, batch)
        get_host().on_checkpoint_save(
            log_events.CheckpointEvent(
                self.model.name, epoch, 'save', where, batch, digest
            )
        )
        if self._checkpoints.policy.prunes:
            self._prune(location, position)
        return where

    def load_checkpoint(
        self, epoch: int = checkpointing.LATEST, batch: int = 0
    ) -> None:
        """Restore the state saved at ``(epoch, batch)`` (default: the latest).

        Args:
            epoch: the completed epochs of the checkpoint; ``LATEST`` (-1)
                for the highest position, whatever its batch.
            batch: the batches trained in the next epoch (0: an epoch end).

        Raises:
            CheckpointError: no such checkpoint, or it does not fit this trainer.
        """
        self._check_run()
        location = self._location()
        if distributed.current().size > 1:  # rank 0 reads it for every rank
            state = _from_rank_zero(lambda: checkpointing.load(location, epoch, batch))
        else:
            state = checkpointing.load(location, epoch, batch)
        batch = self._checkpoints.restore(self, location, state)
        self._schedule_step_save()
        where = checkpointing.where(location, self.model.epoch, batch)
        get_host().on_checkpoint_load(
            log_events.CheckpointEvent(
                self.model.name, self.model.epoch, 'load', where, batch
            )
        )

    def _position(self) -> checkpointing.Position:
        if self._in_epoch:
            return self.model.epoch - 1, self._done
        if self._resumed is not None:
            return self.model.epoch, self._resumed.batch
        return self.model.epoch, 0

    def _state(self, epoch: int, batch: int) -> dict[str, Any]:
        """Return the checkpoint's content at position ``(epoch, batch)``."""
        return self._checkpoints.state(self, epoch, batch)

    def _schedule_step_save(self) -> None:
        self._next_step_save = self._checkpoints.policy.next_step_save(self.steps)

    def _step_save(self) -> None:
        """Save the checkpoint of the step just taken (called from ``_run_batch``)."""
        self._schedule_step_save()
        if self._epoch_batches is not None and self._done >= self._epoch_batches:
            self._save_at_end = True  # the epoch's last batch: save it complete
        else:
            self.save_checkpoint()

    def _prune(
        self, location: checkpointing.CheckpointLocation, saved: checkpointing.Position
    ) -> None:
        """Delete the checkpoints that no retention rule keeps."""
        checkpoints = self._checkpoints
        positions = checkpointing.list_positions(location)
        for position in checkpoints.to_delete(positions, saved):
            where = checkpointing.where(location, *position)
            if checkpointing.delete(location, *position):
                checkpoints.ranks.pop(position, None)
                get_host().on_checkpoint_delete(
                    log_events.CheckpointEvent(
                        self.model.name, position[0], 'delete', where, position[1]
                    )
                )
            elif not checkpoints.warned_undeleted:
                checkpoints.warned_undeleted = True
                warnings.warn(
                    f'No storage backend deleted the checkpoint of {location} at '
                    f'{checkpointing.describe_position(*position)}: does the '
                    'backend implement delete_checkpoint? Old checkpoints are kept.',
                    exceptions.DryTorchWarning,
                    stacklevel=3,
                )

    def _train_epoch(self, end_epoch: int, store_outputs: bool = False) -> None:
        host = get_host()
        model = self.model
        resumed, self._resumed = self._resumed, None
        done = resumed.batch if resumed is not None else 0
        paused = resumed.batches if resumed is not None else None
        self._apply_learning_rate(model.epoch, 'schedule')
        model.epoch += 1
        host.on_epoch_start(
            log_events.EpochStartEvent(model.name, self.name, model.epoch, end_epoch),
        )
        model.module.train()
        set_epoch = getattr(getattr(self.loader, 'sampler', None), 'set_epoch', None)
        if callable(set_epoch):  # a torch loader with a DistributedSampler
            set_epoch(model.epoch)
        self._done = done
        if not (resumed is not None and resumed.window):
            self._window = 0  # else the checkpoint's gradients wait for a step
        self._epoch_batches = loader_length(self.loader)
        if paused is None:  # a new epoch, or one loaded from a checkpoint
            self._step_sums = {}
            if resumed is not None and self._step_metrics_every:
                self._step_sums = self.loss.running_sums()  # the restored sums
        self._save_at_end = False
        self._in_epoch = True
        try:
            metrics = self._run_epoch(
                store_outputs=store_outputs,
                done=done,
                discard=resumed.discard if resumed is not None else 0,
                batches=paused,
            )
            if self._window:  # a loader without length ended inside a window
                self._close_window()
        except _EpochCut:
            if self._terminated is None:  # train_steps: pause, not an epoch end
                self._pause_epoch()
                return
            metrics = self._finish_epoch()
        finally:
            self._in_epoch = False
        if self._step_metrics_every:  # steps since the last report: the next one's
            self._carry_step_sums()
        loss_value = metrics.get(self.loss.name, math.nan)
        if not math.isfinite(loss_value):
            raise exceptions.ConvergenceError(  # a TrainingError
                loss_value,
                f'The loss {self.loss.name!r} of model {model.name!r} was '
                f'{loss_value} in epoch {model.epoch}: training stopped. Lower the '
                'learning rate, clip gradients, or check the data for NaN.',
            )
        self._report()
        model.post_epoch_update()
        validation = self.validation
        interval = self.validation_interval
        if validation is not None and interval and model.epoch % interval == 0:
            validation(step=self.steps)
        self.post_epoch_hooks.execute(self)
        for scheduler in self._epoch_schedulers:
            scheduler.step()
        policy = self._checkpoints.policy
        if self._save_at_end or policy.saves_at_epoch_end(model.epoch):
            self._save_at_end = False
            self.save_checkpoint()
        host.on_epoch_end(log_events.EpochEndEvent(model.name, self.name, model.epoch))

    def _run_batch(self, inputs: Input, targets: Target) -> Output:
        self._done += 1
        if self._window == 0 and self._step_rated:  # the rate of the coming step
            self._set_step_rates()
        outputs = self.training_step(inputs, targets)
        if (
            self._window == 0  # not inside an accumulation window
            and self._after_step()
            and self._done != self._epoch_batches  # else the epoch ends anyway
        ):
            raise _EpochCut
        return outputs

    def _pause_epoch(self) -> None:
        """Leave the running epoch where ``train_steps`` stopped, to go on later."""
        model = self.model
        loader = self.loader
        start = getattr(loader, 'epoch_start_state', None)
        loader_state = start() if callable(start) else None
        self._resumed = Resumed(self._done, loader_state, 0, 0, self._batches)
        model.epoch -= 1  # not completed

    def _close_window(self) -> None:
        """Step on an accumulation window that the loader's end cut short.

        Its batches were divided by the full window's size; the gradients are
        rescaled to the batches it got, as a known length would have done.
        """
        scale = self._window_size / self._window
        for parameter in self._params:
            if parameter.grad is not None:
                parameter.grad.mul_(scale)
        self._window = 0
        self.optimizer_step()
        self._after_step()

    def training_step(self, inputs: Input, targets: Target) -> Output:
        """Train on one batch: forward pass, loss, backward pass, optimizer step.

        Override it for custom training: several forward passes, losses
        of your own, several optimizers (``self.optimizers``). An override
        uses ``self.model(inputs)``; ``self.loss(outputs, targets)``, which
        returns the scalar loss and records the batch in the epoch's
        metrics; ``self.backward(loss)`` and ``self.optimizer_step(name)``
        (or the optimizers directly), and returns the outputs. The trainer
        counts each call as one step and does the rest around it: learning
        rates, post-step hooks, checkpoints and events.

        With ``accumulate_grad_batches > 1`` (only in this default), the
        optimizer steps once per window of batches.
        """
        if self.accumulate_grad_batches > 1:
            return self._accumulate(inputs, targets)
        outputs = self.model(inputs)
        self.backward(self._batch_loss(outputs, targets))
        self.optimizer_step()
        return outputs

    def backward(self, loss: torch.Tensor) -> None:
        """Backpropagate ``loss``, scaled first when mixed precision needs it."""
        if self._scaling:
            self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        else:
            loss.backward()  # type: ignore[no-untyped-call]

    def optimizer_step(self, name: str | None = None) -> None:
        """Step an optimizer on the gradients so far, then clear them.

        The schema's gradient operation (clipping) runs first, on unscaled
        gradients under mixed precision.

        Args:
            name: the optimizer (see ``optimizers``); ``None``: every one.
        """
        plain = self._plain_optimizer
        if plain is not None and name is None:  # the common case, per step
            plain.step()
            plain.zero_grad(set_to_none=True)
            return
        names = self.optimizers if name is None else (name,)
        for part in names:
            optimizer = self.optimizers[part]
            gradient_op = self.learning_schemas[part].gradient_op
            if self._scaling:
                self.scaler.unscale_(optimizer)
                gradient_op(self._step_params[part])
                self.scaler.step(optimizer)
                self.scaler.update()
            else:
                gradient_op(self._step_params[part])
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)

    def _batch_loss(self, outputs: Output, targets: Target) -> torch.Tensor:
        loss = self.loss.forward(outputs, targets)
        if loss.ndim != 0:
            raise exceptions.TrainingError(
                f'The loss {self.loss.name!r} has shape {tuple(loss.shape)}: a '
                'training loss must be a scalar.'
            )
        return loss

    def _accumulate(self, inputs: Input, targets: Target) -> Output:
        """Add one batch's gradients to its window; step at the window's end.

        A window is ``accumulate_grad_batches`` batches, or the batches left
        in the epoch: each batch's loss is divided by the window's size, so a
        window of k batches of size b updates as one batch of k * b would.
        Under DDP only the window's last batch synchronises the gradients.
        """
        if self._window == 0:
            size = self.accumulate_grad_batches
            if self._epoch_batches is not None:  # the epoch's last window: shorter
                size = max(1, min(size, self._epoch_batches - self._done + 1))
            self._window_size = size
        self._window += 1
        last = self._window >= self._window_size
        wrapper = self.model.distributed
        syncing = (
            contextlib.nullcontext() if last or wrapper is None else wrapper.no_sync()  # type: ignore[operator]
        )
        with syncing:
            outputs = self.model(inputs)
            self.backward(self._batch_loss(outputs, targets) / self._window_size)
        if last:
            self._window = 0
            self.optimizer_step()
        return outputs

    def _after_step(self) -> bool:
        """Do the bookkeeping of a step: count, averages, schedules, hooks, save.

        Returns whether the epoch must stop here: a post-step hook terminated
        training, or ``train_steps`` reached its step.
        """
        steps = self.steps + 1
        self.steps = steps
        if self._model_updates:
            self.model.post_batch_update()
        if steps == self._next_step_metrics:  # integer compares per step
            self._report_step_metrics()
        if steps == self._next_step_validation:
            self._validate_at_step()
        stop = steps == self._stop_step
        if len(self.post_step_hooks):  # they see the rates this step used
            running = self._terminated is None
            self.post_step_hooks.execute(self)
            stop = stop or (running and self._terminated is not None)
        for scheduler in self._step_schedulers:
            scheduler.step()
        if steps == self._next_step_save:
            self._step_save()
        return stop

    def _carry_step_sums(self) -> None:
        """Keep what the epoch added since the last report, for the next report.

        The loss's sums restart with each epoch; a report every N steps still
        covers the last N steps when an epoch ended among them.
        """
        carried = self._step_carry
        for name, (total, count) in self.loss.running_sums().items():
            old_total, old_count = self._step_sums.get(name, (0.0, 0))
            more_total, more_count = carried.get(name, (0.0, 0))
            carried[name] = (
                more_total + total - old_total,
                more_count + count - old_count,
            )

    def _report_step_metrics(self) -> None:
        """Report the means of the loss's values since the last report (syncs)."""
        every = self._step_metrics_every
        self._next_step_metrics = self.steps + every
        sums = self.loss.running_sums()
        before = self._step_sums
        carried, self._step_carry = self._step_carry, {}
        self._step_sums = sums
        metrics = {}
        for name, (total, count) in sums.items():
            old_total, old_count = before.get(name, (0.0, 0))
            more_total, more_count = carried.get(name, (0.0, 0))
            if count - old_count + more_count > 0:
                metrics[name] = (total - old_total + more_total) / (
                    count - old_count + more_count
                )
        if metrics:
            get_host().on_step_metrics(
                log_events.StepMetricsEvent(
                    self.model.name, self.name, self.model.epoch, self.steps, metrics
                )
            )

    def _validate_at_step(self) -> None:
        assert self.validation is not None and self.validation_every_steps
        self._next_step_validation = self.steps + self.validation_every_steps
        self.validation.measure_at_step(self.steps)

    def _set_step_rates(self) -> None:
        """Set the rates of the schedules that move at every optimizer step."""
        for part in self._step_rated:
            rates = self.learning_schemas[part].lr_at(self.steps, self.lr_factor)
            for group, rate in zip(
                self.optimizers[part].param_groups, rates, strict=True
            ):
                group['lr'] = rate

    def _apply_learning_rate(self, epoch: int, reason: str) -> None:
        """Set the scheduled rates; tell the trackers when they changed.

        Per-step schedules report the rate of the epoch's first step only.
        """
        rates: list[float] = []
        for part, schema in self.learning_schemas.items():
            groups = self.optimizers[part].param_groups
            if part not in self.lr_schedulers:
                at = self.steps if schema.interval == 'step' else epoch
                for group, rate in zip(
                    groups, schema.lr_at(at, self.lr_factor), strict=True
                ):
                    group['lr'] = rate
            rates.extend(float(group['lr']) for group in groups)
        if rates == self._reported_rates:
            return
        self._reported_rates = rates
        get_host().on_learning_rate(
            log_events.LearningRateEvent(
                self.model.name, self.name, epoch, tuple(rates), reason
            ),
        )

    def _location(self) -> checkpointing.CheckpointLocation:
        run = scope.require_active_run('Checkpoints')
        par_dir = self.model._checkpoint_par_dir() or run.experiment.par_dir
        return checkpointing.CheckpointLocation(
            par_dir, run.experiment.name, run.id, self.model.name
        )


_T = TypeVar('_T')


class _EpochCut(Exception):
    """Ends the batch loop after a step: training terminated, or paused."""


def _next_multiple(step: int, every: int | None) -> int:
    """Return the first multiple of ``every`` after ``step`` (0: never)."""
    if not every:
        return 0
    return (step // every + 1) * every


def _overrides_training_step(trainer: Trainer[Any, Any, Any]) -> bool:
    return type(trainer).training_step is not Trainer.training_step


def _named_schemas(
    module: torch.nn.Module, schema: LearningSchema | Mapping[str, LearningSchema]
) -> dict[str, LearningSchema]:
    """Return the schemas by submodule name (``''``: the whole module).

    Raises:
        LearningSchemaError: the submodules do not hold every trainable
            parameter exactly once, or a value is not a schema.
    """
    if isinstance(schema, LearningSchema):
        return {'': schema}
    if not isinstance(schema, Mapping) or not schema:
        raise exceptions.LearningSchemaError(
            'learning_schema must be a LearningSchema, or a non-empty mapping from '
            f'submodule names to LearningSchema, got {schema!r}.'
        )
    owner: dict[int, str] = {}
    for part, value in schema.items():
        if not isinstance(value, LearningSchema):
            raise exceptions.LearningSchemaError(
                f'The schema of {part!r} must be a LearningSchema, got {value!r}.'
            )
        for parameter in _submodule(module, part).parameters():
            previous = owner.setdefault(id(parameter), part)
            if previous != part:
                raise exceptions.LearningSchemaError(
                    f'Submodules {previous!r} and {part!r} share parameters: each '
                    'parameter must have one optimizer. Name disjoint submodules.'
                )
    uncovered = [
        name
        for name, parameter in module.named_parameters()
        if parameter.requires_grad and id(parameter) not in owner
    ]
    if uncovered:
        raise exceptions.LearningSchemaError(
            f'No learning schema covers the trainable parameters {uncovered}: add '
            'their submodules to the mapping, or freeze them.'
        )
    return dict(schema)


def _submodule(module: torch.nn.Module, name: str) -> torch.nn.Module:
    if not name:
        return module
    try:
        return module.get_submodule(name)
    except AttributeError as error:
        children = [child for child, _ in module.named_children()]
        raise exceptions.LearningSchemaError(
            f'The learning schemas name {name!r}, which is not a submodule of '
            f'{type(module).__name__}: its submodules are {children}.'
        ) from error


def _check_sharding(loader: object) -> None:
    """Warn when every process of a distributed run would train on all the data."""
    if distributed.current().size == 1:
        return
    from torch.utils import data

    if not isinstance(loader, data.DataLoader):
        return  # drytorch's shards by itself; others are the user's to shard
    if isinstance(loader.dataset, data.IterableDataset):
        return  # a stream has no sampler: its dataset shards by rank, if at all
    if not isinstance(loader.sampler, data.DistributedSampler):
        warnings.warn(
            'This torch DataLoader has no DistributedSampler: every process of the '
            'distributed run trains on the whole dataset. Use drytorch.DataLoader, '
            'which shards by itself, or give the loader a DistributedSampler.',
            exceptions.DryTorchWarning,
            stacklevel=3,
        )


def _from_rank_zero(answer: Callable[[], _T]) -> _T:
    """Return rank 0's ``answer()`` on every rank, or raise its error on every rank.

    Rank 0 alone stores, lists and reads checkpoints; the others wait for its
    result, so that a failed save or a refused checkpoint stops every process
    the same way instead of leaving some waiting for the next collective.
    """
    if distributed.current().rank == 0:
        try:
            result = answer()
        except exceptions.CheckpointError as err:
            distributed.broadcast(('error', str(err)))
            raise
        except BaseException as err:
            distributed.broadcast(('error', f'{type(err).__name__}: {err}'))
            raise
        distributed.broadcast(('ok', result))
        return result
    kind, value = distributed.broadcast(None)
    if kind == 'error':
        raise exceptions.CheckpointError(f'On rank 0: {value}')
    result_of_zero: _T = value
    return result_of_zero
