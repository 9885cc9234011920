"""Hooks of model registration in a run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drytorch.hookspecs._markers import hookspec

if TYPE_CHECKING:
    from drytorch.core.log_events import ModelRegisterEvent, ModelUnregisterEvent
    from drytorch.core.run_view import RunView
    from drytorch.lib.models import Model


@hookspec
def validate_model(model: Model[Any, Any], run: RunView) -> None:
    """Validation: a ``Model`` asks to join ``run``; raise to refuse it.

    Runs before the model is registered; the error reaches the user and the
    model is not created. The built-in module-isolation validator raises
    ``ModuleAlreadyRegisteredError`` for a module owned by another run.
    """


@hookspec
def on_model_register(event: ModelRegisterEvent, run: RunView | None) -> None:
    """Tracking: a ``Model`` joined the active run.

    Refusing a model is the job of ``validate_model``, so that tracking hooks
    never stop the run. Exceptions are reported and the implementation is
    unsubscribed.
    """


@hookspec
def on_model_unregister(event: ModelUnregisterEvent, run: RunView | None) -> None:
    """Tracking: a model was released from its run (``unregister_model``).

    After this, the module may be wrapped by a ``Model`` of another run.
    Exceptions are reported and the implementation is unsubscribed.
    """
