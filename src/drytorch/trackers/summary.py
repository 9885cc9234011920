"""The built-in summary plugin: the last metrics of a run, in its record.

``drytorch runs``, ``show`` and ``compare`` read them from the record, whatever
trackers the run had. Metrics are written into the record as they are
measured (merged with what is on disk), at most every ``METRICS_EVERY``
seconds and always with a checkpoint, so a run killed at any moment shows
the metrics of its last checkpoint and of all but its last seconds. Layout in
the record::

    [summary.metrics.<model>.<source>]   epoch and the last value of each metric

The checkpoint list beside them (``[summary.checkpoints]``) is kept by the
core as files are saved and deleted (``drytorch.core.checkpointing``).
"""

from __future__ import annotations

from drytorch.core import log_events, scope
from drytorch.hookspecs._markers import hookimpl

METRICS_EVERY = 2.0  # seconds: what a killed run may lose of its last metrics


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
    # Replaceable data: not synced, and at most every METRICS_EVERY seconds
    # (a checkpoint's write and the stop carry the latest anyway).
    run.save_summary(sync=False, unless_written_within=METRICS_EVERY)
