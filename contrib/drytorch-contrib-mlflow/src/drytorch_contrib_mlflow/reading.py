"""Read a run's metric history back from its MLflow run.

MLflow keeps every point it is sent: when a resumed run measured an epoch
again (it continued from an earlier checkpoint), a key has two points at that
step. The points are replayed in the order they were logged, so the history
keeps the later one and drops what the interrupted session logged after it,
as DRYTorch's own metric files do. The metrics of one event share a
timestamp and a step: they are one epoch of the history.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from drytorch import MetricHistory, exceptions

from drytorch_contrib_mlflow import keys

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

__all__ = ['read_metrics']


def read_metrics(
    state: Mapping[str, Any],
) -> dict[str, dict[str, MetricHistory]] | None:
    """Return ``{model: {source: history}}`` of the MLflow run of ``state``.

    Args:
        state: the run record's ``[plugins.mlflow]`` table.

    Returns:
        The history, or None when there is no MLflow run to read: no state,
        MLflow not installed, the store or the run gone (a local store that
        does not exist is never created), or no metric logged.
    """
    run_id, uri = state.get('run_id'), state.get('tracking_uri')
    if not isinstance(run_id, str) or not isinstance(uri, str):
        return None
    store = keys.local_store(uri)
    if store is not None and not store.exists():
        return None
    try:
        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient
    except ImportError:
        return None
    try:
        client = MlflowClient(tracking_uri=uri)
        names = list(client.get_run(run_id).data.metrics)
        points = _points(client, run_id, names)
    except MlflowException as err:
        if err.error_code != 'RESOURCE_DOES_NOT_EXIST':
            warnings.warn(
                f'The metrics of MLflow run {run_id} in {uri!r} could not be read: '
                f'{err.message}',
                exceptions.DryTorchWarning,
                stacklevel=2,
            )
        return None
    if not points:
        return None
    out: dict[str, dict[str, MetricHistory]] = {}
    for (model, source), found in points.items():
        history = MetricHistory(epochs=[], values={})
        # in the order they were logged: an epoch logged again (a resumed run
        # that went back to an earlier checkpoint) replaces it and what followed
        found.sort(key=lambda point: (point[0], point[1]))
        moment: tuple[int, int] | None = None
        metrics: dict[str, float] = {}
        for timestamp, step, metric, value in found:
            if (timestamp, step) != moment:
                if moment is not None:
                    history.add(moment[1], metrics)
                moment, metrics = (timestamp, step), {}
            metrics[metric] = value
        if moment is not None:
            history.add(moment[1], metrics)
        out.setdefault(model, {})[source] = history
    return out


_Point = tuple[int, int, str, float]  # timestamp, step, metric, value


def _points(
    client: MlflowClient, run_id: str, names: list[str]
) -> dict[tuple[str, str], list[_Point]]:
    """Return every point of the tracker's metrics, by ``(model, source)``."""
    points: dict[tuple[str, str], list[_Point]] = {}
    for name in sorted(names):
        parsed = keys.parse_metric_key(name)
        if parsed is None:  # a metric logged by someone else
            continue
        model, source, metric = parsed
        found = points.setdefault((model, source), [])
        for point in client.get_metric_history(run_id, name):
            found.append((int(point.timestamp), int(point.step), metric, point.value))
    return points
