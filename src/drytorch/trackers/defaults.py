"""The built-in tracker plugin: the trackers of each init mode, and trackers by name.

Every tracker module is imported only when a tracker of it is built. A default
tracker whose optional dependency is missing is skipped with one warning: a
missing extra never stops a run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from drytorch import hookimpl
from drytorch.core.tracking import Tracker, build_available

_TYPES = {
    'BuiltinLogger': 'drytorch.trackers.logging',
    'TqdmLogger': 'drytorch.trackers.tqdm',
    'CSVDumper': 'drytorch.trackers.csv',
    'TomlDumper': 'drytorch.trackers.toml',
    'SQLiteTracker': 'drytorch.trackers.sqlite',
    'PlotTracker': 'drytorch.trackers.plot',
}


def _factory(name: str) -> Callable[..., Tracker]:
    def build(*args: Any, **kwargs: Any) -> Tracker:
        cls = getattr(importlib.import_module(_TYPES[name]), name)
        tracker: Tracker = cls(*args, **kwargs)
        return tracker

    build.__name__ = build.__qualname__ = name
    return build


def _build(specs: Sequence[tuple[str, dict[str, Any]]]) -> list[Tracker]:
    return build_available((name, _factory(name), kwargs) for name, kwargs in specs)


@hookimpl
def default_trackers(mode: str) -> Sequence[Tracker]:
    """Return the trackers of ``mode``.

    ``standard``: logging of runs, epochs and metrics, a progress bar per
    epoch, metadata files, the metric history as CSV (what ``drytorch
    plot``, ``show`` and ``compare`` read). ``minimal``: one bar over the
    epochs and no log line at all (as in the original DRYTorch; its logger
    is kept, silent, so that ``set_verbosity`` can still make it talk).
    ``hydra``: like standard, logging through the root logger that Hydra
    configures. ``none``: nothing.
    """
    from drytorch.trackers.logging import METRICS, QUIET

    if mode == 'standard':
        return _build(
            [
                ('BuiltinLogger', {'level': METRICS}),
                ('TqdmLogger', {}),
                ('TomlDumper', {}),
                ('CSVDumper', {}),
            ]
        )
    if mode == 'minimal':
        return _build(
            [
                ('BuiltinLogger', {'level': QUIET}),
                ('TqdmLogger', {'enable_training_bar': True, 'epoch_bars': False}),
            ]
        )
    if mode == 'hydra':
        return _build(
            [
                ('BuiltinLogger', {'level': METRICS, 'hydra': True}),
                ('TqdmLogger', {}),
                ('TomlDumper', {}),
                ('CSVDumper', {}),
            ]
        )
    return []


@hookimpl
def tracker_types() -> Mapping[str, Callable[[], Tracker]]:
    """Offer the built-in trackers by class name."""
    return {name: _factory(name) for name in _TYPES}
