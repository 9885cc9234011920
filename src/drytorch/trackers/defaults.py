"""The built-in tracker plugin: which trackers each init mode starts with."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from drytorch.core.tracking import Tracker
from drytorch.hookspecs._markers import hookimpl


@hookimpl
def default_trackers(mode: str) -> Sequence[Tracker]:
    """Log metrics in ``standard``, the run line in ``minimal``, nothing in ``none``."""
    from drytorch.trackers import logging

    if mode == 'standard':
        return [logging.BuiltinLogger(level=logging.METRICS)]
    if mode == 'minimal':
        return [logging.BuiltinLogger(level=logging.RUN)]
    return []


@hookimpl
def tracker_types() -> Mapping[str, Callable[[], Tracker]]:
    """Offer the built-in trackers by name."""
    from drytorch.trackers import logging

    return {'BuiltinLogger': logging.BuiltinLogger}
