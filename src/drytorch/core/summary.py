"""The run's summary, kept by the core from events.

``drytorch runs``, ``show``, ``compare`` and ``verify`` read it from the
record, whatever trackers the run had.

Layout in the record::

    [summary.metrics.<model>.<source>]   epoch and the last value of each metric
    [summary.checkpoints."<model>/<name>"]  location, epoch, batch, sha256
    [summary.outputs]                     label = location, from ``run_outputs``
    [summary.tracker_seconds]             slow trackers of the last session

Metrics are written as they are measured (merged with what is on disk), at
most every ``METRICS_EVERY`` seconds and always with a checkpoint, so a run
killed at any moment shows the metrics of its last checkpoint and of all but
its last seconds. The checkpoint list changes in an order that never lets the
record name a checkpoint that is gone: a save is listed once stored, a
deletion is unlisted before the backend deletes.
"""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from drytorch.core.log_events import MetricsEvent
    from drytorch.core.run import Run

__all__ = ['METRICS_EVERY', 'SummaryKeeper']

METRICS_EVERY = 2.0  # seconds: what a killed run may lose of its last metrics


class SummaryKeeper:
    """Writes the summary of one active run as its events happen."""

    __slots__ = ('_run',)

    def __init__(self, run: Run[Any]) -> None:
        self._run = run

    def on_metrics(self, event: MetricsEvent) -> None:
        """Keep the latest metrics of the model and source."""
        run = self._run
        models = run.summary.setdefault('metrics', {})
        models.setdefault(event.model_name, {})[event.source_name] = {
            'epoch': event.epoch,
            **event.metrics,
        }
        # Replaceable data: not synced, and at most every METRICS_EVERY seconds
        # (a checkpoint's write and the stop carry the latest anyway).
        run.save_summary(sync=False, unless_written_within=METRICS_EVERY)

    def record_outputs(self, outputs: Mapping[str, str]) -> None:
        """Note where plugins write the run's outputs; written now."""
        if outputs:
            self._run.summary.setdefault('outputs', {}).update(outputs)
        self._run.save_summary()

    def record_checkpoint(
        self, model: str, epoch: int, batch: int, where: str, digest: str | None
    ) -> None:
        """List a stored checkpoint and its digest; written (synced) now."""
        entry: dict[str, Any] = {'path': where, 'epoch': epoch, 'batch': batch}
        if digest is not None:
            entry['sha256'] = digest
        checkpoints = self._run.summary.setdefault('checkpoints', {})
        checkpoints[f'{model}/{pathlib.PurePath(where).name}'] = entry
        self._run.save_summary()

    def forget_checkpoint(self, model: str, epoch: int, batch: int) -> None:
        """Unlist the checkpoint at ``(epoch, batch)`` before it is deleted."""
        prefix = f'{model}/'
        gone = [
            ('checkpoints', key)
            for key, entry in self._run.summary.get('checkpoints', {}).items()
            if key.startswith(prefix)
            and (entry.get('epoch'), entry.get('batch', 0)) == (epoch, batch)
        ]
        if gone:
            self._run.save_summary(remove=gone)
