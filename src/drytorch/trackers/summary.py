"""The built-in summary plugin: what the run record keeps about a run's results.

``drytorch runs``, ``show`` and ``verify`` read it from the record, whatever
trackers the run had. Layout in the record::

    [summary.metrics.<model>.<source>]   epoch and the last value of each metric
    [summary.checkpoints."<model>/<file>"]  path, epoch, batch and SHA-256 of each
                                           checkpoint file saved by the run
"""

from __future__ import annotations

import hashlib
import pathlib

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


@hookimpl
def on_checkpoint_save(event: log_events.CheckpointEvent) -> None:
    """Record a saved checkpoint file and its hash, for ``drytorch verify``."""
    run = scope.active_run()
    path = pathlib.Path(event.location)
    if run is None or not path.is_file():  # a remote backend: nothing to hash
        return
    with path.open('rb') as file:
        digest = hashlib.file_digest(file, 'sha256')
    run.summary.setdefault('checkpoints', {})[f'{event.model_name}/{path.name}'] = {
        'path': str(path),
        'epoch': event.epoch,
        'batch': event.batch,
        'sha256': digest.hexdigest(),
    }


@hookimpl
def on_checkpoint_delete(event: log_events.CheckpointEvent) -> None:
    """Forget a checkpoint that a retention policy deleted."""
    run = scope.active_run()
    saved = run.summary.get('checkpoints', {}) if run is not None else {}
    for key, entry in list(saved.items()):
        if key.startswith(f'{event.model_name}/') and (
            entry.get('epoch'),
            entry.get('batch'),
        ) == (event.epoch, event.batch):
            del saved[key]
