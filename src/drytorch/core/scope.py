"""The active-run scope: one run per process, and the ``get_config`` plugin.

The core keeps the active run here; the ``get_config`` hook implementation
below is a built-in plugin like any other, so a plugin can answer
``Experiment.get_config()`` differently (for example, from a remote store).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drytorch import hookimpl
from drytorch.core import exceptions

if TYPE_CHECKING:
    from drytorch.core.experiment import Run

__all__ = ['active_run', 'enter', 'exit', 'get_config', 'require_active_run']

_active: Run[Any] | None = None


def active_run() -> Run[Any] | None:
    """Return the run active in this process, if any."""
    return _active


def require_active_run(what: str) -> Run[Any]:
    """Return the active run, or raise ``NoActiveExperimentError`` about ``what``."""
    if _active is None:
        raise exceptions.NoActiveExperimentError(what)
    return _active


def enter(run: Run[Any]) -> None:
    """Make ``run`` the active run; refuse if another one is active."""
    global _active
    if _active is not None:
        raise exceptions.RunAlreadyActiveError(repr(_active), repr(run))
    _active = run


def exit(run: Run[Any]) -> None:
    """End the scope of ``run`` if it is the active one."""
    global _active
    if _active is run:
        _active = None


@hookimpl(trylast=True)
def get_config(experiment_class: type) -> Any:
    """Return the active run's configuration if it belongs to ``experiment_class``."""
    run = require_active_run(f'{experiment_class.__name__}.get_config()')
    if not isinstance(run.experiment, experiment_class):
        raise exceptions.AccessOutsideScopeError(
            experiment_class.__name__, run.experiment.name
        )
    return run.experiment.config
