"""``Trainer``: the training loop, its validation, hooks and checkpoints."""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings
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
    to_device,
)
from drytorch.lib.schedulers import AbstractScheduler

__all__ = ['CHECKPOINT_FORMAT', 'CheckpointPolicy', 'Trainer']

CHECKPOINT_FORMAT = 3
"""Version of the checkpoint content; formats 1 and 2 load too.

Format 1 held epoch boundaries only; format 2 added positions inside epochs;
format 3 stores the random states and the loss's running sums as plain data
(numbers and text), which saves faster than tensors.
"""

_READABLE_FORMATS = (1, 2, CHECKPOINT_FORMAT)


@dataclasses.dataclass(frozen=True, slots=True)
class CheckpointPolicy:
    """When the trainer saves checkpoints by itself, and which it keeps.

    Attributes:
        every_epochs: save at the end of every ``every_epochs``-th epoch.
        every_steps: save after every ``every_steps``-th optimizer step (counted
            over the whole training); a step that ends an epoch saves at the
            epoch's end instead, once its metrics, validation and hooks ran.
        keep_last: keep the ``keep_last`` highest positions.
        keep_best: ``(metric, k)``: keep the ``k`` epoch-end checkpoints with
            the best value of ``metric`` (``None``: the first metric, the
            loss) of the validation, or of the trainer without one.
    """

    every_epochs: int | None = None
    every_steps: int | None = None
    keep_last: int | None = None
    keep_best: tuple[str | None, int] | None = None

    @property
    def prunes(self) -> bool:
        """Whether a save may delete older checkpoints."""
        return self.keep_last is not None or self.keep_best is not None


@dataclasses.dataclass(frozen=True, slots=True)
class _Resumed:
    """A mid-epoch checkpoint was loaded: the epoch to finish."""

    batch: int  # batches of the epoch already trained
    loader: Any  # the loader's state at the start of the epoch
    discard: int  # batches to drop from a loader that cannot skip them


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
        steps: the optimizer steps taken so far, over all epochs (saved in
            checkpoints).
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
        self.steps = 0
        self.checkpoint_policy = CheckpointPolicy()
        self._terminated: str | None = None
        self._keep_termination = False  # loaded from a checkpoint: honour once
        self._params = [p for p in model.module.parameters() if p.requires_grad]
        self._next_step_save = 0  # the step that saves next; 0: none
        self._epoch_first_step = 0  # self.steps when the running epoch began
        self._epoch_batches = 0
        self._in_epoch = False
        self._save_at_end = False
        self._resumed: _Resumed | None = None
        self._ranks: dict[checkpointing.Position, float] = {}  # lower is better
        self._warned_undeleted = False

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
        for label, value in (
            ('epochs', epochs),
            ('steps', steps),
            ('keep_last', keep_last),
        ):
            if value is not None and (not _is_int(value) or value < 1):
                raise ValueError(
                    f'checkpoint_every: {label} must be an integer >= 1, got {value!r}.'
                )
        if keep_best is not None and (
            not isinstance(keep_best, tuple | list)
            or len(keep_best) != 2
            or not (keep_best[0] is None or isinstance(keep_best[0], str))
            or not _is_int(keep_best[1])
            or keep_best[1] < 1
        ):
            raise ValueError(
                'checkpoint_every: keep_best must be (metric, k), a metric '
                f'name or None and an integer k >= 1, got {keep_best!r}.'
            )
        if keep_best is not None:
            keep_best = (keep_best[0], keep_best[1])
        if steps is not None:
            self.loss.state_dict()  # fails now rather than at the first save
        self.checkpoint_policy = CheckpointPolicy(epochs, steps, keep_last, keep_best)
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
        if checkpointing.latest(self._location()) is None:
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
        host = get_host()
        name = self.model.name
        if self._keep_termination:  # the checkpoint's run had stopped there
            self._keep_termination = False
        else:
            self._terminated = None
        host.broadcast(
            'on_training_start',
            log_events.TrainingStartEvent(name, self.name, self.model.epoch, epoch),
        )
        while self.model.epoch < epoch and self._terminated is None:
            if self._resumed is None:  # a resumed epoch ran its hooks already
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
        if batch == 0 and not self._in_epoch and self.checkpoint_policy.keep_best:
            rank = self._rank()
            if rank is not None:
                self._ranks[position] = rank
        where = checkpointing.save(location, epoch, self._state(epoch, batch), batch)
        get_host().broadcast(
            'on_checkpoint_save',
            log_events.CheckpointEvent(self.model.name, epoch, 'save', where, batch),
        )
        if self.checkpoint_policy.prunes:
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
        state = checkpointing.load(location, epoch, batch)
        if state.get('format') not in _READABLE_FORMATS:
            raise exceptions.CheckpointError(
                f'The checkpoint of {location} has format {state.get("format")!r}; '
                f'this version reads formats {list(_READABLE_FORMATS)}.'
            )
        self._check_fits(location, state)  # refuse before changing anything
        batch = int(state.get('batch', 0))
        objective = state.get('objective')
        if batch and not isinstance(objective, Mapping):
            raise exceptions.CheckpointError(
                f'The checkpoint of {location} inside epoch {state["epoch"] + 1} '
                'holds no running sums of the loss: it cannot finish the epoch.'
            )
        if batch:  # the loss first: it is what may not fit
            assert isinstance(objective, Mapping)
            try:
                self.loss.load_state_dict(
                    to_device(dict(objective), self.model.device),
                    device=self.model.device,
                )
            except exceptions.ObjectiveError as err:
                raise exceptions.CheckpointError(
                    f'The checkpoint of {location} does not fit this loss: {err}'
                ) from err
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
        self._resumed = None
        discard = 0
        loader_state = state.get('loader')
        if loader_state is not None and hasattr(self.loader, 'load_sampler_state'):
            if batch:
                self.loader.load_sampler_state(loader_state, skip_batches=batch)
            else:
                self.loader.load_sampler_state(loader_state)
        else:
            discard = batch  # the loader cannot skip: drop its first batches
        if batch:
            self._resumed = _Resumed(batch, loader_state, discard)
        else:
            self.loss.reset()
        self.model.epoch = int(state['epoch'])
        self.steps = int(state.get('step', self.model.epoch * len(self.loader) + batch))
        self._terminated = state.get('terminated')
        self._keep_termination = self._terminated is not None
        self._ranks = {
            (int(e), int(b)): float(rank) for e, b, rank in state.get('ranks', ())
        }
        self._schedule_step_save()
        get_host().broadcast(
            'on_checkpoint_load',
            log_events.CheckpointEvent(
                self.model.name, self.model.epoch, 'load', str(location), batch
            ),
        )

    def _position(self) -> checkpointing.Position:
        if self._in_epoch:
            return self.model.epoch - 1, self.steps - self._epoch_first_step
        if self._resumed is not None:
            return self.model.epoch, self._resumed.batch
        return self.model.epoch, 0

    def _state(self, epoch: int, batch: int) -> dict[str, Any]:
        """Return the checkpoint's content at position ``(epoch, batch)``."""
        if self._in_epoch:  # the permutation being consumed, from its start
            method = getattr(self.loader, 'epoch_start_state', None)
            loader_state = method() if callable(method) else None
        elif self._resumed is not None:
            loader_state = self._resumed.loader
        else:
            loader_state = _loader_state(self.loader)
        return {
            'format': CHECKPOINT_FORMAT,
            'epoch': epoch,
            'batch': batch,
            'step': self.steps,
            'model': self.model.module.state_dict(),
            'optimizer': self.optimizer.state_dict(),
            'scaler': self.scaler.state_dict(),
            'learning': {
                'factor': self.lr_factor,
                'base_lr': _plain(self.learning_schema.base_lr),
            },
            'pre_epoch_hooks': self.pre_epoch_hooks.state_dict(),
            'post_epoch_hooks': self.post_epoch_hooks.state_dict(),
            'rng': rng.get_states(seed=self._run_seed()),
            'loader': loader_state,
            'objective': self.loss.state_dict() if batch else None,
            'terminated': self._terminated,
            'ranks': [[e, b, rank] for (e, b), rank in sorted(self._ranks.items())],
        }

    def _schedule_step_save(self) -> None:
        every = self.checkpoint_policy.every_steps
        self._next_step_save = (self.steps // every + 1) * every if every else 0

    def _step_save(self) -> None:
        """Save the checkpoint of the step just taken (called from ``_run_batch``)."""
        self._schedule_step_save()
        if self.steps - self._epoch_first_step >= self._epoch_batches:
            self._save_at_end = True  # the epoch's last batch: save it complete
        else:
            self.save_checkpoint()

    def _rank(self) -> float | None:
        """Return the keep_best value of this epoch (lower is better), if measured."""
        policy = self.checkpoint_policy
        assert policy.keep_best is not None
        metric = policy.keep_best[0]
        runner: ModelRunner[Any, Any, Any] = self.validation or self
        metrics = runner.computed_metrics
        if runner.computed_epoch != self.model.epoch or not metrics:
            return None  # not measured at this epoch
        name = metric or next(iter(metrics))
        if name not in metrics:
            raise exceptions.CheckpointError(
                f'keep_best ranks checkpoints by {name!r}, but {runner.name} '
                f'computes {", ".join(metrics)}.'
            )
        value = metrics[name]
        if not math.isfinite(value):
            return None
        higher = runner.objective.higher_is_better.get(name)
        return -value if higher else value

    def _prune(
        self, location: checkpointing.CheckpointLocation, saved: checkpointing.Position
    ) -> None:
        """Delete the checkpoints that no retention rule keeps."""
        policy = self.checkpoint_policy
        positions = checkpointing.list_positions(location)
        keep = {saved, *positions[-1:]}
        if policy.keep_last is not None:
            keep.update(positions[-policy.keep_last :])
        if policy.keep_best is not None:
            ranked = sorted(
                (rank, position)
                for position in positions
                if (rank := self._ranks.get(position)) is not None
            )
            keep.update(position for _, position in ranked[: policy.keep_best[1]])
        for position in positions:
            if position in keep:
                continue
            if checkpointing.delete(location, *position):
                self._ranks.pop(position, None)
                get_host().broadcast(
                    'on_checkpoint_delete',
                    log_events.CheckpointEvent(
                        self.model.name,
                        position[0],
                        'delete',
                        str(location),
                        position[1],
                    ),
                )
            elif not self._warned_undeleted:
                self._warned_undeleted = True
                warnings.warn(
                    f'No storage backend deleted the checkpoint of {location} at '
                    f'{checkpointing.describe_position(*position)}: does the '
                    'backend implement delete_checkpoint? Old checkpoints are kept.',
                    exceptions.DryTorchWarning,
                    stacklevel=3,
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
        resumed, self._resumed = self._resumed, None
        done = resumed.batch if resumed is not None else 0
        self._apply_learning_rate(model.epoch, 'schedule')
        model.epoch += 1
        host.broadcast(
            'on_epoch_start',
            log_events.EpochStartEvent(model.name, self.name, model.epoch, end_epoch),
        )
        model.module.train()
        self._epoch_first_step = self.steps - done
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
        every = self.checkpoint_policy.every_epochs
        if self._save_at_end or (every is not None and model.epoch % every == 0):
            self._save_at_end = False
            self.save_checkpoint()
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
        steps = self.steps + 1
        self.steps = steps
        if steps == self._next_step_save:  # an integer compare per batch
            self._step_save()
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

    @staticmethod
    def _run_seed() -> int | None:
        """Return the run's seed: each process of the run starts seeded with it."""
        run = scope.active_run()
        return None if run is None else run.seed

    def _location(self) -> checkpointing.CheckpointLocation:
        run = scope.require_active_run('Checkpoints')
        return checkpointing.CheckpointLocation(
            run.experiment.par_dir, run.experiment.name, run.id, self.model.name
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


def _loader_state(loader: Any) -> Any:
    method = getattr(loader, 'sampler_state', None)
    return method() if callable(method) else None
