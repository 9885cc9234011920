"""``SQLConnection``: runs, metrics by epoch and tags in a SQL database.

The tables are in ``drytorch_contrib_sqlalchemy.tables`` (``Experiment``,
``Run``, ``Source``, ``Log``, ``Tags``). With no engine given, the database
is the SQLite file ``metrics.db`` in the experiment's folder (``par_dir``),
made when the first run starts: the original DRYTorch's
``sqlite:///metrics.db``, for the experiment's folder rather than whatever
the working directory is, so that a script run from elsewhere still writes
beside the experiment's other outputs. The built-in ``SQLiteTracker`` uses
the same file name; their tables have different names, so both can share it.

Every write is one short transaction that reads what it needs from the
database (the rows of the experiment, run and source, created if missing)
and appends: one at a run's start, one per ``MetricsEvent`` (never per
batch), one at its stop. So several processes can write the same database,
each run its own rows, and a resumed run (in this process or another)
continues its run row and appends to its log. On SQLite the transactions are
``BEGIN IMMEDIATE``, so writers queue on the file's lock (for up to
``timeout`` seconds on the engines this tracker makes; WAL mode lets readers
work meanwhile) and never deadlock upgrading a read. On other databases, a
transaction that loses a race to create the same row is retried.

A database that cannot be written makes the hook raise: DRYTorch then
unsubscribes the tracker with a ``TrackerFailureWarning`` and the run goes on.

The run record keeps the database's address (``[plugins.sqlalchemy]``, not
when it holds a password), so that ``drytorch plot`` and
``RunView.metric_history()`` read the run's metrics back later.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import os
import pathlib
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from drytorch import MetricHistory, Tracker, exceptions, hookimpl

from drytorch_contrib_sqlalchemy import reading
from drytorch_contrib_sqlalchemy.tables import Base, Experiment, Log, Run, Source, Tags

if TYPE_CHECKING:
    from drytorch import RunView
    from drytorch.log_events import MetricsEvent, RunStartEvent, RunStopEvent

__all__ = [
    'DEFAULT_NAME',
    'STATE_FORMAT',
    'STATE_NAME',
    'SQLConnection',
    'default_url',
    'storable_url',
]

DEFAULT_NAME = 'metrics.db'
"""The database's file name in the experiment's folder, when no engine is given."""
STATE_NAME = 'sqlalchemy'
"""The plugin state's name: the run record's ``[plugins.sqlalchemy]``."""
STATE_FORMAT = 1

_RETRIES = 3
_T = TypeVar('_T')


def default_url(par_dir: str | os.PathLike[str]) -> sa.URL:
    """Return the URL of the default database of an experiment folder."""
    path = pathlib.Path(par_dir).resolve() / DEFAULT_NAME
    return sa.URL.create('sqlite', database=str(path))


def storable_url(url: sa.URL) -> str | None:
    """Return the URL to keep in the run record; None if it must not be kept.

    A relative SQLite path is made absolute (a resumed run may start in
    another folder); an in-memory database, or a URL with a password, is not
    kept.
    """
    if url.password is not None:
        return None
    if url.get_backend_name() == 'sqlite':
        database = url.database
        if not database or database == ':memory:' or database.startswith('file:'):
            return None
        url = url.set(database=str(pathlib.Path(database).resolve()))
    return url.render_as_string(hide_password=False)


def make_engine(url: sa.URL | str, timeout: float) -> sa.Engine:
    """Return an engine; on a SQLite file, with a busy timeout and WAL mode."""
    url = sa.make_url(url)
    if url.get_backend_name() != 'sqlite' or not url.database:
        return sa.create_engine(url)
    engine = sa.create_engine(url, connect_args={'timeout': timeout})

    def configure(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        try:
            cursor.execute('PRAGMA journal_mode=WAL')
            cursor.execute('PRAGMA synchronous=NORMAL')  # safe in WAL mode
        finally:
            cursor.close()

    sa.event.listen(engine, 'connect', configure)
    return engine


@dataclasses.dataclass
class _Session:
    """What the tracker holds for one session of a run: row keys, once committed."""

    run: RunView
    engine: sa.Engine
    owned: bool  # made by the tracker: disposed when the session ends
    run_key: int | None = None
    source_keys: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)

    def close(self) -> None:
        if self.owned:
            self.engine.dispose()


class SQLConnection(Tracker):
    """Store runs, their metrics by epoch and their tags in a SQL database.

    Args:
        engine: a SQLAlchemy ``Engine`` or a database URL; default: the SQLite
            file ``metrics.db`` in each run's experiment folder.
        timeout: on the SQLite engines this tracker makes, how many seconds a
            write waits for another process's write to end.

    Raises:
        TypeError: ``engine`` is neither an ``Engine`` nor a URL.
        ValueError: ``timeout`` is not positive.
    """

    def __init__(
        self, engine: sa.Engine | str | None = None, *, timeout: float = 30.0
    ) -> None:
        if not timeout > 0:
            raise ValueError(f'timeout must be positive, got {timeout!r}.')
        if engine is not None and not isinstance(engine, sa.Engine | str):
            raise TypeError(
                'engine must be a sqlalchemy Engine or a database URL such as '
                f"'sqlite:///metrics.db', got {type(engine).__name__}."
            )
        super().__init__()
        self.timeout = timeout
        self._given = (
            make_engine(engine, timeout) if isinstance(engine, str) else engine
        )
        self._session: _Session | None = None
        self._last_par_dir: pathlib.Path | None = None

    @property
    def engine(self) -> sa.Engine:
        """The engine written to: the given one, else the active run's.

        Raises:
            TrackerError: no engine was given and no run is active.
        """
        if self._given is not None:
            return self._given
        if self._session is None:
            raise exceptions.TrackerError(
                f'{self.name} has no engine outside a run: without one given, '
                f'it writes to {DEFAULT_NAME} in the folder of the active run.'
            )
        return self._session.engine

    @property
    def url(self) -> sa.URL:
        """The database's URL: the given engine's, else the last (or active) run's.

        Before any run, the default database of the working directory.
        """
        if self._given is not None:
            return self._given.url
        return default_url(self._last_par_dir or pathlib.Path('.'))

    @hookimpl
    def on_run_start(self, event: RunStartEvent, run: RunView) -> None:
        """Write the experiment, run and tags rows; note the database in the record."""
        session = self._begin(run)
        self._ensure_run(session, event.timestamp)
        address = storable_url(session.engine.url)
        if address is not None and run.live:  # a recorded run's view is read-only
            run.save_plugin_state(STATE_NAME, {'format': STATE_FORMAT, 'url': address})

    @hookimpl
    def on_metrics(self, event: MetricsEvent, run: RunView) -> None:
        """Append the event's metrics to the log, in one transaction."""
        session = self._current(run)
        run_key = self._ensure_run(session)
        key = (event.model_name, event.source_name)
        rows = [
            {
                'epoch': event.epoch,
                'metric_name': name,
                'value': None if math.isnan(value) else value,
            }
            for name, value in ((n, float(v)) for n, v in event.metrics.items())
        ]

        def write(connection: sa.Connection) -> int:
            source = session.source_keys.get(key)
            if source is None:
                source = _get_or_create(
                    connection,
                    Source,
                    {'run_key': run_key, 'model_name': key[0], 'source_name': key[1]},
                )
            if rows:
                connection.execute(
                    sa.insert(Log), [{'source_key': source, **row} for row in rows]
                )
            return source

        session.source_keys[key] = self._transact(session.engine, write)

    @hookimpl
    def on_run_stop(self, event: RunStopEvent) -> None:
        """Write how the run ended; release the database."""
        session, self._session = self._session, None
        if session is None:
            return
        try:
            if session.run_key is not None:
                run_key = session.run_key

                def write(connection: sa.Connection) -> None:
                    connection.execute(
                        sa.update(Run)
                        .where(Run.id == run_key)
                        .values(status=str(event.status))
                    )

                self._transact(session.engine, write)
        finally:
            session.close()

    def load_metrics(
        self, experiment_name: str, run_id: str
    ) -> dict[str, dict[str, MetricHistory]]:
        """Return ``{model: {source: history}}`` of a run; {} if none stored.

        It reads the database of the last run this tracker wrote for (or the
        given engine's), preferring that run's experiment folder.
        """
        if self._given is not None:
            return reading.read_metrics(
                self._given, experiment_name, run_id, self._last_par_dir
            )
        path = self.url.database
        if path is None or not pathlib.Path(path).is_file():
            return {}  # reading must not create the file
        engine = make_engine(self.url, self.timeout)
        try:
            return reading.read_metrics(engine, experiment_name, run_id)
        finally:
            engine.dispose()

    def _begin(self, run: RunView) -> _Session:
        """Start a session of ``run``; close one another run left open."""
        if self._session is not None:
            self._session.close()
        self._last_par_dir = run.par_dir.resolve()
        if self._given is not None:
            session = _Session(run, self._given, owned=False)
        else:
            self._last_par_dir.mkdir(parents=True, exist_ok=True)
            engine = make_engine(default_url(self._last_par_dir), self.timeout)
            session = _Session(run, engine, owned=True)
        self._session = session
        return session

    def _current(self, run: RunView) -> _Session:
        """Return the session of ``run``, begun now if its start was not seen."""
        session = self._session
        if session is None or session.run is not run:
            session = self._begin(run)
        return session

    def _ensure_run(
        self, session: _Session, created: datetime.datetime | None = None
    ) -> int:
        """Return the run's row key; write the rows it needs when not done yet."""
        if session.run_key is not None:
            return session.run_key
        run = session.run
        when = created or datetime.datetime.now().astimezone()

        def write(connection: sa.Connection) -> int:
            Base.metadata.create_all(connection, checkfirst=True)
            experiment = _get_or_create(
                connection,
                Experiment,
                {'name': run.experiment, 'par_dir': str(run.par_dir.resolve())},
            )
            key = connection.execute(
                sa.select(Run.id).where(
                    Run.experiment_key == experiment, Run.run_id == run.id
                )
            ).scalar()
            if key is None:
                key = connection.execute(
                    sa.insert(Run).returning(Run.id),
                    {
                        'experiment_key': experiment,
                        'run_id': run.id,
                        'created': when,
                        'status': 'running',
                    },
                ).scalar_one()
            else:  # resumed: the same row, running again
                connection.execute(
                    sa.update(Run).where(Run.id == key).values(status='running')
                )
            known = set(
                connection.execute(sa.select(Tags.text).where(Tags.run_key == key))
                .scalars()
                .all()
            )
            new = [tag for tag in dict.fromkeys(run.tags) if tag not in known]
            if new:
                connection.execute(
                    sa.insert(Tags), [{'run_key': key, 'text': tag} for tag in new]
                )
            return int(key)

        session.run_key = self._transact(session.engine, write)
        return session.run_key

    @staticmethod
    def _transact(engine: sa.Engine, write: Callable[[sa.Connection], _T]) -> _T:
        """Run ``write`` in one transaction; retry one that lost a race on a row."""
        for attempt in range(_RETRIES):
            try:
                with _transaction(engine) as connection:
                    return write(connection)
            except sa.exc.IntegrityError:
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError('unreachable: the last attempt returns or raises')

    def __repr__(self) -> str:
        engine = None if self._given is None else self._given.url.render_as_string()
        return f'{type(self).__name__}(engine={engine!r})'


@contextlib.contextmanager
def _transaction(engine: sa.Engine) -> Iterator[sa.Connection]:
    """Yield a connection in a transaction, committed if the block succeeds.

    On SQLite the transaction takes the write lock first (``BEGIN
    IMMEDIATE``): it then never has to upgrade a read lock, which another
    writer could make fail at once.
    """
    with engine.connect() as connection:
        if engine.dialect.name == 'sqlite':
            connection.exec_driver_sql('BEGIN IMMEDIATE')
        yield connection
        connection.commit()


def _get_or_create(
    connection: sa.Connection, table: type[Base], values: Mapping[str, Any]
) -> int:
    """Return the key of the row with ``values``, inserted if missing."""
    columns = table.__table__.c
    condition = sa.and_(*(columns[name] == value for name, value in values.items()))
    key = connection.execute(sa.select(columns.id).where(condition)).scalar()
    if key is None:
        key = connection.execute(
            sa.insert(table).returning(columns.id), dict(values)
        ).scalar_one()
    return int(key)
