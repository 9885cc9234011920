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

from drytorch.core import checkpointing, distributed, exceptions, log_events, scope
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

__all__ = ['CHECKPOINT_FORMAT', 'CheckpointPolicy', 'Trainer']


class Trainer(ModelRunner[Input, Target, Output]):
    """Trains a model with a loss and a learning schema, epoch by epoch.

    Args:
        model: the model; it must belong to the active run.
        loader: the training batches (shuffled, last partial batch dropped).
        loss: the loss to minimise; its metrics are reported per epoch.
        learning_schema: the optimizer, learning rates, schedule and
            gradient operation.
        name: the name in reports; defaults to ``Trainer``.
        accumulate_grad_batches: accumulate the gradients of this many
            batches per optimizer step (each batch's loss divided by the
            window's size, so k batches of size b update as one batch of
            k * b; the epoch's last window may be shorter). Under DDP only
            the window's last batch synchronises the gradients.

    Attributes:
        validation: the validation added with ``add_validation``, if any.
        pre_epoch_hooks: hooks run before each epoch.
        post_epoch_hooks: hooks run after each epoch and its validation.
        optimizer: the optimizer built from the learning schema.
        lr_factor: the multiplier applied to the scheduled learning rates.
        steps: the optimizer steps taken so far, over all epochs (saved in
            checkpoints); with accumulation, fewer than the batches.
        checkpoint_policy: when checkpoints are saved automatically and
            which are kept; see ``checkpoint_every``.
    """

    def __init__(
        self,
        model: Model[Input, Output],
        *,
        loader: SizedLoader,
        loss: objectives.LossBase[Output, Target],
        learning_schema: LearningSchema,
        name: str = '',
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
        super().__init__(model, loader=loader, objective=loss, name=name)
        self.accumulate_grad_batches = accumulate_grad_batches
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
        self.steps = 0
        self._checkpoints = Checkpointer()
        self._terminated: str | None = None
        self._keep_termination = False  # loaded from a checkpoint: honour once
        self._params = [p for p in model.module.parameters() if p.requires_grad]
        self._next_step_save = 0  # the step that saves next; 0: none
        self._done = 0  # batches trained in the running epoch
        self._window = 0  # batches whose gradients wait for the next step
        self._window_size = 1  # batches of the running accumulation window
        self._epoch_batches = 0
        self._in_epoch = False
        self._save_at_end = False
        self._resumed: Resumed | None = None

    @property
    def checkpoint_policy(self) -> CheckpointPolicy:
        """When checkpoints are saved automatically, and which are kept."""
        return self._checkpoints.policy

    @checkpoint_policy.setter
    def checkpoint_policy(self, policy: CheckpointPolicy) -> None:
        self._checkpoints.policy = policy

    @property
    def terminated(self) -> str | None:
        """Why training was terminated, or ``None`` while it may go on."""
        return self._terminated

    def describe(self) -> dict[str, Any]:
        """Return a readable description of the trainer and its parts."""
        description = super().describe()
        description['learning_schema'] = describe(self.learning_schema)
        if self.accumulate_grad_batches > 1:
            description['accumulate_grad_batches'] = self.accumulate_grad_batches
        if self.validation is not None:
            description['validation'] = self.validation.describe()
            description['validation_interval'] = self.validation_interval
        description['pre_epoch_hooks'] = self.pre_epoch_hooks.describe()
        description['post_epoch_hooks'] = self.post_epoch_hooks.describe()
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
        _check_sharding(self.loader)
        self.pre_epoch_hooks.check(self)  # before an epoch is spent on them
        self.post_epoch_hooks.check(self)
        host = get_host()
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
        while self.model.epoch < epoch and self._terminated is None:
            if self._resumed is None:  # a resumed epoch ran its hooks already
                self.pre_epoch_hooks.execute(self)
                if self._terminated is not None:
                    break
            self._train_epoch(epoch)
        host.on_training_end(
            log_events.TrainingEndEvent(name, self.name, self.model.epoch),
        )

    def terminate_training(self, reason: str) -> None:
        """Stop training at the end of the current epoch, for ``reason``."""
        self._terminated = reason
        get_host().on_termination(
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
        if self._done >= self._epoch_batches:
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

    def _train_epoch(self, end_epoch: int) -> None:
        host = get_host()
        model = self.model
        resumed, self._resumed = self._resumed, None
        done = resumed.batch if resumed is not None else 0
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
        self._epoch_batches = len(self.loader)
        self._save_at_end = False
        self._in_epoch = True
        try:
            metrics = self._run_epoch(
                done=done, discard=resumed.discard if resumed is not None else 0
            )
        finally:
            self._in_epoch = False
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
        policy = self._checkpoints.policy
        if self._save_at_end or policy.saves_at_epoch_end(model.epoch):
            self._save_at_end = False
            self.save_checkpoint()
        host.on_epoch_end(log_events.EpochEndEvent(model.name, self.name, model.epoch))

    def _run_batch(self, inputs: Input, targets: Target) -> Output:
        self._done += 1
        if self.accumulate_grad_batches > 1:
            return self._accumulate(inputs, targets)
        outputs = self.model(inputs)
        loss = self._batch_loss(outputs, targets)
        if self.scaler.is_enabled():
            self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        else:
            loss.backward()  # type: ignore[no-untyped-call]
        self._step()
        return outputs

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
            left = self._epoch_batches - self._done + 1
            self._window_size = max(1, min(self.accumulate_grad_batches, left))
        self._window += 1
        last = self._window >= self._window_size
        wrapper = self.model.distributed
        syncing = (
            contextlib.nullcontext() if last or wrapper is None else wrapper.no_sync()  # type: ignore[operator]
        )
        with syncing:
            outputs = self.model(inputs)
            loss = self._batch_loss(outputs, targets) / self._window_size
            if self.scaler.is_enabled():
                self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
            else:
                loss.backward()  # type: ignore[no-untyped-call]
        if last:
            self._window = 0
            self._step()
        return outputs

    def _step(self) -> None:
        """Take the optimizer step of the gradients computed so far."""
        schema = self.learning_schema
        if self.scaler.is_enabled():
            self.scaler.unscale_(self.optimizer)
            schema.gradient_op(self._params)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            schema.gradient_op(self._params)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        steps = self.steps + 1
        self.steps = steps
        if steps == self._next_step_save:  # an integer compare per step
            self._step_save()

    def _apply_learning_rate(self, epoch: int, reason: str) -> None:
        rates = self.learning_schema.lr_at(epoch, self.lr_factor)
        groups = self.optimizer.param_groups
        if [group['lr'] for group in groups] == rates:
            return
        for group, rate in zip(groups, rates, strict=True):
            group['lr'] = rate
        get_host().on_learning_rate(
            log_events.LearningRateEvent(
                self.model.name, self.name, epoch, tuple(rates), reason
            ),
        )

    def _location(self) -> checkpointing.CheckpointLocation:
        run = scope.require_active_run('Checkpoints')
        return checkpointing.CheckpointLocation(
            run.experiment.par_dir, run.experiment.name, run.id, self.model.name
        )


_T = TypeVar('_T')


def _check_sharding(loader: object) -> None:
    """Warn when every process of a distributed run would train on all the data."""
    if distributed.current().size == 1:
        return
    from torch.utils import data

    if isinstance(loader, data.DataLoader) and not isinstance(
        loader.sampler, data.DistributedSampler
    ):
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
