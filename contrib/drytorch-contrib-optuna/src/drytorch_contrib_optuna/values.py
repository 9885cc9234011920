"""``get_final_value``: a trial's value, from the values reported during training."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from drytorch_contrib_optuna.errors import OptunaError

__all__ = ['get_final_value', 'last', 'reported_values']


def last(values: Sequence[float]) -> float:
    """Return the last value: the default ``filter_fn``."""
    return float(values[-1])


def reported_values(trial: Any) -> list[float]:
    """Return the values reported to ``trial``, in the order of their steps.

    ``trial`` is a running ``optuna.Trial`` or a ``FrozenTrial``.

    Raises:
        OptunaError: ``trial`` is neither.
    """
    intermediate = getattr(trial, 'intermediate_values', None)
    if intermediate is None:
        study, number = getattr(trial, 'study', None), getattr(trial, 'number', None)
        if study is None or number is None:
            raise OptunaError(
                f'get_final_value needs an optuna Trial or FrozenTrial, got {trial!r}.'
            )
        frozen = next(
            (t for t in study.get_trials(deepcopy=False) if t.number == number), None
        )
        intermediate = {} if frozen is None else frozen.intermediate_values
    return [float(intermediate[step]) for step in sorted(intermediate)]


def get_final_value(
    trial: Any, filter_fn: Callable[[Sequence[float]], float] | None = None
) -> float:
    """Return the trial's final value: ``filter_fn`` of the values reported to it.

    With ``TrialCallback``, those are the monitored metric's values, one per
    epoch (already reduced by the callback's own ``filter_fn``). Return this
    from the objective of ``study.optimize``.

    Args:
        trial: a running ``optuna.Trial`` or a ``FrozenTrial``.
        filter_fn: reduces the values, in step order, to one (default: the
            last); e.g. ``min`` for the best loss seen.

    Raises:
        OptunaError: nothing was reported to the trial. A NaN is returned as
            it is: Optuna then records the trial as failed and goes on.
    """
    values = reported_values(trial)
    if not values:
        raise OptunaError(
            f'Trial {getattr(trial, "number", trial)!r} has no reported values: '
            'register a TrialCallback(trial) in trainer.post_epoch_hooks and '
            'train before asking for its final value.'
        )
    return float((filter_fn or last)(values))
