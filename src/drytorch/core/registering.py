"""Which run each model belongs to.

A module registered in one run must not leak into another: that would carry
state between runs and break reproducibility. Ownership is kept with weak
references to the modules, so a module that was garbage-collected can never
be confused with a new one that reuses its ``id()``. The policy (refusing a
module owned by another run) is a validator plugin,
``drytorch.validators.modules``; this module only keeps the facts.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any, NamedTuple

from drytorch.core import exceptions, log_events, scope
from drytorch.core.plugins import get_host

if TYPE_CHECKING:
    from drytorch.core.experiment import Run
    from drytorch.core.run_view import RunView
    from drytorch.lib.models import Model

__all__ = [
    'RunKey',
    'owner_of',
    'register_model',
    'require_registered',
    'unregister_model',
]


class RunKey(NamedTuple):
    """Identifies a run across objects: resuming a run gives the same key."""

    experiment_key: str
    run_id: str
    experiment_name: str

    @classmethod
    def of(cls, run: Run[Any] | RunView) -> RunKey:
        """Return the key of ``run``, a ``Run`` or the ``RunView`` of one."""
        if isinstance(run.experiment, str):  # a view: the key from its fields
            from drytorch.core.experiment import experiment_key

            return cls(
                experiment_key(run.experiment, run.par_dir), run.id, run.experiment
            )
        return cls(run.experiment.key, run.id, run.experiment.name)

    def __str__(self) -> str:
        return f'run {self.run_id!r} of experiment {self.experiment_name!r}'


_owners: weakref.WeakKeyDictionary[Any, RunKey] = weakref.WeakKeyDictionary()


def owner_of(module: Any) -> RunKey | None:
    """Return the run that ``module`` is registered in, if any."""
    return _owners.get(module)


def register_model(model: Model[Any, Any], name: str) -> str:
    """Register ``model`` in the active run and return its unique name.

    Validators run first (``validate_model``) and may refuse it; then
    ``on_model_register`` is broadcast to trackers.

    Raises:
        NoActiveExperimentError: no run is active.
    """
    run = scope.require_active_run(f'Model {name!r}')
    host = get_host()
    host.validate_name(name=name, kind='model')
    host.validate_model(model=model, run=run.view)
    unique = name
    counter = 0
    while unique in run.model_names:
        counter += 1
        unique = f'{name}_{counter}'
    run.model_names.add(unique)
    _owners[model.module] = RunKey.of(run)
    host.on_model_register(
        log_events.ModelRegisterEvent(
            model_name=unique,
            experiment_name=run.experiment.name,
            run_id=run.id,
            architecture=repr(model.module),
            n_parameters=sum(p.numel() for p in model.module.parameters()),
        ),
    )
    return unique


def unregister_model(model: Model[Any, Any]) -> None:
    """Release ``model`` from its run, so its module can join another run."""
    key = _owners.pop(model.module, None)
    if key is None:
        return
    active = scope.active_run()
    if active is not None and RunKey.of(active) == key:
        active.model_names.discard(model.name)
    get_host().on_model_unregister(
        log_events.ModelUnregisterEvent(model.name, key.experiment_name, key.run_id),
    )


def require_registered(model: Model[Any, Any]) -> None:
    """Check that ``model`` belongs to the active run.

    Raises:
        NoActiveExperimentError: no run is active.
        ModuleNotRegisteredError: the model belongs to no run or another run.
    """
    run = scope.require_active_run(f'Model {model.name!r}')
    if owner_of(model.module) != RunKey.of(run):
        raise exceptions.ModuleNotRegisteredError(
            f'Model {model.name!r} does not belong to {run!r}; create the Model '
            'inside the run that uses it.'
        )
