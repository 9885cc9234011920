"""The running sums behind every objective's exact epoch means.

``_RunningSums`` is the one place that holds what an objective has accumulated
since its last reset (a sum and a count per name, and the number of batches)
and turns it into values (``means``). In a distributed run the runners call
``all_reduce`` once at the end of an epoch, which sums the sums and counts of
every process before ``means`` divides them: the epoch's values are those of
all the data, not of one process's share.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from drytorch.core import distributed
from drytorch.lib.objectives.errors import _shape_error, _state_error, _type_error


def _accumulator_dtype(device: torch.device) -> torch.dtype:
    # float64 keeps long epochs exact; MPS has no float64.
    return torch.float32 if device.type == 'mps' else torch.float64


class _RunningSums:
    """Per-name sums and counts of the values of the batches seen so far.

    A 0-dim value (a batch value) adds itself to the sum and 1 to the count;
    a 1-dim per-sample vector adds its sum and its length. The sums stay on
    the values' device, detached, in float64 (float32 on MPS), and ``add``
    never reads a value on the host.

    Attributes:
        sums: the running sums by name, 0-dim tensors on the values' device.
        counts: how many batch values or samples each sum holds.
        batches: the batches added.
    """

    __slots__ = ('batches', 'counts', 'sums')

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}
        self.batches = 0

    def add(self, values: Mapping[str, torch.Tensor]) -> None:
        """Add one batch's values.

        Raises:
            ObjectiveError: a value is not a tensor or has 2 or more dimensions.
        """
        sums = self.sums
        counts = self.counts
        for name, value in values.items():
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
        self.batches += 1

    def means(self) -> dict[str, torch.Tensor]:
        """Return the mean of each value, as 0-dim tensors on the device."""
        counts = self.counts
        return {name: total / counts[name] for name, total in self.sums.items()}

    def merge(self, other: _RunningSums) -> None:
        """Add the sums, counts and batches of ``other``."""
        for name, total in other.sums.items():
            mine = self.sums.get(name)
            if mine is None:
                self.sums[name] = total.detach().clone()
                self.counts[name] = other.counts[name]
            else:
                self.sums[name] = mine + total.to(mine.device, mine.dtype)
                self.counts[name] += other.counts[name]
        self.batches += other.batches

    def all_reduce(self) -> None:
        """Sum the sums, counts and batches over the processes of the run.

        One collective for all the values: they are packed in one float64
        tensor (float32 on MPS) on the sums' device, in name order, which every
        process shares. Every process must call it, with the same names.
        """
        names = sorted(self.sums)
        first = self.sums[names[0]] if names else None
        device = first.device if first is not None else torch.device('cpu')
        dtype = _accumulator_dtype(device)
        values = [self.sums[name].to(dtype) for name in names]
        values += [
            torch.tensor(float(self.counts[name]), dtype=dtype, device=device)
            for name in names
        ]
        values.append(torch.tensor(float(self.batches), dtype=dtype, device=device))
        packed = torch.stack(values)
        distributed.all_reduce_sum(packed)
        totals = packed.tolist()  # the counts, on the host: once per epoch
        n = len(names)
        for k, name in enumerate(names):
            self.sums[name] = packed[k].to(self.sums[name].dtype)
            self.counts[name] = round(totals[n + k])
        self.batches = round(totals[-1])

    def state_dict(self) -> dict[str, Any]:
        """Return the sums as Python floats, the counts and the batches."""
        return {
            'sums': {name: total.item() for name, total in self.sums.items()},
            'counts': dict(self.counts),
            'batches': self.batches,
        }

    @classmethod
    def from_state(
        cls,
        objective: object,
        state: Mapping[str, Any],
        device: torch.device | str | None,
    ) -> _RunningSums:
        """Check and copy the state saved by ``state_dict``.

        Args:
            objective: whose state it is, named in the errors.
            state: from ``state_dict()``.
            device: where the sums saved as numbers go (CPU by default).

        Raises:
            ObjectiveError: ``state`` was not made by ``state_dict``.
        """
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
                copied[str(name)] = torch.tensor(
                    float(total), dtype=dtype, device=target
                )
            elif isinstance(total, torch.Tensor) and total.ndim == 0:
                copied[str(name)] = total.detach().clone()  # earlier versions
            else:
                raise _state_error(objective, f'the sum of {name!r} is not a number')
        running = cls()
        running.sums = copied
        running.counts = {str(k): int(v) for k, v in counts.items()}
        running.batches = int(state['batches'])
        return running
