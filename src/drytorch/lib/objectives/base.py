"""``Objective``, the base of losses and metrics, and the helpers they share."""

from __future__ import annotations

import abc
import copy as _copy
from collections.abc import Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Generic, Self, TypeVar

import torch

from drytorch.core import distributed
from drytorch.core.exceptions import ObjectiveError
from drytorch.lib.objectives.errors import _not_updated_error
from drytorch.lib.objectives.sums import _RunningSums

if TYPE_CHECKING:
    from drytorch.lib.objectives.metrics import MetricCollection

Output = TypeVar('Output', contravariant=True)
Target = TypeVar('Target', contravariant=True)

_NO_DIRECTIONS: Mapping[str, bool | None] = MappingProxyType({})


class Directions(Mapping[str, bool | None]):
    """Whether a larger value is better, by name; also the main value's direction.

    A mapping, as every objective reports it, that also reads as the bool of
    its main value, as the original DRYTorch's ``higher_is_better`` of a
    single loss or metric does: ``loss.higher_is_better == False`` and ``if
    metric.higher_is_better:`` work, and so does ``directions['MSE']``.
    """

    __slots__ = ('_main', '_values')

    def __init__(self, values: Mapping[str, bool | None], main: str) -> None:
        self._values = dict(values)
        self._main = main

    @property
    def main(self) -> bool | None:
        """The direction of the main value (the loss or the metric)."""
        return self._values.get(self._main)

    def __getitem__(self, name: str) -> bool | None:
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __bool__(self) -> bool:
        return bool(self.main)

    def __eq__(self, other: object) -> bool:
        if other is None or isinstance(other, bool):
            return self.main is other
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._values)


def _repeated(names: Iterable[str]) -> list[str]:
    seen: set[str] = set()
    repeated = []
    for name in names:
        if name in seen:
            repeated.append(name)
        seen.add(name)
    return repeated


def _check_name(name: object) -> str:
    if not isinstance(name, str) or not name:
        raise ObjectiveError(
            f'An objective name must be a non-empty str, got {name!r}.'
        )
    return name


def _describe(fn: object) -> str:
    return getattr(fn, '__qualname__', None) or repr(fn)


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

    _running: _RunningSums

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        """Create the objective with empty running sums."""
        # The state lives here so that subclasses need not call super().__init__.
        self = super().__new__(cls)
        self._running = _RunningSums()
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
        self._running.add(calculated)
        return calculated

    def compute(self) -> dict[str, torch.Tensor]:
        """Return the means since the last reset, as 0-dim tensors on the device.

        Raises:
            ComputedBeforeUpdatedError: no batch was seen since the last reset.
        """
        if not self._running.batches:
            raise _not_updated_error(self)
        return self._running.means()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._running = _RunningSums()

    def copy(self) -> Self:
        """Return an independent copy, running state included.

        One objective definition can serve training and validation: each
        copy keeps its own batches.
        """
        return _copy.deepcopy(self)

    def merge_state(self, other: Objective[Any, Any]) -> None:
        """Add the batches ``other`` has seen to this objective's.

        ``compute`` then returns the means over both objectives' batches, as
        if this one had seen them all (e.g. the shards of one evaluation).

        Raises:
            ObjectiveError: ``other`` is not an objective of the same class.
        """
        if type(other) is not type(self):
            raise ObjectiveError(
                f'Cannot merge the state of {other!r} into {self!r}: merge '
                'objectives of the same class (copies of one objective).'
            )
        self._running.merge(other._running)

    def sync(self) -> None:
        """Sum the running state over the processes of the distributed run.

        A no-op without a process group. The runners already do it once at
        the end of each epoch (``all_reduce``): call it only for an objective
        updated outside a runner, once, before ``compute``.
        """
        if distributed.current().size > 1:
            self.all_reduce()

    def all_reduce(self) -> None:
        """Sum the running sums and counts over the processes of the run.

        The runners call it once, at the end of each epoch of a distributed
        run, before ``compute``: the means are then those of every process's
        batches, the same on each. Torchmetrics-style members synchronise
        their own state when they compute.
        """
        self._running.all_reduce()

    @property
    def computes_locally(self) -> bool:
        """Whether ``compute`` involves no other process (no collective).

        False when a torchmetrics-style member synchronises in its
        ``compute``: then only every process together may call it.
        """
        return True

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
        return self._running.state_dict()

    def running_sums(self) -> dict[str, tuple[float, int]]:
        """Return each value's running sum and count since the last reset.

        The trainer reports means over its recent steps from the differences
        of two readings. Reading waits for the device (one transfer for all
        the sums). Members that keep their own state (torchmetrics) have no
        running sums here.
        """
        sums = self._running.sums
        if not sums:
            return {}
        values = torch.stack(list(sums.values())).tolist()
        counts = self._running.counts
        return {
            name: (value, counts[name])
            for name, value in zip(sums, values, strict=True)
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
        self._running = _RunningSums.from_state(self, state, device)

    def __or__(self, other: object) -> MetricCollection[Output, Target]:
        """Combine with another objective (or a torchmetrics-style metric)."""
        # Imported here: both modules build on this one.
        from drytorch.lib.objectives.adapters import _follows_protocol
        from drytorch.lib.objectives.metrics import MetricCollection

        if not _follows_protocol(other):
            return NotImplemented
        return MetricCollection(self, other)

    def __ror__(self, other: object) -> MetricCollection[Output, Target]:
        """Combine a torchmetrics-style metric on the left with this objective."""
        from drytorch.lib.objectives.adapters import _follows_protocol
        from drytorch.lib.objectives.metrics import MetricCollection

        if not _follows_protocol(other):
            return NotImplemented
        return MetricCollection(other, self)

    def __repr__(self) -> str:
        return f'{type(self).__name__}()'
