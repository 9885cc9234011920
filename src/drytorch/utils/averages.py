"""Filter functions for hooks: a list of values (oldest first) to one value.

Hooks that monitor a metric (early stopping, pruning) take such a function as
``filter_fn`` to smooth the metric's history before comparing it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

__all__ = ['get_moving_average', 'get_trailing_mean']


def get_moving_average(
    decay: float = 0.9, mass_coverage: float = 0.99
) -> Callable[[Sequence[float]], float]:
    """Return an exponential moving average of the latest values.

    The latest value weighs 1, the one before ``decay``, then ``decay**2``...
    Only the latest values that make up ``mass_coverage`` of the total weight
    are read, so the cost does not grow with the history.

    Args:
        decay: the weight ratio between a value and the next one, in (0, 1).
        mass_coverage: the share of the weight to cover, in (0, 1).

    Raises:
        ValueError: ``decay`` or ``mass_coverage`` is not in (0, 1).
    """
    if not 0 < decay < 1:
        raise ValueError(f'decay must be between 0 and 1 (excluded), got {decay}.')
    if not 0 < mass_coverage < 1:
        raise ValueError(
            f'mass_coverage must be between 0 and 1 (excluded), got {mass_coverage}.'
        )
    window = max(1, math.ceil(math.log(1 - mass_coverage) / math.log(decay)))

    def moving_average(values: Sequence[float]) -> float:
        if not values:
            raise ValueError('The moving average of no values is undefined.')
        recent = list(values)[-window:]
        weights = [decay**age for age in range(len(recent))][::-1]
        pairs = zip(weights, recent, strict=True)
        total = sum(weight * value for weight, value in pairs)
        return total / sum(weights)

    return moving_average


def get_trailing_mean(window_size: int) -> Callable[[Sequence[float]], float]:
    """Return the mean of the latest ``window_size`` values (all if fewer).

    Raises:
        ValueError: ``window_size`` is not a positive integer.
    """
    if isinstance(window_size, bool) or not isinstance(window_size, int):
        raise ValueError(f'window_size must be an int, got {window_size!r}.')
    if window_size < 1:
        raise ValueError(f'window_size must be at least 1, got {window_size}.')

    def trailing_mean(values: Sequence[float]) -> float:
        if not values:
            raise ValueError('The mean of no values is undefined.')
        recent = list(values)[-window_size:]
        return sum(recent) / len(recent)

    return trailing_mean
