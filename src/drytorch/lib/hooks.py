"""Hooks that run before or after each training epoch.

A hook is any callable taking the trainer. Stateful hooks also offer
``state_dict()`` and ``load_state_dict()``; the trainer saves that state in its
checkpoints, so early-stopping counters and plateau schedules continue exactly
after a resume.

The original DRYTorch's hook objects are here too: ``Hook`` (a named hook
remembering its parameters, with ``bind``), ``StaticHook`` and
``static_hook_class`` (hooks that take no argument), ``CallEvery`` and the
decorator form ``@call_every(5)``. The callbacks (``callbacks``) and metric
monitors (``monitors``) live in sibling modules and are importable from here.
"""

from __future__ import annotations

import abc
import functools
import inspect
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, overload

from typing_extensions import TypeVar  # a torch dependency; defaults for 3.11

from drytorch.core import exceptions
from drytorch.lib.callbacks import (
    ChangeSchedulerOnPlateauCallback,
    EarlyStoppingCallback,
    PruneCallback,
    ReduceLROnPlateau,
    RestartScheduleOnPlateau,
)
from drytorch.lib.monitors import MetricExtractor, MetricMonitor, MetricTracker

if TYPE_CHECKING:
    from drytorch.lib.train import Trainer

__all__ = [
    'CallEvery',
    'ChangeSchedulerOnPlateauCallback',
    'EarlyStoppingCallback',
    'Hook',
    'HookRegistry',
    'MetricExtractor',
    'MetricMonitor',
    'MetricTracker',
    'PruneCallback',
    'ReduceLROnPlateau',
    'RestartScheduleOnPlateau',
    'StatefulHook',
    'StaticHook',
    'TrainerHook',
    'call_every',
    'saving_hook',
    'static_hook_class',
]

T = TypeVar('T', default=Any)
_R = TypeVar('_R')
Output = TypeVar('Output', default=Any)
Target = TypeVar('Target', default=Any)
HookFn = Callable[[T], None]
"""What a registry runs: any callable taking the instance (the trainer)."""


class StatefulHook(Protocol):
    """A hook whose state belongs in checkpoints."""

    def __call__(self, trainer: Trainer[Any, Any, Any]) -> None:
        """Act on the trainer."""

    def state_dict(self) -> dict[str, Any]:
        """Return the state to save, as plain data."""
        ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a state returned by ``state_dict``."""


class HookRegistry(Generic[T]):
    """An ordered list of hooks run one after the other."""

    def __init__(self) -> None:
        self._hooks: list[HookFn[T]] = []

    def register(self, hook: HookFn[T]) -> None:
        """Add a hook; it runs after those already registered."""
        if not callable(hook):
            raise TypeError(f'A hook must be callable with the trainer, got {hook!r}.')
        self._hooks.append(hook)

    def register_all(self, hooks: Iterable[HookFn[T]]) -> None:
        """Add several hooks, in order."""
        for hook in hooks:
            self.register(hook)

    def execute(self, instance: T) -> None:
        """Run every hook on ``instance``."""
        for hook in self._hooks:
            hook(instance)

    def check(self, instance: T) -> None:
        """Let every hook with a ``check`` method refuse ``instance`` up front.

        The trainer calls it when training starts, so that a hook that cannot
        work (a metric the runner does not compute) fails before an epoch
        is spent, not after.
        """
        for hook in self._hooks:
            method = getattr(hook, 'check', None)
            if callable(method):
                method(instance)

    def state_dict(self) -> list[dict[str, Any] | None]:
        """Return each hook's state (``None`` for stateless hooks), in order."""
        return [
            hook.state_dict() if hasattr(hook, 'state_dict') else None
            for hook in self._hooks
        ]

    def load_state_dict(self, states: list[dict[str, Any] | None]) -> None:
        """Restore the hooks' states, saved by ``state_dict``.

        Raises:
            CheckpointError: the hooks differ from those that were saved.
        """
        if len(states) != len(self._hooks):
            raise exceptions.CheckpointError(
                f'The checkpoint holds the state of {len(states)} hooks, but '
                f'{len(self._hooks)} are registered: register the same hooks, in '
                'the same order, before loading.'
            )
        for hook, state in zip(self._hooks, states, strict=True):
            if state is not None and hasattr(hook, 'load_state_dict'):
                hook.load_state_dict(state)

    @property
    def hooks(self) -> list[HookFn[T]]:
        """The registered hooks, in order (the list itself)."""
        return self._hooks

    def __iter__(self) -> Iterator[HookFn[T]]:
        return iter(self._hooks)

    def __len__(self) -> int:
        return len(self._hooks)

    def describe(self) -> list[str]:
        """Return the hooks' descriptions."""
        return [repr(hook) for hook in self._hooks]


class TrainerHook(abc.ABC, Generic[Output, Target]):
    """Base of a hook object: subclass and implement ``__call__(trainer)``."""

    @abc.abstractmethod
    def __call__(self, trainer: Trainer[Any, Target, Output]) -> None:
        """Act on the trainer."""


def _delegate_check(hook: object, trainer: Any) -> None:
    method = getattr(hook, 'check', None)
    if callable(method):
        method(trainer)


class Hook(Generic[T]):
    """A named hook that remembers its parameters, composable with ``bind``.

    Args:
        wrapped: what to call with the instance (the trainer).
        base_hook_name: the name shown in descriptions (default: the
            function's name).
        parameters: the options the hook was made with, for descriptions.
    """

    def __init__(
        self,
        wrapped: Callable[[T], Any],
        base_hook_name: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        if not callable(wrapped):
            raise TypeError(f'A hook wraps a callable, got {wrapped!r}.')
        self.wrapped = wrapped
        self.base_hook_name = base_hook_name or getattr(
            wrapped, '__name__', type(wrapped).__name__
        )
        self.parameters: dict[str, Any] = dict(parameters or {})

    def __call__(self, instance: T) -> None:
        """Call the wrapped function with ``instance``."""
        self.wrapped(instance)

    def bind(self, transform: Callable[[Hook[T]], _R]) -> _R:
        """Apply ``transform`` to this hook: ``hook.bind(call_every(5))``."""
        return transform(self)

    def check(self, instance: T) -> None:
        """Let the wrapped hook refuse ``instance`` before training."""
        _delegate_check(self.wrapped, instance)

    def state_dict(self) -> dict[str, Any]:
        """Return the wrapped hook's state, if it has one."""
        inner = getattr(self.wrapped, 'state_dict', None)
        return {'hook': inner()} if callable(inner) else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the wrapped hook's state."""
        inner = getattr(self.wrapped, 'load_state_dict', None)
        if callable(inner) and 'hook' in state:
            inner(state['hook'])

    def __repr__(self) -> str:
        options = ', '.join(f'{k}={v!r}' for k, v in self.parameters.items())
        return f'{self.base_hook_name}({options})'


class StaticHook(Hook[Any]):
    """A hook that calls a function taking no argument, ignoring the trainer.

    Args:
        wrapped: the function to call.
        base_hook_name: the name shown in descriptions.
        parameters: the options the hook was made with.
    """

    def __init__(
        self,
        wrapped: Callable[[], Any],
        base_hook_name: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(lambda _: wrapped(), base_hook_name, parameters)
        self.base_hook_name = base_hook_name or getattr(
            wrapped, '__name__', type(wrapped).__name__
        )
        self.static = wrapped

    def __call__(self, instance: object) -> None:
        """Call the wrapped function."""
        self.static()

    def check(self, instance: object) -> None:
        """Nothing to check: the trainer is not read."""

    def state_dict(self) -> dict[str, Any]:
        """Return the wrapped object's state, if it has one."""
        inner = getattr(self.static, 'state_dict', None)
        return {'hook': inner()} if callable(inner) else {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the wrapped object's state."""
        inner = getattr(self.static, 'load_state_dict', None)
        if callable(inner) and 'hook' in state:
            inner(state['hook'])


def static_hook_class(
    cls: Callable[..., Callable[[], Any]],
) -> Callable[..., StaticHook]:
    """Turn a class whose instances are called without arguments into a hook factory.

    ``@static_hook_class`` on ``class Report: __init__(self, text)`` and
    ``__call__(self)`` makes ``Report('done')`` a ``StaticHook`` named
    ``Report`` that remembers ``text='done'``.
    """
    try:
        signature: inspect.Signature | None = inspect.signature(cls)
    except (TypeError, ValueError):
        signature = None

    @functools.wraps(cls, updated=())  # name and doc, not the class dict
    def factory(*args: Any, **kwargs: Any) -> StaticHook:
        parameters: dict[str, Any] = {}
        if signature is not None:
            bound = signature.bind(*args, **kwargs)
            parameters = dict(bound.arguments)
        return StaticHook(
            cls(*args, **kwargs), getattr(cls, '__name__', None), parameters
        )

    return factory


class CallEvery(Hook[T]):
    """Runs a hook every ``interval`` epochs from ``start``, and at the last.

    The last epoch is the one where training stops early (a hook terminated
    it) or, when the trainer tells it (``end_epoch``), the last of the
    ``train()`` call; ``call_every(interval, hook)`` (our form) skips it.

    Args:
        wrapped: the hook to run.
        parameters: the options, for descriptions.
        interval: the epochs between calls, at least 1.
        start: the first epoch called (and the origin of the intervals).
        at_last_epoch: whether to run at the last epoch too.
    """

    def __init__(
        self,
        wrapped: Callable[[T], Any],
        parameters: Mapping[str, Any] | None = None,
        interval: int = 1,
        start: int = 0,
        *,
        at_last_epoch: bool = True,
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ValueError(f'call_every needs an interval >= 1, got {interval!r}.')
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise ValueError(f'call_every needs a start >= 0, got {start!r}.')
        super().__init__(wrapped, 'call_every', parameters)
        self.interval = interval
        self.start = start
        self.at_last_epoch = at_last_epoch

    @property
    def hook(self) -> Callable[[T], Any]:
        """The hook run."""
        return self.wrapped

    def __call__(self, instance: T) -> None:
        """Run the hook when the epoch is one of those chosen."""
        trainer: Any = instance
        epoch = trainer.model.epoch
        chosen = epoch >= self.start and (epoch - self.start) % self.interval == 0
        last = self.at_last_epoch and (
            trainer.terminated or epoch == getattr(trainer, 'end_epoch', None)
        )
        if chosen or last:
            self.wrapped(instance)

    def __repr__(self) -> str:
        return f'call_every({self.interval}, {self.wrapped!r}, start={self.start})'


@overload
def call_every(
    interval: int, hook: Callable[[T], Any], start: int = 0
) -> CallEvery[T]: ...


@overload
def call_every(
    interval: int, *, start: int = 0
) -> Callable[[Callable[[T], Any]], CallEvery[T]]: ...


def call_every(
    interval: int, hook: Any = None, start: int = 0
) -> CallEvery[Any] | Callable[[Callable[[Any], Any]], CallEvery[Any]]:
    """Run a hook every ``interval`` epochs from ``start``.

    ``call_every(interval, hook, start=0)`` (ours) returns the hook, run at
    exactly those epochs. Without a hook, as in the original DRYTorch,
    ``call_every(interval, start=0)`` returns a decorator, for ``@call_every(5)``
    on a function or ``hook.bind(call_every(5))``; that hook runs at the last
    epoch too (see ``CallEvery``). An integer second argument is ``start``.
    """
    if hook is not None and not callable(hook):
        if isinstance(hook, int) and not isinstance(hook, bool) and start == 0:
            hook, start = None, hook  # the original's call_every(interval, start)
        else:
            raise TypeError(f'call_every() runs a callable hook, got {hook!r}.')
    if hook is not None:
        return CallEvery(
            hook,
            {'interval': interval, 'start': start},
            interval,
            start,
            at_last_epoch=False,
        )
    CallEvery(lambda _: None, None, interval, start)  # refuse bad options now

    def decorator(wrapped: Callable[[Any], Any]) -> CallEvery[Any]:
        return CallEvery(
            wrapped, {'interval': interval, 'start': start}, interval, start
        )

    return decorator


def _save_checkpoint(trainer: Trainer[Any, Any, Any]) -> None:
    trainer.save_checkpoint()


class _SavingHook(Hook['Trainer[Any, Any, Any]']):
    """Saves a checkpoint of the trainer."""

    def __repr__(self) -> str:
        return 'saving_hook'


saving_hook: Hook[Trainer[Any, Any, Any]] = _SavingHook(_save_checkpoint, 'saving_hook')
"""Saves a checkpoint; ``call_every(n, saving_hook)`` or
``saving_hook.bind(call_every(n))``."""
