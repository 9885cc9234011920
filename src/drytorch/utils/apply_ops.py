"""Apply a function to every value of a type inside nested containers.

``apply`` rebuilds lists, tuples, named tuples, dicts and dataclasses around
the results; ``apply_to`` and ``apply_cpu_detach`` move the tensors of a batch
or an output, as the runners do.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import torch

from drytorch.core.exceptions import FuncNotApplicableError, NamedTupleOnlyError

__all__ = ['apply', 'apply_cpu_detach', 'apply_to']

_Leaf = TypeVar('_Leaf')


def apply(obj: Any, expected_type: type[_Leaf], func: Callable[[_Leaf], Any]) -> Any:
    """Return ``obj`` with ``func`` applied to every ``expected_type`` inside.

    Containers are rebuilt with the results: lists, tuples, named tuples,
    dicts (their values) and dataclass instances (their fields).

    Args:
        obj: a value of ``expected_type`` or a nesting of such containers.
        expected_type: the type of the leaves ``func`` applies to.
        func: the function applied to each leaf.

    Raises:
        FuncNotApplicableError: a leaf is neither ``expected_type`` nor a
            supported container.
        NamedTupleOnlyError: a tuple subclass is not a named tuple, so it
            cannot be rebuilt.
    """
    return _walk(obj, expected_type, func, strict=True)


def _walk(
    obj: Any, expected_type: type[_Leaf], func: Callable[[_Leaf], Any], strict: bool
) -> Any:
    # strict: other leaves raise; otherwise they are kept as they are.
    if isinstance(obj, expected_type):
        return func(obj)
    if isinstance(obj, list):
        return [_walk(item, expected_type, func, strict) for item in obj]
    if isinstance(obj, tuple):
        items = [_walk(item, expected_type, func, strict) for item in obj]
        if type(obj) is tuple:
            return tuple(items)
        if hasattr(obj, '_fields'):
            return type(obj)(*items)
        raise NamedTupleOnlyError(type(obj))
    if isinstance(obj, dict):
        return type(obj)(
            (key, _walk(value, expected_type, func, strict))
            for key, value in obj.items()
        )
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {
            field.name: _walk(getattr(obj, field.name), expected_type, func, strict)
            for field in dataclasses.fields(obj)
            if field.init
        }
        return dataclasses.replace(obj, **changes)
    if strict:
        raise FuncNotApplicableError(
            getattr(func, '__name__', repr(func)), type(obj).__name__
        )
    return obj


def apply_to(obj: Any, device: torch.device | str) -> Any:
    """Return ``obj`` with every tensor inside moved to ``device``.

    Values that are not tensors are kept as they are.

    Raises:
        NamedTupleOnlyError: a tuple subclass is not a named tuple.
    """
    target = torch.device(device)

    def to_device(tensor: torch.Tensor) -> torch.Tensor:
        return tensor if tensor.device == target else tensor.to(target)

    return _walk(obj, torch.Tensor, to_device, strict=False)


def apply_cpu_detach(obj: Any) -> Any:
    """Return ``obj`` with every tensor inside detached and on the CPU.

    Raises:
        NamedTupleOnlyError: a tuple subclass is not a named tuple.
    """

    def cpu_detach(tensor: torch.Tensor) -> torch.Tensor:
        return tensor.detach().cpu()

    return _walk(obj, torch.Tensor, cpu_detach, strict=False)
