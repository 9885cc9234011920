"""The built-in summary plugin: the last metrics of a run, in its record.

``drytorch runs``, ``show`` and ``compare`` read them from the record, whatever
trackers the run had. Each epoch's metrics are written into the record when
they are measured (merged with what is on disk), so a run killed at any
moment still shows them. Layout in the record::

    [summary.metrics.<model>.<source>]   epoch and the last value of each metric

The checkpoint list beside them (``[summary.checkpoints]``) is kept by the
core as files are saved and deleted (``drytorch.core.checkpointing``).
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
    run.save_summary(sync=False)  # metrics can be measured again; files cannot
