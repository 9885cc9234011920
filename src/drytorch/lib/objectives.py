"""Losses and metrics with exact aggregation over an epoch, and a loss algebra.

An objective computes named values for one batch (``calculate``) and keeps
running sums of them on their device (``update``), so the mean over an epoch
(``compute``) is exact even when batches have different sizes, and no batch
forces the host to wait for the accelerator.

Example:
    >>> mse = Loss(lambda o, t: ((o - t) ** 2).mean(), 'MSE')
    >>> mae = Loss(lambda o, t: (o - t).abs().mean(), 'MAE')
    >>> loss = mse**2 + 0.5 * mae
    >>> loss.formula
    '[MSE]^2 + 0.5 x [MAE]'
"""

from __future__ import annotations

import abc
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import (
    Any,
    Generic,
    NamedTuple,
    Protocol,
    Self,
    TypeGuard,
    TypeVar,
    cast,
    overload,
)

import torch

from drytorch.core.exceptions import ComputedBeforeUpdatedError, ObjectiveError

__all__ = [
    'CompositionalLoss',
    'Loss',
    'LossBase',
    'LossWithMetrics',
    'Metric',
    'MetricCollection',
    'Objective',
    'as_objective',
]

Output = TypeVar('Output', contravariant=True)
Target = TypeVar('Target', contravariant=True)

COMBINED_LOSS = 'Combined Loss'
"""The key under which a ``CompositionalLoss`` reports its combined value."""

_NO_DIRECTIONS: Mapping[str, bool | None] = MappingProxyType({})


class _StatefulMetric(Protocol):
    """What ``as_objective`` wraps: the torchmetrics-style interface."""

    def update(self, *args: Any, **kwargs: Any) -> Any: ...

    def compute(self) -> Any: ...

    def reset(self) -> Any: ...


def _accumulator_dtype(device: torch.device) -> torch.dtype:
    # float64 keeps long epochs exact; MPS has no float64.
    return torch.float32 if device.type == 'mps' else torch.float64


def _shape_error(name: str, value: torch.Tensor) -> ObjectiveError:
    return ObjectiveError(
        f'Loss or metric {name!r} must be a scalar or a per-sample vector '
        f'(0 or 1 dimensions), got a tensor of shape {tuple(value.shape)}. '
        'Reduce every dimension except the batch one.'
    )


def _type_error(name: str, value: object) -> ObjectiveError:
    return ObjectiveError(
        f'Loss or metric {name!r} must be a torch.Tensor, got '
        f'{type(value).__name__}. Return the tensor itself (no .item()): '
        'converting it waits for the device at every batch.'
    )


def _not_updated_error(objective: object) -> ComputedBeforeUpdatedError:
    return ComputedBeforeUpdatedError(
        f'{objective!r} has no value yet: call update(outputs, targets) on at '
        'least one batch first (none was seen since creation or reset()).'
    )


def _repeated(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    repeated = []
    for name in names:
        if name in seen:
            repeated.append(name)
        seen.add(name)
    return repeated


def _duplicate_error(names: Iterable[str]) -> ObjectiveError:
    listed = ', '.join(repr(name) for name in sorted(set(names)))
    return ObjectiveError(
        f'More than one objective reports {listed}. Give each metric and loss '
        'a distinct name.'
    )


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ObjectiveError(
            f'An objective name must be a non-empty str, got {name!r}.'
        )
    return name


def _describe(fn: object) -> str:
    return getattr(fn, '__qualname__', None) or repr(fn)


def _state_error(objective: object, problem: str) -> ObjectiveError:
    return ObjectiveError(
        f'Cannot load the state of {objective!r}: {problem}. Pass the dict '
        'returned by state_dict() of the same objective.'
    )


def _own_state(
    objective: object, state: Mapping[str, Any], device: torch.device | str | None
) -> tuple[dict[str, torch.Tensor], dict[str, int], int]:
    """Check and copy the base part of an objective's state."""
    if not isinstance(state, Mapping):
        raise _state_error(objective, f'got {type(state).__name__}, not a dict')
    missing = {'sums', 'counts', 'batches'} - set(state)
    if missing:
        raise _state_error(objective, f'it lacks {sorted(missing)}')
    sums, counts = state['sums'], state['counts']
    if not isinstance(sums, Mapping) or not isinstance(counts, Mapping):
        raise _state_error(objective, 'sums and counts must be dicts')
    if list(sums) != list(counts):
        raise _state_error(objective, 'sums and counts name different values')
    target = torch.device('cpu' if device is None else device)
    copied: dict[str, torch.Tensor] = {}
    for name, total in sums.items():
        if isinstance(total, float | int) and not isinstance(total, bool):
            dtype = _accumulator_dtype(target)
            copied[str(name)] = torch.tensor(float(total), dtype=dtype, device=target)
        elif isinstance(total, torch.Tensor) and total.ndim == 0:  # earlier versions
            copied[str(name)] = total.detach().clone()
        else:
            raise _state_error(objective, f'the sum of {name!r} is not a number')
    return copied, {str(k): int(v) for k, v in counts.items()}, int(state['batches'])


class Objective(abc.ABC, Generic[Output, Target]):
    """Named per-batch values and their exact running means.

    Subclasses implement only ``calculate``. Each value it returns is either a
    0-dim tensor (a batch-level value: the epoch value is the mean over
    batches) or a 1-dim per-sample vector (the epoch value is the mean over
    samples, exact for uneven batches).

    The running sums stay on the values' device, detached, in float64
    (float32 on MPS), and ``update`` never reads a value on the host, so it
    adds no synchronization to the training loop. ``state_dict`` and
    ``load_state_dict`` save and restore them, so an epoch interrupted by a
    checkpoint ends with the same means.
    """

    _sums: dict[str, torch.Tensor]
    _counts: dict[str, int]
    _batches: int

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        """Create the objective with empty running sums."""
        # The state lives here so that subclasses need not call super().__init__.
        self = super().__new__(cls)
        self._sums = {}
        self._counts = {}
        self._batches = 0
        return self

    @abc.abstractmethod
    def calculate(self, outputs: Output, targets: Target) -> dict[str, torch.Tensor]:
        """Return this batch's values by name, leaving the running means alone.

        Args:
            outputs: the model's outputs for the batch.
            targets: the batch's targets.

        Returns:
            0-dim tensors (batch values) or 1-dim tensors (per-sample values).
        """

    @property
    def higher_is_better(self) -> Mapping[str, bool | None]:
        """Whether a larger value is better, by name (None when unknown)."""
        return _NO_DIRECTIONS

    def update(self, outputs: Output, targets: Target) -> dict[str, torch.Tensor]:
        """Add this batch to the running means and return its values.

        Args:
            outputs: the model's outputs for the batch.
            targets: the batch's targets.

        Returns:
            The values from ``calculate``, untouched (still in the graph).

        Raises:
            ObjectiveError: a value is not a tensor or has 2 or more dimensions.
        """
        calculated = self.calculate(outputs, targets)
        sums = self._sums
        counts = self._counts
        for name, value in calculated.items():
            if not isinstance(value, torch.Tensor):
                raise _type_error(name, value)
            ndim = value.ndim
            total = sums.get(name)
            if ndim == 0:
                if total is None:
                    dtype = _accumulator_dtype(value.device)
                    sums[name] = value.detach().to(dtype, copy=True)
                    counts[name] = 1
                else:
                    total.add_(value.detach() if value.requires_grad else value)
                    counts[name] += 1
            elif ndim == 1:
                if total is None:
                    dtype = _accumulator_dtype(value.device)
                    sums[name] = value.detach().sum(dtype=dtype)
                    counts[name] = value.shape[0]
                else:
                    total.add_(value.detach().sum(dtype=total.dtype))
                    counts[name] += value.shape[0]
            else:
                raise _shape_error(name, value)
        self._batches += 1
        return calculated

    def compute(self) -> dict[str, torch.Tensor]:
        """Return the means since the last reset, as 0-dim tensors on the device.

        Raises:
            ComputedBeforeUpdatedError: no batch was seen since the last reset.
        """
        if not self._batches:
            raise _not_updated_error(self)
        counts = self._counts
        return {name: total / counts[name] for name, total in self._sums.items()}

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._sums = {}
        self._counts = {}
        self._batches = 0

    def state_dict(self) -> dict[str, Any]:
        """Return the running sums and counts since the last reset, as numbers.

        A checkpoint taken inside an epoch saves it, so that the epoch's
        metrics after resuming equal those of an uninterrupted run. The sums
        are Python floats, which hold the float64 (or float32) accumulators
        exactly; numbers rather than tensors because each tensor is a record
        of its own in a checkpoint file, slower to write than the whole
        pickled dict. Reading them waits for the device, as saving the
        model's weights does anyway. Counts are ints.
        """
        return {
            'sums': {name: total.item() for name, total in self._sums.items()},
            'counts': dict(self._counts),
            'batches': self._batches,
        }

    def load_state_dict(
        self, state: Mapping[str, Any], *, device: torch.device | str | None = None
    ) -> None:
        """Continue from the running sums saved by ``state_dict``.

        Args:
            state: from ``state_dict()``.
            device: where the values to come will be, and so the sums (CPU
                by default). Sums saved as tensors by earlier versions stay
                on their own device.

        Raises:
            ObjectiveError: ``state`` was not made by ``state_dict``.
        """
        sums, counts, batches = _own_state(self, state, device)
        self._sums = sums
        self._counts = counts
        self._batches = batches

    def __or__(self, other: object) -> MetricCollection[Output, Target]:
        """Combine with another objective (or a torchmetrics-style metric)."""
        if not _follows_protocol(other):
            return NotImplemented
        return MetricCollection(self, other)

    def __ror__(self, other: object) -> MetricCollection[Output, Target]:
        """Combine a torchmetrics-style metric on the left with this objective."""
        if not _follows_protocol(other):
            return NotImplemented
        return MetricCollection(other, self)

    def __repr__(self) -> str:
        return f'{type(self).__name__}()'


class Metric(Objective[Output, Target]):
    """A metric computed by a function of the outputs and targets.

    Args:
        fn: returns a 0-dim tensor (batch value) or a 1-dim per-sample vector.
        name: the key of the value.
        higher_is_better: the metric's direction; None when unknown.
    """

    def __init__(
        self,
        fn: Callable[[Output, Target], torch.Tensor],
        name: str,
        higher_is_better: bool | None = None,
    ) -> None:
        if not callable(fn):
            raise ObjectiveError(f'Metric needs a callable, got {fn!r}.')
        self.fn = fn
        self.name = _check_name(name)
        self._directions: dict[str, bool | None] = {name: higher_is_better}

    @property
    def higher_is_better(self) -> Mapping[str, bool | None]:
        """The metric's direction under its name."""
        return MappingProxyType(self._directions)

    def calculate(self, outputs: Output, targets: Target) -> dict[str, torch.Tensor]:
        """Return ``{name: fn(outputs, targets)}``."""
        return {self.name: self.fn(outputs, targets)}

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(name={self.name!r}, fn={_describe(self.fn)}, '
            f'higher_is_better={self._directions[self.name]!r})'
        )


class _ProtocolObjective(Objective[Any, Any]):
    """Delegates to an object with update/compute/reset (e.g. torchmetrics).

    Such an object keeps its own state and exposes no per-batch values, so
    ``calculate`` and ``update`` return an empty dict.
    """

    def __init__(self, wrapped: _StatefulMetric, name: str) -> None:
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
        self._batches += 1
        return {}

    def compute(self) -> dict[str, torch.Tensor]:
        """Return the wrapped ``compute()``: a dict as is, a value under ``name``.

        Raises:
            ComputedBeforeUpdatedError: no batch was seen since the last reset.
        """
        if not self._batches:
            raise _not_updated_error(self)
        result = self.wrapped.compute()
        if isinstance(result, Mapping):
            return {str(key): torch.as_tensor(value) for key, value in result.items()}
        return {self.name: torch.as_tensor(result)}

    def reset(self) -> None:
        """Call the wrapped ``reset()``."""
        super().reset()
        self.wrapped.reset()

    def state_dict(self) -> dict[str, Any]:
        """Return the batch count and the wrapped ``state_dict()``.

        Torchmetrics metrics include their running state only when it is
        persistent (``metric.persistent(True)``).

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
        return {'batches': self._batches, 'wrapped': method()}

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
        self._batches = int(state['batches'])

    def __repr__(self) -> str:
        return f'as_objective({self.wrapped!r}, name={self.name!r})'


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
            f'{obj!r} is not an Objective and lacks update(outputs, targets), '
            'compute() or reset(): wrap its function in Metric(fn, name) instead.'
        )
    return _ProtocolObjective(obj, name if name is not None else type(obj).__name__)


class MetricCollection(Objective[Output, Target]):
    """Several objectives updated, computed and reset together.

    The values of the objectives are merged in order; nested collections are
    flattened. The collection keeps its own running means, so an objective
    shared by two collections (say, for training and validation) does not mix
    their batches. Torchmetrics-style members keep their state themselves.

    Args:
        objectives: objectives, or objects with update/compute/reset.

    Raises:
        ObjectiveError: two objectives report the same name.
    """

    def __init__(
        self, *objectives: Objective[Output, Target] | _StatefulMetric
    ) -> None:
        members: list[Objective[Output, Target]] = []
        for objective in objectives:
            if isinstance(objective, MetricCollection):
                members.extend(objective.objectives)
            else:
                members.append(as_objective(objective))
        self.objectives: tuple[Objective[Output, Target], ...] = tuple(members)
        self._native = tuple(
            member for member in members if not isinstance(member, _ProtocolObjective)
        )
        self._delegates = tuple(
            member for member in members if isinstance(member, _ProtocolObjective)
        )
        self._delegate_positions: list[int] = []
        known = [member.higher_is_better for member in members]
        if duplicates := _repeated(name for names in known for name in names):
            raise _duplicate_error(duplicates)
        directions: dict[str, bool | None] = {}
        for member_directions in known:
            directions.update(member_directions)
        self._directions = directions

    @property
    def higher_is_better(self) -> Mapping[str, bool | None]:
        """The directions of all members."""
        return MappingProxyType(self._directions)

    def calculate(self, outputs: Output, targets: Target) -> dict[str, torch.Tensor]:
        """Merge the members' values, in order.

        Raises:
            ObjectiveError: two members returned the same name.
        """
        merged: dict[str, torch.Tensor] = {}
        parts = []
        expected = 0
        if self._delegates:
            # Remember where the delegated values go, to keep compute()'s order.
            positions = []
            for member in self.objectives:
                if isinstance(member, _ProtocolObjective):
                    positions.append(expected)
                    continue
                part = member.calculate(outputs, targets)
                parts.append(part)
                expected += len(part)
                merged.update(part)
            self._delegate_positions = positions
        else:
            for member in self._native:
                part = member.calculate(outputs, targets)
                parts.append(part)
                expected += len(part)
                merged.update(part)
        if len(merged) != expected:
            raise _duplicate_error(_repeated(name for part in parts for name in part))
        return merged

    def update(self, outputs: Output, targets: Target) -> dict[str, torch.Tensor]:
        """Update the running means and every torchmetrics-style member."""
        calculated = super().update(outputs, targets)
        for delegate in self._delegates:
            delegate.update(outputs, targets)
        return calculated

    def compute(self) -> dict[str, torch.Tensor]:
        """Return every member's mean, in the members' order.

        Raises:
            ComputedBeforeUpdatedError: no batch was seen since the last reset.
        """
        own = super().compute()
        if not self._delegates:
            return own
        items = list(own.items())
        start = 0
        ordered: list[tuple[str, torch.Tensor]] = []
        for delegate, position in zip(
            self._delegates, self._delegate_positions, strict=True
        ):
            ordered.extend(items[start:position])
            ordered.extend(delegate.compute().items())
            start = position
        ordered.extend(items[start:])
        if duplicates := _repeated(name for name, _ in ordered):
            raise _duplicate_error(duplicates)
        return dict(ordered)

    def reset(self) -> None:
        """Forget every batch, in the torchmetrics-style members too."""
        super().reset()
        for delegate in self._delegates:
            delegate.reset()

    def state_dict(self) -> dict[str, Any]:
        """Return the running sums, and the torchmetrics-style members' states."""
        state = super().state_dict()
        if self._delegates:
            state['delegates'] = [delegate.state_dict() for delegate in self._delegates]
            state['delegate_positions'] = list(self._delegate_positions)
        return state

    def load_state_dict(
        self, state: Mapping[str, Any], *, device: torch.device | str | None = None
    ) -> None:
        """Restore the state saved by ``state_dict``, members included.

        Args:
            state: from ``state_dict()``.
            device: where the sums go, as in ``Objective.load_state_dict``;
                the torchmetrics-style members restore theirs themselves.

        Raises:
            ObjectiveError: ``state`` was not made by ``state_dict`` of a
                collection with the same members.
        """
        own = _own_state(self, state, device)
        delegates = state.get('delegates', [])
        if len(delegates) != len(self._delegates):
            raise _state_error(
                self,
                f'it holds {len(delegates)} torchmetrics-style members, '
                f'this collection {len(self._delegates)}',
            )
        for delegate, delegate_state in zip(self._delegates, delegates, strict=True):
            delegate.load_state_dict(delegate_state)
        self._sums, self._counts, self._batches = own
        self._delegate_positions = [int(p) for p in state.get('delegate_positions', [])]

    def __repr__(self) -> str:
        members = ', '.join(repr(member) for member in self.objectives)
        return f'{type(self).__name__}({members})'


class LossBase(Objective[Output, Target]):
    """A loss: an objective whose value under ``name`` is minimized.

    Calling the loss updates its running means and returns the value to
    backpropagate. Losses combine with numbers and other losses through
    ``+ - * / **`` into a ``CompositionalLoss``, and ``loss | metrics`` adds
    metrics to report alongside.

    Attributes:
        name: the key of the value to minimize.
        formula: how the loss is built from named losses, e.g. ``[MSE]``.
    """

    name: str
    formula: str

    @property
    def higher_is_better(self) -> Mapping[str, bool | None]:
        """False for the loss."""
        return MappingProxyType({self.name: False})

    def forward(self, outputs: Output, targets: Target) -> torch.Tensor:
        """Update the running means and return the loss, attached to the graph.

        A per-sample loss vector is averaged; a batch loss is returned as is.

        Raises:
            ObjectiveError: the loss has 2 or more dimensions or is missing.
        """
        calculated = self.update(outputs, targets)
        try:
            value = calculated[self.name]
        except KeyError:
            raise ObjectiveError(
                f'{self!r} returned no value under its name {self.name!r}, '
                f'only {list(calculated)}.'
            ) from None
        return value if value.ndim == 0 else value.mean()

    def __call__(self, outputs: Output, targets: Target) -> torch.Tensor:
        """Call ``forward``."""
        return self.forward(outputs, targets)

    def __or__(self, other: object) -> LossWithMetrics[Output, Target]:
        """Report metrics alongside this loss; the result is still a loss."""
        if not _follows_protocol(other):
            return NotImplemented
        return LossWithMetrics(self, other)

    def __add__(
        self, other: LossBase[Output, Target] | float
    ) -> CompositionalLoss[Output, Target]:
        return _binary('+', self, other)

    def __radd__(self, other: float) -> CompositionalLoss[Output, Target]:
        return _binary('+', other, self)

    def __sub__(
        self, other: LossBase[Output, Target] | float
    ) -> CompositionalLoss[Output, Target]:
        return _binary('-', self, other)

    def __rsub__(self, other: float) -> CompositionalLoss[Output, Target]:
        return _binary('-', other, self)

    def __mul__(
        self, other: LossBase[Output, Target] | float
    ) -> CompositionalLoss[Output, Target]:
        return _binary('x', self, other)

    def __rmul__(self, other: float) -> CompositionalLoss[Output, Target]:
        return _binary('x', other, self)

    def __truediv__(
        self, other: LossBase[Output, Target] | float
    ) -> CompositionalLoss[Output, Target]:
        return _binary('/', self, other)

    def __rtruediv__(self, other: float) -> CompositionalLoss[Output, Target]:
        return _binary('/', other, self)

    def __pow__(
        self, other: LossBase[Output, Target] | float
    ) -> CompositionalLoss[Output, Target]:
        return _binary('^', self, other)

    def __rpow__(self, other: float) -> CompositionalLoss[Output, Target]:
        return _binary('^', other, self)

    def __neg__(self) -> CompositionalLoss[Output, Target]:
        term = _term(self)
        assert term is not None  # a loss is always a term
        operand = _parenthesize(term.formula, term.precedence <= _NEG)
        return CompositionalLoss._from_term(
            _Term(term.leaves, _Negative(term.evaluate), f'-{operand}', _NEG)
        )


class Loss(LossBase[Output, Target]):
    """A loss computed by a function of the outputs and targets.

    Args:
        fn: returns a 0-dim loss or a 1-dim per-sample loss vector.
        name: the key of the value; the formula is ``[name]``.
    """

    def __init__(self, fn: Callable[[Output, Target], torch.Tensor], name: str) -> None:
        if not callable(fn):
            raise ObjectiveError(f'Loss needs a callable, got {fn!r}.')
        self.fn = fn
        self.name = _check_name(name)
        self.formula = f'[{name}]'

    def calculate(self, outputs: Output, targets: Target) -> dict[str, torch.Tensor]:
        """Return ``{name: fn(outputs, targets)}``."""
        return {self.name: self.fn(outputs, targets)}

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name={self.name!r}, fn={_describe(self.fn)})'


def _batch_value(name: str, value: object) -> torch.Tensor:
    # The value a component contributes to a combined loss for one batch.
    if not isinstance(value, torch.Tensor):
        raise _type_error(name, value)
    if value.ndim == 0:
        return value
    if value.ndim == 1:
        return value.mean()
    raise _shape_error(name, value)


class CompositionalLoss(LossBase[Output, Target]):
    """A loss combined from named losses; usually built with ``+ - * / **``.

    For each batch, every component loss is reduced to its batch value (a
    per-sample vector by its mean) and the combination is applied to those.
    ``calculate`` returns ``'Combined Loss'`` first, then every component's
    values in order of first appearance, so each is tracked on its own.

    Args:
        components: the losses combined (not compositional ones), by name.
        combine: the combined loss from the components' batch values by name.
        formula: a readable description; wrap it in parentheses if it could
            be misread inside a larger formula.

    Raises:
        ObjectiveError: two different components share a name.
    """

    def __init__(
        self,
        components: Sequence[LossBase[Output, Target]],
        combine: Callable[[Mapping[str, torch.Tensor]], torch.Tensor],
        formula: str,
    ) -> None:
        self.components = _merge_components(components)
        self._combine = combine
        self.name = COMBINED_LOSS
        self.formula = formula
        # A formula given by the user may need parentheses anywhere.
        self._precedence = _ADD
        directions: dict[str, bool | None] = {COMBINED_LOSS: False}
        for component in self.components:
            directions.update(component.higher_is_better)
        self._directions = directions

    @classmethod
    def _from_term(cls, term: _Term) -> CompositionalLoss[Any, Any]:
        loss: CompositionalLoss[Any, Any] = cls(
            term.leaves, term.evaluate, term.formula
        )
        loss._precedence = term.precedence
        return loss

    @property
    def higher_is_better(self) -> Mapping[str, bool | None]:
        """False for the combined loss and every component."""
        return MappingProxyType(self._directions)

    def calculate(self, outputs: Output, targets: Target) -> dict[str, torch.Tensor]:
        """Return the combined loss, then the components' values.

        Raises:
            ObjectiveError: a component has 2 or more dimensions, misses its
                name, or two components return the same name.
        """
        values: dict[str, torch.Tensor] = {}
        parts = []
        expected = 1
        batch: dict[str, torch.Tensor] = {}
        for component in self.components:
            part = component.calculate(outputs, targets)
            parts.append(part)
            expected += len(part)
            values.update(part)
            name = component.name
            if name not in part:
                raise ObjectiveError(
                    f'{component!r} returned no value under its name {name!r}.'
                )
            batch[name] = _batch_value(name, part[name])
        result = {COMBINED_LOSS: self._combine(batch), **values}
        if len(result) != expected:
            names = [COMBINED_LOSS, *(name for part in parts for name in part)]
            raise _duplicate_error(_repeated(names))
        return result

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.formula!r})'


class LossWithMetrics(LossBase[Output, Target], MetricCollection[Output, Target]):
    """A loss reported with metrics: the result of ``loss | metrics``.

    ``calculate`` returns the loss's values first, then the metrics'. It is
    still a loss: calling it returns the loss value to backpropagate.

    Attributes:
        loss: the loss to minimize.
        metrics: the objectives reported alongside.

    Args:
        loss: the loss to minimize.
        metrics: objectives, or objects with update/compute/reset.

    Raises:
        ObjectiveError: ``loss`` is not a loss, or two names coincide.
    """

    def __init__(
        self,
        loss: LossBase[Output, Target],
        *metrics: Objective[Output, Target] | _StatefulMetric,
    ) -> None:
        if isinstance(loss, LossWithMetrics):
            metrics = (*loss.metrics, *metrics)
            loss = loss.loss
        if not isinstance(loss, LossBase):
            raise ObjectiveError(f'LossWithMetrics needs a loss first, got {loss!r}.')
        MetricCollection.__init__(self, loss, *metrics)
        self.loss: LossBase[Output, Target] = loss
        self.metrics: tuple[Objective[Output, Target], ...] = self.objectives[1:]
        self.name = loss.name
        self.formula = loss.formula

    @property
    def higher_is_better(self) -> Mapping[str, bool | None]:
        """False for the loss, and the metrics' directions."""
        return MappingProxyType(self._directions)


# Formula precedences, loosest first.
_ADD, _NEG, _MUL, _POW, _ATOM = range(5)

_OPERATIONS: dict[str, tuple[Callable[[Any, Any], Any], int]] = {
    '+': (operator.add, _ADD),
    '-': (operator.sub, _ADD),
    'x': (operator.mul, _MUL),
    '/': (operator.truediv, _MUL),
    '^': (operator.pow, _POW),
}


class _Term(NamedTuple):
    """A loss expression: its leaf losses, how to evaluate it, how to print it."""

    leaves: tuple[LossBase[Any, Any], ...]
    evaluate: Callable[[Mapping[str, torch.Tensor]], Any]
    formula: str
    precedence: int


def _format_number(number: float) -> str:
    if isinstance(number, bool):
        number = int(number)
    if isinstance(number, float) and number.is_integer() and abs(number) < 1e15:
        return repr(int(number))
    return repr(number)


# The evaluation nodes are classes, not closures, so that losses pickle.
class _Constant:
    __slots__ = ('number',)

    def __init__(self, number: float) -> None:
        self.number = number

    def __call__(self, values: Mapping[str, torch.Tensor]) -> float:
        return self.number


class _Leaf:
    __slots__ = ('name',)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return values[self.name]


class _Negative:
    __slots__ = ('operand',)

    def __init__(self, operand: Callable[[Mapping[str, torch.Tensor]], Any]) -> None:
        self.operand = operand

    def __call__(self, values: Mapping[str, torch.Tensor]) -> Any:
        return -self.operand(values)


class _Operation:
    __slots__ = ('left', 'operation', 'right')

    def __init__(
        self,
        operation: Callable[[Any, Any], Any],
        left: Callable[[Mapping[str, torch.Tensor]], Any],
        right: Callable[[Mapping[str, torch.Tensor]], Any],
    ) -> None:
        self.operation = operation
        self.left = left
        self.right = right

    def __call__(self, values: Mapping[str, torch.Tensor]) -> Any:
        return self.operation(self.left(values), self.right(values))


def _term(operand: object) -> _Term | None:
    if isinstance(operand, int | float):
        return _Term((), _Constant(operand), _format_number(operand), _ATOM)
    if isinstance(operand, LossWithMetrics):
        raise ObjectiveError(
            f'Cannot combine {operand!r}: combine the losses first, then add the '
            'metrics, as in (loss_a + loss_b) | metrics.'
        )
    if isinstance(operand, CompositionalLoss):
        return _Term(
            operand.components, operand._combine, operand.formula, operand._precedence
        )
    if isinstance(operand, LossBase):
        name = operand.name
        return _Term((operand,), _Leaf(name), f'[{name}]', _ATOM)
    return None


def _parenthesize(formula: str, needed: bool) -> str:
    # A leading minus is always wrapped: "[A] - (-[B])", "2 x (-[A])".
    return f'({formula})' if needed or formula.startswith('-') else formula


def _merge_components(
    groups: Iterable[LossBase[Output, Target]],
) -> tuple[LossBase[Output, Target], ...]:
    by_name: dict[str, LossBase[Output, Target]] = {}
    for loss in groups:
        if isinstance(loss, CompositionalLoss | LossWithMetrics) or not isinstance(
            loss, LossBase
        ):
            raise ObjectiveError(
                'A component of a CompositionalLoss must be a named loss, '
                f'got {loss!r}.'
            )
        if loss.name == COMBINED_LOSS:
            raise ObjectiveError(
                f'{loss!r} is named {COMBINED_LOSS!r}, which is reserved for the '
                'combined value: rename it.'
            )
        if by_name.setdefault(loss.name, loss) is not loss:
            raise ObjectiveError(
                f'Two different losses are named {loss.name!r}: '
                f'{by_name[loss.name]!r} and {loss!r}. Give them distinct names.'
            )
    return tuple(by_name.values())


def _binary(symbol: str, left: object, right: object) -> CompositionalLoss[Any, Any]:
    # NotImplemented for an unsupported operand, as binary dunders return.
    left_term = _term(left)
    right_term = _term(right)
    if left_term is None or right_term is None:
        return cast('CompositionalLoss[Any, Any]', NotImplemented)
    operation, precedence = _OPERATIONS[symbol]
    if symbol == '^':
        base = _parenthesize(left_term.formula, left_term.precedence <= _POW)
        exponent = _parenthesize(right_term.formula, right_term.precedence < _ATOM)
        formula = f'{base}^{exponent}'
    else:
        # Only - and / need parentheses around an equally loose right operand.
        right_needed = right_term.precedence < precedence or (
            symbol in '-/' and right_term.precedence == precedence
        )
        first = left_term.formula
        if left_term.precedence < precedence:
            first = f'({first})'
        second = _parenthesize(right_term.formula, right_needed)
        formula = f'{first} {symbol} {second}'
    return CompositionalLoss._from_term(
        _Term(
            left_term.leaves + right_term.leaves,
            _Operation(operation, left_term.evaluate, right_term.evaluate),
            formula,
            precedence,
        )
    )
