"""What file-writing trackers share: where a run's output goes, and metric loading.

Every tracker that writes files puts a run's output in
``<par_dir>/<kind>/<experiment>/<run id>/``, where ``par_dir`` is the tracker's
own folder when given, else the experiment's. A resumed run finds its folder
again, so trackers append to what is there and never clobber it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib
from collections.abc import Mapping
from typing import Protocol

from drytorch.core import exceptions, files, log_events, scope, tracking

__all__ = ['Dumper', 'MetricHistory', 'MetricLoader', 'RunInfo']


@dataclasses.dataclass(frozen=True, slots=True)
class RunInfo:
    """The run a tracker is writing for, taken from its ``RunStartEvent``."""

    experiment_name: str
    run_id: str
    par_dir: pathlib.Path
    resumed: bool


@dataclasses.dataclass
class MetricHistory:
    """The metrics of one model from one source, epoch by epoch.

    Attributes:
        epochs: the epochs measured, in order.
        values: each metric's values, aligned with ``epochs``.
    """

    epochs: list[int] = dataclasses.field(default_factory=list)
    values: dict[str, list[float]] = dataclasses.field(default_factory=dict)

    def add(self, epoch: int, metrics: Mapping[str, float]) -> None:
        """Append one epoch's metrics; an epoch measured again replaces the old."""
        if epoch in self.epochs:
            index = self.epochs.index(epoch)
            del self.epochs[index:]
            for series in self.values.values():
                del series[index:]
        self.epochs.append(epoch)
        for name, value in metrics.items():
            series = self.values.setdefault(name, [])
            series.extend([float('nan')] * (len(self.epochs) - 1 - len(series)))
            series.append(value)


class MetricLoader(Protocol):
    """A tracker that can read back the metrics it stored (for plots, the CLI)."""

    def load_metrics(
        self, experiment_name: str, run_id: str
    ) -> dict[str, dict[str, MetricHistory]]:
        """Return ``{model: {source: history}}`` for a run ({} if none stored)."""
        ...


class Dumper(tracking.Tracker):
    """A tracker that writes a run's files under ``<par_dir>/<kind>/<exp>/<run>``.

    Args:
        par_dir: the folder to write in; defaults to the experiment's.

    Subclasses set ``kind`` and handle events in ``notify``; they call
    ``super().notify(event)`` first so that ``run`` and ``run_dir`` are kept.
    """

    kind = 'outputs'

    def __init__(self, par_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.par_dir = pathlib.Path(par_dir).resolve() if par_dir is not None else None
        self._run: RunInfo | None = None
        # kept after the run stops, so that its metrics can still be loaded
        self._last_par_dir: pathlib.Path | None = None

    @property
    def run(self) -> RunInfo:
        """The run being tracked.

        Raises:
            TrackerError: no run of this tracker's experiment is active.
        """
        if self._run is None:
            raise exceptions.TrackerError(
                f'{self.name} is not tracking a run: start a run of its experiment.'
            )
        return self._run

    def folder(self, experiment_name: str, run_id: str) -> pathlib.Path:
        """Return the folder of a run's output (it may not exist)."""
        root = self.par_dir or (
            self._run.par_dir if self._run else self._last_par_dir or pathlib.Path('.')
        )
        return root / self.kind / experiment_name / run_id

    @property
    def run_dir(self) -> pathlib.Path:
        """The folder of the active run's output, created on first use."""
        path = self.folder(self.run.experiment_name, self.run.run_id)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @functools.singledispatchmethod
    def notify(self, event: object) -> None:
        """Keep track of the run; subclasses extend this."""

    @notify.register
    def _(self, event: log_events.RunStartEvent) -> None:
        self._run = RunInfo(
            event.experiment_name, event.run_id, event.par_dir, event.resumed
        )
        self._last_par_dir = event.par_dir
        # what a killed process of this run left half-written
        files.remove_stale_temporaries(self.folder(event.experiment_name, event.run_id))
        active = scope.active_run()
        if active is not None:  # `drytorch show` lists where each tracker wrote
            outputs = active.summary.setdefault('outputs', {})
            outputs[self.name] = str(self.output_location())

    def output_location(self) -> pathlib.Path:
        """Where this tracker writes the active run's output (for people)."""
        return self.folder(self.run.experiment_name, self.run.run_id)

    @notify.register
    def _(self, event: log_events.RunStopEvent) -> None:
        self._run = None
