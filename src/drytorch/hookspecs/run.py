"""Hooks of the run lifecycle and of the scoped configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drytorch.hookspecs._markers import hookspec

if TYPE_CHECKING:
    from drytorch.core.log_events import RunStartEvent, RunStopEvent
    from drytorch.core.run_view import RunView


@hookspec
def on_run_start(event: RunStartEvent, run: RunView | None) -> None:
    """Tracking: a run started, or was resumed (``event.resumed``).

    Fires after the run is active, so ``Experiment.get_config()`` works here.
    Exceptions are reported and the implementation is unsubscribed.
    """


@hookspec
def on_run_stop(event: RunStopEvent, run: RunView | None) -> None:
    """Tracking: a run stopped; ``event.status`` is ``completed`` or ``failed``.

    Fires while the run is still active, before its record is finalised, so a
    tracker can flush its output. Exceptions are reported and the
    implementation is unsubscribed.
    """


@hookspec(firstresult=True)
def get_config(experiment_class: type) -> Any:
    """Query: answer ``experiment_class.get_config()``.

    The first non-``None`` result wins. The built-in scope plugin returns the
    active run's configuration or raises ``NoActiveExperimentError`` (no run
    is active) or ``AccessOutsideScopeError`` (the active run belongs to an
    experiment that is not an instance of ``experiment_class``).
    """
