"""Running means of named values, mergeable and reducible across processes.

The original DRYTorch's ``drytorch.lib.aggregators``. Our objectives keep
their own running sums (``objectives.Objective``); these are the small
general tools beside them, for code that averages values by hand: each
name holds a total and a count, two aggregators add up (``agg + other``),
``reduce()`` gives the means and ``all_reduce()`` first sums the totals and
counts of every process of a ``torch.distributed`` group (nothing happens
without a group).

``Averager`` holds Python numbers; ``TorchAverager`` holds tensors and
keeps them where they are (no synchronisation with the device until the
means are read).
"""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import KeysView
from typing import Any, Generic, Self, TypeVar, cast

import torch

from drytorch.core import distributed

__all__ = [
    'AbstractAccumulator',
    'AbstractAggregator',
    'Averager',
    'MeanAccumulator',
    'TorchAverager',
    'TorchMeanAccumulator',
]

_V = TypeVar('_V')


@dataclasses.dataclass(slots=True)
class AbstractAccumulator(abc.ABC, Generic[_V]):
    """The total and count of one named value; its mean is ``total / count``.

    Attributes:
        total: the sum of the values added.
        count: how many values the total holds.
    """

    total: _V
    count: int = 1

    def __add__(self, other: AbstractAccumulator[_V]) -> Self:
        """Return the accumulator of both sets of values."""
        if type(other) is not type(self):
            return NotImplemented
        return type(self)(self._sum(self.total, other.total), self.count + other.count)

    @staticmethod
    @abc.abstractmethod
    def _sum(first: _V, second: _V) -> _V:
        """Return the sum of two totals."""

    def reduce(self) -> _V:
        """Return the mean of the values added.

        Raises:
            ZeroDivisionError: nothing was added (``count`` is 0).
        """
        if self.count == 0:
            raise ZeroDivisionError('the mean of no values is undefined')
        return cast('_V', self.total / self.count)  # type: ignore[operator]


class MeanAccumulator(AbstractAccumulator[float]):
    """The running mean of Python numbers."""

    @staticmethod
    def _sum(first: float, second: float) -> float:
        return first + second


class TorchMeanAccumulator(AbstractAccumulator[torch.Tensor]):
    """The running mean of tensors, kept on their device."""

    @staticmethod
    def _sum(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
        return first + second


_A = TypeVar('_A', bound=AbstractAccumulator[Any])


class AbstractAggregator(abc.ABC, Generic[_V, _A]):
    """Running means of named values.

    ``Averager(loss=0.5, accuracy=0.9)`` holds one value of each name; add
    aggregators to merge them, ``reduce()`` for the means.

    Args:
        values: the first value of each name.

    Attributes:
        aggregate: the accumulator of each name.
    """

    def __init__(self, **values: _V) -> None:
        self.aggregate: dict[str, _A] = {
            name: self._accumulate(value) for name, value in values.items()
        }

    @abc.abstractmethod
    def _accumulate(self, value: _V) -> _A:
        """Return the accumulator of one value."""

    @abc.abstractmethod
    def _reduce_across_processes(self, names: list[str]) -> None:
        """Sum the totals and counts of ``names`` over the processes, in place."""

    def __add__(self, other: AbstractAggregator[_V, _A]) -> Self:
        """Return the aggregate of both: the names of either, merged."""
        if type(other) is not type(self):
            return NotImplemented
        merged = type(self)()
        merged.aggregate = dict(self.aggregate)
        for name, accumulator in other.aggregate.items():
            mine = merged.aggregate.get(name)
            merged.aggregate[name] = accumulator if mine is None else mine + accumulator
        return merged

    def __iadd__(self, other: AbstractAggregator[_V, _A]) -> Self:
        """Merge ``other`` into this one."""
        merged = self + other
        self.aggregate = merged.aggregate
        return self

    def reduce(self) -> dict[str, _V]:
        """Return the mean of each name's values."""
        return {name: acc.reduce() for name, acc in self.aggregate.items()}

    def all_reduce(self) -> dict[str, _V]:
        """Sum every process's values into this one's, then return the means.

        Under a ``torch.distributed`` process group every process must call
        it, with the same names; the totals and counts become those of all
        processes. Without a group it is ``reduce()``.
        """
        if distributed.current().size > 1:
            self._reduce_across_processes(sorted(self.aggregate))
        return self.reduce()

    def keys(self) -> KeysView[str]:
        """Return the names held."""
        return self.aggregate.keys()

    def clear(self) -> None:
        """Forget every value."""
        self.aggregate.clear()

    def __len__(self) -> int:
        return len(self.aggregate)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, AbstractAggregator)
        return self.reduce() == other.reduce()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f'{type(self).__name__}({", ".join(self.aggregate)})'


class Averager(AbstractAggregator[float, MeanAccumulator]):
    """Running means of Python numbers by name."""

    def _accumulate(self, value: float) -> MeanAccumulator:
        return MeanAccumulator(float(value), 1)

    def _reduce_across_processes(self, names: list[str]) -> None:
        device = 'cuda' if _backend() == 'nccl' else 'cpu'
        sums = torch.tensor(
            [self.aggregate[n].total for n in names]
            + [float(self.aggregate[n].count) for n in names],
            dtype=torch.float64,
            device=device,
        )
        distributed.all_reduce_sum(sums)
        values = sums.tolist()
        for index, name in enumerate(names):
            self.aggregate[name] = MeanAccumulator(
                values[index], round(values[len(names) + index])
            )


class TorchAverager(AbstractAggregator[torch.Tensor, TorchMeanAccumulator]):
    """Running means of tensors by name, kept on their device.

    A scalar tensor is one value; a tensor with dimensions holds one value
    per row of its first dimension (a batch), so
    ``TorchAverager(loss=per_sample_losses)`` counts every sample.
    """

    def _accumulate(self, value: torch.Tensor) -> TorchMeanAccumulator:
        if not isinstance(value, torch.Tensor):
            raise TypeError(f'TorchAverager takes tensors, got {value!r}.')
        detached = value.detach()
        if detached.ndim == 0:
            return TorchMeanAccumulator(detached, 1)
        return TorchMeanAccumulator(detached.sum(dim=0), int(detached.shape[0]))

    def _reduce_across_processes(self, names: list[str]) -> None:
        for name in names:  # one collective per name: shapes may differ
            accumulator = self.aggregate[name]
            total = accumulator.total.clone()
            count = torch.tensor(
                [float(accumulator.count)], dtype=torch.float64, device=total.device
            )
            distributed.all_reduce_sum(total)
            distributed.all_reduce_sum(count)
            self.aggregate[name] = TorchMeanAccumulator(total, round(count.item()))


def _backend() -> str:
    import torch.distributed as dist

    return str(dist.get_backend())
