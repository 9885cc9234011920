"""Operations applied to the gradients between backward and the optimizer step.

They modify ``.grad`` in place and never read a value back to the host (no
``.item()``), so a training step on an accelerator does not wait on them. The
torch clipping functions pick their fused ``foreach`` kernels where the device
supports them. Operations are frozen dataclasses so that their ``repr`` can be
recorded as metadata and they compare by value.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import torch

from drytorch.core.exceptions import LearningSchemaError

__all__ = ['GradNormClipper', 'GradValueClipper', 'GradientOp', 'NoOp']


@runtime_checkable
class GradientOp(Protocol):
    """Modifies the gradients of ``params`` in place."""

    def __call__(self, params: Iterable[torch.Tensor]) -> None:
        """Apply the operation to the ``.grad`` of each parameter."""


@dataclasses.dataclass(frozen=True)
class NoOp:
    """Leave the gradients untouched."""

    def __call__(self, params: Iterable[torch.Tensor]) -> None:
        """Do nothing; ``params`` is not even iterated."""


@dataclasses.dataclass(frozen=True)
class GradNormClipper:
    """Rescale the gradients so that their joint norm is at most ``max_norm``.

    Args:
        max_norm: the largest norm allowed, positive and finite.
        norm_type: the p of the p-norm, positive (``math.inf`` for the max).
    """

    max_norm: float
    norm_type: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.max_norm < math.inf:
            raise LearningSchemaError(
                f'max_norm must be positive and finite, got {self.max_norm!r}.'
            )
        if not self.norm_type > 0:
            raise LearningSchemaError(
                f'norm_type must be positive (math.inf for the max norm), '
                f'got {self.norm_type!r}.'
            )

    def __call__(self, params: Iterable[torch.Tensor]) -> None:
        """Clip the joint gradient norm of ``params`` in place."""
        torch.nn.utils.clip_grad_norm_(
            params, self.max_norm, norm_type=self.norm_type, foreach=None
        )


@dataclasses.dataclass(frozen=True)
class GradValueClipper:
    """Clamp every gradient element to ``[-clip_value, clip_value]``.

    Args:
        clip_value: the largest absolute value allowed, positive and finite.
    """

    clip_value: float

    def __post_init__(self) -> None:
        if not 0 < self.clip_value < math.inf:
            raise LearningSchemaError(
                f'clip_value must be positive and finite, got {self.clip_value!r}.'
            )

    def __call__(self, params: Iterable[torch.Tensor]) -> None:
        """Clamp the gradients of ``params`` in place."""
        torch.nn.utils.clip_grad_value_(params, self.clip_value, foreach=None)
