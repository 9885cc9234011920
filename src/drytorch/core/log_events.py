"""Immutable events that tracking hooks receive.

Events are frozen, slotted dataclasses: a tracker can read everything it needs
but cannot change the run, and cannot depend on what another tracker did.
"""

from __future__ import annotations

import dataclasses
import datetime
import pathlib
from typing import Any, Literal

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
