"""The ``MLflow`` tracker: each DRYTorch run is one MLflow run.

What maps to what (see the package README for the whole table):

- the DRYTorch experiment is the MLflow experiment of the same name (created
  when missing), the run id is the MLflow run name;
- the configuration is the run's params, flattened to dotted keys;
- each metric of each source is the metric ``<model>/<source>/<metric>`` at
  step = the model's epoch;
- each metric by optimizer step (``on_step_metrics``) is the metric
  ``<model>/step/<source>/<metric>`` at step = the optimizer step, sent at
  most every few seconds (``STEP_SEND_SECONDS``) and when training ends;
- each saved checkpoint is a tag ``drytorch.checkpoint/<model>/epoch_<n>``
  holding its location and SHA-256 (the weights are uploaded only with
  ``log_checkpoints=True``);
- the run's end is the MLflow status ``FINISHED`` or ``FAILED``.

The MLflow run id is kept in the DRYTorch run record (``[plugins.mlflow]``):
a resumed DRYTorch run continues the same MLflow run, in any process.

Everything goes through an ``MlflowClient`` bound to one tracking URI, never
through MLflow's global active run, so other MLflow code in the process is
left alone. MLflow is imported when a run starts, not with this module.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from drytorch import Tracker, exceptions, hookimpl

from drytorch_contrib_mlflow import keys
from drytorch_contrib_mlflow.keys import TAG

if TYPE_CHECKING:
    from drytorch import RunView
    from drytorch.log_events import (
        CheckpointEvent,
        MetricsEvent,
        RunStartEvent,
        RunStopEvent,
        StepMetricsEvent,
    )
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

__all__ = ['INSTALL_HINT', 'STEP_SEND_SECONDS', 'MLflow']

INSTALL_HINT = (
    'pip install drytorch-contrib-mlflow (or pip install mlflow-skinny '
    'sqlalchemy alembic)'
)
STATE_FORMAT = 1
# MLflow's limits on one log_batch request
_PARAMS_PER_BATCH = 100
_METRICS_PER_BATCH = 1000
STEP_SEND_SECONDS = 5.0
"""The most seconds step points wait to be sent: one request, not one per event."""

_T = TypeVar('_T')


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _millis(moment: Any) -> int:
    return int(moment.timestamp() * 1000)


def _check_installed(tracking_uri: str | None) -> None:
    """Raise ImportError when MLflow, or what its store needs, is missing.

    Only looks for the modules: nothing is imported.
    """
    if importlib.util.find_spec('mlflow') is None:
        raise ImportError(f'The MLflow tracker needs MLflow: {INSTALL_HINT}.')
    # MLflow's own default store is a SQLite file (sqlite:///mlflow.db)
    uri = tracking_uri or os.environ.get('MLFLOW_TRACKING_URI') or 'sqlite:'
    if keys.is_database(uri):
        missing = [
            name
            for name in ('sqlalchemy', 'alembic')
            if not importlib.util.find_spec(name)
        ]
        if missing:
            raise ImportError(
                f'The MLflow tracker needs {" and ".join(missing)} for the tracking '
                f'URI {uri!r} (a database store): {INSTALL_HINT}.'
            )


@dataclasses.dataclass
class _Active:
    """The MLflow run of the DRYTorch run being tracked."""

    client: MlflowClient
    tracking_uri: str
    experiment_id: str
    run_id: str
    checkpoints: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    steps: list[Metric] = dataclasses.field(default_factory=list)  # not sent yet
    steps_sent: float = -math.inf  # time.monotonic() of the last send


class MLflow(Tracker):
    """Track DRYTorch runs as MLflow runs: config, metrics, checkpoints, status.

    Args:
        tracking_uri: where MLflow stores runs (``sqlite:///mlflow.db``,
            ``http://host:5000``, ...); by default MLflow's own choice, the
            ``MLFLOW_TRACKING_URI`` variable or else ``sqlite:///mlflow.db``
            in the working directory. A relative SQLite file or folder is
            made absolute when the run starts, so a resumed run finds the
            same store from any folder.
        log_checkpoints: also upload each saved checkpoint file as an
            artifact (``checkpoints/<model>/<file>``) of the MLflow run.
            Off by default: checkpoints can be large and DRYTorch keeps them.
        artifact_location: the artifact root of the MLflow experiments this
            tracker creates (MLflow's default otherwise); experiments that
            exist keep theirs.

    Raises:
        ImportError: MLflow is not installed, or the store is a database and
            SQLAlchemy or Alembic is not.
    """

    def __init__(
        self,
        tracking_uri: str | None = None,
        *,
        log_checkpoints: bool = False,
        artifact_location: str | None = None,
    ) -> None:
        _check_installed(tracking_uri)
        super().__init__()
        self.tracking_uri = tracking_uri
        self.log_checkpoints = log_checkpoints
        self.artifact_location = artifact_location
        self._active: _Active | None = None

    @property
    def client(self) -> MlflowClient:
        """The MLflow client of the active run, to log more of your own.

        Raises:
            TrackerError: no run is being tracked.
        """
        return self._require().client

    @property
    def run_id(self) -> str:
        """The MLflow run id of the active run.

        Raises:
            TrackerError: no run is being tracked.
        """
        return self._require().run_id

    def _require(self) -> _Active:
        if self._active is None:
            raise exceptions.TrackerError('The MLflow tracker tracks no run now.')
        return self._active

    # --- run start -----------------------------------------------------------

    @hookimpl
    def on_run_start(self, event: RunStartEvent, run: RunView) -> None:
        """Create the MLflow run, or continue the one of a resumed run."""
        self._active = None
        if run.rank != 0:  # one MLflow run per DRYTorch run: rank 0 logs it
            return
        state = run.plugin_state(keys.STATE_NAME)
        if run.resumed and isinstance(state.get('run_id'), str):
            self._active = self._continue(state, run)
        if self._active is None:
            self._active = self._create(event, run)
            run.save_plugin_state(
                keys.STATE_NAME,
                {
                    'format': STATE_FORMAT,
                    'tracking_uri': self._active.tracking_uri,
                    'experiment_id': self._active.experiment_id,
                    'run_id': self._active.run_id,
                },
            )

    def _client(self, uri: str) -> MlflowClient:
        from mlflow.tracking import MlflowClient

        return MlflowClient(tracking_uri=uri)

    def _resolved_uri(self) -> str:
        if self.tracking_uri is not None:
            return keys.absolute_uri(self.tracking_uri)
        import mlflow

        # the env var or MLflow's default; reads no active run
        return keys.absolute_uri(str(mlflow.get_tracking_uri()))

    def _create(self, event: RunStartEvent, run: RunView) -> _Active:
        from mlflow.entities import Param, RunTag

        uri = self._resolved_uri()
        client = self._client(uri)
        experiment_id = self._experiment_id(client, run.experiment)
        tags = {
            TAG.RUN_ID: run.id,
            TAG.EXPERIMENT: run.experiment,
            TAG.EXPERIMENT_CLASS: run.experiment_class,
            TAG.TAGS: ','.join(run.tags),
            TAG.RECORD: str(run.record_path),
            TAG.SESSIONS: '1',
        }
        if run.seed is not None:
            tags[TAG.SEED] = str(run.seed)
        created = client.create_run(
            experiment_id,
            start_time=_millis(event.timestamp),
            tags={key: keys.tag_value(value) for key, value in tags.items()},
            run_name=run.id,
        )
        run_id = str(created.info.run_id)
        values, truncated = keys.params(run.config_table())
        params = [Param(key, value) for key, value in values.items()]
        for chunk in _chunks(params, _PARAMS_PER_BATCH):
            client.log_batch(run_id, params=chunk)
        if truncated:
            client.log_batch(
                run_id,
                tags=[
                    RunTag(TAG.TRUNCATED_PARAMS, keys.tag_value(','.join(truncated)))
                ],
            )
        return _Active(client, uri, experiment_id, run_id)

    def _experiment_id(self, client: MlflowClient, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = client.get_experiment_by_name(name)
        if found is None:
            try:
                return str(
                    client.create_experiment(
                        name, artifact_location=self.artifact_location
                    )
                )
            except MlflowException as err:
                if err.error_code != 'RESOURCE_ALREADY_EXISTS':
                    raise
                found = client.get_experiment_by_name(name)  # another process won
                if found is None:
                    raise
        if found.lifecycle_stage != 'active':
            raise exceptions.TrackerError(
                f'The MLflow experiment {name!r} is deleted: restore it '
                f'(mlflow experiments restore --experiment-id {found.experiment_id}) '
                'or delete it for good (mlflow gc) before tracking runs in it.'
            )
        return str(found.experiment_id)

    def _continue(self, state: dict[str, Any], run: RunView) -> _Active | None:
        """Set the recorded MLflow run RUNNING again; None if it is gone."""
        from mlflow.entities import RunTag
        from mlflow.exceptions import MlflowException

        uri = str(state.get('tracking_uri') or self._resolved_uri())
        if (
            self.tracking_uri is not None
            and keys.absolute_uri(self.tracking_uri) != uri
        ):
            warnings.warn(
                f'Run {run.id!r} continues its MLflow run in {uri!r}, where it '
                f"started, not in the tracker's {self.tracking_uri!r}.",
                exceptions.DryTorchWarning,
                stacklevel=2,
            )
        client = self._client(uri)
        run_id = str(state['run_id'])
        try:
            found = client.get_run(run_id)
        except MlflowException as err:
            if err.error_code != 'RESOURCE_DOES_NOT_EXIST':
                raise
            found = None
        if found is None or found.info.lifecycle_stage != 'active':
            warnings.warn(
                f'The MLflow run {run_id} of run {run.id!r} is '
                f'{"deleted" if found is not None else "not in " + repr(uri)}: '
                'a new MLflow run starts.',
                exceptions.DryTorchWarning,
                stacklevel=2,
            )
            return None
        client.update_run(run_id, status='RUNNING')
        recorded = found.data.tags
        try:
            sessions = int(recorded.get(TAG.SESSIONS, '1')) + 1
        except ValueError:
            sessions = 2
        client.log_batch(
            run_id,
            tags=[
                RunTag(TAG.SESSIONS, str(sessions)),
                RunTag(TAG.TAGS, keys.tag_value(','.join(run.tags))),
            ],
        )
        if TAG.ERROR in recorded:  # the failure of an earlier session
            client.delete_tag(run_id, TAG.ERROR)
        experiment_id = str(state.get('experiment_id') or found.info.experiment_id)
        return _Active(client, uri, experiment_id, run_id)

    # --- during the run ------------------------------------------------------

    @hookimpl
    def on_metrics(self, event: MetricsEvent) -> None:
        """Log every metric of the event at step = epoch, in one request."""
        active = self._active
        if active is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [
            Metric(
                keys.metric_key(event.model_name, event.source_name, name),
                float(value),
                now,
                event.epoch,
            )
            for name, value in event.metrics.items()
        ]
        for chunk in _chunks(metrics, _METRICS_PER_BATCH):
            active.client.log_batch(active.run_id, metrics=chunk)

    @hookimpl
    def on_step_metrics(self, event: StepMetricsEvent) -> None:
        """Keep the metrics at step = the optimizer step; send them every few seconds.

        Step events can come every few steps: one request per event would
        make a remote store slow the training down.
        """
        active = self._active
        if active is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        active.steps.extend(
            Metric(
                keys.step_metric_key(event.model_name, event.source_name, name),
                float(value),
                now,
                event.step,
            )
            for name, value in event.metrics.items()
        )
        if time.monotonic() - active.steps_sent >= STEP_SEND_SECONDS:
            self._send_steps(active)

    @hookimpl
    def on_training_end(self) -> None:
        """Send the step points kept so far."""
        if self._active is not None:
            self._send_steps(self._active)

    def _send_steps(self, active: _Active) -> None:
        points, active.steps = active.steps, []
        active.steps_sent = time.monotonic()
        for chunk in _chunks(points, _METRICS_PER_BATCH):
            active.client.log_batch(active.run_id, metrics=chunk)

    @hookimpl
    def on_checkpoint_save(self, event: CheckpointEvent) -> None:
        """Tag the checkpoint's location and SHA-256; upload it if asked."""
        active = self._active
        if active is None:
            return
        key = keys.checkpoint_tag(event.model_name, event.epoch, event.batch)
        entry: dict[str, Any] = {
            'location': event.location,
            'sha256': event.digest,
            'epoch': event.epoch,
            'batch': event.batch,
        }
        if self.log_checkpoints and os.path.isfile(event.location):
            folder = f'checkpoints/{keys.key_part(event.model_name)}'
            active.client.log_artifact(active.run_id, event.location, folder)
            entry['artifact'] = f'{folder}/{os.path.basename(event.location)}'
        self._tag_checkpoint(active, key, entry)

    @hookimpl
    def on_checkpoint_delete(self, event: CheckpointEvent) -> None:
        """Mark the checkpoint's tag deleted (a retention policy removed it)."""
        active = self._active
        if active is None:
            return
        key = keys.checkpoint_tag(event.model_name, event.epoch, event.batch)
        entry = active.checkpoints.get(key)
        if entry is None:  # saved by an earlier session
            recorded = active.client.get_run(active.run_id).data.tags.get(key)
            try:
                entry = json.loads(recorded) if recorded else None
            except ValueError:
                entry = None
            if not isinstance(entry, dict):  # the tag is gone: what is known
                # (a delete event's location describes the model's folder only)
                entry = {'epoch': event.epoch, 'batch': event.batch}
        self._tag_checkpoint(active, key, {**entry, 'deleted': True})

    def _tag_checkpoint(self, active: _Active, key: str, entry: dict[str, Any]) -> None:
        active.checkpoints[key] = entry
        text = json.dumps(entry, ensure_ascii=False, separators=(',', ':'))
        active.client.set_tag(active.run_id, key, keys.tag_value(text))

    # --- run stop ------------------------------------------------------------

    @hookimpl
    def on_run_stop(self, event: RunStopEvent) -> None:
        """End the MLflow run: FINISHED, or FAILED with the error as a tag."""
        active, self._active = self._active, None
        if active is None:
            return
        try:
            self._send_steps(active)
        finally:  # the run ends even if its last points could not be sent
            self._terminate(active, event)

    def _terminate(self, active: _Active, event: RunStopEvent) -> None:
        if event.status == 'completed':
            status = 'FINISHED'
        else:
            status = 'FAILED'
            error = event.error or f'the run stopped with status {event.status!r}'
            active.client.set_tag(active.run_id, TAG.ERROR, keys.tag_value(error))
        active.client.set_terminated(
            active.run_id, status=status, end_time=_millis(event.timestamp)
        )
