"""``Metric``, a named function of outputs and targets, and ``MetricCollection``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import torch

from drytorch.core.exceptions import ObjectiveError
from drytorch.lib.objectives.adapters import (
    _ProtocolObjective,
    _StatefulMetric,
    as_objective,
)
from drytorch.lib.objectives.base import (
    Directions,
    Objective,
    Output,
    Target,
    _check_name,
    _describe,
    _repeated,
)
from drytorch.lib.objectives.errors import _duplicate_error, _state_error
from drytorch.lib.objectives.sums import _RunningSums


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
    def higher_is_better(self) -> Directions:
        """The metric's direction under its name; reads as that direction."""
        return Directions(self._directions, self.name)

    def calculate(self, outputs: Output, targets: Target) -> dict[str, torch.Tensor]:
        """Return ``{name: fn(outputs, targets)}``."""
        return {self.name: self.fn(outputs, targets)}

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(name={self.name!r}, fn={_describe(self.fn)}, '
            f'higher_is_better={self._directions[self.name]!r})'
        )


class MetricCollection(Objective[Output, Target]):
    """Several objectives updated, computed and reset together.

    The values of the objectives are merged in order; nested collections are
    flattened. The collection keeps its own running means, so an objective
    shared by two collections (say, for training and validation) does not mix
    their batches. Torchmetrics-style members keep their state themselves.

    Args:
        objectives: objectives, or objects with update/compute/reset.
        named_fn: metric functions by name, as the original DRYTorch takes
            them (``MetricCollection(MSE=mse, MAE=mae)``); each becomes a
            ``Metric`` of unknown direction, after ``objectives``.

    Raises:
        ObjectiveError: two objectives report the same name.
    """

    def __init__(
        self,
        *objectives: Objective[Output, Target] | _StatefulMetric,
        **named_fn: Callable[[Output, Target], torch.Tensor],
    ) -> None:
        members: list[Objective[Output, Target]] = []
        functions = [Metric(fn, name) for name, fn in named_fn.items()]
        for objective in (*objectives, *functions):
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

    @property
    def computes_locally(self) -> bool:
        """Whether no torchmetrics-style member synchronises in ``compute``."""
        return not self._delegates

    def all_reduce(self) -> None:
        """Sum the running sums over the processes, and sync members that need it."""
        super().all_reduce()
        for delegate in self._delegates:
            delegate._reduce_wrapped()

    def merge_state(self, other: Objective[Any, Any]) -> None:
        """Add the batches of ``other``, a copy of this collection, members too.

        Raises:
            ObjectiveError: ``other`` is not a collection of the same members.
        """
        if not isinstance(other, MetricCollection) or len(other._delegates) != len(
            self._delegates
        ):
            raise ObjectiveError(
                f'Cannot merge the state of {other!r} into {self!r}: merge '
                'copies of one collection.'
            )
        self._running.merge(other._running)
        for mine, theirs in zip(self._delegates, other._delegates, strict=True):
            mine.merge_state(theirs)

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
        own = _RunningSums.from_state(self, state, device)
        delegates = state.get('delegates', [])
        if len(delegates) != len(self._delegates):
            raise _state_error(
                self,
                f'it holds {len(delegates)} torchmetrics-style members, '
                f'this collection {len(self._delegates)}',
            )
        for delegate, delegate_state in zip(self._delegates, delegates, strict=True):
            delegate.load_state_dict(delegate_state)
        self._running = own
        self._delegate_positions = [int(p) for p in state.get('delegate_positions', [])]

    def __repr__(self) -> str:
        members = ', '.join(repr(member) for member in self.objectives)
        return f'{type(self).__name__}({members})'
