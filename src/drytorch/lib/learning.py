"""``LearningSchema``: everything that decides how parameters are updated.

The optimizer class, its settings, the learning rate(s), the schedule (by
epoch or by optimizer step) and the gradient operation live in one frozen
value. A run can therefore record it as configuration (see ``describe()``),
compare it when resuming, and rebuild the same optimizer for any module with
``build_optimizer()``.

The schedule is either one of ``drytorch.lib.schedulers`` (a pure function
of the epoch or step: nothing to save) or a factory of a
``torch.optim.lr_scheduler`` scheduler, such as
``functools.partial(OneCycleLR, max_lr=0.1, total_steps=1000)``, which the
trainer builds on its optimizer and whose state checkpoints keep.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, TypeAlias

import torch
from torch import nn

from drytorch.core.exceptions import LearningSchemaError, MissingParamError
from drytorch.lib.gradient_ops import GradientOp, NoOp
from drytorch.lib.schedulers import AbstractScheduler, ConstantScheduler

__all__ = ['LearningSchema', 'SchedulerFactory']

SchedulerFactory: TypeAlias = Callable[
    [torch.optim.Optimizer], torch.optim.lr_scheduler.LRScheduler
]
"""Builds a torch learning-rate scheduler on an optimizer (e.g. a ``partial``)."""
Interval: TypeAlias = Literal['epoch', 'step']

_Betas = tuple[float, float]
_CONSTANT = ConstantScheduler()
_NO_OP = NoOp()


def _check_lr(name: str, lr: float) -> None:
    if isinstance(lr, bool) or not isinstance(lr, int | float):
        raise LearningSchemaError(f'{name} must be a number, got {lr!r}.')
    if not 0 <= lr < math.inf:
        raise LearningSchemaError(
            f'{name} must be finite and non-negative, got {lr!r}.'
        )


def _qualified_name(cls: type) -> str:
    """Name a class by its public path (``torch.optim.Adam``) when it has one."""
    if getattr(torch.optim, cls.__name__, None) is cls:
        return f'torch.optim.{cls.__name__}'
    return f'{cls.__module__}.{cls.__qualname__}'


def _toml_value(value: Any) -> Any:
    """Turn ``value`` into strings, numbers, booleans, lists and dicts."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(key): _toml_value(item) for key, item in value.items()}
    if isinstance(value, Sequence):
        return [_toml_value(item) for item in value]
    if isinstance(value, type):
        return _qualified_name(value)
    return repr(value)  # None included: TOML has no null


@dataclasses.dataclass(frozen=True)
class LearningSchema:
    """How a model learns: optimizer, learning rates, schedule, gradient op.

    Args:
        optimizer_cls: a ``torch.optim.Optimizer`` subclass.
        base_lr: one learning rate for all parameters, or a mapping from
            submodule names (dotted paths such as ``'encoder.layer1'``) to
            learning rates; the named submodules must cover every trainable
            parameter exactly once.
        scheduler: how the learning rate changes: a drytorch schedule, a
            function of the epoch (or the step, see ``interval``), or a
            factory that builds a ``torch.optim.lr_scheduler`` scheduler on
            the optimizer.
        optimizer_defaults: further keyword arguments of ``optimizer_cls``
            (not ``lr``: that is ``base_lr``).
        gradient_op: applied to the gradients before each optimizer step.
        interval: ``'epoch'`` (default): the schedule moves once per epoch
            (a torch scheduler steps after each epoch); ``'step'``: it moves
            at every optimizer step (a drytorch schedule is then called with
            the number of steps taken, a torch one steps after each).

    Raises:
        LearningSchemaError: an argument cannot describe an optimizer.
    """

    optimizer_cls: type[torch.optim.Optimizer]
    base_lr: float | Mapping[str, float]
    scheduler: AbstractScheduler | SchedulerFactory = _CONSTANT
    optimizer_defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    gradient_op: GradientOp = _NO_OP
    interval: Interval = 'epoch'

    def __post_init__(self) -> None:
        if not (
            isinstance(self.optimizer_cls, type)
            and issubclass(self.optimizer_cls, torch.optim.Optimizer)
        ):
            raise LearningSchemaError(
                'optimizer_cls must be a torch.optim.Optimizer subclass (the '
                f'class, not an instance), got {self.optimizer_cls!r}.'
            )
        if isinstance(self.base_lr, Mapping):
            if not self.base_lr:
                raise LearningSchemaError(
                    'base_lr is an empty mapping: name at least one submodule, '
                    'or pass a single learning rate.'
                )
            for name, lr in self.base_lr.items():
                if not isinstance(name, str):
                    raise LearningSchemaError(
                        f'The keys of base_lr are submodule names, got {name!r}.'
                    )
                _check_lr(f'The learning rate of {name!r}', lr)
            # Own copies: later changes to the caller's dict must not leak in.
            object.__setattr__(self, 'base_lr', dict(self.base_lr))
        else:
            _check_lr('base_lr', self.base_lr)
        if 'lr' in self.optimizer_defaults:
            raise LearningSchemaError(
                "optimizer_defaults must not set 'lr': pass the learning rate "
                'as base_lr.'
            )
        object.__setattr__(self, 'optimizer_defaults', dict(self.optimizer_defaults))
        _check_scheduler(self.scheduler)
        if self.interval not in ('epoch', 'step'):
            raise LearningSchemaError(
                f"interval must be 'epoch' or 'step', got {self.interval!r}."
            )
        if not callable(self.gradient_op):
            raise LearningSchemaError(
                f'gradient_op must be callable on the parameters, '
                f'got {self.gradient_op!r}.'
            )

    @classmethod
    def _adam_like(
        cls,
        optimizer_cls: type[torch.optim.Optimizer],
        lr: float | Mapping[str, float],
        betas: _Betas,
        weight_decay: float,
        scheduler: AbstractScheduler | SchedulerFactory,
        gradient_op: GradientOp,
        interval: Interval,
    ) -> LearningSchema:
        """Build a schema for an optimizer of Adam's family (betas, weight decay)."""
        return cls(
            optimizer_cls,
            lr,
            scheduler,
            {'betas': tuple(betas), 'weight_decay': weight_decay},
            gradient_op,
            interval,
        )

    @classmethod
    def adam(
        cls,
        lr: float | Mapping[str, float] = 1e-3,
        betas: _Betas = (0.9, 0.999),
        weight_decay: float = 0.0,
        scheduler: AbstractScheduler | SchedulerFactory = _CONSTANT,
        gradient_op: GradientOp = _NO_OP,
        interval: Interval = 'epoch',
        *,
        base_lr: float | Mapping[str, float] | None = None,
    ) -> LearningSchema:
        """Adam (with L2 penalty ``weight_decay`` added to the gradients).

        ``base_lr`` is ``lr`` as the original DRYTorch names it (here and in
        the other constructors).
        """
        lr = _alias_lr(lr, base_lr, 1e-3)
        return cls._adam_like(
            torch.optim.Adam, lr, betas, weight_decay, scheduler, gradient_op, interval
        )

    @classmethod
    def adam_w(
        cls,
        lr: float | Mapping[str, float] = 1e-3,
        betas: _Betas = (0.9, 0.999),
        weight_decay: float = 1e-2,
        scheduler: AbstractScheduler | SchedulerFactory = _CONSTANT,
        gradient_op: GradientOp = _NO_OP,
        interval: Interval = 'epoch',
        *,
        base_lr: float | Mapping[str, float] | None = None,
    ) -> LearningSchema:
        """AdamW: Adam with decoupled weight decay."""
        lr = _alias_lr(lr, base_lr, 1e-3)
        return cls._adam_like(
            torch.optim.AdamW, lr, betas, weight_decay, scheduler, gradient_op, interval
        )

    @classmethod
    def sgd(
        cls,
        lr: float | Mapping[str, float] = 0.01,
        momentum: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        scheduler: AbstractScheduler | SchedulerFactory = _CONSTANT,
        gradient_op: GradientOp = _NO_OP,
        interval: Interval = 'epoch',
        *,
        dampening: float = 0.0,
        base_lr: float | Mapping[str, float] | None = None,
    ) -> LearningSchema:
        """Stochastic gradient descent, optionally with (Nesterov) momentum.

        Raises:
            LearningSchemaError: ``nesterov`` is set without momentum, or with
                dampening.
        """
        lr = _alias_lr(lr, base_lr, 0.01)
        if nesterov and not (momentum > 0 and dampening == 0):
            raise LearningSchemaError(
                'Nesterov momentum needs momentum > 0 and no dampening, got '
                f'momentum={momentum!r}, dampening={dampening!r}: set a momentum '
                'such as 0.9.'
            )
        defaults = {
            'momentum': momentum,
            'weight_decay': weight_decay,
            'nesterov': nesterov,
            **({'dampening': dampening} if dampening else {}),
        }
        return cls(torch.optim.SGD, lr, scheduler, defaults, gradient_op, interval)

    @classmethod
    def r_adam(
        cls,
        lr: float | Mapping[str, float] = 1e-3,
        betas: _Betas = (0.9, 0.999),
        weight_decay: float = 0.0,
        scheduler: AbstractScheduler | SchedulerFactory = _CONSTANT,
        gradient_op: GradientOp = _NO_OP,
        interval: Interval = 'epoch',
        *,
        base_lr: float | Mapping[str, float] | None = None,
    ) -> LearningSchema:
        """RAdam: Adam with a rectified adaptive rate, steadier early on."""
        lr = _alias_lr(lr, base_lr, 1e-3)
        return cls._adam_like(
            torch.optim.RAdam, lr, betas, weight_decay, scheduler, gradient_op, interval
        )

    def __hash__(self) -> int:
        # Mappings are unhashable; equal schemas still hash alike without them.
        return hash((self.optimizer_cls, tuple(self._group_lrs()), self.scheduler))

    def _group_lrs(self) -> list[tuple[str, float]]:
        if isinstance(self.base_lr, Mapping):
            return list(self.base_lr.items())
        return [('', float(self.base_lr))]

    def param_groups(self, module: nn.Module) -> list[dict[str, Any]]:
        """Return the optimizer's parameter groups for ``module``.

        Each group holds ``params``, its ``lr`` and the ``name`` of its
        submodule (``''`` for the single group of a float ``base_lr``, which
        holds every parameter, frozen ones included).

        Raises:
            LearningSchemaError: a name is not a submodule, holds no
                parameters or shares parameters with another group, or some
                trainable parameters are in no group.
        """
        if not isinstance(self.base_lr, Mapping):
            params = list(module.parameters())
            if not params:
                raise LearningSchemaError(
                    f'{type(module).__name__} has no parameters to optimize.'
                )
            return [{'params': params, 'lr': float(self.base_lr), 'name': ''}]
        groups: list[dict[str, Any]] = []
        owner: dict[int, str] = {}
        for name, lr in self.base_lr.items():
            try:
                submodule = module.get_submodule(name)
            except AttributeError as error:
                children = [child for child, _ in module.named_children()]
                raise LearningSchemaError(
                    f'base_lr names {name!r}, which is not a submodule of '
                    f'{type(module).__name__} ({error}). Its direct submodules '
                    f'are {children}; use dotted paths for nested ones.'
                ) from error
            params = list(submodule.parameters())
            if not params:
                raise LearningSchemaError(
                    f'Submodule {name!r} has no parameters: remove it from base_lr.'
                )
            for param in params:
                previous = owner.setdefault(id(param), name)
                if previous != name:
                    raise LearningSchemaError(
                        f'Submodules {previous!r} and {name!r} share parameters, '
                        'so their learning rates conflict. Name disjoint '
                        'submodules in base_lr.'
                    )
            groups.append({'params': params, 'lr': float(lr), 'name': name})
        uncovered = [
            param_name
            for param_name, param in module.named_parameters()
            if param.requires_grad and id(param) not in owner
        ]
        if uncovered:
            tops = sorted({param_name.split('.')[0] for param_name in uncovered})
            missing = MissingParamError(tops, list(self.base_lr))
            missing.args = (  # the original's name, our advice
                f'base_lr gives no learning rate to the trainable parameters '
                f'{uncovered}. Add their submodules (e.g. {tops}) to base_lr, '
                'or freeze them with requires_grad_(False).',
            )
            raise missing
        return groups

    def build_optimizer(self, module: nn.Module) -> torch.optim.Optimizer:
        """Build the optimizer for ``module``, each group at its base rate.

        Raises:
            LearningSchemaError: the groups cannot be formed (see
                ``param_groups``) or the optimizer refuses its settings.
        """
        groups = self.param_groups(module)
        try:
            return self.optimizer_cls(groups, **self.optimizer_defaults)
        except (TypeError, ValueError) as error:
            raise LearningSchemaError(
                f'{self.optimizer_cls.__name__} cannot be built with '
                f'{dict(self.optimizer_defaults)}: {error}'
            ) from error

    @property
    def torch_scheduler(self) -> bool:
        """Whether the schedule is a torch scheduler's factory (it has state)."""
        return not isinstance(self.scheduler, AbstractScheduler)

    def build_lr_scheduler(
        self, optimizer: torch.optim.Optimizer
    ) -> torch.optim.lr_scheduler.LRScheduler | None:
        """Build the torch scheduler on ``optimizer`` (``None`` for a drytorch one).

        Raises:
            LearningSchemaError: the factory fails or builds something else.
        """
        factory = self.scheduler
        if isinstance(factory, AbstractScheduler):
            return None
        try:
            built = factory(optimizer)
        except (TypeError, ValueError) as error:
            raise LearningSchemaError(
                f'The scheduler factory {factory!r} failed on the optimizer: {error}'
            ) from error
        if isinstance(built, torch.optim.lr_scheduler.ReduceLROnPlateau):
            raise LearningSchemaError(_PLATEAU)
        if not isinstance(built, torch.optim.lr_scheduler.LRScheduler):
            raise LearningSchemaError(
                f'The scheduler factory {factory!r} returned {built!r}, not a '
                'torch.optim.lr_scheduler scheduler.'
            )
        return built

    def lr_at(self, epoch: int, factor: float = 1.0) -> list[float]:
        """Return each group's learning rate at ``epoch``, times ``factor``.

        ``epoch`` is the optimizer step with ``interval='step'``. The order is
        that of ``param_groups``, so the rates can be assigned to
        ``optimizer.param_groups`` one by one. A torch scheduler sets the
        rates itself: this returns the base rates then.
        """
        scheduler = self.scheduler
        if not isinstance(scheduler, AbstractScheduler):
            return [lr * factor for _, lr in self._group_lrs()]
        return [scheduler(lr, epoch) * factor for _, lr in self._group_lrs()]

    def describe(self) -> dict[str, Any]:
        """Describe the schema with TOML-friendly values, for run metadata."""
        base_lr: Any = (
            {name: float(lr) for name, lr in self.base_lr.items()}
            if isinstance(self.base_lr, Mapping)
            else float(self.base_lr)
        )
        return {
            'optimizer': _qualified_name(self.optimizer_cls),
            'base_lr': base_lr,
            'optimizer_defaults': _toml_value(self.optimizer_defaults),
            'scheduler': repr(self.scheduler),
            'gradient_op': repr(self.gradient_op),
            'interval': self.interval,
        }


def _alias_lr(
    lr: float | Mapping[str, float],
    base_lr: float | Mapping[str, float] | None,
    default: float,
) -> float | Mapping[str, float]:
    """Return the rate given as ``lr`` or as ``base_lr`` (the original's name)."""
    if base_lr is None:
        return lr
    if lr != default:
        raise LearningSchemaError(
            f'Give the learning rate once: lr={lr!r} and base_lr={base_lr!r} '
            '(base_lr is the original DRYTorch name of lr).'
        )
    return base_lr


_PLATEAU = (
    "torch's ReduceLROnPlateau needs a metric at each step: use the hook "
    'drytorch.lib.hooks.ReduceLROnPlateau(metric=..., monitor=...) instead, '
    'registered in trainer.post_epoch_hooks.'
)


def _check_scheduler(scheduler: object) -> None:
    """Accept a drytorch schedule or a torch scheduler's factory (not a scheduler)."""
    if isinstance(scheduler, AbstractScheduler):
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler):
        raise LearningSchemaError(
            f'scheduler is a torch scheduler already built ({scheduler!r}); pass a '
            'factory that builds it on the optimizer instead, e.g. '
            'functools.partial(OneCycleLR, max_lr=0.1, total_steps=1000).'
        )
    target = getattr(scheduler, 'func', scheduler)  # a functools.partial's class
    if isinstance(target, type) and issubclass(
        target, torch.optim.lr_scheduler.ReduceLROnPlateau
    ):
        raise LearningSchemaError(_PLATEAU)
    if not callable(scheduler) or not _takes_one_argument(scheduler):
        raise LearningSchemaError(
            'scheduler must be a drytorch schedule (an AbstractScheduler from '
            'drytorch.lib.schedulers) or a factory that takes the optimizer and '
            'builds a torch.optim.lr_scheduler scheduler, got '
            f'{scheduler!r}.'
        )


def _takes_one_argument(factory: Callable[..., Any]) -> bool:
    """Whether ``factory(optimizer)`` binds (an unknown signature is accepted)."""
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind(None)
    except TypeError:
        return False
    return True
