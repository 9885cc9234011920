"""The plugin host: loads built-in and entry-point plugins, dispatches hooks.

Built-in plugins are module paths in ``BUILTIN_PLUGINS`` and load through the
same path as third-party ones found in the ``drytorch`` entry-point group.
Nothing is imported until the host is first needed, so ``import drytorch``
stays cheap.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.metadata
import os
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from time import perf_counter
from typing import Any, NamedTuple

import pluggy

from drytorch.core import exceptions, settings, watchdog
from drytorch.hookspecs import PROJECT_NAME, SPEC_MODULES

__all__ = [
    'BUILTIN_PLUGINS',
    'ENTRY_POINT_GROUP',
    'PluginHost',
    'PluginInfo',
    'PluginLoadWarning',
    'check_plugin',
    'get_host',
    'reset_host',
]

ENTRY_POINT_GROUP = 'drytorch'
BUILTIN_PLUGINS = (
    'drytorch.core.scope',
    'drytorch.validators.names',
    'drytorch.validators.config',
    'drytorch.validators.modules',
    'drytorch.trackers.defaults',
    'drytorch.trackers.readers',
    'drytorch.storage.local',
)
TRACKING_HOOKS = frozenset(
    name for module in SPEC_MODULES for name in vars(module) if name.startswith('on_')
)


class PluginLoadWarning(exceptions.DryTorchWarning):
    """An entry-point plugin could not be imported, or its name is taken: skipped."""


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """What ``drytorch plugins`` shows about one registered plugin."""

    name: str
    origin: str
    hooks: tuple[str, ...]


class PluginHost:
    """The one place that talks to pluggy: DRYTorch's hooks as typed methods.

    Callers never name a hook by a string: each hook has its method here.
    Tracking hooks (``on_*``) go to every implementation with the event and
    the bound run (``bind_run``); one that raises is reported once and
    unregistered, the others still run. Query and validation hooks propagate
    errors, except ``run_outputs`` and ``load_metrics``, where a failing
    plugin is reported and skipped so that one plugin cannot hide the others'
    answers.

    In a process of rank above 0 of a distributed run, tracking hooks go
    only to plugins whose ``all_ranks`` attribute is ``True``: by default a
    distributed run is tracked once, by rank 0.

    Tracking hook calls are timed per plugin (``tracker_times``) and watched:
    one that runs longer than ``slow_tracker_seconds`` gets one
    ``SlowTrackerWarning`` with its stack, and is left to finish.
    """

    def __init__(self) -> None:
        self._manager = pluggy.PluginManager(PROJECT_NAME)
        for module in SPEC_MODULES:
            self._manager.add_hookspecs(module)
        self._origins: dict[str, str] = {}
        self._on_fault: dict[str, Callable[[], None]] = {}
        self._impls: dict[str, tuple[_Impl, ...]] = {}
        self._run: Any = None
        self._keeper: Any = None
        self._replica = False  # the bound run is of a rank above 0
        self._calls = watchdog.CallTable(
            PluginHost._dispatch.__code__, settings.Settings.slow_tracker_seconds
        )

    @property
    def slow_tracker_seconds(self) -> float:
        """Seconds after which a tracking hook call is reported; <= 0: never."""
        return self._calls.limit

    @slow_tracker_seconds.setter
    def slow_tracker_seconds(self, seconds: float) -> None:
        self._calls.limit = seconds

    # -- loading and registration ------------------------------------------

    def load(self, config: settings.Settings) -> None:
        """Register the built-in plugins, then the entry-point ones."""
        self.slow_tracker_seconds = config.slow_tracker_seconds
        for module_name in BUILTIN_PLUGINS:
            if module_name not in config.disable_plugins:
                self.register(importlib.import_module(module_name), module_name)
        # importlib.metadata lists each distribution once, even if it is
        # found twice on sys.path: a taken name is a clash of two plugins.
        for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            name = entry_point.name
            if name in config.disable_plugins:
                continue
            origin = _origin(entry_point)
            if self._manager.has_plugin(name):
                taken_by = self._origins.get(name, 'runtime')
                _skip(
                    config,
                    f'Plugin {name!r} ({origin}) was not loaded: the name is taken '
                    f'by the plugin from {taken_by}; rename one of the entry points',
                )
                continue
            try:
                plugin = entry_point.load()
                if isinstance(plugin, type):
                    plugin = plugin()
            except Exception as err:
                _skip(
                    config,
                    f'Plugin {name!r} ({origin}) failed to load: '
                    f'{type(err).__name__}: {err}; disable it with '
                    f'DRYTORCH_DISABLE_PLUGINS={name}',
                    err,
                )
                continue
            try:
                self.register(plugin, name, origin)
            except exceptions.PluginError as err:
                raise exceptions.PluginError(
                    f'{err} Disable it with DRYTORCH_DISABLE_PLUGINS={name}.'
                ) from err
        try:
            self._manager.check_pending()
        except pluggy.PluginValidationError as err:  # pragma: no cover - register
            raise exceptions.PluginError(str(err)) from err

    def register(
        self,
        plugin: object,
        name: str,
        origin: str = 'built-in',
        on_fault: Callable[[], None] | None = None,
    ) -> None:
        """Register ``plugin`` under ``name`` and check it against the contract.

        Args:
            plugin: a module or object with ``@drytorch.hookimpl`` functions.
            name: the unique plugin name shown by ``drytorch plugins``.
            origin: where it came from (built-in, a distribution, a tracker).
            on_fault: called after the plugin is unregistered for raising in a
                tracking hook.

        Raises:
            PluginError: the name is taken, a hook is unknown (a misspelt hook
                name), or a hook's arguments do not match the contract.
        """
        if self._manager.has_plugin(name):
            raise exceptions.PluginError(f'A plugin named {name!r} is already loaded.')
        try:
            self._manager.register(plugin, name)
        except pluggy.PluginValidationError as err:
            raise exceptions.PluginError(
                f'Plugin {name!r} ({origin}) does not follow the hook contract: {err}'
            ) from err
        self._impls.clear()
        problems = []
        for caller in self._manager.get_hookcallers(plugin) or []:
            impls = [i for i in caller.get_hookimpls() if i.plugin is plugin]
            if caller.spec is None and not all(i.optionalhook for i in impls):
                problems.append(f'{caller.name!r} is not a DRYTorch hook')
            elif caller.name in TRACKING_HOOKS and any(
                i.wrapper or i.hookwrapper for i in impls
            ):
                problems.append(f'{caller.name!r} is a tracking hook: no wrappers')
        if problems:
            self._manager.unregister(plugin)
            known = ', '.join(sorted(self.hook_names()))
            raise exceptions.PluginError(
                f'Plugin {name!r} ({origin}): {"; ".join(problems)}. '
                f'Known hooks: {known}.'
            )
        self._origins[name] = origin
        if on_fault is not None:
            self._on_fault[name] = on_fault

    def unregister(self, name: str) -> None:
        """Unregister the plugin called ``name`` if it is registered."""
        if self._manager.has_plugin(name):
            self._manager.unregister(name=name)
            self._impls.clear()
        self._origins.pop(name, None)
        self._on_fault.pop(name, None)

    def has_plugin(self, name: str) -> bool:
        """Return whether a plugin called ``name`` is registered."""
        return self._manager.has_plugin(name)

    def get_plugin(self, name: str) -> Any:
        """Return the plugin registered as ``name``, or ``None``."""
        return self._manager.get_plugin(name)

    def implementers(self, hook_name: str) -> list[str]:
        """Return the names of the plugins implementing a hook, in call order."""
        return [impl.name for impl in self._implementations(hook_name)]

    def lacking_argument(self, hook_name: str, argument: str) -> list[str]:
        """Return the plugins whose implementation of a hook omits ``argument``.

        Hooks gain arguments over time; an implementation written before
        declares fewer, and some callers must know (a storage backend that
        ignores ``batch`` cannot hold mid-epoch checkpoints).
        """
        return [
            i.name for i in self._implementations(hook_name) if argument not in i.args
        ]

    def hook_names(self) -> list[str]:
        """Return the names of every hook in the contract."""
        return [
            name
            for name, caller in vars(self._manager.hook).items()
            if getattr(caller, 'spec', None) is not None
        ]

    def plugins(self) -> Iterator[PluginInfo]:
        """Yield what is known about every registered plugin."""
        for name, plugin in self._manager.list_name_plugin():
            callers = self._manager.get_hookcallers(plugin) or []
            hooks = tuple(sorted(caller.name for caller in callers))
            yield PluginInfo(name, self._origins.get(name, 'runtime'), hooks)

    # -- the run that tracking hooks receive --------------------------------

    def bind_run(self, run: Any, keeper: Any = None) -> None:
        """Pass ``run`` (a ``RunView``) to tracking hooks from now on.

        ``keeper`` is the core's summary of the run: it sees each event that
        the summary is made of before any plugin does.
        """
        self._run = run
        self._keeper = keeper
        replica = getattr(run, 'rank', 0) > 0
        if replica != self._replica:
            self._replica = replica
            self._impls.clear()

    def unbind_run(self) -> None:
        """Tracking hooks receive ``run=None`` again (no run is active)."""
        self._run = None
        self._keeper = None
        if self._replica:
            self._replica = False
            self._impls.clear()

    # -- tracking hooks -----------------------------------------------------

    def on_run_start(self, event: Any) -> None:
        """Deliver a ``RunStartEvent``."""
        self._track('on_run_start', event)

    def replay_run_start(self, plugin_name: str, event: Any) -> None:
        """Deliver a ``RunStartEvent`` to one plugin (a tracker joining mid-run)."""
        impls = [
            i for i in self._implementations('on_run_start') if i.name == plugin_name
        ]
        if impls:
            self._dispatch(impls, 'on_run_start', event)

    def on_run_stop(self, event: Any) -> None:
        """Deliver a ``RunStopEvent``."""
        self._track('on_run_stop', event)

    def on_model_register(self, event: Any) -> None:
        """Deliver a ``ModelRegisterEvent``."""
        self._track('on_model_register', event)

    def on_model_unregister(self, event: Any) -> None:
        """Deliver a ``ModelUnregisterEvent``."""
        self._track('on_model_unregister', event)

    def on_actor_register(self, event: Any) -> None:
        """Deliver an ``ActorRegisterEvent``."""
        self._track('on_actor_register', event)

    def on_training_start(self, event: Any) -> None:
        """Deliver a ``TrainingStartEvent``."""
        self._track('on_training_start', event)

    def on_training_end(self, event: Any) -> None:
        """Deliver a ``TrainingEndEvent``."""
        self._track('on_training_end', event)

    def on_epoch_start(self, event: Any) -> None:
        """Deliver an ``EpochStartEvent``."""
        self._track('on_epoch_start', event)

    def on_epoch_end(self, event: Any) -> None:
        """Deliver an ``EpochEndEvent``."""
        self._track('on_epoch_end', event)

    def handles_batches(self) -> bool:
        """Return whether any plugin implements ``on_batch_end``.

        Runners ask once per epoch and build no per-batch event when none does.
        """
        return bool(self._implementations('on_batch_end'))

    def on_batch_end(self, event: Any) -> None:
        """Deliver an ``IterateBatchEvent`` (per batch: keep it cheap)."""
        impls = self._impls.get('on_batch_end') or self._implementations('on_batch_end')
        if impls:
            self._dispatch(impls, 'on_batch_end', event)

    def on_metrics(self, event: Any) -> None:
        """Deliver a ``MetricsEvent``; the run's summary keeps its values first."""
        if self._keeper is not None:
            self._keeper.on_metrics(event)
        self._track('on_metrics', event)

    def handles_step_metrics(self) -> bool:
        """Return whether any plugin implements ``on_step_metrics``."""
        return bool(self._implementations('on_step_metrics'))

    def on_step_metrics(self, event: Any) -> None:
        """Deliver a ``StepMetricsEvent``."""
        self._track('on_step_metrics', event)

    def on_learning_rate(self, event: Any) -> None:
        """Deliver a ``LearningRateEvent``."""
        self._track('on_learning_rate', event)

    def on_termination(self, event: Any) -> None:
        """Deliver a ``TerminationEvent``."""
        self._track('on_termination', event)

    def on_test_start(self, event: Any) -> None:
        """Deliver a ``TestStartEvent``."""
        self._track('on_test_start', event)

    def on_test_end(self, event: Any) -> None:
        """Deliver a ``TestEndEvent``."""
        self._track('on_test_end', event)

    def on_checkpoint_save(self, event: Any) -> None:
        """Deliver a ``CheckpointEvent`` of a save."""
        self._track('on_checkpoint_save', event)

    def on_checkpoint_load(self, event: Any) -> None:
        """Deliver a ``CheckpointEvent`` of a load."""
        self._track('on_checkpoint_load', event)

    def on_checkpoint_delete(self, event: Any) -> None:
        """Deliver a ``CheckpointEvent`` of a deletion by retention."""
        self._track('on_checkpoint_delete', event)

    # -- validation hooks: errors reach the user ------------------------------

    def validate_name(self, name: str, kind: str) -> None:
        """Let validators refuse an experiment name, run id, model name or tag."""
        self._manager.hook.validate_name(name=name, kind=kind)

    def validate_config(self, config: Any) -> None:
        """Let validators refuse an experiment configuration."""
        self._manager.hook.validate_config(config=config)

    def validate_model(self, model: Any, run: Any) -> None:
        """Let validators refuse a model joining ``run``."""
        self._manager.hook.validate_model(model=model, run=run)

    # -- query hooks --------------------------------------------------------

    def get_config(self, experiment_class: type) -> Any:
        """Return the first plugin's answer to ``experiment_class.get_config()``."""
        return self._manager.hook.get_config(experiment_class=experiment_class)

    def default_trackers(self, mode: str) -> list[Any]:
        """Return the default trackers every plugin offers for ``mode``."""
        results = self._manager.hook.default_trackers(mode=mode)
        return [tracker for result in results for tracker in result]

    def tracker_types(self) -> dict[str, Callable[[], Any]]:
        """Return the tracker factories of every plugin, by tracker name."""
        offered: dict[str, Callable[[], Any]] = {}
        for types in self._manager.hook.tracker_types():  # built-ins answer last
            offered.update(types)
        return offered

    def run_outputs(self, run: Any, plugin_name: str | None = None) -> dict[str, str]:
        """Return where plugins wrote ``run``'s outputs, by label.

        Only the plugin called ``plugin_name`` is asked, when given. A plugin
        that raises is reported with a ``PluginQueryWarning`` and skipped.
        """
        found: dict[str, str] = {}
        for impl in reversed(self._implementations('run_outputs')):
            if plugin_name is not None and impl.name != plugin_name:
                continue
            answer = self._ask(impl, 'run_outputs', run=run)
            if isinstance(answer, Mapping):
                found.update((str(k), str(v)) for k, v in answer.items())
        return found

    def load_metrics(self, run: Any) -> dict[str, dict[str, Any]] | None:
        """Return the metric history of ``run`` from the first plugin that has it.

        A plugin that raises is reported with a ``PluginQueryWarning`` and the
        next one is asked.
        """
        for impl in self._implementations('load_metrics'):
            answer = self._ask(impl, 'load_metrics', run=run)
            if answer:
                return {m: dict(sources) for m, sources in answer.items()}
        return None

    def save_checkpoint(
        self, location: Any, epoch: int, batch: int, state: Mapping[str, Any]
    ) -> str | None:
        """Store a checkpoint with the first backend that takes it; return where."""
        where = self._manager.hook.save_checkpoint(
            location=location, epoch=epoch, batch=batch, state=state
        )
        return None if where is None else str(where)

    def load_checkpoint(
        self, location: Any, epoch: int, batch: int
    ) -> Mapping[str, Any] | None:
        """Return the checkpoint at ``(epoch, batch)`` from the backend holding it."""
        state: Mapping[str, Any] | None = self._manager.hook.load_checkpoint(
            location=location, epoch=epoch, batch=batch
        )
        return state

    def list_checkpoints(self, location: Any) -> Sequence[Any] | None:
        """Return the positions the first answering backend holds."""
        found: Sequence[Any] | None = self._manager.hook.list_checkpoints(
            location=location
        )
        return found

    def delete_checkpoint(self, location: Any, epoch: int, batch: int) -> bool:
        """Delete the checkpoint at ``(epoch, batch)``; return whether one was."""
        return bool(
            self._manager.hook.delete_checkpoint(
                location=location, epoch=epoch, batch=batch
            )
        )

    def checkpoint_digest(self, location: Any, epoch: int, batch: int) -> str | None:
        """Return the SHA-256 of the stored checkpoint, if a backend gives one."""
        digest = self._manager.hook.checkpoint_digest(
            location=location, epoch=epoch, batch=batch
        )
        return None if digest is None else str(digest)

    # -- timing -------------------------------------------------------------

    def tracker_times(self) -> dict[str, float]:
        """Return the seconds spent in tracking hook calls, by plugin name.

        All threads count; a call nested in another counts in both.
        """
        return self._calls.times()

    def reset_tracker_times(self) -> None:
        """Count ``tracker_times`` from zero again (at a run's start)."""
        self._calls.reset_times()

    # -- internals ----------------------------------------------------------

    def _implementations(self, hook_name: str) -> tuple[_Impl, ...]:
        """Return a hook's implementations in call order, cached until a change."""
        impls = self._impls.get(hook_name)
        if impls is None:
            caller = getattr(self._manager.hook, hook_name)
            found = reversed(caller.get_hookimpls())
            if self._replica and hook_name in TRACKING_HOOKS:
                found = (i for i in found if getattr(i.plugin, 'all_ranks', 0) is True)
            impls = tuple(
                _Impl(
                    i.plugin_name, i.function, tuple(i.argnames), _calling(i.argnames)
                )
                for i in found
            )
            self._impls[hook_name] = impls
        return impls

    def _track(self, hook_name: str, event: object) -> None:
        impls = self._implementations(hook_name)
        if impls:
            self._dispatch(impls, hook_name, event)

    def _dispatch(self, impls: Iterable[_Impl], hook_name: str, event: object) -> None:
        """Call the tracking hook ``impls``: timed, watched, faults isolated.

        The hot path: per call, one tuple for the watchdog, one clock read and
        one dict update. ``outer`` is the call this dispatch is nested in, if
        any; it is watched again once this dispatch is over.
        """
        slot = self._calls.slots.get(threading.get_ident()) or self._calls.add_thread()
        outer = slot.call
        run = self._run
        start = perf_counter()
        try:
            for name, function, _, calling in impls:
                slot.call = (name, hook_name, start)
                try:
                    if calling == _EVENT:
                        function(event)
                    elif calling == _EVENT_RUN:
                        function(event, run)
                    elif calling == _NOTHING:
                        function()
                    elif calling == _RUN:
                        function(run)
                    else:
                        function(run, event)
                except Exception as err:
                    self._fault(name, hook_name, err)
                end = perf_counter()
                times = slot.times  # once: a reset in between cannot mix dicts
                times[name] = times.get(name, 0.0) + (end - start)
                start = end
        finally:
            slot.call = outer

    def _ask(self, impl: _Impl, hook_name: str, **kwargs: Any) -> Any:
        try:
            return impl.function(**{arg: kwargs[arg] for arg in impl.args})
        except Exception as err:
            warnings.warn(
                f'Plugin {impl.name!r} raised in {hook_name}: '
                f'{type(err).__name__}: {err}. Its answer was skipped.',
                exceptions.PluginQueryWarning,
                stacklevel=_caller_level(),
            )
            return None

    def _fault(self, plugin_name: str, hook_name: str, err: Exception) -> None:
        on_fault = self._on_fault.get(plugin_name)
        self.unregister(plugin_name)
        warnings.warn(
            f'{plugin_name!r} raised in {hook_name}: {type(err).__name__}: {err}. '
            'It was unsubscribed; the run goes on without it.',
            exceptions.TrackerFailureWarning,
            stacklevel=_caller_level(),
        )
        if on_fault is not None:
            on_fault()


_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _caller_level() -> int:
    """Return the ``stacklevel`` of the first caller outside DRYTorch.

    A plugin's fault is reported where the user's code called into DRYTorch
    (``run.start()``, ``trainer.train()``), however deep the library's calls.
    """
    level, frame = 2, sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        level, frame = level + 1, frame.f_back  # type: ignore[assignment]
    return level


class _Impl(NamedTuple):
    """One implementation of a hook, as dispatch needs it."""

    name: str
    function: Callable[..., Any]
    args: tuple[str, ...]
    calling: int


_NOTHING, _EVENT, _EVENT_RUN, _RUN, _RUN_EVENT = range(5)


def _calling(argnames: Sequence[str]) -> int:
    """Return how dispatch calls a tracking implementation with these arguments."""
    return {
        (): _NOTHING,
        ('event',): _EVENT,
        ('event', 'run'): _EVENT_RUN,
        ('run',): _RUN,
        ('run', 'event'): _RUN_EVENT,
    }.get(tuple(argnames), _EVENT)


def _skip(
    config: settings.Settings, problem: str, err: Exception | None = None
) -> None:
    """Warn that an entry-point plugin was skipped; raise in strict mode."""
    if config.strict_plugins:
        raise exceptions.PluginError(f'{problem}.') from err
    warnings.warn(
        f'{problem}. It was skipped; set DRYTORCH_STRICT_PLUGINS=1 to raise instead.',
        PluginLoadWarning,
        stacklevel=4,
    )


def _origin(entry_point: importlib.metadata.EntryPoint) -> str:
    dist = entry_point.dist
    if dist is None:
        return f'entry point {entry_point.value}'
    return f'{dist.metadata["Name"]} {dist.version}'


_host: PluginHost | None = None
_lock = threading.Lock()


def get_host() -> PluginHost:
    """Return the process's plugin host, loading the plugins on first use."""
    global _host
    if _host is None:
        with _lock:
            if _host is None:
                host = PluginHost()
                host.load(settings.get_settings())
                _host = host
    return _host


_checker: PluginHost | None = None
_checked: weakref.WeakSet[Any] = weakref.WeakSet()
_checker_lock = threading.Lock()


def check_plugin(plugin: object, name: str, origin: str, key: object = None) -> None:
    """Check ``plugin`` against the hook contract without registering it.

    An object that passed once is not checked again (default trackers are
    shared by every new experiment); ``key`` is the object to remember when
    ``plugin`` is made for the check (a tracker's ``as_plugin``).

    Raises:
        PluginError: a hook is unknown or its arguments do not match the contract.
    """
    global _checker
    with _checker_lock:
        key = plugin if key is None else key
        with contextlib.suppress(TypeError):  # not weakly referenceable
            if key in _checked:
                return
        if _checker is None:
            _checker = PluginHost()  # the contract only: no plugin is loaded
        _checker.register(plugin, name, origin)
        _checker.unregister(name)
        with contextlib.suppress(TypeError):
            _checked.add(key)


def reset_host() -> None:
    """Forget the plugin host; the next ``get_host()`` loads plugins again."""
    global _host
    with _lock:
        _host = None
