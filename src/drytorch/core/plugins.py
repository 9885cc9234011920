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
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from time import perf_counter
from typing import Any

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
    'drytorch.trackers.summary',
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
    """A pluggy ``PluginManager`` with DRYTorch's fault rules on top.

    Tracking hooks go through ``broadcast``: an implementation that raises is
    reported once and unregistered, and the others still run. Every other
    hook is called through ``hook`` and its errors propagate.

    Tracking hook calls are timed per plugin (``tracker_times``) and watched:
    one that runs longer than ``slow_tracker_seconds`` gets one
    ``SlowTrackerWarning`` with its stack, and is left to finish.
    """

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager(PROJECT_NAME)
        for module in SPEC_MODULES:
            self.manager.add_hookspecs(module)
        self._origins: dict[str, str] = {}
        self._on_fault: dict[str, Callable[[], None]] = {}
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

    @property
    def hook(self) -> Any:
        """The pluggy hook relay; errors of implementations propagate."""
        return self.manager.hook

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
            if self.manager.has_plugin(name):
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
            self.manager.check_pending()
        except pluggy.PluginValidationError as err:  # pragma: no cover - see register
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
        if self.manager.has_plugin(name):
            raise exceptions.PluginError(f'A plugin named {name!r} is already loaded.')
        try:
            self.manager.register(plugin, name)
        except pluggy.PluginValidationError as err:
            raise exceptions.PluginError(
                f'Plugin {name!r} ({origin}) does not follow the hook contract: {err}'
            ) from err
        problems = []
        for caller in self.manager.get_hookcallers(plugin) or []:
            impls = [i for i in caller.get_hookimpls() if i.plugin is plugin]
            if caller.spec is None and not all(i.optionalhook for i in impls):
                problems.append(f'{caller.name!r} is not a DRYTorch hook')
            elif caller.name in TRACKING_HOOKS and any(
                i.wrapper or i.hookwrapper for i in impls
            ):
                problems.append(f'{caller.name!r} is a tracking hook: no wrappers')
        if problems:
            self.manager.unregister(plugin)
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
        if self.manager.has_plugin(name):
            self.manager.unregister(name=name)
        self._origins.pop(name, None)
        self._on_fault.pop(name, None)

    def broadcast(self, hook_name: str, event: object) -> None:
        """Deliver ``event`` to every implementation of a tracking hook.

        Implementations run in pluggy's order. One that raises an ``Exception``
        is reported with a ``TrackerFailureWarning`` and unregistered.
        """
        impls = getattr(self.manager.hook, hook_name).get_hookimpls()
        if impls:
            self._dispatch(reversed(impls), hook_name, event)

    def deliver(self, name: str, hook_name: str, event: object) -> None:
        """Deliver ``event`` to one plugin, with the fault rule of ``broadcast``."""
        plugin = self.manager.get_plugin(name)
        caller = getattr(self.manager.hook, hook_name)
        impls = [impl for impl in caller.get_hookimpls() if impl.plugin is plugin]
        self._dispatch(impls, hook_name, event)

    def tracker_times(self) -> dict[str, float]:
        """Return the seconds spent in tracking hook calls, by plugin name.

        All threads count; a call nested in another counts in both.
        """
        return self._calls.times()

    def reset_tracker_times(self) -> None:
        """Count ``tracker_times`` from zero again (at a run's start)."""
        self._calls.reset_times()

    def _dispatch(
        self, impls: Iterable[pluggy.HookImpl], hook_name: str, event: object
    ) -> None:
        """Call the tracking hook ``impls``: timed, watched, faults isolated.

        The hot path: per call, one tuple for the watchdog, one clock read and
        one dict update. ``outer`` is the call this dispatch is nested in, if
        any; it is watched again once this dispatch is over.
        """
        slot = self._calls.slots.get(threading.get_ident()) or self._calls.add_thread()
        outer = slot.call
        start = perf_counter()
        try:
            for impl in impls:
                name = impl.plugin_name
                slot.call = (name, hook_name, start)
                try:
                    if impl.argnames:
                        impl.function(event)
                    else:
                        impl.function()
                except Exception as err:
                    self._fault(name, hook_name, err)
                end = perf_counter()
                times = slot.times  # once: a reset in between cannot mix dicts
                times[name] = times.get(name, 0.0) + (end - start)
                start = end
        finally:
            slot.call = outer

    def hook_names(self) -> list[str]:
        """Return the names of every hook in the contract."""
        return [
            name
            for name, caller in vars(self.manager.hook).items()
            if getattr(caller, 'spec', None) is not None
        ]

    def plugins(self) -> Iterator[PluginInfo]:
        """Yield what is known about every registered plugin."""
        for name, plugin in self.manager.list_name_plugin():
            callers = self.manager.get_hookcallers(plugin) or []
            hooks = tuple(sorted(caller.name for caller in callers))
            yield PluginInfo(name, self._origins.get(name, 'runtime'), hooks)

    def _fault(self, plugin_name: str, hook_name: str, err: Exception) -> None:
        on_fault = self._on_fault.get(plugin_name)
        self.unregister(plugin_name)
        warnings.warn(
            f'{plugin_name!r} raised in {hook_name}: {type(err).__name__}: {err}. '
            'It was unsubscribed; the run goes on without it.',
            exceptions.TrackerFailureWarning,
            stacklevel=5,
        )
        if on_fault is not None:
            on_fault()


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


def check_plugin(plugin: object, name: str, origin: str) -> None:
    """Check ``plugin`` against the hook contract without registering it.

    An object that passed once is not checked again (default trackers are
    shared by every new experiment).

    Raises:
        PluginError: a hook is unknown or its arguments do not match the contract.
    """
    global _checker
    with _checker_lock:
        with contextlib.suppress(TypeError):  # not weakly referenceable
            if plugin in _checked:
                return
        if _checker is None:
            _checker = PluginHost()  # the contract only: no plugin is loaded
        _checker.register(plugin, name, origin)
        _checker.unregister(name)
        with contextlib.suppress(TypeError):
            _checked.add(plugin)


def reset_host() -> None:
    """Forget the plugin host; the next ``get_host()`` loads plugins again."""
    global _host
    with _lock:
        _host = None
