"""Differentiable torchmetrics metrics as losses: ``as_loss``."""

from __future__ import annotations

from typing import Any, Protocol, overload

import torch

from drytorch.core.exceptions import ObjectiveError
from drytorch.lib.objectives.adapters import _follows_protocol, _StatefulMetric
from drytorch.lib.objectives.base import Output, Target, _check_name
from drytorch.lib.objectives.errors import _type_error
from drytorch.lib.objectives.losses import LossBase


class _BatchMetric(_StatefulMetric, Protocol):
    """What ``as_loss`` wraps: a torchmetrics metric, whose ``forward`` has grads."""

    def forward(self, *args: Any, **kwargs: Any) -> Any: ...


class _MetricLoss(LossBase[Any, Any]):
    """A differentiable torchmetrics metric as a loss, counted batch by batch.

    The batch value is the metric's ``forward`` on the batch, the only call
    of torchmetrics that keeps the graph (``update`` runs without grads);
    the metric is reset right after, so ``calculate`` leaves no trace in it.
    The epoch value is then the mean of the batch values in the running
    sums, as for a ``Loss`` whose function returns a scalar: it combines with
    other losses, is saved inside an epoch and is summed over processes like
    theirs, and never depends on whether torchmetrics persists its states.
    """

    def __init__(self, metric: _BatchMetric, name: str) -> None:
        self.metric = metric
        self.name = _check_name(name)
        self.formula = f'[{name}]'

    def calculate(self, outputs: Any, targets: Any) -> dict[str, torch.Tensor]:
        """Return the metric's value on this batch alone, attached to the graph.

        Raises:
            ObjectiveError: the value is not a scalar tensor.
        """
        value = self.metric.forward(outputs, targets)
        self.metric.reset()  # also drops torchmetrics' reference to the graph
        if not isinstance(value, torch.Tensor):
            raise _type_error(self.name, value)
        if value.ndim:
            raise ObjectiveError(
                f'{self!r} computed a tensor of shape {tuple(value.shape)}: a '
                'loss must be a scalar (set the metric to average its values).'
            )
        return {self.name: value}

    def __repr__(self) -> str:
        return f'as_loss({self.metric!r}, name={self.name!r})'


_NO_FLAG = object()


def _refusal(obj: object) -> str | None:
    """Why ``obj`` cannot be a loss; None when it is a differentiable metric."""
    kind = f'{obj!r} ({type(obj).__name__})'
    if not _follows_protocol(obj) or not callable(getattr(obj, 'forward', None)):
        return f'got {kind}'
    differentiable = getattr(obj, 'is_differentiable', _NO_FLAG)
    if differentiable is _NO_FLAG:  # a collection of metrics, a plain object
        return f'got {kind}, which has no is_differentiable: not a single metric'
    if differentiable is False:
        return f'got {kind}, which is not differentiable (is_differentiable=False)'
    return None


@overload
def as_loss(
    obj: LossBase[Output, Target], name: str | None = None
) -> LossBase[Output, Target]: ...


@overload
def as_loss(obj: _BatchMetric, name: str | None = None) -> LossBase[Any, Any]: ...


def as_loss(
    obj: LossBase[Output, Target] | _BatchMetric, name: str | None = None
) -> LossBase[Output, Target] | LossBase[Any, Any]:
    """Return ``obj`` as a loss, wrapping a differentiable torchmetrics metric.

    A ``LossBase`` is returned as is. A torchmetrics ``Metric`` whose
    ``is_differentiable`` is not False (None, unknown, is trusted) becomes a
    loss whose value for a batch is the metric on that batch, with its
    gradients, and whose epoch value is the mean of the batch values. Move
    the metric to the model's device first, as torchmetrics requires.

    Args:
        obj: the loss or metric.
        name: the key of the metric's value; the class name by default.

    Raises:
        ObjectiveError: ``obj`` is neither a loss nor a differentiable metric.
    """
    if isinstance(obj, LossBase):
        return obj
    problem = _refusal(obj)
    if problem is not None:
        raise ObjectiveError(
            'A loss must be a drytorch Loss, a LossBase, or a differentiable '
            f'torchmetrics metric (is_differentiable not False); {problem}. '
            'Wrap a loss function in Loss(fn, name); report other metrics '
            'with loss | metric.'
        )
    return _MetricLoss(obj, name if name is not None else type(obj).__name__)
