"""The DRYTorch plugin (entry point ``sqlalchemy``): the tracker by name, and reads.

- ``tracker_types``: offers ``SQLConnection`` (with its default database), so
  that ``[tool.drytorch] trackers = ["SQLConnection"]`` enables it. It is not
  a default tracker: installing the package never makes experiments write a
  database by themselves.
- ``run_outputs``: the database of a run it tracked, for ``drytorch show``.
- ``load_metrics``: a recorded run's metrics read back from that database,
  for ``drytorch plot`` and ``RunView.metric_history()``.

The last two read the ``[plugins.sqlalchemy]`` table that the tracker keeps
in the run record. Nothing heavy is imported here: SQLAlchemy only when a
tracker is made or metrics are read, so ``drytorch plugins`` stays fast.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from drytorch import hookimpl
from drytorch.exceptions import DryTorchWarning

if TYPE_CHECKING:
    from drytorch import MetricHistory, RunView, Tracker

__all__ = ['LABEL', 'load_metrics', 'make_tracker', 'run_outputs', 'tracker_types']

LABEL = 'SQLConnection'  # the tracker's name and the label of its output
_STATE_NAME = 'sqlalchemy'  # tracker.STATE_NAME, without importing SQLAlchemy


def _url(run: RunView) -> str | None:
    state: Mapping[str, Any] = run.plugin_state(_STATE_NAME)
    url = state.get('url')
    return url if isinstance(url, str) and url else None


def make_tracker() -> Tracker:
    """Return an ``SQLConnection`` with its default database."""
    from drytorch_contrib_sqlalchemy.tracker import SQLConnection

    return SQLConnection()


@hookimpl
def tracker_types() -> Mapping[str, Callable[[], Tracker]]:
    """Offer the ``SQLConnection`` tracker (SQLAlchemy is imported when it is made)."""
    return {LABEL: make_tracker}


@hookimpl
def run_outputs(run: RunView) -> Mapping[str, str] | None:
    """Return ``{'SQLConnection': <database URL>}`` for a run it tracked."""
    url = _url(run)
    return None if url is None else {LABEL: url}


@hookimpl
def load_metrics(run: RunView) -> Mapping[str, Mapping[str, MetricHistory]] | None:
    """Return the run's metrics from its database; None if it has none there.

    A database that is gone or unreachable answers None with a warning: this
    is asked for every run ``drytorch plot`` draws.
    """
    url = _url(run)
    if url is None:
        return None
    import pathlib

    import sqlalchemy as sa

    from drytorch_contrib_sqlalchemy import reading

    parsed = sa.make_url(url)
    if parsed.get_backend_name() == 'sqlite' and not (
        parsed.database and pathlib.Path(parsed.database).is_file()
    ):
        return None  # reading must not create the file
    engine = sa.create_engine(parsed)
    try:
        found = reading.read_metrics(engine, run.experiment, run.id, run.par_dir)
    except sa.exc.SQLAlchemyError as error:
        warnings.warn(
            f'Cannot read the metrics of run {run.id!r} from {url}: {error}.',
            DryTorchWarning,
            stacklevel=2,
        )
        return None
    finally:
        engine.dispose()
    return found or None
