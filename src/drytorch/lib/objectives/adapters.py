"""Objects with ``update``/``compute``/``reset`` (torchmetrics) as objectives."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol, TypeGuard, overload

import torch

from drytorch.core.exceptions import ComputedMetricsTypeError, ObjectiveError
from drytorch.lib.objectives.base import Objective, Output, Target, _check_name
from drytorch.lib.objectives.errors import _not_updated_error, _state_error

# What torchmetrics warns when computing with no update since its reset.
_COMPUTE_BEFORE_UPDATE = r'The ``compute`` method of metric .* before the ``update``'


class _StatefulMetric(Protocol):
    """What ``as_objective`` wraps: the torchmetrics-style interface."""

    def update(self, *args: Any, **kwargs: Any) -> Any: ...

    def compute(self) -> Any: ...

    def reset(self) -> Any: ...


class _ProtocolObjective(Objective[Any, Any]):
    """Delegates to an object with update/compute/reset (e.g. torchmetrics).

    Such an object keeps its own state and exposes no per-batch values, so
    ``calculate`` and ``update`` return an empty dict. A torchmetrics metric
    is made to keep its state in its ``state_dict``: see ``_persist_states``.
    """

    def __init__(self, wrapped: _StatefulMetric, name: str) -> None:
        _persist_states(wrapped)
        self.wrapped = wrapped
        self.name = _check_name(name)
        direction = getattr(wrapped, 'higher_is_better', None)
        if not isinstance(direction, bool):
            direction = None
        self._directions: dict[str, bool | None] = {name: direction}

    @property
    def higher_is_better(self) -> Mapping[str, bool | None]:
        """The wrapped metric's ``higher_is_better`` when it is a bool."""
        return MappingProxyType(self._directions)

    def calculate(self, outputs: Any, targets: Any) -> dict[str, torch.Tensor]:
        """Return nothing: the wrapped metric has no side-effect-free batch value."""
        return {}

    def update(self, outputs: Any, targets: Any) -> dict[str, torch.Tensor]:
        """Call the wrapped ``update(outputs, targets)``."""
        self.wrapped.update(outputs, targets)
        self._running.batches += 1
        return {}

    def compute(self) -> dict[str, torch.Tensor]:
        """Return the wrapped ``compute()``: a dict as is, a value under ``name``.

        Raises:
            ComputedBeforeUpdatedError: no batch was seen since the last reset.
        """
        if not self._running.batches:
            raise _not_updated_error(self)
        with warnings.catch_warnings():
            # After load_state_dict torchmetrics counts no update and warns;
            # the batch count above is what tells whether there is a value.
            warnings.filterwarnings('ignore', message=_COMPUTE_BEFORE_UPDATE)
            result = self.wrapped.compute()
        if isinstance(result, Mapping):
            return {str(key): torch.as_tensor(value) for key, value in result.items()}
        return {self.name: torch.as_tensor(result)}

    @property
    def computes_locally(self) -> bool:
        """False: the wrapped metric may synchronise in its ``compute``."""
        return False

    def all_reduce(self) -> None:
        """Sum the batch counts over the processes; sync the wrapped state if needed."""
        super().all_reduce()
        self._reduce_wrapped()

    def _reduce_wrapped(self) -> None:
        """Merge the wrapped state over the processes; torchmetrics does it itself.

        Adapters of libraries whose ``compute`` is local (torcheval) override
        it; every process calls it at the end of a distributed epoch.
        """

    def merge_state(self, other: Objective[Any, Any]) -> None:
        """Merge the state of ``other``'s wrapped metric into this one's.

        Raises:
            ObjectiveError: ``other`` wraps no metric of the same kind, or the
                wrapped metric has no ``merge_state``.
        """
        method = getattr(self.wrapped, 'merge_state', None)
        if not isinstance(other, _ProtocolObjective) or not callable(method):
            raise ObjectiveError(
                f'Cannot merge the state of {other!r} into {self!r}: both must wrap '
                'metrics of one class that has merge_state (torchmetrics, torcheval).'
            )
        if type(self.wrapped).__module__.startswith('torcheval'):
            method([other.wrapped])  # torcheval merges an iterable of metrics
        else:
            method(other.wrapped)
        self._running.batches += other._running.batches

    def reset(self) -> None:
        """Call the wrapped ``reset()``."""
        super().reset()
        self.wrapped.reset()

    def state_dict(self) -> dict[str, Any]:
        """Return the batch count and the wrapped ``state_dict()``.

        A torchmetrics metric's running state is in it, since wrapping made
        it persistent.

        Raises:
            ObjectiveError: the wrapped object has no ``state_dict()``.
        """
        method = getattr(self.wrapped, 'state_dict', None)
        if not callable(method):
            raise ObjectiveError(
                f'{self!r} cannot save its running state: the wrapped object '
                'has no state_dict() / load_state_dict(), so a checkpoint '
                'inside an epoch could not resume it exactly.'
            )
        return {'batches': self._running.batches, 'wrapped': method()}

    def load_state_dict(
        self, state: Mapping[str, Any], *, device: torch.device | str | None = None
    ) -> None:
        """Restore the batch count and call the wrapped ``load_state_dict()``.

        ``device`` is accepted for the objective interface and not used: the
        wrapped state holds tensors, which keep their own device.

        Raises:
            ObjectiveError: ``state`` was not made by ``state_dict``, or the
                wrapped object has no ``load_state_dict()``.
        """
        method = getattr(self.wrapped, 'load_state_dict', None)
        if not callable(method):
            raise _state_error(self, 'the wrapped object has no load_state_dict()')
        if not isinstance(state, Mapping) or {'batches', 'wrapped'} - set(state):
            raise _state_error(self, 'it lacks batches or wrapped')
        method(state['wrapped'])
        self._running.batches = int(state['batches'])

    def __repr__(self) -> str:
        return f'as_objective({self.wrapped!r}, name={self.name!r})'


def _persist_states(wrapped: object) -> None:
    """Put the states of a torchmetrics metric (and its sub-metrics) in its state_dict.

    Torchmetrics registers states as not persistent by default: its
    ``state_dict()`` then leaves them out, and a checkpoint taken inside an
    epoch would resume from an empty metric. ``persistent(True)``, its public
    switch, is called on every module that has it, since a collection or a
    wrapper holds its states in sub-metrics. The user's metric is changed: its
    own ``state_dict()`` (or that of a module holding it) includes them too.
    """
    if not isinstance(wrapped, torch.nn.Module):
        return
    for module in wrapped.modules():
        persistent = getattr(module, 'persistent', None)
        if callable(persistent):
            persistent(True)


def _follows_protocol(
    obj: object,
) -> TypeGuard[Objective[Any, Any] | _StatefulMetric]:
    if isinstance(obj, Objective):
        return True
    return all(
        callable(getattr(obj, method, None))
        for method in ('update', 'compute', 'reset')
    )


@overload
def as_objective(
    obj: Objective[Output, Target], name: str | None = None
) -> Objective[Output, Target]: ...


@overload
def as_objective(
    obj: _StatefulMetric, name: str | None = None
) -> Objective[Any, Any]: ...


def as_objective(
    obj: Objective[Output, Target] | _StatefulMetric, name: str | None = None
) -> Objective[Output, Target] | Objective[Any, Any]:
    """Return ``obj`` as an objective, wrapping a torchmetrics-style metric.

    An ``Objective`` is returned as is. Any other object with ``update(outputs,
    targets)``, ``compute()`` (a tensor, a number or a dict of them) and
    ``reset()`` is wrapped so that its calls are delegated to it.

    Args:
        obj: the objective or metric.
        name: the key of a non-dict ``compute()`` result; the class name by
            default.

    Raises:
        ObjectiveError: ``obj`` has no update, compute or reset method.
    """
    if isinstance(obj, Objective):
        return obj
    if not _follows_protocol(obj):
        raise ObjectiveError(
            f'Got {obj!r} ({type(obj).__name__}), which is not an objective: pass '
            'a drytorch Metric, MetricCollection or Loss, or an object with '
            'update(outputs, targets), compute() and reset() such as a '
            'torchmetrics metric. Wrap a function in Metric(fn, name).'
        )
    return _ProtocolObjective(obj, name if name is not None else type(obj).__name__)


def compute_metrics(
    objective: Objective[Any, Any] | _StatefulMetric,
) -> dict[str, float]:
    """Compute an objective, or a torchmetrics-style metric, as Python floats.

    Reading the values waits for the device once.

    Args:
        objective: an objective, or an object with ``compute()`` returning a
            tensor or number (named after its class) or a mapping of them.

    Raises:
        ComputedMetricsTypeError: ``compute()`` returned something else.
        ObjectiveError: a value has more than one element.
    """
    computed = objective.compute()
    if isinstance(computed, Mapping):
        items = list(computed.items())
    elif isinstance(computed, torch.Tensor | int | float):
        items = [(getattr(objective, 'name', type(objective).__name__), computed)]
    else:
        raise ComputedMetricsTypeError(type(computed))
    result: dict[str, float] = {}
    for name, value in items:
        if isinstance(value, torch.Tensor):
            if value.numel() != 1:
                raise ObjectiveError(
                    f'{name!r} has {value.numel()} elements, not one: compute '
                    'it yourself to read a vector metric.'
                )
            result[str(name)] = float(value.item())
        elif isinstance(value, int | float):
            result[str(name)] = float(value)
        else:
            raise ComputedMetricsTypeError(type(value))
    return result
