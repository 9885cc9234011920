"""Refuse a module that is registered in another run (run isolation)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drytorch import hookimpl
from drytorch.core import exceptions, registering

if TYPE_CHECKING:
    from drytorch.core.run_view import RunView
    from drytorch.lib.models import Model


@hookimpl
def validate_model(model: Model[Any, Any], run: RunView) -> None:
    """Raise ``ModuleAlreadyRegisteredError`` if another run owns the module."""
    owner = registering.owner_of(model.module)
    if owner is not None and owner != registering.RunKey.of(run):
        raise exceptions.ModuleAlreadyRegisteredError(
            type(model.module).__name__, str(owner), str(registering.RunKey.of(run))
        )
