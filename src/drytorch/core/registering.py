"""Which run each model belongs to.

A module registered in one run must not leak into another: that would carry
state between runs and break reproducibility. Ownership is kept with weak
references to the modules, so a module that was garbage-collected can never
be confused with a new one that reuses its ``id()``. The policy (refusing a
module owned by another run) is a validator plugin,
``drytorch.validators.modules``; this module only keeps the facts.

The original DRYTorch's names are here too: ``register_model(model)`` with
one argument, ``register_actor``/``unregister_actor``, and ``ALL_MODULES`` /
``ALL_ACTORS``, read-only live views of the registrations.
"""

from __future__ import annotations

import datetime
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from drytorch.core import exceptions, log_events, scope
from drytorch.core.plugins import get_host

if TYPE_CHECKING:
    from drytorch.core.experiment import Run
    from drytorch.core.run_view import RunView
    from drytorch.lib.models import Model

__all__ = [
    'ALL_ACTORS',
    'ALL_MODULES',
    'RunKey',
    'owner_of',
    'register_actor',
    'register_model',
    'registered_at',
    'require_registered',
    'unregister_actor',
    'unregister_model',
]

_K = TypeVar('_K')
_V = TypeVar('_V')


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
_actors: weakref.WeakKeyDictionary[Any, Model[Any, Any]] = weakref.WeakKeyDictionary()
_registered_at: dict[tuple[str, str], datetime.datetime] = {}


class _LiveView(Mapping[_K, _V]):
    """A read-only view of a registration table: it follows every change."""

    def __init__(self, table: Callable[[], Mapping[_K, _V]], what: str) -> None:
        self._table = table
        self._what = what

    def __getitem__(self, key: _K) -> _V:
        return self._table()[key]

    def __iter__(self) -> Iterator[_K]:
        return iter(list(self._table()))

    def __len__(self) -> int:
        return len(self._table())

    def __repr__(self) -> str:
        return f'<{self._what}: {dict(self._table())!r}>'


ALL_MODULES: Mapping[Any, RunKey] = _LiveView(lambda: _owners, 'ALL_MODULES')
"""Every registered module and the run it belongs to (weakly held)."""

ALL_ACTORS: Mapping[Any, Model[Any, Any]] = _LiveView(lambda: _actors, 'ALL_ACTORS')
"""Every actor registered with ``register_actor`` and its model (weakly held)."""


def owner_of(module: Any) -> RunKey | None:
    """Return the run that ``module`` is registered in, if any."""
    return _owners.get(module)


def registered_at(run_id: str, model_name: str) -> datetime.datetime | None:
    """Return when the model joined the run, while it is registered."""
    return _registered_at.get((run_id, model_name))


def register_model(model: Model[Any, Any], name: str | None = None) -> str:
    """Register ``model`` in the active run and return its unique name.

    Validators run first (``validate_model``) and may refuse it; then
    ``on_model_register`` is broadcast to trackers. ``Model`` calls this
    with its name. Without ``name`` (the original DRYTorch's form) the
    model's own name is used, the model is renamed if the name is taken, and
    a model already in the active run is refused.

    Raises:
        NoActiveExperimentError: no run is active.
        ModuleAlreadyRegisteredError: the module belongs to another run, or,
            without ``name``, to the active run already.
    """
    one_argument = name is None
    if name is None:
        name = getattr(model, 'name', None) or type(model.module).__name__
    run = scope.require_active_run(f'Model {name!r}')
    if one_argument and owner_of(model.module) == RunKey.of(run):
        raise exceptions.ModuleAlreadyRegisteredError(
            type(model.module).__name__, str(RunKey.of(run)), str(RunKey.of(run))
        )
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
    event = log_events.ModelRegisterEvent(
        model_name=unique,
        experiment_name=run.experiment.name,
        run_id=run.id,
        architecture=repr(model.module),
        n_parameters=sum(p.numel() for p in model.module.parameters()),
    )
    _registered_at[run.id, unique] = event.timestamp
    if one_argument:
        model.name = unique
    host.on_model_register(event)
    return unique


def unregister_model(model: Model[Any, Any]) -> None:
    """Release ``model`` from its run, so its module can join another run."""
    key = _owners.pop(model.module, None)
    if key is None:
        return
    _registered_at.pop((key.run_id, model.name), None)
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


def register_actor(actor: Any, model: Model[Any, Any]) -> None:
    """Record ``actor`` (a trainer or runner) as working on ``model``.

    The original DRYTorch's registration of actors: it checks that the model
    belongs to the active run and announces the actor to trackers
    (``on_actor_register``, with ``runners.describe(actor)``). Our runners
    announce themselves when they first run; an actor registered here is
    not announced again by that.

    Raises:
        NoActiveExperimentError: no run is active.
        ModuleNotRegisteredError: the model is not in the active run.
    """
    require_registered(model)
    run = scope.active_run()
    assert run is not None
    from drytorch.lib.runners import describe

    name = getattr(actor, 'name', None) or type(actor).__name__
    _actors[actor] = model
    if hasattr(actor, '_registered_in'):  # a runner: it need not announce itself
        actor._registered_in = RunKey.of(run)
    description = describe(actor)
    if not isinstance(description, Mapping):
        description = {'repr': description}
    get_host().on_actor_register(
        log_events.ActorRegisterEvent(name, model.name, run.id, description)
    )


def unregister_actor(actor: Any) -> None:
    """Forget ``actor``'s registration; nothing happens if it has none."""
    _actors.pop(actor, None)
