"""Operations applied to the gradients between backward and the optimizer step.

They modify ``.grad`` in place and never read a value back to the host (no
``.item()``), so a training step on an accelerator does not wait on them. The
torch clipping functions pick their fused ``foreach`` kernels where the device
supports them. Operations are frozen dataclasses so that their ``repr`` can be
recorded as metadata and they compare by value.

The adaptive clippers (``HistClipper``, ``ParamHistClipper``) are the
exception: they learn from the history of the gradient norms, so they read each
norm back (one host sync per step) and keep state; the criteria they use are in
``lib.clipping`` and importable from here.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import torch

from drytorch.core.exceptions import LearningSchemaError
from drytorch.lib.clipping import (
    ClippingCriterion,
    EMACriterion,
    StatsCollector,
    ZStatCriterion,
    max_clipping,
    mean_clipping,
    reciprocal_clipping,
)

__all__ = [
    'ClippingCriterion',
    'EMACriterion',
    'GradNormClipper',
    'GradParamNormalizer',
    'GradValueClipper',
    'GradZScoreNormalizer',
    'GradientOp',
    'HistClipper',
    'NoOp',
    'ParamHistClipper',
    'StatsCollector',
    'ZStatCriterion',
    'max_clipping',
    'mean_clipping',
    'reciprocal_clipping',
]

_EPS = 1e-12


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


def _either(name: str, ours: float | None, threshold: float | None) -> float:
    if ours is not None and threshold is not None:
        raise LearningSchemaError(f'Give {name} or threshold, not both.')
    if ours is not None:
        return ours
    return 1.0 if threshold is None else threshold


@dataclasses.dataclass(frozen=True, init=False)
class GradNormClipper:
    """Rescale the gradients so that their joint norm is at most ``max_norm``.

    Args:
        max_norm: the largest norm allowed, positive and finite (default 1;
            ``threshold=``, the original DRYTorch's keyword, is accepted).
        norm_type: the p of the p-norm, positive (``math.inf`` for the max).
    """

    max_norm: float
    norm_type: float = 2.0

    def __init__(
        self,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        *,
        threshold: float | None = None,
    ) -> None:
        object.__setattr__(self, 'max_norm', _either('max_norm', max_norm, threshold))
        object.__setattr__(self, 'norm_type', norm_type)
        self._check()

    @property
    def threshold(self) -> float:
        """``max_norm``, by the original DRYTorch's name."""
        return self.max_norm

    def _check(self) -> None:
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


@dataclasses.dataclass(frozen=True, init=False)
class GradValueClipper:
    """Clamp every gradient element to ``[-clip_value, clip_value]``.

    Args:
        clip_value: the largest absolute value allowed, positive and finite
            (default 1; ``threshold=`` is accepted).
    """

    clip_value: float

    def __init__(
        self, clip_value: float | None = None, *, threshold: float | None = None
    ) -> None:
        value = _either('clip_value', clip_value, threshold)
        if not 0 < value < math.inf:
            raise LearningSchemaError(
                f'clip_value must be positive and finite, got {value!r}.'
            )
        object.__setattr__(self, 'clip_value', value)

    @property
    def threshold(self) -> float:
        """``clip_value``, by the original DRYTorch's name."""
        return self.clip_value

    def __call__(self, params: Iterable[torch.Tensor]) -> None:
        """Clamp the gradients of ``params`` in place."""
        torch.nn.utils.clip_grad_value_(params, self.clip_value, foreach=None)


def _grads(params: Iterable[torch.Tensor]) -> list[torch.Tensor]:
    return [p.grad for p in params if p.grad is not None]


@dataclasses.dataclass(frozen=True)
class GradParamNormalizer:
    """Scale each parameter's gradient to unit (2-)norm.

    Only directions are kept: every parameter moves by the learning rate,
    whatever its gradient's size. An all-zero gradient stays zero.
    """

    def __call__(self, params: Iterable[torch.Tensor]) -> None:
        """Normalise the gradients of ``params`` in place."""
        grads = _grads(params)
        if not grads:
            return
        norms = torch._foreach_norm(grads)
        torch._foreach_div_(grads, [n.clamp_min(_EPS) for n in norms])


@dataclasses.dataclass(frozen=True)
class GradZScoreNormalizer:
    """Standardise each parameter's gradient to zero mean and unit variance.

    A gradient with one element, or no spread, is only centred.
    """

    def __call__(self, params: Iterable[torch.Tensor]) -> None:
        """Standardise the gradients of ``params`` in place."""
        for grad in _grads(params):
            centred = grad - grad.mean()
            if grad.numel() > 1:
                centred /= grad.std().clamp_min(_EPS)
            grad.copy_(centred)


def _joint_norm(grads: list[torch.Tensor]) -> torch.Tensor:
    norm: torch.Tensor = torch.linalg.vector_norm(
        torch.stack(torch._foreach_norm(grads))
    )
    return norm


class _AdaptiveClipper:
    """What the adaptive clippers share: options, warm-up, repr, reset."""

    def __init__(
        self,
        criterion: ClippingCriterion | None,
        warmup_clip_strategy: GradientOp | None,
        n_warmup_steps: int,
    ) -> None:
        if not isinstance(criterion, ClippingCriterion | None):
            raise LearningSchemaError(
                f'criterion must be a ClippingCriterion, got {criterion!r}.'
            )
        if warmup_clip_strategy is not None and not callable(warmup_clip_strategy):
            raise LearningSchemaError(
                'warmup_clip_strategy must be a gradient op, such as '
                f'GradNormClipper(1.0); got {warmup_clip_strategy!r}.'
            )
        if (
            isinstance(n_warmup_steps, bool)
            or not isinstance(n_warmup_steps, int)
            or n_warmup_steps < 0
        ):
            raise LearningSchemaError(
                f'n_warmup_steps must be an integer >= 0, got {n_warmup_steps!r}.'
            )
        self.criterion = criterion if criterion is not None else ZStatCriterion()
        self.warmup_clip_strategy: GradientOp = (
            warmup_clip_strategy
            if warmup_clip_strategy is not None
            else GradNormClipper()
        )
        self.n_warmup_steps = n_warmup_steps

    def _clip(
        self,
        criterion: ClippingCriterion,
        collector: StatsCollector | None,
        grads: list[torch.Tensor],
        norm: float,
    ) -> None:
        """Clip ``grads`` (of joint ``norm``) by ``criterion``; learn from it."""
        if collector is not None and not collector.is_complete:
            collector.append(norm)
            if collector.is_complete:
                criterion.set_statistics(collector.mean, collector.variance)
            return
        if not math.isfinite(norm):
            return  # the trainer reports a non-finite loss; learn nothing
        if criterion.should_clip(norm):
            target = criterion.get_clip_value(norm)
            torch._foreach_mul_(grads, max(target, 0.0) / max(norm, _EPS))
            norm = target
        criterion.update(norm)

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(criterion={self.criterion!r}, '
            f'warmup_clip_strategy={self.warmup_clip_strategy!r}, '
            f'n_warmup_steps={self.n_warmup_steps})'
        )


class HistClipper(_AdaptiveClipper):
    """Clip the joint gradient norm adaptively, from the history of the norms.

    For the first ``n_warmup_steps`` calls the gradients are clipped by
    ``warmup_clip_strategy`` and their norms (before it) are collected; their
    mean and variance seed ``criterion``. From then on a norm the criterion
    calls a spike is scaled down to the norm it gives, and every norm (after
    clipping) moves the criterion's statistics. Each call reads the norm back
    to the host. The history is not saved in checkpoints: a resumed run warms
    up again.

    Args:
        criterion: decides when and where to clip (default ``ZStatCriterion()``).
        warmup_clip_strategy: the op used during the warm-up (default
            ``GradNormClipper()``, a norm of at most 1).
        n_warmup_steps: calls that only collect norms; 0 seeds the criterion
            from the first norm.
    """

    def __init__(
        self,
        criterion: ClippingCriterion | None = None,
        warmup_clip_strategy: GradientOp | None = None,
        n_warmup_steps: int = 20,
    ) -> None:
        super().__init__(criterion, warmup_clip_strategy, n_warmup_steps)
        self._collector = StatsCollector(n_warmup_steps) if n_warmup_steps else None

    def __call__(self, params: Iterable[torch.Tensor]) -> None:
        """Clip the gradients of ``params`` in place."""
        params = [p for p in params if p.grad is not None]
        grads = _grads(params)
        if not grads:
            return
        norm = float(_joint_norm(grads))
        warming = self._collector is not None and not self._collector.is_complete
        self._clip(self.criterion, self._collector, grads, norm)
        if warming:
            self.warmup_clip_strategy(params)

    def reset(self) -> None:
        """Forget the history: the next calls warm up again."""
        self.criterion.reset()
        if self._collector is not None:
            self._collector.reset()


class ParamHistClipper(_AdaptiveClipper):
    """Clip each parameter's gradient norm adaptively, from its own history.

    As ``HistClipper``, with one copy of ``criterion`` and one warm-up per
    parameter (identified by its position in ``params``, which the trainer
    keeps fixed).

    Args:
        criterion: the template criterion, copied for each parameter.
        warmup_clip_strategy: the op used during the warm-up, on all the
            parameters together.
        n_warmup_steps: calls that only collect norms.
    """

    def __init__(
        self,
        criterion: ClippingCriterion | None = None,
        warmup_clip_strategy: GradientOp | None = None,
        n_warmup_steps: int = 20,
    ) -> None:
        super().__init__(criterion, warmup_clip_strategy, n_warmup_steps)
        self._criteria: list[ClippingCriterion] = []
        self._collectors: list[StatsCollector | None] = []
        self._calls = 0

    def __call__(self, params: Iterable[torch.Tensor]) -> None:
        """Clip the gradients of ``params`` in place."""
        params = list(params)
        while len(self._criteria) < len(params):
            self._criteria.append(copy.deepcopy(self.criterion))
            warmup = self.n_warmup_steps
            self._collectors.append(StatsCollector(warmup) if warmup else None)
        with_grad = [i for i, p in enumerate(params) if p.grad is not None]
        if not with_grad:
            return
        grads = _grads(params[i] for i in with_grad)
        norms = torch.stack(torch._foreach_norm(grads)).tolist()  # one sync
        warming = self._calls < self.n_warmup_steps
        self._calls += 1
        for i, grad, norm in zip(with_grad, grads, norms, strict=True):
            self._clip(self._criteria[i], self._collectors[i], [grad], float(norm))
        if warming:
            self.warmup_clip_strategy([params[i] for i in with_grad])

    def reset(self) -> None:
        """Forget every parameter's history: the next calls warm up again."""
        self._criteria.clear()
        self._collectors.clear()
        self._calls = 0
        self.criterion.reset()
