"""Tracking hooks of training, validation and testing.

Each receives one immutable event from ``drytorch.core.log_events``. They fire
on the main process only, at most once per epoch, except ``on_batch_end``,
which fires per batch and must stay cheap: do not call
``event.live_metrics()`` on every batch, it synchronises with the device;
and ``on_step_metrics``, which fires every ``step_metrics_every`` steps (and
at validations run every N steps) for trackers that plot by step.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drytorch.hookspecs._markers import hookspec

if TYPE_CHECKING:
    from drytorch.core.log_events import (
        ActorRegisterEvent,
        CheckpointEvent,
        EpochEndEvent,
        EpochStartEvent,
        IterateBatchEvent,
        LearningRateEvent,
        MetricsEvent,
        StepMetricsEvent,
        TerminationEvent,
        TestEndEvent,
        TestStartEvent,
        TrainingEndEvent,
        TrainingStartEvent,
    )
    from drytorch.core.run_view import RunView


@hookspec
def on_actor_register(event: ActorRegisterEvent, run: RunView | None) -> None:
    """Tracking: a runner (trainer, validation, test) was set up for a model."""


@hookspec
def on_training_start(event: TrainingStartEvent, run: RunView | None) -> None:
    """Tracking: training starts or resumes at ``event.start_epoch``."""


@hookspec
def on_training_end(event: TrainingEndEvent, run: RunView | None) -> None:
    """Tracking: training ended, completed or terminated."""


@hookspec
def on_epoch_start(event: EpochStartEvent, run: RunView | None) -> None:
    """Tracking: a training epoch starts."""


@hookspec
def on_epoch_end(event: EpochEndEvent, run: RunView | None) -> None:
    """Tracking: a training epoch ended, after its metrics and validation."""


@hookspec
def on_batch_end(event: IterateBatchEvent, run: RunView | None) -> None:
    """Tracking: a runner finished a batch. Fires per batch: keep it cheap."""


@hookspec
def on_metrics(event: MetricsEvent, run: RunView | None) -> None:
    """Tracking: metrics of a model from one source at one epoch."""


@hookspec
def on_step_metrics(event: StepMetricsEvent, run: RunView | None) -> None:
    """Tracking: metrics at an optimizer step (recent training steps, or a validation).

    The trainer reads its running values from the device only when some
    plugin implements this hook: implementing it costs one synchronisation
    every ``step_metrics_every`` steps.
    """


@hookspec
def on_learning_rate(event: LearningRateEvent, run: RunView | None) -> None:
    """Tracking: the learning rates changed (schedule step or a hook)."""


@hookspec
def on_termination(event: TerminationEvent, run: RunView | None) -> None:
    """Tracking: training was asked to stop early, with the reason."""


@hookspec
def on_test_start(event: TestStartEvent, run: RunView | None) -> None:
    """Tracking: a test starts."""


@hookspec
def on_test_end(event: TestEndEvent, run: RunView | None) -> None:
    """Tracking: a test ended; its metrics arrived through ``on_metrics``."""


@hookspec
def on_checkpoint_save(event: CheckpointEvent, run: RunView | None) -> None:
    """Tracking: a checkpoint was saved."""


@hookspec
def on_checkpoint_load(event: CheckpointEvent, run: RunView | None) -> None:
    """Tracking: a checkpoint was loaded."""


@hookspec
def on_checkpoint_delete(event: CheckpointEvent, run: RunView | None) -> None:
    """Tracking: a retention policy deleted a checkpoint."""
