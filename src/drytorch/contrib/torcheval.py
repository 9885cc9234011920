"""The original DRYTorch's ``contrib.torcheval``: torcheval metrics as objectives.

torcheval metrics compute from their own state, on each process alone. The
objective ``from_torcheval`` returns merges that state over the processes in
``sync()``, which the runners call at the end of each epoch of a distributed
run (``all_reduce``); without a process group it does nothing. Unlike
``as_objective``, it computes a metric updated before it was wrapped.
torcheval is imported only when a metric is wrapped or synchronised.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from drytorch.core import distributed
from drytorch.core.exceptions import ObjectiveError, ObjectiveSyncWarning
from drytorch.lib.objectives import Objective
from drytorch.lib.objectives.adapters import _ProtocolObjective
from drytorch.lib.objectives.errors import _not_updated_error

__all__ = ['TorchevalObjective', 'from_torcheval']


class TorchevalObjective(_ProtocolObjective):
    """A torcheval metric as an objective, synchronised across processes.

    ``compute()`` returns the metric's value under its name (a dict result
    as is), whether the updates came through the objective or before.
    """

    def compute(self) -> dict[str, torch.Tensor]:
        """Return the wrapped ``compute()``.

        Raises:
            ComputedBeforeUpdatedError: the metric holds no value (torcheval
                returns an empty tensor for a metric never updated).
        """
        with warnings.catch_warnings():
            # torcheval warns before returning an empty tensor; we raise.
            warnings.simplefilter('ignore', UserWarning)
            result = self.wrapped.compute()
        if isinstance(result, torch.Tensor) and result.numel() == 0:
            raise _not_updated_error(self)
        if isinstance(result, dict):
            return {str(key): torch.as_tensor(value) for key, value in result.items()}
        return {self.name: torch.as_tensor(result)}

    @property
    def computes_locally(self) -> bool:
        """True: torcheval computes on this process alone."""
        return True

    def sync(self) -> None:
        """Merge the metric's state over the processes; a no-op without a group."""
        if distributed.current().size > 1:
            self.all_reduce()

    def _reduce_wrapped(self) -> None:
        """Replace the state with that merged from every process."""
        try:
            from torcheval.metrics.toolkit import get_synced_metric

            metric: Any = self.wrapped
            synced = get_synced_metric(metric)  # merged on every rank
        except Exception as error:  # reported, then ignored
            warnings.warn(
                ObjectiveSyncWarning(
                    f'{self!r} could not merge its state across processes ({error})',
                    'its values are those of this process alone',
                ),
                stacklevel=3,
            )
            return
        if synced is not None:
            metric.load_state_dict(synced.state_dict())

    def __repr__(self) -> str:
        return f'from_torcheval({self.wrapped!r})'


def from_torcheval(metric: Any, name: str | None = None) -> Objective[Any, Any]:
    """Return a torcheval metric as an objective that synchronises across processes.

    Args:
        metric: a ``torcheval.metrics.Metric``, updated or not.
        name: the key of its value; the class name by default.

    Raises:
        ObjectiveError: ``metric`` is not a torcheval metric.
    """
    from torcheval.metrics import Metric

    if not isinstance(metric, Metric):
        raise ObjectiveError(
            f'from_torcheval needs a torcheval Metric, got {metric!r} '
            f'({type(metric).__name__}). Use as_objective for other objects with '
            'update/compute/reset.'
        )
    wrapped = TorchevalObjective(metric, name or type(metric).__name__)
    wrapped._running.batches = 1  # its state may hold updates from before
    return wrapped
