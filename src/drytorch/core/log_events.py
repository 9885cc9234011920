"""Immutable events that tracking hooks receive.

Events are frozen, slotted dataclasses: a tracker can read everything it needs
but cannot change the run, and cannot depend on what another tracker did.

Every event derives from ``Event``, so a ``functools.singledispatchmethod``
``notify`` can take ``Event`` as its catch-all. The original DRYTorch's
event names are importable too: aliases of ours (``ModelRegistrationEvent is
ModelRegisterEvent``), except ``SaveModelEvent`` and ``LoadModelEvent``, the
subclasses of ``CheckpointEvent`` that a save or a load is created as. The
original's field names are read-only properties
(``ModelRegistrationEvent.architecture_repr``,
``StartExperimentEvent.exp_name``...): they cost nothing until read.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal

__all__ = [
    'ActorRegisterEvent',
    'ActorRegistrationEvent',
    'CheckpointEvent',
    'EndEpochEvent',
    'EndTestEvent',
    'EndTrainingEvent',
    'EpochEndEvent',
    'EpochStartEvent',
    'Event',
    'IterateBatchEvent',
    'LearningRateEvent',
    'LoadModelEvent',
    'MetricEvent',
    'MetricsEvent',
    'ModelRegisterEvent',
    'ModelRegistrationEvent',
    'ModelUnregisterEvent',
    'RunStartEvent',
    'RunStatus',
    'RunStopEvent',
    'SaveModelEvent',
    'StartEpochEvent',
    'StartExperimentEvent',
    'StartTestEvent',
    'StartTrainingEvent',
    'StepMetricsEvent',
    'StopExperimentEvent',
    'TerminatedTrainingEvent',
    'TerminationEvent',
    'TestEndEvent',
    'TestStartEvent',
    'TrainingEndEvent',
    'TrainingStartEvent',
]

RunStatus = Literal['created', 'running', 'completed', 'failed', 'crashed']

_AUTO_PUBLISH = 'event:auto_publish'


def _now() -> datetime.datetime:
    return datetime.datetime.now().astimezone()


class Event:
    """Base class of every tracking event.

    Trackers dispatch on it: a ``functools.singledispatchmethod`` ``notify``
    whose base implementation takes ``Event`` receives every event its class
    has no handler for (except the per-batch ``IterateBatchEvent``, unless
    a handler asks for it).
    """

    __slots__ = ()

    _auto_publish: ClassVar[Callable[[Event], object] | None] = None

    @staticmethod
    def set_auto_publish(func: Callable[[Event], object] | None) -> None:
        """Send every tracking event to ``func`` too, or stop with ``None``.

        In the original DRYTorch, creating an event published it through this
        function (the active experiment's dispatcher). Here events are
        published by the library to the active experiment's trackers;
        ``func`` is an extra listener: it receives every event broadcast to
        trackers, in every run, except the per-batch ``IterateBatchEvent``
        (a listener costs nothing per batch). A ``func`` that raises is
        removed with a ``TrackerFailureWarning``, as a tracker would be.
        """
        from drytorch.core.plugins import TRACKING_HOOKS, get_host

        host = get_host()
        host.unregister(_AUTO_PUBLISH)
        Event._auto_publish = func
        if func is None:
            return
        import types

        from drytorch import hookimpl

        def forward(event: Any) -> None:
            func(event)

        listener = types.SimpleNamespace(all_ranks=False)
        for hook_name in TRACKING_HOOKS - {'on_batch_end'}:
            setattr(listener, hook_name, hookimpl(forward))

        def forget() -> None:
            Event._auto_publish = None

        host.register(listener, _AUTO_PUBLISH, 'Event.set_auto_publish', forget)


@dataclasses.dataclass(frozen=True, slots=True)
class RunStartEvent(Event):
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

    @property
    def exp_name(self) -> str:
        """The original's name of ``experiment_name``."""
        return self.experiment_name

    @property
    def run_ts(self) -> datetime.datetime:
        """The original's name of ``timestamp``."""
        return self.timestamp


@dataclasses.dataclass(frozen=True, slots=True)
class RunStopEvent(Event):
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

    @property
    def exp_name(self) -> str:
        """The original's name of ``experiment_name``."""
        return self.experiment_name


@dataclasses.dataclass(frozen=True, slots=True)
class ModelRegisterEvent(Event):
    """A model joined the active run.

    Attributes:
        model_name: the model's name, unique within the run.
        experiment_name: the experiment's name.
        run_id: the run's id.
        architecture: the module's printed structure (``repr``).
        n_parameters: the number of parameters of the module.
        timestamp: when the model joined the run (local time, timezone
            aware); not compared by ``==``.
    """

    model_name: str
    experiment_name: str
    run_id: str
    architecture: str
    n_parameters: int
    timestamp: datetime.datetime = dataclasses.field(
        default_factory=_now, compare=False
    )

    @property
    def architecture_repr(self) -> str:
        """The original's name of ``architecture``."""
        return self.architecture

    @property
    def model_ts(self) -> datetime.datetime:
        """The original's name of ``timestamp``."""
        return self.timestamp


@dataclasses.dataclass(frozen=True, slots=True)
class ModelUnregisterEvent(Event):
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
class ActorRegisterEvent(Event):
    """A trainer, validation, test or other runner started working on a model.

    Attributes:
        actor_name: the runner's name (``Trainer``, ``Validation``, ``Test``).
        model_name: the model it works on.
        run_id: the active run's id.
        description: a readable, TOML-friendly description of the runner and
            its parts (loader, objective, learning schema, hooks).
        timestamp: when the runner was registered (local time, timezone
            aware); not compared by ``==``.
    """

    actor_name: str
    model_name: str
    run_id: str
    description: Mapping[str, Any]
    timestamp: datetime.datetime = dataclasses.field(
        default_factory=_now, compare=False
    )

    @property
    def metadata(self) -> Mapping[str, Any]:
        """The original's name of ``description``."""
        return self.description

    @property
    def actor_ts(self) -> datetime.datetime:
        """The original's name of ``timestamp``."""
        return self.timestamp

    @property
    def model_ts(self) -> datetime.datetime | None:
        """When the model joined its run, while it is registered; else None."""
        from drytorch.core import registering

        return registering.registered_at(self.run_id, self.model_name)


@dataclasses.dataclass(frozen=True, slots=True)
class TrainingStartEvent(Event):
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
class TrainingEndEvent(Event):
    """Training of a model ended at ``epoch`` (completed or terminated)."""

    model_name: str
    source_name: str
    epoch: int


@dataclasses.dataclass(frozen=True, slots=True)
class EpochStartEvent(Event):
    """An epoch of training starts; ``end_epoch`` is the planned last epoch."""

    model_name: str
    source_name: str
    epoch: int
    end_epoch: int


@dataclasses.dataclass(frozen=True, slots=True)
class EpochEndEvent(Event):
    """An epoch of training ended, after its metrics and validation."""

    model_name: str
    source_name: str
    epoch: int


@dataclasses.dataclass(frozen=True, slots=True)
class IterateBatchEvent(Event):
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

    @property
    def n_iter(self) -> int | None:
        """The original's name of ``n_batches``."""
        return self.n_batches


@dataclasses.dataclass(frozen=True, slots=True)
class MetricsEvent(Event):
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
class StepMetricsEvent(Event):
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
class LearningRateEvent(Event):
    """The learning rate or its schedule changed (epoch start or a hook)."""

    model_name: str
    source_name: str
    epoch: int
    learning_rates: tuple[float, ...]
    reason: str

    @property
    def base_lr(self) -> float | tuple[float, ...]:
        """The original's field: the learning rate, or one per parameter group."""
        if len(self.learning_rates) == 1:
            return self.learning_rates[0]
        return self.learning_rates


@dataclasses.dataclass(frozen=True, slots=True)
class TerminationEvent(Event):
    """Training was asked to stop early (early stopping, a hook, the user)."""

    model_name: str
    source_name: str
    epoch: int
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class TestStartEvent(Event):
    """A test of a model starts."""

    model_name: str
    source_name: str
    epoch: int


@dataclasses.dataclass(frozen=True, slots=True)
class TestEndEvent(Event):
    """A test of a model ended; its metrics were sent just before."""

    model_name: str
    source_name: str
    epoch: int


@dataclasses.dataclass(frozen=True, slots=True)
class CheckpointEvent(Event):
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

    def __new__(cls, *args: Any, **kwargs: Any) -> CheckpointEvent:
        """Create a save as a ``SaveModelEvent``, a load as a ``LoadModelEvent``.

        So that a tracker dispatching on the original's event classes gets
        them; both are ``CheckpointEvent`` instances with the same fields.
        """
        if cls is CheckpointEvent:
            action = args[2] if len(args) > 2 else kwargs.get('action')
            cls = _BY_ACTION.get(action, cls)
        return object.__new__(cls)

    @property
    def definition(self) -> str:
        """The original's field: what was stored; ours always stores checkpoints."""
        return 'checkpoint'


class SaveModelEvent(CheckpointEvent):
    """A checkpoint was saved (the original's name; ``action == 'save'``)."""

    __slots__ = ()


class LoadModelEvent(CheckpointEvent):
    """A checkpoint was loaded (the original's name; ``action == 'load'``)."""

    __slots__ = ()


_BY_ACTION: dict[object, type[CheckpointEvent]] = {
    'save': SaveModelEvent,
    'load': LoadModelEvent,
}

# The original DRYTorch's names of our events.
StartExperimentEvent = RunStartEvent
StopExperimentEvent = RunStopEvent
ModelRegistrationEvent = ModelRegisterEvent
ActorRegistrationEvent = ActorRegisterEvent
StartTrainingEvent = TrainingStartEvent
EndTrainingEvent = TrainingEndEvent
StartEpochEvent = EpochStartEvent
EndEpochEvent = EpochEndEvent
MetricEvent = MetricsEvent
TerminatedTrainingEvent = TerminationEvent
StartTestEvent = TestStartEvent
EndTestEvent = TestEndEvent
