"""The messages of the errors the objectives raise, one builder each."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from drytorch.core.exceptions import ComputedBeforeUpdatedError, ObjectiveError


def _shape_error(name: str, value: torch.Tensor) -> ObjectiveError:
    return ObjectiveError(
        f'Loss or metric {name!r} must be a scalar or a per-sample vector '
        f'(0 or 1 dimensions), got a tensor of shape {tuple(value.shape)}. '
        'Reduce every dimension except the batch one.'
    )


def _type_error(name: str, value: object) -> ObjectiveError:
    return ObjectiveError(
        f'Loss or metric {name!r} must be a torch.Tensor, got '
        f'{type(value).__name__}. Return the tensor itself (no .item()): '
        'converting it waits for the device at every batch.'
    )


def _not_updated_error(objective: object) -> ComputedBeforeUpdatedError:
    return ComputedBeforeUpdatedError(
        f'{objective!r} has no value yet: call update(outputs, targets) on at '
        'least one batch first (none was seen since creation or reset()).'
    )


def _duplicate_error(names: Iterable[str]) -> ObjectiveError:
    listed = ', '.join(repr(name) for name in sorted(set(names)))
    return ObjectiveError(
        f'More than one objective reports {listed}. Give each metric and loss '
        'a distinct name.'
    )


def _state_error(objective: object, problem: str) -> ObjectiveError:
    return ObjectiveError(
        f'Cannot load the state of {objective!r}: {problem}. Pass the dict '
        'returned by state_dict() of the same objective.'
    )
