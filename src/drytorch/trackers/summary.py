"""The built-in summary plugin: the last metrics of each model go in the run record.

``drytorch runs`` and ``drytorch show`` read them from there, whatever trackers
the run had. Layout in the record: ``[summary.metrics.<model>.<source>]`` with
``epoch`` and one key per metric.
"""

from __future__ import annotations

from drytorch.core import log_events, scope
from drytorch.hookspecs._markers import hookimpl


@hookimpl
def on_metrics(event: log_events.MetricsEvent) -> None:
    """Keep the latest metrics of the model and source in the active run's summary."""
    run = scope.active_run()
    if run is None:
        return
    models = run.summary.setdefault('metrics', {})
    models.setdefault(event.model_name, {})[event.source_name] = {
        'epoch': event.epoch,
        **event.metrics,
    }
