"""When to clip a gradient norm, and to what: the criteria of adaptive clipping.

A criterion follows a running statistic of the gradient norms and, for a new
norm, says whether it is a spike (``should_clip``) and the norm to clip it to
(``get_clip_value``). ``HistClipper`` (in ``lib.gradient_ops``, where all of
these are importable) seeds a criterion with the mean and variance of a few
warm-up norms, gathered by a ``StatsCollector``.

A clipping function maps the statistic of the norm (a z-score, or a ratio to
the running mean) and its threshold to the statistic to clip to.
"""

from __future__ import annotations

import abc
import math
from collections.abc import Callable

from drytorch.core.exceptions import LearningSchemaError

__all__ = [
    'ClippingCriterion',
    'EMACriterion',
    'StatsCollector',
    'ZStatCriterion',
    'max_clipping',
    'mean_clipping',
    'reciprocal_clipping',
]

ClippingFunction = Callable[[float, float], float]


def max_clipping(zt: float, z_thresh: float) -> float:
    """Clip to the threshold itself: the largest value not counted as a spike."""
    return z_thresh


def mean_clipping(zt: float, z_thresh: float) -> float:
    """Clip halfway between the threshold and the spike: a softer clip."""
    return (zt + z_thresh) / 2


def reciprocal_clipping(zt: float, z_thresh: float) -> float:
    """Clip to ``z_thresh**2 / zt``: the larger the spike, the harder the clip.

    At the threshold it equals ``z_thresh``; beyond it decreases, so an
    outlier gradient is damped more than a borderline one.
    """
    return z_thresh**2 / zt if zt > 0 else z_thresh


def _check_alpha(alpha: float) -> None:
    if not 0 <= alpha < 1:
        raise LearningSchemaError(f'alpha must be in [0, 1), got {alpha!r}.')


def _check_positive(name: str, value: float) -> None:
    if not 0 < value < math.inf:
        raise LearningSchemaError(f'{name} must be positive and finite, got {value!r}.')


class ClippingCriterion(abc.ABC):
    """Decides from running statistics of the norms whether and where to clip.

    Subclasses implement ``should_clip``, ``get_clip_value`` and ``update``;
    ``set_statistics`` seeds them (mean and variance of warm-up norms) and
    ``reset`` forgets them.
    """

    def __init__(self) -> None:
        self.mean: float | None = None
        self.variance: float = 0.0

    @property
    def is_ready(self) -> bool:
        """Whether the statistics were seeded (by ``set_statistics``/``update``)."""
        return self.mean is not None

    def set_statistics(self, mean: float, variance: float) -> None:
        """Seed the running mean and variance of the norms."""
        if not (math.isfinite(mean) and math.isfinite(variance) and variance >= 0):
            raise LearningSchemaError(
                f'Clipping statistics must be finite, variance >= 0: got mean '
                f'{mean!r}, variance {variance!r}.'
            )
        self.mean = float(mean)
        self.variance = float(variance)

    def reset(self) -> None:
        """Forget the statistics."""
        self.mean = None
        self.variance = 0.0

    @abc.abstractmethod
    def should_clip(self, value: float) -> bool:
        """Whether the norm ``value`` is a spike to clip."""

    @abc.abstractmethod
    def get_clip_value(self, value: float) -> float:
        """Return the norm to clip ``value`` to."""

    @abc.abstractmethod
    def update(self, value: float) -> None:
        """Move the statistics with the norm ``value`` (after any clipping)."""


class EMACriterion(ClippingCriterion):
    """Clips norms more than ``r_thresh`` times their exponential moving average.

    The statistic is the ratio ``r = value / ema``; a spike is clipped to
    ``ema * clipping_function(r, r_thresh)``.

    Args:
        alpha: the weight of the past in the average, in [0, 1).
        r_thresh: the ratio above which a norm is a spike, above 1.
        clipping_function: maps ``(r, r_thresh)`` to the ratio clipped to.
    """

    def __init__(
        self,
        alpha: float = 0.98,
        r_thresh: float = 1.05,
        clipping_function: ClippingFunction = max_clipping,
    ) -> None:
        super().__init__()
        _check_alpha(alpha)
        if not 1 < r_thresh < math.inf:
            raise LearningSchemaError(f'r_thresh must be above 1, got {r_thresh!r}.')
        self.alpha = alpha
        self.r_thresh = r_thresh
        self.clipping_function = clipping_function

    def _ratio(self, value: float) -> float:
        if self.mean is None or self.mean <= 0:
            return 1.0
        return value / self.mean

    def should_clip(self, value: float) -> bool:
        """Whether ``value`` exceeds ``r_thresh`` times the average."""
        return self.mean is not None and self._ratio(value) > self.r_thresh

    def get_clip_value(self, value: float) -> float:
        """Return ``ema * clipping_function(value / ema, r_thresh)``."""
        if self.mean is None:
            return value
        return self.mean * self.clipping_function(self._ratio(value), self.r_thresh)

    def update(self, value: float) -> None:
        """Move the average towards ``value``."""
        if self.mean is None:
            self.mean = float(value)
            return
        self.mean = self.alpha * self.mean + (1 - self.alpha) * value

    def __repr__(self) -> str:
        return (
            f'EMACriterion(alpha={self.alpha}, r_thresh={self.r_thresh}, '
            f'clipping_function={getattr(self.clipping_function, "__name__", "?")})'
        )


class ZStatCriterion(ClippingCriterion):
    """Clips norms whose z-score, against running mean and variance, is too high.

    The statistic is ``z = (value - mean) / std``; a spike (``z > z_thresh``)
    is clipped to ``mean + std * clipping_function(z, z_thresh)``. Mean and
    variance are exponential moving averages.

    Args:
        alpha: the weight of the past in the averages, in [0, 1).
        z_thresh: the z-score above which a norm is a spike, positive.
        clipping_function: maps ``(z, z_thresh)`` to the z-score clipped to.
    """

    def __init__(
        self,
        alpha: float = 0.97,
        z_thresh: float = 2.5,
        clipping_function: ClippingFunction = reciprocal_clipping,
    ) -> None:
        super().__init__()
        _check_alpha(alpha)
        _check_positive('z_thresh', z_thresh)
        self.alpha = alpha
        self.z_thresh = z_thresh
        self.clipping_function = clipping_function

    def z_score(self, value: float) -> float:
        """Return the z-score of ``value`` (0 without statistics or spread)."""
        std = math.sqrt(self.variance)
        if self.mean is None or std == 0:
            return 0.0
        return (value - self.mean) / std

    def should_clip(self, value: float) -> bool:
        """Whether the z-score of ``value`` exceeds ``z_thresh``."""
        return self.z_score(value) > self.z_thresh

    def get_clip_value(self, value: float) -> float:
        """Return ``mean + std * clipping_function(z, z_thresh)``."""
        if self.mean is None:
            return value
        target = self.clipping_function(self.z_score(value), self.z_thresh)
        return self.mean + math.sqrt(self.variance) * target

    def update(self, value: float) -> None:
        """Move the mean and the variance towards ``value``."""
        if self.mean is None:
            self.mean = float(value)
            return
        deviation = value - self.mean
        self.mean = self.alpha * self.mean + (1 - self.alpha) * value
        self.variance = self.alpha * self.variance + (1 - self.alpha) * deviation**2

    def __repr__(self) -> str:
        return (
            f'ZStatCriterion(alpha={self.alpha}, z_thresh={self.z_thresh}, '
            f'clipping_function={getattr(self.clipping_function, "__name__", "?")})'
        )


class StatsCollector:
    """Gathers up to ``max_samples`` values; their mean and (population) variance.

    Args:
        max_samples: how many values complete the collection, at least 1.
    """

    def __init__(self, max_samples: int) -> None:
        if isinstance(max_samples, bool) or not isinstance(max_samples, int):
            raise LearningSchemaError(
                f'max_samples must be an integer: {max_samples!r}'
            )
        if max_samples < 1:
            raise LearningSchemaError(f'max_samples must be >= 1, got {max_samples}.')
        self.max_samples = max_samples
        self.values: list[float] = []

    @property
    def is_complete(self) -> bool:
        """Whether ``max_samples`` values were collected."""
        return len(self.values) >= self.max_samples

    @property
    def mean(self) -> float:
        """The mean of the values collected.

        Raises:
            LearningSchemaError: nothing was collected.
        """
        if not self.values:
            raise LearningSchemaError('StatsCollector: no value collected yet.')
        return math.fsum(self.values) / len(self.values)

    @property
    def variance(self) -> float:
        """The population variance of the values collected."""
        mean = self.mean
        return math.fsum((v - mean) ** 2 for v in self.values) / len(self.values)

    def append(self, value: float) -> None:
        """Collect ``value``; values past ``max_samples`` are ignored."""
        if not self.is_complete:
            self.values.append(float(value))

    def reset(self) -> None:
        """Forget the values."""
        self.values.clear()

    def __len__(self) -> int:
        return len(self.values)
