"""``SQLiteTracker``: the metrics of many runs in one SQLite database.

The database is ``<par_dir>/metrics.db`` of the experiment unless a path is
given, so that every run of every experiment in a folder can be queried
together. Schema (version 1, in ``PRAGMA user_version``)::

    experiments(id INTEGER PRIMARY KEY, name TEXT, par_dir TEXT)
        unique (name, par_dir): an experiment is a name in a folder
    runs(id INTEGER PRIMARY KEY, experiment_id -> experiments.id,
         run_id TEXT, created TEXT)
        unique (experiment_id, run_id); created: ISO time of the first start
    sources(id INTEGER PRIMARY KEY, run_id -> runs.id, model TEXT, source TEXT)
        unique (run_id, model, source)
    metrics(source_id -> sources.id, epoch INTEGER, name TEXT, value REAL)
        unique (source_id, epoch, name); NaN is stored as NULL; the rowid
        keeps the order in which metrics arrived

The unique indexes serve every lookup the tracker and the loader make. For
example, the validation loss of every run of an experiment::

    SELECT r.run_id, m.epoch, m.value
    FROM metrics m JOIN sources s ON s.id = m.source_id
    JOIN runs r ON r.id = s.run_id JOIN experiments e ON e.id = r.experiment_id
    WHERE e.name = 'exp' AND s.source = 'Validation' AND m.name = 'MSE';

Why it is safe with several processes writing the same file: WAL mode lets
readers and one writer work at once, a busy timeout makes writers wait for
each other, and every write is one short ``BEGIN IMMEDIATE`` transaction
(one per ``MetricsEvent``, never per batch), so no transaction ever has to
upgrade a read lock and deadlock.

A resumed run keeps its run row; the rows of a source for an epoch measured
again, and for later epochs, are deleted before the new ones are written.

The run never stops for the database: a file locked beyond the busy timeout
gives one warning and the rows wait in memory until it is free (a warning at
the end of the run lists what could not be written); a file that is not a
SQLite database (or a newer schema) gives one warning and the tracker stops
writing for the run. It never deletes or rewrites the file.

It never writes through a symbolic link: a database, ``-wal``, ``-shm`` or
``-journal`` file that is a link (planted to make the tracker modify a file
elsewhere) raises ``UnsafePathError`` naming it, and the tracker is
unsubscribed with a ``TrackerFailureWarning``.

Reading (``read``, ``load_metrics``, ``drytorch plot``) creates no file
beside the database, which may belong to someone else or sit in a folder
only read: a database in WAL mode without a ``-wal`` file has no writer, so
it is opened ``immutable`` (and read again if a writer started meanwhile); a
live writer's WAL and its ``-shm`` index are read as they are; a ``-wal``
left without its index is read from a copy in a temporary folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import math
import os
import pathlib
import shutil
import sqlite3
import tempfile
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from drytorch import hookimpl
from drytorch.core import exceptions, files
from drytorch.trackers import base

if TYPE_CHECKING:
    from drytorch.core import log_events
    from drytorch.core.run_view import RunView

__all__ = ['DEFAULT_NAME', 'SCHEMA_VERSION', 'SQLiteTracker', 'SQLiteWarning']

DEFAULT_NAME = 'metrics.db'
"""The database's file name in the experiment's folder."""
SCHEMA_VERSION = 1

_SIDE_FILES = ('-wal', '-shm', '-journal')
_HEADER = b'SQLite format 3\x00'
_T = TypeVar('_T')

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS experiments (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        par_dir TEXT NOT NULL)""",
    """CREATE UNIQUE INDEX IF NOT EXISTS experiments_by_name
        ON experiments (name, par_dir)""",
    """CREATE TABLE IF NOT EXISTS runs (
        id INTEGER PRIMARY KEY,
        experiment_id INTEGER NOT NULL REFERENCES experiments (id),
        run_id TEXT NOT NULL,
        created TEXT NOT NULL)""",
    """CREATE UNIQUE INDEX IF NOT EXISTS runs_by_experiment
        ON runs (experiment_id, run_id)""",
    """CREATE TABLE IF NOT EXISTS sources (
        id INTEGER PRIMARY KEY,
        run_id INTEGER NOT NULL REFERENCES runs (id),
        model TEXT NOT NULL,
        source TEXT NOT NULL)""",
    """CREATE UNIQUE INDEX IF NOT EXISTS sources_by_run
        ON sources (run_id, model, source)""",
    """CREATE TABLE IF NOT EXISTS metrics (
        source_id INTEGER NOT NULL REFERENCES sources (id),
        epoch INTEGER NOT NULL,
        name TEXT NOT NULL,
        value REAL)""",
    """CREATE UNIQUE INDEX IF NOT EXISTS metrics_by_source
        ON metrics (source_id, epoch, name)""",
)


class SQLiteWarning(exceptions.DryTorchWarning):
    """The database could not be written; the run goes on without it."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Row:
    """One ``MetricsEvent`` waiting to be written."""

    model: str
    source: str
    epoch: int
    metrics: tuple[tuple[str, float], ...]


class SQLiteTracker(base.Dumper):
    """Stores metrics in a SQLite database shared by runs and processes.

    Args:
        path: the database file; defaults to ``metrics.db`` in the
            experiment's folder.
        timeout: seconds to wait for another process's write to finish
            before the database counts as locked.
    """

    kind = 'sqlite'

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, timeout: float = 10.0
    ) -> None:
        super().__init__()
        self.path = pathlib.Path(path).resolve() if path is not None else None
        self.timeout = timeout
        self._session: _Session | None = None
        self._database: pathlib.Path | None = None  # of the last run

    @property
    def database(self) -> pathlib.Path:
        """The database file of the active (or last) run.

        Before any run, the given path, else ``metrics.db`` in the working
        directory.
        """
        if self._database is not None:
            return self._database
        return self.path or pathlib.Path('.').resolve() / DEFAULT_NAME

    def database_of(self, run: RunView) -> pathlib.Path:
        """Return the database file that ``run``'s metrics go to."""
        return self.path or run.par_dir.resolve() / DEFAULT_NAME

    def output_location(self, run: RunView) -> pathlib.Path:
        """Return the database file (for people and ``drytorch show``)."""
        return self.database_of(run)

    @hookimpl
    def on_run_start(self, event: log_events.RunStartEvent, run: RunView) -> None:
        """List the run in the database, even before its first metrics."""
        session = self._begin(run, event.timestamp.isoformat())
        self._flush(session)

    @hookimpl
    def on_run_stop(self) -> None:
        """Write what waits; warn about rows a lock kept out; close the database."""
        session = self._session
        if session is None:
            return
        self._flush(session)
        if session.pending and not session.broken:
            epochs = sorted({row.epoch for row in session.pending})
            self._warn(
                f'{len(session.pending)} metric rows (epochs {epochs}) of run '
                f'{session.run.id!r} could not be written to {session.database}: it '
                'stayed locked.'
            )
        self._end()

    @hookimpl
    def on_metrics(self, event: log_events.MetricsEvent, run: RunView) -> None:
        """Write the event's metrics in one transaction (or keep them, if locked)."""
        session = self._current(run)
        if session.broken:
            return
        metrics = tuple((name, float(value)) for name, value in event.metrics.items())
        session.pending.append(
            _Row(event.model_name, event.source_name, event.epoch, metrics)
        )
        self._flush(session)

    def load_metrics(
        self, experiment_name: str, run_id: str
    ) -> dict[str, dict[str, base.MetricHistory]]:
        """Return ``{model: {source: history}}`` of a run ({} if none stored)."""
        par_dir = None if self.path is None else self._last_par_dir
        return self.read(self.database, experiment_name, run_id, par_dir=par_dir)

    @classmethod
    def read(
        cls,
        path: str | os.PathLike[str],
        experiment_name: str,
        run_id: str,
        *,
        par_dir: str | os.PathLike[str] | None = None,
    ) -> dict[str, dict[str, base.MetricHistory]]:
        """Return a run's metrics from a database, opened read-only.

        Args:
            path: the database file.
            experiment_name: the experiment's name.
            run_id: the run's id.
            par_dir: the experiment's folder, to tell apart experiments of the
                same name in a shared database; by default the newest run of
                that name and id is read.

        Returns:
            ``{model: {source: history}}``; {} if the file or run is missing.

        Raises:
            TrackerError: the file is not a readable SQLite database.
            UnsafePathError: the file, or one beside it, is a symbolic link.
        """
        given = pathlib.Path(path)
        files.refuse_links(given, 'SQLiteTracker')
        file = given.resolve()
        if not file.is_file():
            return {}
        for suffix in _SIDE_FILES:
            files.refuse_links(_side(file, suffix), 'SQLiteTracker')
        try:
            return _read_quietly(
                file,
                lambda connection: _read_run(
                    connection, experiment_name, run_id, par_dir
                ),
            )
        except sqlite3.Error as error:
            raise exceptions.TrackerError(
                f'Cannot read metrics from {file}: {error}.'
            ) from error

    def _begin(self, run: RunView, created: str | None = None) -> _Session:
        """Start writing for a session of ``run``; close what another left open."""
        self._end()
        self._last_par_dir = run.par_dir
        database = self._database = self.database_of(run)
        when = created or datetime.datetime.now().astimezone().isoformat()
        self._session = _Session(run, database, when)
        return self._session

    def _current(self, run: RunView) -> _Session:
        """Return the session of ``run``, begun now if its start was not seen."""
        session = self._session
        if session is None or session.run is not run:
            session = self._begin(run)
        return session

    def _end(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.pending.clear()
            session.close()

    def _flush(self, session: _Session) -> None:
        """Write the run row and pending metrics in one transaction."""
        if session.broken:
            return
        if session.run_row is not None and not session.pending:
            return  # nothing to write: no empty transaction
        try:
            if session.connection is None:
                session.connection = self._connect(session.database)
            self._write(session, session.connection)
        except sqlite3.Error as error:
            if _is_busy(error):
                if not session.warned_locked:
                    session.warned_locked = True
                    self._warn(
                        f'{session.database} is locked ({error}); the metrics '
                        'wait in memory and are written when it is free.'
                    )
                return
            self._give_up(session, error)
        except exceptions.UnsafePathError:
            raise  # not a file to warn about: the tracker must go
        except (OSError, exceptions.TrackerError) as error:
            self._give_up(session, error)

    def _connect(self, database: pathlib.Path) -> sqlite3.Connection:
        database.parent.mkdir(parents=True, exist_ok=True)
        # SQLite follows links, and writes its journals beside their target
        for file in (database, *(_side(database, s) for s in _SIDE_FILES)):
            files.refuse_links(file, 'SQLiteTracker')
        connection = sqlite3.connect(
            database,
            timeout=self.timeout,
            isolation_level=None,  # transactions are explicit
            check_same_thread=False,  # hooks may come from another thread
        )
        try:
            version = connection.execute('PRAGMA user_version').fetchone()[0]
            if version > SCHEMA_VERSION:
                raise exceptions.TrackerError(
                    f'schema version {version} is newer than this DRYTorch '
                    f'reads ({SCHEMA_VERSION})'
                )
            connection.execute('PRAGMA journal_mode=WAL').fetchone()
            connection.execute('PRAGMA synchronous=NORMAL')  # safe in WAL mode
        except BaseException:
            connection.close()
            raise
        return connection

    def _write(self, session: _Session, connection: sqlite3.Connection) -> None:
        run = session.run
        connection.execute('BEGIN IMMEDIATE')
        try:
            run_row = session.run_row
            if run_row is None:
                run_row = _ensure_run(
                    connection, run.experiment, run.par_dir, run.id, session.created
                )
            new_sources: dict[tuple[str, str], int] = {}
            for row in session.pending:
                key = (row.model, row.source)
                source = session.source_rows.get(key) or new_sources.get(key)
                if source is None:
                    source = new_sources[key] = _ensure_source(
                        connection, run_row, *key
                    )
                connection.execute(
                    'DELETE FROM metrics WHERE source_id = ? AND epoch >= ?',
                    (source, row.epoch),
                )
                connection.executemany(
                    'INSERT INTO metrics (source_id, epoch, name, value) '
                    'VALUES (?, ?, ?, ?)',
                    [
                        (source, row.epoch, name, None if math.isnan(v) else v)
                        for name, v in row.metrics
                    ],
                )
            connection.execute('COMMIT')
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                connection.execute('ROLLBACK')
            raise
        # remembered only once committed: a rolled-back row has no id
        session.run_row = run_row
        session.source_rows.update(new_sources)
        session.pending.clear()

    def _give_up(self, session: _Session, error: Exception) -> None:
        session.broken = True
        session.pending.clear()
        session.close()
        self._warn(
            f'{session.database} cannot be used ({type(error).__name__}: {error}); '
            f'{self.name} stops writing for this run and leaves the file as it is. '
            'Training goes on.'
        )

    def _warn(self, message: str) -> None:
        warnings.warn(f'{self.name}: {message}', SQLiteWarning, stacklevel=3)

    def __repr__(self) -> str:
        path = str(self.path) if self.path is not None else None
        return f'{type(self).__name__}(path={path!r})'


@dataclasses.dataclass
class _Session:
    """What the tracker holds for one session of a run."""

    run: RunView
    database: pathlib.Path
    created: str  # the session's start time, for a new run row
    connection: sqlite3.Connection | None = None
    run_row: int | None = None
    source_rows: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)
    pending: list[_Row] = dataclasses.field(default_factory=list)
    broken: bool = False  # unusable for this session; warned once
    warned_locked: bool = False

    def close(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(sqlite3.Error):
                self.connection.close()
        self.connection = None
        self.run_row = None
        self.source_rows.clear()


def _side(database: pathlib.Path, suffix: str) -> pathlib.Path:
    return database.with_name(database.name + suffix)


def _read_quietly(file: pathlib.Path, query: Callable[[sqlite3.Connection], _T]) -> _T:
    """Run ``query`` on a read-only connection that creates no file beside ``file``.

    A reader of a WAL database makes its ``-wal`` and ``-shm`` files when they
    are missing. Without a ``-wal`` file nothing is writing, so the database
    is read ``immutable``; a writer that starts meanwhile shows as a new
    ``-wal`` file or a changed database file, and the read is made again.
    """
    for attempt in range(3):
        wal, shm = _side(file, '-wal'), _side(file, '-shm')
        if not _in_wal_mode(file) or (wal.exists() and shm.exists()):
            return _query(f'{file.as_uri()}?mode=ro', query)  # as the writer sees it
        if wal.exists():  # a WAL without its index: SQLite would create one
            return _query_copy(file, wal, query)
        before = _stamp(file)
        result = _query(f'{file.as_uri()}?immutable=1', query)
        unchanged = not wal.exists() and _stamp(file) == before
        if unchanged or attempt == 2:  # a writer that keeps coming: last snapshot
            return result
    raise AssertionError('unreachable: the last attempt returns')


def _query(uri: str, query: Callable[[sqlite3.Connection], _T]) -> _T:
    connection = sqlite3.connect(uri, uri=True, timeout=5.0)
    try:
        return query(connection)
    finally:
        connection.close()


def _query_copy(
    file: pathlib.Path, wal: pathlib.Path, query: Callable[[sqlite3.Connection], _T]
) -> _T:
    with tempfile.TemporaryDirectory(prefix='drytorch-sqlite-') as folder:
        copy = pathlib.Path(folder) / 'copy.db'
        shutil.copyfile(file, copy)
        shutil.copyfile(wal, _side(copy, '-wal'))
        return _query(f'{copy.as_uri()}?mode=ro', query)


def _in_wal_mode(file: pathlib.Path) -> bool:
    """Whether the header says WAL (read and write versions 2)."""
    try:
        with file.open('rb') as handle:
            header = handle.read(20)
    except OSError:
        return False
    return header[:16] == _HEADER and header[18:20] == b'\x02\x02'


def _stamp(file: pathlib.Path) -> tuple[int, int, int]:
    stat = file.stat()
    return stat.st_ino, stat.st_size, stat.st_mtime_ns


def _is_busy(error: sqlite3.Error) -> bool:
    code = getattr(error, 'sqlite_errorcode', None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return 'locked' in str(error) or 'busy' in str(error)


def _ensure_run(
    connection: sqlite3.Connection,
    experiment_name: str,
    par_dir: pathlib.Path,
    run_id: str,
    created: str,
) -> int:
    """Create the schema, experiment and run rows if missing; return the run row."""
    for statement in _SCHEMA:
        connection.execute(statement)
    if connection.execute('PRAGMA user_version').fetchone()[0] == 0:
        connection.execute(f'PRAGMA user_version = {SCHEMA_VERSION}')
    connection.execute(
        'INSERT OR IGNORE INTO experiments (name, par_dir) VALUES (?, ?)',
        (experiment_name, str(par_dir)),
    )
    (experiment,) = connection.execute(
        'SELECT id FROM experiments WHERE name = ? AND par_dir = ?',
        (experiment_name, str(par_dir)),
    ).fetchone()
    connection.execute(
        'INSERT OR IGNORE INTO runs (experiment_id, run_id, created) VALUES (?, ?, ?)',
        (experiment, run_id, created),
    )
    (run,) = connection.execute(
        'SELECT id FROM runs WHERE experiment_id = ? AND run_id = ?',
        (experiment, run_id),
    ).fetchone()
    return int(run)


def _ensure_source(
    connection: sqlite3.Connection, run: int, model: str, source: str
) -> int:
    connection.execute(
        'INSERT OR IGNORE INTO sources (run_id, model, source) VALUES (?, ?, ?)',
        (run, model, source),
    )
    (row,) = connection.execute(
        'SELECT id FROM sources WHERE run_id = ? AND model = ? AND source = ?',
        (run, model, source),
    ).fetchone()
    return int(row)


def _read_run(
    connection: sqlite3.Connection,
    experiment_name: str,
    run_id: str,
    par_dir: str | os.PathLike[str] | None,
) -> dict[str, dict[str, base.MetricHistory]]:
    tables = {
        name
        for (name,) in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'"
        )
    }
    if not {'experiments', 'runs', 'sources', 'metrics'} <= tables:
        return {}
    query = (
        'SELECT r.id FROM runs r JOIN experiments e ON e.id = r.experiment_id '
        'WHERE e.name = ? AND r.run_id = ?'
    )
    args: list[str] = [experiment_name, run_id]
    if par_dir is not None:
        query += ' AND e.par_dir = ?'
        args.append(str(pathlib.Path(par_dir).resolve()))
    found = connection.execute(query + ' ORDER BY r.id DESC LIMIT 1', args).fetchone()
    if found is None:
        return {}
    rows = connection.execute(
        'SELECT s.model, s.source, m.epoch, m.name, m.value '
        'FROM sources s JOIN metrics m ON m.source_id = s.id '
        'WHERE s.run_id = ? ORDER BY s.id, m.epoch, m.rowid',
        (found[0],),
    )
    grouped: dict[tuple[str, str], dict[int, dict[str, float]]] = {}
    for model, source, epoch, name, value in rows:
        epochs = grouped.setdefault((model, source), {})
        epochs.setdefault(epoch, {})[name] = math.nan if value is None else value
    histories: dict[str, dict[str, base.MetricHistory]] = {}
    for (model, source), by_epoch in grouped.items():
        history = histories.setdefault(model, {}).setdefault(
            source, base.MetricHistory()
        )
        for epoch, metrics in by_epoch.items():
            history.add(epoch, metrics)
        for series in history.values.values():
            series.extend([math.nan] * (len(history.epochs) - len(series)))
    return histories
