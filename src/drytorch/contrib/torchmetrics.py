"""The original DRYTorch's ``contrib.torchmetrics``: torchmetrics metrics as losses.

``from_torchmetrics(metric)`` turns a differentiable torchmetrics metric, or a
composition of them such as ``1 + MeanSquaredError()``, into a drytorch loss:
each metric in it becomes a component named after its class (``as_loss``),
and the composition becomes the same expression in the loss algebra, so that
``compute()`` returns ``{'Combined Loss': value, 'MeanSquaredError': value}``
and calling the loss returns the value to backpropagate.

As for ``as_loss``, the epoch value of each component is the mean of its
batch values (the metric is run on each batch alone), which our runners can
save inside an epoch and sum over processes. torchmetrics is imported only
when a metric is wrapped.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import Any

import torch

from drytorch.core.exceptions import ObjectiveError
from drytorch.lib.objectives import CompositionalLoss, LossBase, as_loss
from drytorch.lib.objectives.formulas import COMBINED

__all__ = ['from_torchmetrics']

_Operand = LossBase[Any, Any] | float


def _binary_operations() -> dict[Callable[..., Any], Callable[[Any, Any], Any]]:
    return {
        torch.add: operator.add,
        torch.sub: operator.sub,
        torch.mul: operator.mul,
        torch.true_divide: operator.truediv,
        torch.div: operator.truediv,
        torch.pow: operator.pow,
    }


class _Identity:
    """The combination of a single component: its own value (picklable)."""

    __slots__ = ('name',)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return values[self.name]


def _convert(node: Any, leaves: dict[str, LossBase[Any, Any]]) -> _Operand:
    """Return ``node`` (a metric, a composition or a constant) in the loss algebra."""
    from torchmetrics.metric import CompositionalMetric, Metric

    if isinstance(node, CompositionalMetric):
        first = _convert(node.metric_a, leaves)
        if node.metric_b is None:
            if isinstance(first, LossBase) and getattr(node.op, '__name__', '') in {
                '_neg',
                'neg',
            }:
                return -first
            raise _unsupported(node)
        second = _convert(node.metric_b, leaves)
        combine = _binary_operations().get(node.op)
        if combine is None:
            raise _unsupported(node)
        result: _Operand = combine(first, second)
        return result
    if isinstance(node, Metric):
        name = type(node).__name__
        known = leaves.get(name)
        if known is None:
            known = leaves[name] = as_loss(node, name=name)
        elif getattr(known, 'metric', None) is not node:
            raise ObjectiveError(
                f'The composition holds two different {name} metrics: the '
                'components of a loss need distinct names. Combine them with '
                'as_loss(metric, name=...) and the loss algebra instead.'
            )
        return known
    if isinstance(node, torch.Tensor) and node.numel() == 1:
        return float(node.item())
    if isinstance(node, int | float) and not isinstance(node, bool):
        return float(node)
    raise ObjectiveError(
        f'Cannot use {node!r} in a loss: a composition may hold torchmetrics '
        'metrics and numbers only.'
    )


def _unsupported(node: Any) -> ObjectiveError:
    operation = getattr(node.op, '__name__', repr(node.op))
    return ObjectiveError(
        f'Cannot turn {node!r} into a loss: its operation {operation} is not one '
        'of + - * / ** or unary -. Compose the metrics with those, or wrap each '
        'with as_loss(metric) and build the loss in the drytorch loss algebra.'
    )


def from_torchmetrics(metric: Any) -> LossBase[Any, Any]:
    """Return a torchmetrics metric, or a composition of them, as a loss.

    ``compute()`` returns the combined value under ``'Combined Loss'`` first,
    then each metric's value under its class name; the formula is the
    composition's (``(1 + [MeanSquaredError])``). Move the metric to the
    model's device first, as torchmetrics requires.

    Args:
        metric: a differentiable ``torchmetrics.Metric`` or a composition of
            them with numbers by ``+ - * / **`` and unary ``-``.

    Raises:
        ObjectiveError: ``metric`` is not a torchmetrics metric, a component
            is not differentiable, or the composition uses another operation.
    """
    from torchmetrics.metric import Metric

    if not isinstance(metric, Metric):
        raise ObjectiveError(
            f'from_torchmetrics needs a torchmetrics Metric, got {metric!r} '
            f'({type(metric).__name__}). Use as_objective for other objects with '
            'update/compute/reset.'
        )
    leaves: dict[str, LossBase[Any, Any]] = {}
    converted = _convert(metric, leaves)
    if isinstance(converted, CompositionalLoss):
        if converted.name == COMBINED:
            return converted
        # A power or a negation: reported under the original's key too.
        return CompositionalLoss(
            list(converted.components),
            converted._combine,
            converted.formula,
            higher_is_better=bool(converted.higher_is_better),
        )
    if isinstance(converted, LossBase):
        return CompositionalLoss(
            [converted], _Identity(converted.name), converted.formula
        )
    raise ObjectiveError(f'{metric!r} holds no metric: it is a constant.')
