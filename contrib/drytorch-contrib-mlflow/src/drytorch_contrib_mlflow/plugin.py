"""The DRYTorch plugin (entry point ``mlflow``): the tracker by name, and reads.

- ``tracker_types``: offers the ``MLflow`` tracker, so that
  ``[tool.drytorch] trackers = ["MLflow"]`` or ``DRYTORCH_TRACKERS=MLflow``
  enables it. It is not a default tracker: installing the package never makes
  experiments log to MLflow by itself.
- ``run_outputs``: where a run's MLflow run is, for ``drytorch show``.
- ``load_metrics``: a run's metric history read back from MLflow, for
  ``drytorch plot`` (and ``RunView.metric_history()``).

The last two read the ``[plugins.mlflow]`` table that the tracker keeps in the
run record, so they answer for recorded runs too, in any process.

Nothing heavy is imported here: MLflow only when metrics are read, so
``drytorch plugins`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from drytorch import hookimpl

from drytorch_contrib_mlflow import keys

if TYPE_CHECKING:
    from drytorch import MetricHistory, RunView, Tracker

__all__ = ['LABEL', 'load_metrics', 'run_outputs', 'tracker_types']

LABEL = 'MLflow'  # the tracker's name and the label of its output


@hookimpl
def tracker_types() -> Mapping[str, Callable[[], Tracker]]:
    """Offer the ``MLflow`` tracker."""
    from drytorch_contrib_mlflow.tracker import MLflow

    return {LABEL: MLflow}


@hookimpl
def run_outputs(run: RunView) -> Mapping[str, str] | None:
    """Return ``{'MLflow': <where the MLflow run is>}`` for a run it tracked."""
    location = keys.run_location(run.plugin_state(keys.STATE_NAME))
    return None if location is None else {LABEL: location}


@hookimpl
def load_metrics(run: RunView) -> Mapping[str, Mapping[str, MetricHistory]] | None:
    """Return the run's metrics as MLflow has them; None if it has none."""
    from drytorch_contrib_mlflow.reading import read_metrics

    return read_metrics(run.plugin_state(keys.STATE_NAME))
