"""Immutable events that tracking hooks receive.

Events are frozen, slotted dataclasses: a tracker can read everything it needs
but cannot change the run, and cannot depend on what another tracker did.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
from collections.abc import Callable, Mapping
from typing import Any, Literal

__all__ = [
    'ActorRegisterEvent',
    'CheckpointEvent',
    'EpochEndEvent',
    'EpochStartEvent',
    'IterateBatchEvent',
    'LearningRateEvent',
    'MetricsEvent',
    'ModelRegisterEvent',
    'ModelUnregisterEvent',
    'RunStartEvent',
    'RunStatus',
    'RunStopEvent',
    'StepMetricsEvent',
    'TerminationEvent',
    'TestEndEvent',
    'TestStartEvent',
    'TrainingEndEvent',
    'TrainingStartEvent',
]

RunStatus = Literal['created', 'running', 'completed', 'failed', 'crashed']


@dataclasses.dataclass(frozen=True, slots=True)
class RunStartEvent:
    """A run started (``resumed`` is False) or was resumed.

    Attributes:
        experiment_name: the experiment's name.
        experiment_class: the experiment's class name.
        run_id: the run's unique id within the experiment.
        resumed: whether the run was recorded before this start.
        config: the experiment's immutable configuration.
        par_dir: the folder where trackers write the run's outputs.
        tags: the experiment's tags.
        record_path: the run's record file in the registry.
        timestamp: when the run started (local time, timezone aware).
        previous_status: for a resumed run, how its last session ended:
            ``completed``, ``failed`` (``previous_error`` says why; a
            ``KeyboardInterrupt`` is an interruption), ``crashed`` (its
            process died) or ``created`` (it never started); ``None`` for a
            new run.
        previous_error: the error that ended the last session, if it failed.
    """

    experiment_name: str
    experiment_class: str
    run_id: str
    resumed: bool
    config: Any
    par_dir: pathlib.Path
    tags: tuple[str, ...]
    record_path: pathlib.Path
    timestamp: datetime.datetime
    previous_status: RunStatus | None = None
    previous_error: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RunStopEvent:
    """A run stopped.

    Attributes:
        experiment_name: the experiment's name.
        run_id: the run's id.
        status: ``completed``, or ``failed`` when an exception ended it.
        error: the exception that ended it, as ``Type: message``.
        timestamp: when the run stopped (local time, timezone aware).
    """

    experiment_name: str
    run_id: str
    status: RunStatus
    error: str | None
    timestamp: datetime.datetime


@dataclasses.dataclass(frozen=True, slots=True)
class ModelRegisterEvent:
    """A model joined the active run.

    Attributes:
        model_name: the model's name, unique within the run.
        experiment_name: the experiment's name.
        run_id: the run's id.
        architecture: the module's printed structure (``repr``).
        n_parameters: the number of parameters of the module.
    """

    model_name: str
    experiment_name: str
    run_id: str
    architecture: str
    n_parameters: int


@dataclasses.dataclass(frozen=True, slots=True)
class ModelUnregisterEvent:
    """A model was released from its run.

    Attributes:
        model_name: the model's name.
        experiment_name: the experiment's name.
        run_id: the run it belonged to.
    """

    model_name: str
    experiment_name: str
    run_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class ActorRegisterEvent:
    """A trainer, validation, test or other runner started working on a model.

    Attributes:
        actor_name: the runner's name (``Trainer``, ``Validation``, ``Test``).
        model_name: the model it works on.
        run_id: the active run's id.
        description: a readable, TOML-friendly description of the runner and
            its parts (loader, objective, learning schema, hooks).
    """

    actor_name: str
    model_name: str
    run_id: str
    description: Mapping[str, Any]


@dataclasses.dataclass(frozen=True, slots=True)
class TrainingStartEvent:
    """Training of a model starts (or resumes) at ``start_epoch``.

    ``stopped`` is the reason training stays stopped, when a checkpoint
    loaded before was taken after a termination (early stopping): no epoch
    is trained then, whatever ``end_epoch`` says.
    """

    model_name: str
    source_name: str
    start_epoch: int
    end_epoch: int
    stopped: str | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class TrainingEndEvent:
    """Training of a model ended at ``epoch`` (completed or terminated)."""

    model_name: str
    source_name: str
    epoch: int


@dataclasses.dataclass(frozen=True, slots=True)
class EpochStartEvent:
    """An epoch of training starts; ``end_epoch`` is the planned last epoch."""

    model_name: str
    source_name: str
    epoch: int
    end_epoch: int


@dataclasses.dataclass(frozen=True, slots=True)
class EpochEndEvent:
    """An epoch of training ended, after its metrics and validation."""

    model_name: str
    source_name: str
    epoch: int


@dataclasses.dataclass(frozen=True, slots=True)
class IterateBatchEvent:
    """A runner finished a batch (for progress displays).

    Attributes:
        source_name: the runner's name.
        batch: the 1-based index of the batch just finished.
        n_batches: batches in the epoch; ``None`` for a loader without a
            length (a stream).
        batch_size: samples in the batch.
        live_metrics: returns the running metrics as floats. Calling it
            synchronises with the device: trackers call it at a throttled
            rate, never on every batch.
    """

    source_name: str
    batch: int
    n_batches: int | None
    batch_size: int
    live_metrics: Callable[[], Mapping[str, float]]


@dataclasses.dataclass(frozen=True, slots=True)
class MetricsEvent:
    """Metrics of a model from one source (a runner) at an epoch.

    Attributes:
        model_name: the model measured.
        source_name: who measured it (``Trainer``, ``Validation``, ``Test``).
        epoch: the model's epoch when measured.
        metrics: metric names and values, the loss first when there is one.
    """

    model_name: str
    source_name: str
    epoch: int
    metrics: Mapping[str, float]


@dataclasses.dataclass(frozen=True, slots=True)
class StepMetricsEvent:
    """Metrics of a model at an optimizer step, for curves by step.

    From the trainer (``source_name`` is its name): the means of its loss and
    metrics over the steps since its previous event, every
    ``step_metrics_every`` steps. From a validation run every N steps
    (``add_validation(every_steps=N)``): its metrics at that step.

    Attributes:
        model_name: the model measured.
        source_name: who measured it (``Trainer``, ``Validation``).
        epoch: the epoch in progress (counted from 1).
        step: the optimizer steps taken so far, over the whole training.
        metrics: metric names and values, the loss first when there is one.
    """

    model_name: str
    source_name: str
    epoch: int
    step: int
    metrics: Mapping[str, float]


@dataclasses.dataclass(frozen=True, slots=True)
class LearningRateEvent:
    """The learning rate or its schedule changed (epoch start or a hook)."""

    model_name: str
    source_name: str
    epoch: int
    learning_rates: tuple[float, ...]
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class TerminationEvent:
    """Training was asked to stop early (early stopping, a hook, the user)."""

    model_name: str
    source_name: str
    epoch: int
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class TestStartEvent:
    """A test of a model starts."""

    model_name: str
    source_name: str
    epoch: int


@dataclasses.dataclass(frozen=True, slots=True)
class TestEndEvent:
    """A test of a model ended; its metrics were sent just before."""

    model_name: str
    source_name: str
    epoch: int


@dataclasses.dataclass(frozen=True, slots=True)
class CheckpointEvent:
    """A checkpoint was saved, loaded or deleted (by a retention policy).

    Attributes:
        model_name: the model.
        epoch: the epochs completed at the checkpoint.
        action: ``'save'``, ``'load'`` or ``'delete'``.
        location: where, as the storage backend describes it (a file path for
            the local backend).
        batch: the batches trained in the next epoch (0 at an epoch's end).
        digest: the SHA-256 of the stored checkpoint (``save`` events), as
            the storage backend's ``checkpoint_digest`` gives it; ``None``
            when the backend gives none.
    """

    model_name: str
    epoch: int
    action: Literal['save', 'load', 'delete']
    location: str
    batch: int = 0
    digest: str | None = None
