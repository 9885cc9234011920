"""Trackers: the plugins that observe runs, and each experiment's set of them.

A tracker is an object with ``@drytorch.hookimpl`` methods, exactly like any
plugin: ``def on_metrics(self, event, run)``. It is registered in the plugin
host while a run of its experiment is active, so it sees that experiment's
events only. ``Tracker`` is a convenient base class that gives a ``name``;
a subclass may also override ``notify(event)`` (or ``notify(event, run)``),
which then receives every tracking event the class has no hook method for.
Nothing else is generated, forwarded or rewritten: what a class implements is
what it receives.

The original DRYTorch's names are here too: ``EventDispatcher`` (a
``TrackerRegistry`` that can also ``publish`` an event itself),
``DEFAULT_TRACKERS`` (a read-only live view of the default trackers, by
name) and ``MetadataManager`` (nested descriptions of models and actors).
"""

from __future__ import annotations

import functools
import inspect
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Self

from drytorch.core import exceptions, scope, settings

if TYPE_CHECKING:
    from drytorch.core.plugins import PluginHost

__all__ = [
    'DEFAULT_TRACKERS',
    'INIT_MODES',
    'EventDispatcher',
    'MetadataManager',
    'Tracker',
    'TrackerRegistry',
    'as_plugin',
    'build_available',
    'default_trackers',
    'extend_default_trackers',
    'init_trackers',
    'remove_all_default_trackers',
    'reset_default_trackers',
    'trackers_by_name',
]

INIT_MODES = settings.INIT_MODES
_MARKER = 'drytorch_impl'


class Tracker:
    """Base class of trackers: a name, and an optional catch-all ``notify``.

    Implement hooks as ``@drytorch.hookimpl`` methods; each may take the
    event, the run (a ``drytorch.RunView``), or both::

        class Printer(drytorch.Tracker):
            @drytorch.hookimpl
            def on_metrics(self, event, run):
                print(run.id, event.metrics)

    Or override ``notify``: it receives every tracking event that the class
    has no hook method for, as ``notify(event)`` or ``notify(event, run)``.
    ``on_batch_end`` reaches ``notify`` only if ``notify`` asks for it: a plain
    override does (it gets everything), a ``functools.singledispatchmethod``
    does if it has a handler for ``IterateBatchEvent``. A tracker that takes
    no per-batch event costs nothing per batch.

    ``name`` identifies the tracker within an experiment and defaults to the
    class name. In a distributed run only rank 0's trackers receive events,
    so that the run is tracked once; set ``all_ranks = True`` on a tracker
    that must hear every process (it finds ``run.rank`` and
    ``run.world_size`` in the run it receives).
    """

    name: str = ''
    all_ranks: bool = False

    def __init__(self, name: str | None = None) -> None:
        self.name = name or self.name or type(self).__name__

    def notify(self, event: object) -> None:
        """Receive a tracking event without a hook method. The default ignores it."""

    def clean_up(self) -> None:
        """Release what the tracker holds for a run; called after its stop.

        The original DRYTorch's hook: an override runs once each run of the
        experiment stops, after the tracker has received the stop event.
        The default does nothing.
        """

    @classmethod
    def get_current(cls) -> Self:
        """Return the instance of this class tracking the active run.

        Raises:
            NoActiveExperimentError: no run is active.
            TrackerNotUsedError: the active experiment has no such tracker
                (a ``TrackerError``).
        """
        run = scope.require_active_run(f'{cls.__name__}.get_current()')
        for tracker in run.experiment.trackers:
            if isinstance(tracker, cls):
                return tracker
        raise exceptions.TrackerNotUsedError(cls.__name__, run.experiment.name)

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name={self.name!r})'


def as_plugin(tracker: Any) -> Any:
    """Return what the plugin host registers for ``tracker``.

    The tracker itself, unless its class overrides ``Tracker.notify`` or
    ``Tracker.clean_up``: then a plain object holding the tracker's hook
    methods and, for each other tracking hook of the contract, a call of
    ``notify`` (if overridden); ``on_run_stop`` then calls ``clean_up``.
    """
    notify = getattr(type(tracker), 'notify', None)
    clean_up = getattr(type(tracker), 'clean_up', None)
    overrides_notify = notify is not None and notify is not Tracker.notify
    cleans = clean_up is not None and clean_up is not Tracker.clean_up
    if not overrides_notify and not cleans:
        return tracker
    from drytorch.core.plugins import TRACKING_HOOKS

    plugin = types.SimpleNamespace(all_ranks=getattr(tracker, 'all_ranks', False))
    for attr in dir(type(tracker)):  # the class: properties are not evaluated
        static = inspect.getattr_static(type(tracker), attr, None)
        if getattr(static, _MARKER, None) is not None:
            setattr(plugin, attr, getattr(tracker, attr))
    if overrides_notify:
        bound = tracker.notify
        dispatching = isinstance(
            inspect.getattr_static(type(tracker), 'notify'),
            functools.singledispatchmethod,
        )  # it dispatches on the event alone
        with_run = not dispatching and _takes_run(bound)
        batches = _handles_batches(type(tracker))
        for hook_name in TRACKING_HOOKS:
            if hasattr(plugin, hook_name):
                continue
            if hook_name == 'on_batch_end' and not batches:
                continue
            setattr(plugin, hook_name, _forward(bound, with_run))
    if cleans:
        plugin.on_run_stop = _then_clean_up(
            getattr(plugin, 'on_run_stop', None), tracker.clean_up
        )
    return plugin


def _then_clean_up(
    on_run_stop: Callable[..., None] | None, clean_up: Callable[[], None]
) -> Callable[..., None]:
    from drytorch import hookimpl

    takes = _arg_names(on_run_stop) if on_run_stop is not None else []

    def stop_then_clean_up(event: Any, run: Any) -> None:
        if on_run_stop is not None:
            arguments = {'event': event, 'run': run}
            on_run_stop(**{name: arguments[name] for name in takes})
        clean_up()

    return hookimpl(stop_then_clean_up)


def _forward(notify: Callable[..., None], with_run: bool) -> Callable[..., None]:
    from drytorch import hookimpl

    if with_run:

        def forward(event: Any, run: Any) -> None:
            notify(event, run)

        return hookimpl(forward)

    def forward_event(event: Any) -> None:
        notify(event)

    return hookimpl(forward_event)


def _takes_run(notify: Callable[..., None]) -> bool:
    """Return whether a bound ``notify`` declares a second argument for the run."""
    try:
        parameters = list(inspect.signature(notify).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [
        p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 2 and all(p.kind != p.VAR_POSITIONAL for p in parameters)


class TrackerRegistry:
    """The trackers of one experiment, by unique name.

    While a run of the experiment is active, subscribed trackers are
    registered in the plugin host; a tracker that raises in a hook is removed
    from here as well.

    The trackers the experiment started with (``defaults``) give way: a
    tracker subscribed under the same name replaces the default one, so that
    a script configuring its own ``CSVDumper(par_dir=...)`` gets exactly one.
    """

    def __init__(
        self,
        experiment_name: str,
        trackers: Iterable[Any] = (),
        *,
        defaults: Iterable[Any] = (),
    ) -> None:
        self._experiment_name = experiment_name
        self._trackers: dict[str, Any] = {}
        self._defaults: set[str] = set()
        self._host: PluginHost | None = None
        defaults = list(defaults)
        self.subscribe(*defaults)
        self._defaults = {_name_of(tracker) for tracker in defaults}
        self.subscribe(*trackers)

    def subscribe(self, *trackers: Any, **named: Any) -> None:
        """Add trackers; each must have a ``name`` not used in this experiment.

        ``named`` trackers (the original DRYTorch's form) are subscribed under
        their keyword instead of their ``name``. A name used by a default
        tracker is free: the new tracker replaces it. A tracker subscribed
        while a run of the experiment is active first receives that run's
        ``RunStartEvent``.

        Raises:
            TrackerAlreadyRegisteredError: a name is already taken (a
                ``TrackerError``).
            PluginError: a tracker does not follow the hook contract.
        """
        from drytorch.core.plugins import check_plugin

        pairs = [(_name_of(tracker), tracker) for tracker in trackers]
        pairs.extend(named.items())
        for name, tracker in pairs:
            replaces = (
                name in self._defaults and self._trackers.get(name) is not tracker
            )
            if name in self._trackers and not replaces:
                raise exceptions.TrackerAlreadyRegisteredError(
                    name, self._experiment_name
                )
            if self._host is None or replaces:  # fail before anything changes
                check_plugin(
                    as_plugin(tracker), _plugin_name(name), self._origin, tracker
                )
            if replaces:
                self.remove(name)
            if self._host is not None:
                self._register(self._host, name, tracker)
            self._trackers[name] = tracker
            run = scope.active_run()
            if self._host is not None and run is not None and run.start_event:
                # joining mid-run: the tracker still sees the run start first
                self._host.replay_run_start(_plugin_name(name), run.start_event)
                if run.view is not None:
                    found = self._host.run_outputs(run.view, _plugin_name(name))
                    if found:
                        run.keeper.record_outputs(found)

    def remove(self, name: str) -> None:
        """Remove the tracker called ``name``.

        Raises:
            TrackerError: no tracker has that name.
        """
        if name not in self._trackers:
            known = ', '.join(map(repr, self._trackers)) or 'none'
            raise exceptions.TrackerError(
                f'Experiment {self._experiment_name!r} has no tracker named '
                f'{name!r} (trackers: {known}).'
            )
        del self._trackers[name]
        self._defaults.discard(name)
        if self._host is not None:
            self._host.unregister(_plugin_name(name))

    def remove_all(self) -> None:
        """Remove every tracker."""
        for name in list(self._trackers):
            self.remove(name)

    def get(self, name: str) -> Any:
        """Return the tracker called ``name``, or ``None``."""
        return self._trackers.get(name)

    @property
    def names(self) -> list[str]:
        """The names of the subscribed trackers, in subscription order."""
        return list(self._trackers)

    def __iter__(self) -> Iterator[Any]:
        return iter(list(self._trackers.values()))

    def __len__(self) -> int:
        return len(self._trackers)

    def __contains__(self, name: object) -> bool:
        return name in self._trackers

    def __repr__(self) -> str:
        return f'TrackerRegistry({self.names})'

    def activate(self, host: PluginHost) -> None:
        """Register every tracker in ``host`` for the duration of a run."""
        self._host = host
        for name, tracker in list(self._trackers.items()):
            self._register(host, name, tracker)

    def deactivate(self) -> None:
        """Unregister every tracker from the plugin host at the end of a run."""
        if self._host is not None:
            for name in self._trackers:
                self._host.unregister(_plugin_name(name))
        self._host = None

    def _register(self, host: PluginHost, name: str, tracker: Any) -> None:
        def forget() -> None:
            self._trackers.pop(name, None)

        host.register(
            as_plugin(tracker), _plugin_name(name), self._origin, on_fault=forget
        )

    @property
    def _origin(self) -> str:
        return f'tracker of experiment {self._experiment_name!r}'


_defaults: list[Any] | None = None
_mode_names: set[str] = set()  # defaults of the init mode: extensions replace them


def init_trackers(mode: str = 'standard') -> None:
    """Set the default trackers of new experiments from an init mode.

    Args:
        mode: ``standard`` (logging, progress bars, metadata files, the
            metric history as CSV), ``minimal`` (one bar over the epochs,
            no log lines), ``hydra`` (standard, logging through Hydra's
            root logger) or ``none``.

    Raises:
        SettingsError: the mode is unknown.
    """
    global _defaults
    if mode not in INIT_MODES:
        raise exceptions.SettingsError(
            f'Unknown init mode {mode!r}; use one of {INIT_MODES}.'
        )
    from drytorch.core.plugins import get_host

    _defaults = get_host().default_trackers(mode)
    _mode_names.clear()
    _mode_names.update(_name_of(tracker) for tracker in _defaults)


def extend_default_trackers(tracker_list: Iterable[Any]) -> None:
    """Add trackers to the defaults that new experiments start with.

    A tracker named like one of the init mode's replaces it. The parameter
    has the original DRYTorch's name, so keyword calls written for it work.

    Raises:
        TrackerError: a tracker added earlier already has the name.
    """
    default_trackers()  # initialise from the settings first
    assert _defaults is not None
    for tracker in tracker_list:
        name = _name_of(tracker)
        if name in _mode_names:
            _mode_names.discard(name)
            _defaults[:] = [t for t in _defaults if _name_of(t) != name]
        elif any(_name_of(t) == name for t in _defaults):
            raise exceptions.TrackerError(
                f'A default tracker named {name!r} already exists.'
            )
        _defaults.append(tracker)


def remove_all_default_trackers() -> None:
    """Start new experiments with no tracker."""
    global _defaults
    _defaults = []
    _mode_names.clear()


def reset_default_trackers() -> None:
    """Forget the defaults; they are built again from the settings on next use."""
    global _defaults
    _defaults = None


def default_trackers() -> list[Any]:
    """Return the default trackers, initialised from the settings on first use.

    The settings' ``trackers`` names are added to the init mode's trackers.
    """
    if _defaults is None:
        config = settings.get_settings()
        init_trackers(config.init_mode)
        extend_default_trackers(trackers_by_name(config.trackers))
    assert _defaults is not None
    return list(_defaults)


def trackers_by_name(names: Iterable[str]) -> list[Any]:
    """Build trackers from the names plugins offer through ``tracker_types``.

    A tracker whose optional dependency is missing is skipped with a warning.

    Raises:
        SettingsError: a name is offered by no plugin.
    """
    names = list(names)
    if not names:
        return []
    from drytorch.core.plugins import get_host

    offered = get_host().tracker_types()
    for name in names:
        if name not in offered:
            raise exceptions.SettingsError(
                f'No plugin offers a tracker named {name!r}; available: '
                f'{", ".join(sorted(offered))}.'
            )
    return build_available([(name, offered[name], {}) for name in names])


def build_available(
    specs: Iterable[tuple[str, Callable[..., Any], Mapping[str, Any]]],
) -> list[Any]:
    """Build trackers from ``(name, factory, kwargs)``; skip unavailable ones.

    A tracker whose optional dependency is missing (its factory raises
    ``ImportError`` or a DRYTorch error) is skipped with one warning: a
    missing extra never stops a run.
    """
    built = []
    for name, factory, kwargs in specs:
        try:
            built.append(factory(**kwargs))
        except (ImportError, exceptions.DryTorchError) as err:
            warnings.warn(
                f'Tracker {name} is unavailable and was skipped: {err}',
                exceptions.DryTorchWarning,
                stacklevel=3,
            )
    return built


def _handles_batches(cls: type) -> bool:
    """Return whether ``cls.notify`` wants ``IterateBatchEvent``s."""
    from drytorch.core.log_events import Event, IterateBatchEvent

    notify = next(k.__dict__['notify'] for k in cls.__mro__ if 'notify' in k.__dict__)
    if notify is Tracker.__dict__['notify']:
        return False
    registry = getattr(getattr(notify, 'dispatcher', None), 'registry', None)
    if registry is None:  # a plain override: it receives everything
        return True
    return any(
        kind not in (object, Event) and issubclass(IterateBatchEvent, kind)
        for kind in registry
    )


def _name_of(tracker: Any) -> str:
    name = getattr(tracker, 'name', None)
    if not isinstance(name, str) or not name:
        raise exceptions.TrackerError(
            f'{tracker!r} has no name; trackers need a non-empty `name` attribute '
            '(drytorch.core.tracking.Tracker provides one).'
        )
    return name


def _plugin_name(name: str) -> str:
    return f'tracker:{name}'


class EventDispatcher(TrackerRegistry):
    """The original DRYTorch's dispatcher: a ``TrackerRegistry`` that publishes.

    ``EventDispatcher(exp_name)`` holds trackers like an experiment's
    ``trackers``; ``publish(event)`` hands one event to each of them
    directly (the hook method for the event, else ``notify``), outside the
    plugin host. A tracker that raises is skipped with a
    ``TrackerExceptionWarning`` and stays subscribed.
    """

    def publish(self, event: Any) -> None:
        """Deliver ``event`` to every tracker, in subscription order."""
        hook_name = _hook_of(event)
        for name, tracker in list(self._trackers.items()):
            handler = getattr(as_plugin(tracker), hook_name, None)
            if handler is None:
                continue
            try:
                if 'run' in _arg_names(handler):
                    handler(event=event, run=None)
                else:
                    handler(event)
            except Exception as err:
                warnings.warn(
                    exceptions.TrackerExceptionWarning(name, err), stacklevel=2
                )


def _hook_of(event: Any) -> str:
    from drytorch.core import log_events

    if isinstance(event, log_events.CheckpointEvent):
        return f'on_checkpoint_{event.action}'
    for kind in type(event).__mro__:
        hook_name = _HOOKS.get(kind.__name__)
        if hook_name is not None:
            return hook_name
    raise exceptions.TrackerError(
        f'{event!r} is not a DRYTorch event; publish one of drytorch.log_events.'
    )


_HOOKS = {
    'RunStartEvent': 'on_run_start',
    'RunStopEvent': 'on_run_stop',
    'ModelRegisterEvent': 'on_model_register',
    'ModelUnregisterEvent': 'on_model_unregister',
    'ActorRegisterEvent': 'on_actor_register',
    'TrainingStartEvent': 'on_training_start',
    'TrainingEndEvent': 'on_training_end',
    'EpochStartEvent': 'on_epoch_start',
    'EpochEndEvent': 'on_epoch_end',
    'IterateBatchEvent': 'on_batch_end',
    'MetricsEvent': 'on_metrics',
    'StepMetricsEvent': 'on_step_metrics',
    'LearningRateEvent': 'on_learning_rate',
    'TerminationEvent': 'on_termination',
    'TestStartEvent': 'on_test_start',
    'TestEndEvent': 'on_test_end',
}


def _arg_names(function: Callable[..., Any]) -> list[str]:
    try:
        return list(inspect.signature(function).parameters)
    except (TypeError, ValueError):
        return []


class _DefaultTrackers(Mapping[str, Any]):
    """A read-only live view of ``default_trackers()``, by tracker name."""

    def _table(self) -> dict[str, Any]:
        return {_name_of(tracker): tracker for tracker in default_trackers()}

    def __getitem__(self, name: str) -> Any:
        return self._table()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._table())

    def __len__(self) -> int:
        return len(self._table())

    def __repr__(self) -> str:
        return f'DEFAULT_TRACKERS({list(self)})'


DEFAULT_TRACKERS: Mapping[str, Any] = _DefaultTrackers()
"""The default trackers of new experiments, by name (read-only, live).

Change them with ``init_trackers``, ``extend_default_trackers`` and
``remove_all_default_trackers``. Reading it first builds the defaults from
the settings, as creating an experiment would.
"""


class MetadataManager:
    """Nested, readable descriptions of models and actors (the original's name).

    ``extract_metadata(obj)`` describes an object as runners describe
    themselves in ``ActorRegisterEvent.description``: an object's own
    ``describe()``, or mappings and sequences of plain values, recursively,
    else its ``repr``. An object met again inside itself is cut with a
    ``RecursionWarning``.
    """

    def extract_metadata(self, obj: Any) -> Any:
        """Return the description of ``obj`` (TOML-friendly values)."""
        return self._extract(obj, set())

    def _extract(self, obj: Any, seen: set[int]) -> Any:
        from drytorch.lib.runners import describe

        if not isinstance(obj, Mapping | list | tuple):
            return describe(obj)
        if id(obj) in seen:
            warnings.warn(exceptions.RecursionWarning(), stacklevel=3)
            return '...'
        seen = seen | {id(obj)}
        if isinstance(obj, Mapping):
            return {str(key): self._extract(value, seen) for key, value in obj.items()}
        return [self._extract(item, seen) for item in obj]
