"""The checkpoints of a ``Trainer``: what they hold, when they are due, which stay.

Checkpoints change for other reasons than the training loop: their content must
keep loading files written by earlier versions, and their rules (when to save,
what to delete) grow on their own. Here are the policy, the content and its
format versions, the check that a checkpoint fits before anything is
overwritten, the retention rules and the step schedule; the ``Trainer`` only
says when to save or load, and keeps its per-batch check to one integer compare
against the step this module schedules. Storing goes through
``drytorch.core.checkpointing`` and the storage hooks.
"""

from __future__ import annotations

import abc
import dataclasses
import math
import pathlib
import warnings
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from drytorch.core import (
    checkpointing,
    distributed,
    exceptions,
    log_events,
    registering,
    scope,
)
from drytorch.core.plugins import get_host
from drytorch.lib import rng
from drytorch.lib.runners import to_device

if TYPE_CHECKING:
    from drytorch.lib.models import Model
    from drytorch.lib.runners import ModelRunner
    from drytorch.lib.train import Trainer

__all__ = [
    'CHECKPOINT_FORMAT',
    'MODEL_STATE_FORMAT',
    'READABLE_FORMATS',
    'AbstractCheckpoint',
    'CheckpointPolicy',
    'Checkpointer',
    'LocalCheckpoint',
    'Resumed',
    'check_fits',
]

CHECKPOINT_FORMAT = 4
"""Version of the checkpoint content; formats 1 to 3 load too.

Format 1 held epoch boundaries only; format 2 added positions inside epochs;
format 3 stores the random states and the loss's running sums as plain data
(numbers and text), which saves faster than tensors; format 4 adds one
optimizer per submodule schema, the torch schedulers, the post-step hooks and
the model's own state (averaged weights).
"""

READABLE_FORMATS = (1, 2, 3, CHECKPOINT_FORMAT)
"""The formats a trainer loads: old checkpoints stay usable after an upgrade."""


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

    @classmethod
    def validated(
        cls,
        epochs: int | None,
        steps: int | None,
        keep_last: int | None,
        keep_best: tuple[str | None, int] | None,
    ) -> CheckpointPolicy:
        """Return the policy of ``Trainer.checkpoint_every``'s arguments.

        Raises:
            ValueError: a number is below 1, or ``keep_best`` is not
                ``(metric name or None, k)``.
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
        if keep_best is not None:  # a list becomes a tuple: the policy is frozen
            keep_best = (keep_best[0], keep_best[1])
        return cls(epochs, steps, keep_last, keep_best)

    @property
    def prunes(self) -> bool:
        """Whether a save may delete older checkpoints."""
        return self.keep_last is not None or self.keep_best is not None

    def saves_at_epoch_end(self, epoch: int) -> bool:
        """Whether completing epoch ``epoch`` saves by the ``every_epochs`` rule."""
        every = self.every_epochs
        return every is not None and epoch % every == 0

    def next_step_save(self, steps: int) -> int:
        """Return the step count after ``steps`` that saves next (0: none).

        Computed once per save, so the loop only compares its step count with it.
        """
        every = self.every_steps
        return (steps // every + 1) * every if every else 0


@dataclasses.dataclass(frozen=True, slots=True)
class Resumed:
    """A mid-epoch checkpoint was loaded: the epoch to finish."""

    batch: int  # batches of the epoch already trained
    loader: Any  # the loader's state at the start of the epoch
    discard: int  # batches to drop from a loader that cannot skip them
    window: int = 0  # batches whose accumulated gradients were restored
    batches: Any = None  # the live iterator of an epoch paused in this process


class Checkpointer:
    """The checkpoint side of one trainer: its policy and what retention tracks.

    The trainer owns one and passes itself to each call, so there is no
    reference cycle. The checkpoint content covers the trainer's loop state
    too, which ``state`` reads and ``restore`` writes (``steps``, the model's
    epoch, the epoch being finished, the termination).

    Attributes:
        policy: when checkpoints are saved automatically, and which are kept.
        ranks: the keep_best value (lower is better) of each epoch-end
            position, saved with the checkpoints so that retention survives a
            restart.
        warned_undeleted: whether a backend that deletes nothing was reported.
    """

    __slots__ = ('policy', 'ranks', 'warned_undeleted')

    def __init__(self) -> None:
        self.policy = CheckpointPolicy()
        self.ranks: dict[checkpointing.Position, float] = {}
        self.warned_undeleted = False

    def record_rank(
        self, trainer: Trainer[Any, Any, Any], position: checkpointing.Position
    ) -> None:
        """Rank the epoch-end checkpoint about to be saved, for ``keep_best``."""
        if self.policy.keep_best:
            rank = _rank(trainer, self.policy.keep_best[0])
            if rank is not None:
                self.ranks[position] = rank

    def to_delete(
        self,
        positions: Sequence[checkpointing.Position],
        saved: checkpointing.Position,
    ) -> list[checkpointing.Position]:
        """Return, in order, the ``positions`` that no retention rule keeps.

        The latest position and ``saved``, the one just saved, are always kept.
        """
        policy = self.policy
        keep = {saved, *positions[-1:]}
        if policy.keep_last is not None:
            keep.update(positions[-policy.keep_last :])
        if policy.keep_best is not None:
            ranked = sorted(
                (rank, position)
                for position in positions
                if (rank := self.ranks.get(position)) is not None
            )
            keep.update(position for _, position in ranked[: policy.keep_best[1]])
        return [position for position in positions if position not in keep]

    def process_state(
        self, trainer: Trainer[Any, Any, Any], batch: int
    ) -> dict[str, Any]:
        """Return what differs between the processes of a run: random states, sums.

        In a distributed run every process sends its own to rank 0, which
        saves them all under ``processes``; each resumes from its own.
        """
        state: dict[str, Any] = {
            'rng': rng.get_states(seed=_run_seed()),
            'objective': trainer.loss.state_dict() if batch else None,
        }
        if trainer._window:  # inside an accumulation window: its gradients
            state['window'] = [trainer._window, trainer._window_size]
            state['gradients'] = [
                None if p.grad is None else p.grad.detach().cpu().clone()
                for p in trainer._params
            ]
        return state

    def state(
        self,
        trainer: Trainer[Any, Any, Any],
        epoch: int,
        batch: int,
        processes: Sequence[Mapping[str, Any]] | None = None,
    ) -> dict[str, Any]:
        """Return the checkpoint's content at position ``(epoch, batch)``.

        Args:
            trainer: whose state it is.
            epoch: the completed epochs.
            batch: the batches trained in the next epoch.
            processes: in a distributed run, every rank's ``process_state``,
                in rank order (this process is rank 0).
        """
        own = processes[0] if processes else self.process_state(trainer, batch)
        if trainer._in_epoch:  # the permutation being consumed, from its start
            method = getattr(trainer.loader, 'epoch_start_state', None)
            loader_state = method() if callable(method) else None
        elif trainer._resumed is not None:
            loader_state = trainer._resumed.loader
        else:
            loader_state = _loader_state(trainer.loader)
        return {
            'format': CHECKPOINT_FORMAT,
            'epoch': epoch,
            'batch': batch,
            'step': trainer.steps,
            'model': trainer.model.module.state_dict(),
            'model_own': trainer.model.own_state_dict(),
            **_optimizer_states(trainer),
            'scaler': trainer.scaler.state_dict(),
            'learning': _learning_state(trainer),
            'lr_schedulers': {
                part: scheduler.state_dict()
                for part, scheduler in trainer.lr_schedulers.items()
            },
            'pre_epoch_hooks': trainer.pre_epoch_hooks.state_dict(),
            'post_epoch_hooks': trainer.post_epoch_hooks.state_dict(),
            'post_step_hooks': trainer.post_step_hooks.state_dict(),
            'rng': own['rng'],
            'loader': loader_state,
            'objective': own['objective'],
            'terminated': trainer._terminated,
            'ranks': [[e, b, rank] for (e, b), rank in sorted(self.ranks.items())],
            **({'processes': list(processes)} if processes else {}),
            **{key: own[key] for key in ('window', 'gradients') if key in own},
        }

    def restore(
        self,
        trainer: Trainer[Any, Any, Any],
        location: checkpointing.CheckpointLocation,
        state: Mapping[str, Any],
    ) -> int:
        """Put ``state`` into ``trainer``; return its batch (0: an epoch end).

        A checkpoint of an unknown format or that does not fit is refused
        before anything changes.

        Raises:
            CheckpointError: the checkpoint cannot be read or does not fit.
        """
        if state.get('format') not in READABLE_FORMATS:
            raise exceptions.CheckpointError(
                f'The checkpoint of {location} has format {state.get("format")!r}; '
                f'this version reads formats {list(READABLE_FORMATS)}.'
            )
        check_fits(trainer, location, state)  # refuse before changing anything
        batch = int(state.get('batch', 0))
        own = _own_process_state(location, state, batch)
        objective = own.get('objective')
        if batch and not isinstance(objective, Mapping):
            raise exceptions.CheckpointError(
                f'The checkpoint of {location} inside epoch {state["epoch"] + 1} '
                'holds no running sums of the loss: it cannot finish the epoch.'
            )
        model = trainer.model
        if batch:  # the loss first: it is what may not fit
            assert isinstance(objective, Mapping)
            try:
                trainer.loss.load_state_dict(
                    to_device(dict(objective), model.device), device=model.device
                )
            except exceptions.ObjectiveError as err:
                raise exceptions.CheckpointError(
                    f'The checkpoint of {location} does not fit this loss: {err}'
                ) from err
        try:
            model.module.load_state_dict(_plain_state(state['model']))
            model.load_own_state_dict(state.get('model_own') or {})
            for part, saved in _saved_optimizers(trainer, state).items():
                trainer.optimizers[part].load_state_dict(saved)
            for part, scheduler in trainer.lr_schedulers.items():
                scheduler.load_state_dict(state['lr_schedulers'][part])
        except (RuntimeError, ValueError, KeyError) as err:
            raise exceptions.CheckpointError(
                f'The checkpoint of {location} does not fit this model or optimizer: '
                f'{err}'
            ) from err
        trainer.scaler.load_state_dict(state['scaler'])
        learning = state['learning']
        trainer.lr_factor = float(learning['factor'])
        base_lrs = learning.get('base_lrs') or {
            next(iter(trainer.learning_schemas)): learning['base_lr']
        }
        for part, base_lr in base_lrs.items():
            trainer.learning_schemas[part] = dataclasses.replace(
                trainer.learning_schemas[part], base_lr=base_lr
            )
        trainer.pre_epoch_hooks.load_state_dict(state['pre_epoch_hooks'])
        trainer.post_epoch_hooks.load_state_dict(state['post_epoch_hooks'])
        trainer.post_step_hooks.load_state_dict(state.get('post_step_hooks', []))
        rng.set_states(own['rng'])
        trainer._resumed = None
        discard = 0
        loader = trainer.loader
        loader_state = state.get('loader')
        if loader_state is not None and hasattr(loader, 'load_sampler_state'):
            if batch:
                loader.load_sampler_state(loader_state, skip_batches=batch)
            else:
                loader.load_sampler_state(loader_state)
        else:
            discard = batch  # the loader cannot skip: drop its first batches
        for optimizer in trainer.optimizers.values():
            optimizer.zero_grad(set_to_none=True)  # no stale window
        trainer._window = 0
        window = _restore_window(trainer, location, own) if batch else 0
        if batch:
            trainer._resumed = Resumed(batch, loader_state, discard, window)
        else:
            trainer.loss.reset()
        model.epoch = int(state['epoch'])
        if 'step' in state:
            trainer.steps = int(state['step'])
        else:  # formats 1 and 2: one step per batch
            trainer.steps = model.epoch * len(loader) + batch
        trainer._terminated = state.get('terminated')
        trainer._keep_termination = trainer._terminated is not None
        self.ranks = {
            (int(e), int(b)): float(rank) for e, b, rank in state.get('ranks', ())
        }
        return batch


_COMPILED_PREFIX = '_orig_mod.'


def _plain_state(saved: Mapping[str, Any]) -> Mapping[str, Any]:
    """Return a state dict saved from a compiled module without its prefix.

    Checkpoints hold the plain module's state; one written from a module
    passed through ``torch.compile`` (``_orig_mod.`` on every key) loads too.
    """
    if saved and all(
        isinstance(key, str) and key.startswith(_COMPILED_PREFIX) for key in saved
    ):
        return {key[len(_COMPILED_PREFIX) :]: value for key, value in saved.items()}
    return saved


def _restore_window(
    trainer: Trainer[Any, Any, Any],
    location: checkpointing.CheckpointLocation,
    own: Mapping[str, Any],
) -> int:
    """Put back the gradients of a checkpoint taken inside an accumulation window.

    Returns:
        The batches of the window already accumulated (0: none).
    """
    window = own.get('window')
    gradients = own.get('gradients')
    if not window:
        return 0
    if not isinstance(gradients, list) or len(gradients) != len(trainer._params):
        raise exceptions.CheckpointError(
            f'The checkpoint of {location} was taken inside a window of gradient '
            'accumulation but holds no gradients for these parameters.'
        )
    for parameter, gradient in zip(trainer._params, gradients, strict=True):
        parameter.grad = (
            None if gradient is None else gradient.to(parameter.device).clone()
        )
    trainer._window, trainer._window_size = (int(n) for n in window)
    return trainer._window


def _own_process_state(
    location: checkpointing.CheckpointLocation, state: Mapping[str, Any], batch: int
) -> Mapping[str, Any]:
    """Return this process's random states and running sums in ``state``.

    A checkpoint of a distributed run holds each rank's; one taken inside an
    epoch resumes only with as many processes, since each finishes its own
    share of the epoch. Between epochs, a rank the checkpoint has no state
    for starts from rank 0's.

    Raises:
        CheckpointError: a checkpoint inside an epoch, of another world size.
    """
    rank, size = distributed.current()
    processes = state.get('processes')
    saved = len(processes) if isinstance(processes, Sequence) else 1
    if batch and saved != size:
        raise exceptions.CheckpointError(
            f'The checkpoint of {location} was taken inside epoch '
            f'{state["epoch"] + 1} by {saved} process(es); this run has {size}. '
            'Resume it with the same number of processes, or load an epoch-end '
            'checkpoint.'
        )
    if not isinstance(processes, Sequence) or not processes:
        return state
    found = processes[rank] if rank < len(processes) else processes[0]
    return found if isinstance(found, Mapping) else state


def check_fits(
    trainer: Trainer[Any, Any, Any],
    location: checkpointing.CheckpointLocation,
    state: Mapping[str, Any],
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
    saved = _plain_state(saved)
    current = trainer.model.module.state_dict()
    if missing := [key for key in current if key not in saved]:
        problems.append(f'missing {missing}')
    if unexpected := [key for key in saved if key not in current]:
        problems.append(f'unexpected {unexpected}')
    problems.extend(
        f'{key} has shape {tuple(value.shape)}, the model {tuple(current[key].shape)}'
        for key, value in saved.items()
        if key in current
        and isinstance(value, torch.Tensor)
        and value.shape != current[key].shape
    )
    try:
        trainer.model.check_own_state_dict(state.get('model_own') or {})
    except ValueError as err:
        problems.append(str(err))
    saved_optimizers = _saved_optimizers(trainer, state)
    for part, optimizer in trainer.optimizers.items():
        found = saved_optimizers.get(part)
        groups = found.get('param_groups') if isinstance(found, Mapping) else None
        sizes = [len(group['params']) for group in optimizer.param_groups]
        if groups is None or [len(g.get('params', ())) for g in groups] != sizes:
            which = f'the optimizer of {part!r}' if part else 'the optimizer'
            problems.append(f'{which} has other parameter groups')
    saved_schedulers = state.get('lr_schedulers') or {}
    if set(saved_schedulers) != set(trainer.lr_schedulers):
        problems.append(
            'the torch schedulers differ: saved for '
            f'{sorted(saved_schedulers) or "none"}, built for '
            f'{sorted(trainer.lr_schedulers) or "none"} (give the same schedules '
            'before loading; change them with update_learning_rate() after)'
        )
    if problems:
        raise exceptions.CheckpointError(
            f'The checkpoint of {location} does not fit this model or '
            f'optimizer: {"; ".join(problems)}.'
        )
    for key, registry in (
        ('pre_epoch_hooks', trainer.pre_epoch_hooks),
        ('post_epoch_hooks', trainer.post_epoch_hooks),
        ('post_step_hooks', trainer.post_step_hooks),
    ):
        if len(state.get(key, ())) != len(registry):
            raise exceptions.CheckpointError(
                f'The checkpoint of {location} holds the state of '
                f'{len(state.get(key, ()))} hooks, but {len(registry)} are '
                f'registered in {key}: register the same hooks, in the same '
                'order, before loading.'
            )


def _rank(trainer: Trainer[Any, Any, Any], metric: str | None) -> float | None:
    """Return the keep_best value of this epoch (lower is better), if measured."""
    runner: ModelRunner[Any, Any, Any] = trainer.validation or trainer
    metrics = runner.computed_metrics
    if runner.computed_epoch != trainer.model.epoch or not metrics:
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


def _run_seed() -> int | None:
    """Return the run's seed: each process of the run starts seeded with it."""
    run = scope.active_run()
    return None if run is None else run.seed


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _optimizer_states(trainer: Trainer[Any, Any, Any]) -> dict[str, Any]:
    """Return the optimizer's state, or with one per submodule, each by name."""
    if list(trainer.optimizers) == ['']:
        return {'optimizer': trainer.optimizers[''].state_dict()}
    return {
        'optimizers': {
            part: optimizer.state_dict()
            for part, optimizer in trainer.optimizers.items()
        }
    }


def _saved_optimizers(
    trainer: Trainer[Any, Any, Any], state: Mapping[str, Any]
) -> dict[str, Any]:
    """Return the saved optimizer states by the trainer's names (what matches)."""
    if 'optimizers' in state and isinstance(state['optimizers'], Mapping):
        return dict(state['optimizers'])
    if list(trainer.optimizers) == [''] and 'optimizer' in state:
        return {'': state['optimizer']}
    return {}


def _learning_state(trainer: Trainer[Any, Any, Any]) -> dict[str, Any]:
    base_lrs = {
        part: _plain(schema.base_lr)
        for part, schema in trainer.learning_schemas.items()
    }
    learning: dict[str, Any] = {'factor': trainer.lr_factor, 'base_lrs': base_lrs}
    if list(base_lrs) == ['']:
        learning['base_lr'] = base_lrs['']  # as formats 1 to 3 had it
    return learning


def _plain(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else value


def _loader_state(loader: Any) -> Any:
    method = getattr(loader, 'sampler_state', None)
    return method() if callable(method) else None


MODEL_STATE_FORMAT = 'model-state'
"""The ``format`` of a checkpoint holding a model's weights alone.

``LocalCheckpoint.save`` writes one for a model without a trainer; a trainer's
checkpoints (formats 1 to 4) hold the same weights under the same keys, so
either loads into a model.
"""


class AbstractCheckpoint(abc.ABC):
    """Saves and loads the state of one model, and of what is bound beside it.

    ``Model`` binds itself to its checkpoint, and a ``Trainer`` binds itself to
    its model's: from then on ``save()`` and ``load()`` save and load the
    trainer's whole checkpoint (``trainer.save_checkpoint()``), so that
    ``model.save_state()`` resumes exactly. Without a trainer they save the
    weights, the modules bound with ``bind_module`` and the optimizer bound
    with ``bind_optimizer``.
    """

    def __init__(self) -> None:
        self._model: Model[Any, Any] | None = None
        self._modules: dict[str, torch.nn.Module] = {}
        self._optimizer: torch.optim.Optimizer | None = None
        self._trainer: Trainer[Any, Any, Any] | None = None

    @property
    def model(self) -> Model[Any, Any]:
        """The bound model.

        Raises:
            CheckpointNotInitializedError: no model is bound.
        """
        if self._model is None:
            raise exceptions.CheckpointNotInitializedError()
        return self._model

    @property
    def optimizer(self) -> torch.optim.Optimizer | None:
        """The bound optimizer (the trainer's, once one is bound), or ``None``."""
        if self._optimizer is None and self._trainer is not None:
            optimizers = self._trainer.optimizers
            return optimizers[''] if list(optimizers) == [''] else None
        return self._optimizer

    def bind_model(self, model: Model[Any, Any]) -> None:
        """Make this the checkpoint of ``model`` (``Model`` calls it)."""
        if self._model is not None and self._model is not model:
            self.remove_model()
        self._model = model

    def bind_module(self, name: str, module: torch.nn.Module) -> None:
        """Save and load ``module``'s state beside the model's, under ``name``."""
        if not isinstance(module, torch.nn.Module):
            raise TypeError(f'bind_module takes a torch.nn.Module, got {module!r}.')
        self._modules[name] = module

    def bind_optimizer(self, optimizer: torch.optim.Optimizer) -> None:
        """Save and load ``optimizer``'s state with the model's."""
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f'bind_optimizer takes a torch.optim.Optimizer, got {optimizer!r}.'
            )
        self._optimizer = optimizer

    def bind_trainer(self, trainer: Trainer[Any, Any, Any]) -> None:
        """Save and load ``trainer``'s whole checkpoint (``Trainer`` calls it)."""
        self._trainer = trainer

    def remove_model(self) -> None:
        """Unbind the model and everything bound with it."""
        self._model = None
        self._modules = {}
        self._optimizer = None
        self._trainer = None

    @abc.abstractmethod
    def save(self) -> str:
        """Save the bound state at the model's epoch; return where it went."""

    @abc.abstractmethod
    def load(self, epoch: int = checkpointing.LATEST) -> None:
        """Load the state saved at ``epoch`` (-1: the last one)."""


class LocalCheckpoint(AbstractCheckpoint):
    """A checkpoint stored by the storage backends, as the trainer's are.

    With the built-in backend the files are
    ``<par_dir>/checkpoints/<experiment>/<run id>/<model>/epoch_<n>.pt``, the
    same files ``trainer.save_checkpoint()`` writes: one storage format.

    Args:
        par_dir: the folder to store under; defaults to the experiment's.
    """

    def __init__(self, par_dir: str | pathlib.Path | None = None) -> None:
        super().__init__()
        self.par_dir = None if par_dir is None else pathlib.Path(par_dir)

    def location(self) -> checkpointing.CheckpointLocation:
        """Return where the bound model's checkpoints are, in the active run.

        Raises:
            CheckpointNotInitializedError: no model is bound.
            AccessOutsideScopeError: no run is active.
        """
        model = self.model
        run = scope.require_active_run('Checkpoints')
        return checkpointing.CheckpointLocation(
            self.par_dir or run.experiment.par_dir,
            run.experiment.name,
            run.id,
            model.name,
        )

    def save(self) -> str:
        """Save at the model's epoch; return where (see ``AbstractCheckpoint``).

        Raises:
            CheckpointNotInitializedError: no model is bound.
            CheckpointError: the save failed.
        """
        model = self.model
        if self._trainer is not None:
            return self._trainer.save_checkpoint()
        registering.require_registered(model)
        location = self.location()
        optimizer = self.optimizer
        state = {
            'format': MODEL_STATE_FORMAT,
            'epoch': model.epoch,
            'model': model.module.state_dict(),
            'model_own': model.own_state_dict(),
            'modules': {name: m.state_dict() for name, m in self._modules.items()},
            'optimizer': None if optimizer is None else optimizer.state_dict(),
        }
        where, digest = checkpointing.store(location, model.epoch, state)
        get_host().on_checkpoint_save(
            log_events.CheckpointEvent(
                model.name, model.epoch, 'save', where, 0, digest
            )
        )
        return where

    def load(self, epoch: int = checkpointing.LATEST) -> None:
        """Load the state saved at the end of ``epoch`` (-1: the highest saved).

        Raises:
            CheckpointNotInitializedError: no model is bound.
            ModelNotFoundError: nothing is saved for the model in this run.
            EpochNotFoundError: nothing is saved at the end of ``epoch``.
            CheckpointError: the checkpoint does not fit.
        """
        model = self.model
        registering.require_registered(model)
        location = self.location()
        positions = checkpointing.list_positions(location)
        if not positions:
            raise exceptions.ModelNotFoundError(str(location))
        if epoch != checkpointing.LATEST and (epoch, 0) not in positions:
            raise exceptions.EpochNotFoundError(epoch, str(location))
        if self._trainer is not None:
            self._trainer.load_checkpoint(epoch)
            return
        state = checkpointing.load(location, epoch)
        fmt = state.get('format')
        if fmt != MODEL_STATE_FORMAT and fmt not in READABLE_FORMATS:
            raise exceptions.CheckpointError(
                f'The checkpoint of {location} has format {fmt!r}; this version '
                f'reads {MODEL_STATE_FORMAT!r} and {list(READABLE_FORMATS)}.'
            )
        self._load_state(location, state)
        where = checkpointing.where(location, model.epoch)
        get_host().on_checkpoint_load(
            log_events.CheckpointEvent(model.name, model.epoch, 'load', where)
        )

    def _load_state(
        self, location: checkpointing.CheckpointLocation, state: Mapping[str, Any]
    ) -> None:
        model = self.model
        saved_modules = state.get('modules') or {}
        missing = [name for name in self._modules if name not in saved_modules]
        if missing:
            raise exceptions.CheckpointError(
                f'The checkpoint of {location} holds no state for the bound '
                f'modules {missing}.'
            )
        try:
            model.check_own_state_dict(state.get('model_own') or {})
            model.module.load_state_dict(_plain_state(state['model']))
            model.load_own_state_dict(state.get('model_own') or {})
            for name, module in self._modules.items():
                module.load_state_dict(saved_modules[name])
        except (RuntimeError, ValueError, KeyError) as err:
            raise exceptions.CheckpointError(
                f'The checkpoint of {location} does not fit the model: {err}'
            ) from err
        model.epoch = int(state['epoch'])
        optimizer = self._optimizer
        saved_optimizer = state.get('optimizer')
        if optimizer is not None and saved_optimizer is not None:
            try:
                optimizer.load_state_dict(saved_optimizer)
            except (RuntimeError, ValueError, KeyError) as err:
                warnings.warn(exceptions.OptimizerNotLoadedWarning(err), stacklevel=4)
