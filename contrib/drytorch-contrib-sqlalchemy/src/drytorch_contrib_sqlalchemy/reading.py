"""Reading a run's metrics back from the database, as ``{model: {source: history}}``.

Used by ``SQLConnection.load_metrics`` (so plot trackers can start a resumed
run with its earlier curves) and by the plugin's ``load_metrics`` hook (so
``drytorch plot`` draws a recorded run), from any process.
"""

from __future__ import annotations

import math
import os
import pathlib
from collections.abc import Iterable

import sqlalchemy as sa
from drytorch import MetricHistory

from drytorch_contrib_sqlalchemy.tables import Experiment, Log, Run, Source

__all__ = ['histories', 'read_metrics']


def read_metrics(
    engine: sa.Engine,
    experiment_name: str,
    run_id: str,
    par_dir: str | os.PathLike[str] | None = None,
) -> dict[str, dict[str, MetricHistory]]:
    """Return the metrics of a run; {} if the tables or the run are missing.

    Args:
        engine: the database.
        experiment_name: the experiment's name.
        run_id: the run's id.
        par_dir: the experiment's folder, preferred when experiments of the
            same name in different folders share the database; otherwise the
            newest run of that name and id is read.
    """
    with engine.connect() as connection:
        if not sa.inspect(connection).has_table(Log.__tablename__):
            return {}
        found = select_run(connection, experiment_name, run_id, par_dir)
        if found is None:
            return {}
        rows = connection.execute(
            sa.select(
                Source.model_name,
                Source.source_name,
                Log.epoch,
                Log.metric_name,
                Log.value,
            )
            .join(Source, Source.id == Log.source_key)
            .where(Source.run_key == found)
            .order_by(Log.id)
        )
        return histories((m, s, e, n, v) for m, s, e, n, v in rows)


def select_run(
    connection: sa.Connection,
    experiment_name: str,
    run_id: str,
    par_dir: str | os.PathLike[str] | None,
) -> int | None:
    """Return the key of a run's row, preferring the experiment in ``par_dir``."""
    query = (
        sa.select(Run.id)
        .join(Experiment, Experiment.id == Run.experiment_key)
        .where(Experiment.name == experiment_name, Run.run_id == run_id)
    )
    if par_dir is not None:
        folder = str(pathlib.Path(par_dir).resolve())
        query = query.order_by((Experiment.par_dir == folder).desc())
    key = connection.execute(query.order_by(Run.id.desc()).limit(1)).scalar()
    return None if key is None else int(key)


def histories(
    rows: Iterable[tuple[str, str, int, str, float | None]],
) -> dict[str, dict[str, MetricHistory]]:
    """Build histories from ``(model, source, epoch, metric, value)`` rows in order.

    The rows of one source and epoch that follow each other are one
    measurement; a measurement of an epoch already seen replaces it and the
    epochs after it (``MetricHistory.add``), as when a resumed run measures
    again the epochs after its checkpoint.
    """
    found: dict[str, dict[str, MetricHistory]] = {}
    pending: dict[tuple[str, str], tuple[int, dict[str, float]]] = {}

    def settle(key: tuple[str, str]) -> None:
        epoch, metrics = pending.pop(key)
        model, source = key
        found.setdefault(model, {}).setdefault(source, MetricHistory()).add(
            epoch, metrics
        )

    for model, source, epoch, metric, value in rows:
        key = (model, source)
        current = pending.get(key)
        if current is not None and current[0] != epoch:
            settle(key)
            current = None
        if current is None:
            current = pending[key] = (epoch, {})
        current[1][metric] = math.nan if value is None else float(value)
    for key in list(pending):
        settle(key)
    for sources in found.values():
        for history in sources.values():
            for series in history.values.values():
                series.extend([math.nan] * (len(history.epochs) - len(series)))
    return found
