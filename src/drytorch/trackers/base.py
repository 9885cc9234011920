"""What file-writing trackers share: where a run's output goes, and metric histories.

Every tracker that writes files puts a run's output in
``<par_dir>/<kind>/<experiment>/<run id>/``, where ``par_dir`` is the tracker's
own folder when given, else the experiment's. A resumed run finds its folder
again, so trackers append to what is there and never clobber it.

``Dumper`` computes that folder from the ``RunView`` its hooks receive
(``folder(run)``, ``run_dir(run)``) and answers the ``run_outputs`` query with
it, so that ``drytorch show`` lists where each tracker wrote. It implements no
tracking hook: a subclass implements the ones it needs, and never has to call
``super()`` in them.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

from drytorch import hookimpl
from drytorch.core import files, tracking

if TYPE_CHECKING:
    from drytorch.core.run_view import RunView

__all__ = ['Dumper', 'MetricHistory', 'MetricLoader', 'RunInfo']


@dataclasses.dataclass(frozen=True, slots=True)
class RunInfo:
    """The names that place a run's output: experiment, run id and folder."""

    experiment_name: str
    run_id: str
    par_dir: pathlib.Path
    resumed: bool

    @classmethod
    def of(cls, run: RunView) -> RunInfo:
        """Return the information of the run that ``run`` views."""
        return cls(run.experiment, run.id, run.par_dir, run.resumed)


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
    """An object that reads back the metrics of a run by its names."""

    def load_metrics(
        self, experiment_name: str, run_id: str
    ) -> dict[str, dict[str, MetricHistory]]:
        """Return ``{model: {source: history}}`` for a run ({} if none stored)."""
        ...


class Dumper(tracking.Tracker):
    """A tracker that writes a run's files under ``<par_dir>/<kind>/<exp>/<run>``.

    Args:
        par_dir: the folder to write in; defaults to the experiment's.

    Subclasses set ``kind`` and implement the tracking hooks they need as
    ``@drytorch.hookimpl`` methods, taking the run (a ``drytorch.RunView``)
    when they write: ``self.run_dir(run)`` is their folder. ``Dumper``
    implements no tracking hook, so a subclass never calls ``super()`` in
    one. It answers ``run_outputs`` with ``output_location(run)``, the run's
    folder; override ``output_location`` to name another place (a database).
    """

    kind = 'outputs'

    def __init__(self, par_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__()
        self.par_dir = pathlib.Path(par_dir).resolve() if par_dir is not None else None
        # kept after the run stops, so that its metrics can still be loaded
        self._last_par_dir: pathlib.Path | None = None
        self._swept: set[pathlib.Path] = set()  # of stale temporaries, once each

    def location(
        self,
        experiment_name: str,
        run_id: str,
        par_dir: str | os.PathLike[str] | None = None,
    ) -> pathlib.Path:
        """Return the folder of a run's output by its names (it may not exist).

        It lies under this tracker's ``par_dir`` if given, else ``par_dir``,
        else the experiment folder of the last run this tracker wrote for,
        else the working directory.
        """
        root = self.par_dir
        if root is None:
            if par_dir is not None:
                root = pathlib.Path(par_dir)
            else:
                root = self._last_par_dir or pathlib.Path('.')
        return root / self.kind / experiment_name / run_id

    def folder(self, run: RunView) -> pathlib.Path:
        """Return the folder of ``run``'s output (it may not exist yet).

        The first time this tracker asks for a folder, the temporary files
        that a killed process left there (half-written files) are removed.
        """
        self._last_par_dir = run.par_dir
        path = self.location(run.experiment, run.id, run.par_dir)
        if path not in self._swept:
            self._swept.add(path)
            files.remove_stale_temporaries(path)
        return path

    def run_dir(self, run: RunView) -> pathlib.Path:
        """Return the folder of ``run``'s output, created on first use.

        Raises:
            OSError: the folder cannot be created.
        """
        path = self.folder(run)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def output_location(self, run: RunView) -> pathlib.Path:
        """Return where this tracker writes ``run``'s output (for people)."""
        return self.folder(run)

    @hookimpl
    def run_outputs(self, run: RunView) -> Mapping[str, str]:
        """Answer the query hook: ``{name: output location}`` for ``drytorch show``."""
        return {self.name: str(self.output_location(run))}
