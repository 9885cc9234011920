"""The built-in metric readers: ``load_metrics`` from CSVDumper and SQLiteTracker files.

``drytorch plot``, ``PlotTracker`` on resume and any plugin that asks
``RunView.metric_history()`` get a run's history from here when the run had
one of these trackers. The trackers name their files under their labels in
``run.outputs`` (``CSVDumper``, ``SQLiteTracker``); a record is a file anyone
may edit, so a CSV folder that is not ``csv_metrics/<experiment>/<run id>``
is ignored with a warning, files are never read through symbolic links, and
reading SQLite creates no file beside the database.
"""

from __future__ import annotations

import os
import pathlib
import warnings
from typing import TYPE_CHECKING, Any

from drytorch import hookimpl
from drytorch.core import registry

if TYPE_CHECKING:
    from drytorch.core.run_view import RunView
    from drytorch.trackers.base import MetricHistory

CSV_LABEL = 'CSVDumper'
SQLITE_LABEL = 'SQLiteTracker'


@hookimpl(trylast=True)
def load_metrics(run: RunView) -> dict[str, dict[str, MetricHistory]] | None:
    """Return the run's history from its CSV files, else from its SQLite database."""
    outputs = run.outputs
    found = _csv(run, outputs.get(CSV_LABEL))
    if found:
        return found
    return _sqlite(run, outputs.get(SQLITE_LABEL)) or None


def _csv(run: RunView, place: str | None) -> dict[str, Any]:
    from drytorch.trackers.csv import CSVDumper

    root = run.par_dir
    if place is not None:
        path = pathlib.Path(place)
        if os.path.isabs(place) and path.parts[-3:] == (
            CSVDumper.kind,
            run.experiment,
            run.id,
        ):
            root = path.parents[2]
        else:
            _ignored(run, CSV_LABEL, place, 'is not a CSV folder of this run')
    histories: dict[str, Any] = CSVDumper(par_dir=root).load_metrics(
        run.experiment, run.id
    )
    return histories


def _sqlite(run: RunView, place: str | None) -> dict[str, Any]:
    from drytorch.trackers.sqlite import DEFAULT_NAME, SQLiteTracker

    database = run.par_dir / DEFAULT_NAME
    if place is not None:
        if os.path.isabs(place) and '\0' not in place:
            database = pathlib.Path(place)
        else:
            _ignored(run, SQLITE_LABEL, place, 'is not an absolute path')
    histories: dict[str, Any] = SQLiteTracker.read(
        database, run.experiment, run.id, par_dir=run.par_dir
    )
    return histories


def _ignored(run: RunView, label: str, place: str, problem: str) -> None:
    from drytorch.cli.tables import printable

    warnings.warn(
        f'Run record {run.record_path}: summary.outputs.{label} '
        f'({printable(place)}) {problem}; it was ignored.',
        registry.RecordWarning,
        stacklevel=4,
    )
