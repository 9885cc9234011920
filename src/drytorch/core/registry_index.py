"""The registry index: what listings read instead of every run record.

``<experiment>/index.sqlite`` (SQLite in WAL mode) holds one row per run
record with the fields listings filter and sort on, and the signature of the
file it was read from (inode, modification time, size). The records stay the
truth; the index is a cache, checked against them before each listing:

* The names and inodes in ``runs/`` are compared with the rows whenever the
  folder changed since the index was last found in step with it: a record
  created, removed or replaced (every drytorch write replaces the file, as
  most editors do) without the index knowing is read again.
* With at most ``FULL_CHECK`` records, every listing also compares each
  file's time and size, so an edit made in place (the same file rewritten)
  is seen at once; above that, the records a listing returns are checked
  (``drytorch runs --refresh`` checks all).
* A missing, unreadable, corrupt or foreign index (another experiment's,
  another folder's, another schema) is rebuilt from the records, with a
  one-line ``IndexRebuiltWarning``.

Run writers update their row under the record's write lock; correctness never
depends on it, since a write that did not reach the index is found by the
comparison. Every connection is opened for one operation and closed, so no
connection outlives a ``fork``. Listers that cannot write the registry build
the index in memory.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, TypeVar

import filelock

from drytorch.core import exceptions

__all__ = [
    'CREATED',
    'FULL_CHECK',
    'HOST',
    'ID',
    'INDEX_FILE',
    'KEY',
    'STATUS',
    'VALUE',
    'Entry',
    'IndexRebuiltWarning',
    'RegistryIndex',
    'Row',
    'close_connections',
    'order',
    'signature',
]

INDEX_FILE = 'index.sqlite'
SCHEMA = 1
FULL_CHECK = 5_000  # records whose times and sizes every listing compares
RACY_NS = 2_000_000_000  # a folder changed this recently may change again unseen
BUSY_TIMEOUT_S = 30.0  # a lister waits this long for another's write
WRITER_TIMEOUT_S = 2.0  # a run never waits longer on its (optional) index row
_COLUMNS = (
    'id',
    'ino',
    'mtime_ns',
    'size',
    'experiment',
    'status',
    'created_at',
    'created_ts',
    'started_at',
    'started_ts',
    'stopped_at',
    'stopped_ts',
    'tags',
    'config_hash',
    'host',
    'pid',
)
_SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY, ino INTEGER, mtime_ns INTEGER, size INTEGER,
    experiment TEXT, status TEXT,
    created_at TEXT, created_ts REAL, started_at TEXT, started_ts REAL,
    stopped_at TEXT, stopped_ts REAL,
    tags TEXT, config_hash TEXT, host TEXT, pid INTEGER
);
CREATE INDEX IF NOT EXISTS runs_created ON runs (created_ts, id, status, host);
CREATE INDEX IF NOT EXISTS runs_started
    ON runs (started_ts, id, status, host, created_ts);
CREATE INDEX IF NOT EXISTS runs_stopped
    ON runs (stopped_ts, id, status, host, created_ts);
CREATE INDEX IF NOT EXISTS runs_status ON runs (status, id, host, created_ts);
CREATE INDEX IF NOT EXISTS runs_id ON runs (id, status, host, created_ts);
CREATE TABLE IF NOT EXISTS tags (id TEXT, tag TEXT, PRIMARY KEY (tag, id));
CREATE INDEX IF NOT EXISTS tags_id ON tags (id);
CREATE TABLE IF NOT EXISTS broken (
    id TEXT PRIMARY KEY, ino INTEGER, mtime_ns INTEGER, size INTEGER, problem TEXT
);
"""
_SORT_COLUMNS = {
    'created': 'created_ts',
    'started': 'started_ts',
    'stopped': 'stopped_ts',
    'id': 'id',
}

Signature = tuple[int, int, int]  # inode, mtime_ns, size
Parse = Callable[[pathlib.Path], Mapping[str, Any]]


class IndexRebuiltWarning(exceptions.DryTorchWarning):
    """The registry index was missing, corrupt or foreign and was rebuilt."""


@dataclasses.dataclass(frozen=True, slots=True)
class Row:
    """A run as the index holds it: what listings filter, sort and show."""

    id: str
    signature: Signature
    experiment: str
    status: str
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    stopped_at: datetime.datetime | None
    tags: tuple[str, ...]
    config_hash: str
    host: str | None
    pid: int | None


# One run chosen by a query: a plain tuple straight from the index (a listing
# of 100,000 runs makes 100,000 of them), read with these positions.
Entry = tuple[str, str, str | None, float, Any, str]
ID: Final = 0
STATUS: Final = 1
HOST: Final = 2
CREATED: Final = 3  # the creation time, as a POSIX timestamp
VALUE: Final = 4  # what it is sorted by
KEY: Final = 5  # the experiment's


def order(entry: Entry) -> tuple[bool, Any, str]:
    """Return the sort key of an entry, among entries sorted by the same field.

    A missing time sorts first.
    """
    value = entry[VALUE]
    run_id: str = entry[ID]
    return value is not None, 0 if value is None else value, run_id


class RegistryIndex:
    """The index of one experiment's records (``<folder>/index.sqlite``).

    Args:
        folder: the experiment's folder in the registry.
        key: the experiment's key, recorded in the index to detect a foreign one.
        parse: reads a record file; raises ``FileNotFoundError`` or
            ``CorruptRecordError`` (and validates, so rows are always sound).
    """

    def __init__(self, folder: pathlib.Path, key: str, parse: Parse) -> None:
        self.folder = folder
        self.key = key
        self.path = folder / INDEX_FILE
        self.runs = folder / 'runs'
        self._parse = parse

    # ------------------------------------------------------------------
    # writers: called under the record's write lock

    def put(self, data: Mapping[str, Any], record: pathlib.Path) -> None:
        """Record ``data``, just written to ``record``, in the index.

        Best effort: the index is a cache, and a write it misses is found by
        the next listing's comparison, so errors are swallowed.
        """
        with contextlib.suppress(OSError):
            self._store(data, signature(os.stat(record)), create=True)

    def drop(self, run_id: str) -> None:
        """Forget a removed record (best effort, as ``put``)."""
        with (
            contextlib.suppress(OSError, sqlite3.Error),
            self._connection(create=False, timeout=WRITER_TIMEOUT_S) as conn,
        ):
            if self._ours(conn, run_id):
                _drop(conn, run_id, expected=None)
                conn.commit()

    def refresh_row(
        self, data: Mapping[str, Any], signature: Signature, was: Signature
    ) -> None:
        """Store a record a listing found changed since its row ``was`` put.

        Best effort, and only over that row (see ``_put``).
        """
        self._store(data, signature, create=False, expected=was[0])

    def _store(
        self,
        data: Mapping[str, Any],
        found: Signature,
        *,
        create: bool,
        expected: int | None = None,
    ) -> None:
        """Put a row: a run's own (``create``: always), or a lister's (see _put)."""
        with contextlib.suppress(OSError, sqlite3.Error, ValueError, TypeError):
            values = _values(data, found)
            with self._connection(create=create, timeout=WRITER_TIMEOUT_S) as conn:
                if self._ours(conn, values[0]):
                    _put(conn, values, expected=expected, force=create)
                    conn.commit()

    # ------------------------------------------------------------------
    # listers

    def select(
        self,
        *,
        statuses: Iterable[str] = (),
        tags: Iterable[str] = (),
        since: datetime.datetime | None = None,
        sort: str = 'created',
        limit: int | None = None,
        refresh: bool = False,
    ) -> tuple[list[Entry], int, list[tuple[str, str]]]:
        """Return the entries that match, ascending; their number; the broken.

        The index is first brought in step with the records (``refresh``
        compares every file's time and size, whatever their number).
        ``statuses`` are recorded ones: the caller widens ``crashed`` to
        ``running`` and checks effective statuses. ``limit`` keeps the
        highest; the number is of all that match. Broken records are
        ``(id, problem)`` pairs.
        """
        where: list[str] = []
        params: list[Any] = []
        wanted = sorted(set(statuses))
        if wanted:
            where.append(f'status IN ({",".join("?" * len(wanted))})')
            params.extend(wanted)
        for tag in sorted(set(tags)):
            where.append('id IN (SELECT id FROM tags WHERE tag = ?)')
            params.append(tag)
        if since is not None:
            where.append('created_ts >= ?')
            params.append(since.timestamp())
        column = _SORT_COLUMNS.get(sort, 'status')
        condition = f' WHERE {" AND ".join(where)}' if where else ''
        query = f'SELECT id, status, host, created_ts, {column}, ? FROM runs'
        query += condition
        if limit is not None:
            query += f' ORDER BY {column} DESC, id DESC LIMIT {int(limit)}'
        else:
            query += f' ORDER BY {column}, id'

        def run(
            conn: sqlite3.Connection,
        ) -> tuple[list[Entry], int, list[tuple[str, str]]]:
            entries: list[Entry] = conn.execute(query, [self.key, *params]).fetchall()
            if limit is None:
                total = len(entries)
            else:
                entries.reverse()
                count = f'SELECT count(*) FROM runs{condition}'
                total = conn.execute(count, params).fetchone()[0]
            broken = list(conn.execute('SELECT id, problem FROM broken ORDER BY id'))
            return entries, total, broken

        return self._listing(run, refresh)

    def newest(self) -> str | None:
        """Return the id of the newest run by creation time, if any."""

        def run(conn: sqlite3.Connection) -> str | None:
            found = conn.execute(
                'SELECT id FROM runs ORDER BY created_ts DESC, id DESC LIMIT 1'
            ).fetchone()
            return None if found is None else str(found[0])

        return self._listing(run, False)

    def rows(self, ids: Sequence[str]) -> dict[str, Row]:
        """Return the rows of ``ids`` still indexed (none if the index fails)."""
        found: dict[str, Row] = {}
        columns = ','.join(_COLUMNS)
        try:
            with self._connection(create=False) as conn:
                for start in range(0, len(ids), 500):
                    chunk = list(ids[start : start + 500])
                    marks = ','.join('?' * len(chunk))
                    query = f'SELECT {columns} FROM runs WHERE id IN ({marks})'
                    for values in conn.execute(query, chunk):
                        row = _row(values)
                        found[row.id] = row
        except (OSError, sqlite3.Error, ValueError, TypeError):
            return {}
        return found

    # ------------------------------------------------------------------
    # keeping in step

    def _listing(self, run: Callable[[sqlite3.Connection], _T], refresh: bool) -> _T:
        """Sync the index, then ``run`` a query on it; rebuild it if corrupt."""
        why = None
        if _writable(self.folder):
            for attempt in range(2):
                try:
                    with self._connection(create=True) as conn:
                        self._sync(conn, refresh=refresh, why=why)
                        return run(conn)
                except sqlite3.DatabaseError as err:
                    if attempt or isinstance(err, sqlite3.OperationalError):
                        break  # locked for too long, or corrupt twice
                    why = f'corrupt ({err})'
                    self._reset()
                except OSError:
                    break
        memory = self._in_memory()
        try:  # nothing is rebuilt on disk: no notice
            self._sync(memory, refresh=refresh, why=why, notify=False)
            return run(memory)
        finally:
            memory.close()

    def _sync(
        self,
        conn: sqlite3.Connection,
        *,
        refresh: bool,
        why: str | None,
        notify: bool = True,
    ) -> None:
        try:
            folder: os.stat_result | None = os.stat(self.runs)
        except FileNotFoundError:
            folder = None
        foreign = self._foreign(conn, folder)
        if foreign is not None and foreign != _INCOMPLETE:
            _clear(conn)
        why = why or foreign
        if folder is None:
            _clear(conn)
            _claim(conn, self.key, None)
            conn.commit()
            return
        count = conn.execute(
            'SELECT (SELECT count(*) FROM runs) + (SELECT count(*) FROM broken)'
        ).fetchone()[0]
        full = refresh or why is not None or count <= FULL_CHECK
        if not full and _meta(conn, 'verified') == _folder_state(folder):
            return  # nothing was created, removed or replaced since
        known = _known(conn, full)
        changed, removed = self._compare(known, full)
        found = [self._read(run_id) for run_id in changed]  # before writing:
        for run_id in removed:  # runs are never kept waiting
            _drop(conn, run_id, expected=_inode(known[f'{run_id}.toml']))
        for run_id, (kind, values) in zip(changed, found, strict=True):
            expected = _inode(known.get(f'{run_id}.toml'))
            if kind == 'put':
                _put(conn, values, expected=expected)
            else:
                _drop(conn, run_id, expected=expected)
                if kind == 'broken':
                    conn.execute(
                        'INSERT OR REPLACE INTO broken VALUES (?, ?, ?, ?, ?)', values
                    )
        _claim(conn, self.key, folder)
        if time.time_ns() - folder.st_mtime_ns > RACY_NS:
            _set_meta(conn, 'verified', _folder_state(folder))
        conn.commit()
        if notify and why is not None and (why != _INCOMPLETE or changed):
            what = 'missing or incomplete' if why == _INCOMPLETE else why
            warnings.warn(
                f'The registry index of experiment {self.key!r} was {what}: '
                f'rebuilt from the records ({len(changed)} read; {self.path}).',
                IndexRebuiltWarning,
                stacklevel=2,
            )

    def _compare(
        self, known: Mapping[str, Any], full: bool
    ) -> tuple[list[str], list[str]]:
        """Return the ids of the records to read again and of those removed.

        ``known`` maps record file names to signatures (``full``) or inodes.
        """
        with os.scandir(self.runs) as entries:
            if full:
                on_disk: dict[str, Any] = {}
                for entry in entries:
                    with contextlib.suppress(FileNotFoundError):
                        stat = entry.stat(follow_symlinks=False)
                        on_disk[entry.name] = signature(stat)
            else:
                on_disk = {entry.name: entry.inode() for entry in entries}
        get = known.get
        changed = [
            name[:-5]
            for name, now in on_disk.items()
            if get(name) != now and name.endswith('.toml') and name[0] != '.'
        ]
        removed = [name[:-5] for name in known.keys() - on_disk.keys()]
        return changed, removed

    def _read(self, run_id: str) -> tuple[str, tuple[Any, ...]]:
        """Read a record: ``('put', row values)``, ``('broken', ...)`` or gone."""
        path = self.runs / f'{run_id}.toml'
        try:
            found = signature(os.stat(path))
            return 'put', _values(self._parse(path), found)
        except FileNotFoundError:
            return 'gone', ()
        except exceptions.CorruptRecordError as err:
            return 'broken', (run_id, *found, str(err))

    # ------------------------------------------------------------------
    # connections

    def _in_memory(self) -> sqlite3.Connection:
        """Return a copy of the index in memory, for a registry we cannot write.

        A WAL database on a read-only disk opens only as immutable; what its
        WAL held and the copy misses is found by the comparison.
        """
        memory = sqlite3.connect(':memory:')
        if self.path.exists():
            for mode in ('mode=ro', 'immutable=1'):
                try:
                    source = sqlite3.connect(
                        f'{self.path.as_uri()}?{mode}', uri=True, timeout=1.0
                    )
                except sqlite3.Error:
                    continue
                try:
                    source.backup(memory)
                    break
                except sqlite3.Error:
                    continue
                finally:
                    source.close()
        try:
            memory.executescript(_SCHEMA_SQL)
        except sqlite3.DatabaseError:  # what was copied is not an index
            memory.close()
            memory = sqlite3.connect(':memory:')
            memory.executescript(_SCHEMA_SQL)
        return memory

    def _reset(self) -> None:
        """Remove a corrupt index (and its WAL) so that it is built afresh.

        Under a lock, and only if it is still corrupt: concurrent listers that
        found it broken rebuild it once.
        """
        # no run id starts with a dot: this name is never a run's lock
        lock = filelock.FileLock(self.folder / 'locks' / '.index.lock', timeout=60)
        with contextlib.suppress(OSError, filelock.Timeout), lock:
            try:
                with self._connection(create=False) as probe:
                    probe.execute('SELECT count(*) FROM runs').fetchone()
                    probe.execute('SELECT count(*) FROM broken').fetchone()
                return  # sound again: another process rebuilt it
            except sqlite3.DatabaseError:
                pass
            for suffix in ('', '-wal', '-shm'):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f'{self.path}{suffix}')

    def _connect(self, *, create: bool) -> sqlite3.Connection:
        if not create and not self.path.exists():
            raise FileNotFoundError(self.path)
        _check_size(self.path)
        conn = sqlite3.connect(
            self.path,
            timeout=BUSY_TIMEOUT_S,
            check_same_thread=False,
            factory=_Connection,
        )
        try:
            conn.execute('PRAGMA synchronous = NORMAL')
            if conn.execute('PRAGMA journal_mode').fetchone()[0] != 'wal':
                conn.execute('PRAGMA journal_mode = WAL')
            conn.executescript(_SCHEMA_SQL)
            conn.identity = _identity(self.path)
            conn.pid = os.getpid()
            conn.path = self.path
        except BaseException:
            conn.close()
            raise
        return conn

    @contextlib.contextmanager
    def _connection(
        self, *, create: bool, timeout: float = BUSY_TIMEOUT_S
    ) -> Iterator[sqlite3.Connection]:
        """Lend a connection from this process's pool (see ``_Pool``)."""
        conn = _POOL.take(self.path)
        if conn is None:
            conn = self._connect(create=create)
        try:
            conn.execute(f'PRAGMA busy_timeout = {int(timeout * 1000)}')
            yield conn
        except BaseException:
            _close(conn, self.path)
            raise
        if conn.in_transaction:
            conn.rollback()
        _POOL.give(self.path, conn)

    def _ours(self, conn: sqlite3.Connection, run_id: str) -> bool:
        """Whether a writer may add to this index (a foreign one waits for a lister)."""
        key = _meta(conn, 'experiment_key')
        if key is None and _meta(conn, 'schema') is None:
            # new: complete if the runs folder holds no other record yet
            _claim(conn, self.key, self._alone(run_id))
            return True
        return bool(key == self.key and _meta(conn, 'schema') == SCHEMA)

    def _alone(self, run_id: str) -> os.stat_result | None:
        """Return the runs folder if ``run_id`` is its only record, else None."""
        try:
            with os.scandir(self.runs) as entries:
                for entry in entries:
                    name = entry.name
                    record = name.endswith('.toml') and not name.startswith('.')
                    if record and name != f'{run_id}.toml':
                        return None
            return os.stat(self.runs)
        except OSError:
            return None

    def _foreign(
        self, conn: sqlite3.Connection, folder: os.stat_result | None
    ) -> str | None:
        """Say why the index cannot be trusted as it is, or None if it can."""
        schema = _meta(conn, 'schema')
        if schema is None and _meta(conn, 'experiment_key') is None:
            return _INCOMPLETE
        if schema != SCHEMA:
            return f'written by another version (schema {schema})'
        key = _meta(conn, 'experiment_key')
        if key is not None and key != self.key:
            return f'that of experiment {key!r}'
        home = _meta(conn, 'runs_folder')
        if folder is not None and home is not None and home != _folder_id(folder):
            return 'copied from another folder'
        if home is None:
            return _INCOMPLETE  # new, or only written by runs: never compared whole
        return None


_INCOMPLETE = 'incomplete'
_T = TypeVar('_T')


def _claim(conn: sqlite3.Connection, key: str, folder: os.stat_result | None) -> None:
    _set_meta(conn, 'schema', SCHEMA)
    _set_meta(conn, 'experiment_key', key)
    if folder is not None:
        _set_meta(conn, 'runs_folder', _folder_id(folder))


def _clear(conn: sqlite3.Connection) -> None:
    for table in ('runs', 'tags', 'broken', 'meta'):
        conn.execute(f'DELETE FROM {table}')  # fixed names
    _set_meta(conn, 'schema', SCHEMA)


def _folder_id(stat: os.stat_result) -> str:
    return f'{stat.st_dev}:{stat.st_ino}'


class _Connection(sqlite3.Connection):
    """A connection that knows which file it opened (device and inode)."""

    identity: tuple[int, int, int] | None = None
    pid: int = -1
    path: pathlib.Path | None = None


class _Pool:
    """The index connections this process keeps open, a few, the latest used.

    Opening a WAL database that no other connection holds costs milliseconds
    (its WAL is recovered, then checkpointed and removed at close), too much
    for every record write. A connection is lent to one caller at a time, so
    threads never share one. One whose file was replaced (a rebuilt index) or
    that a forked child inherited is dropped without being closed: closing it
    could remove a WAL that is another database's, or the parent's, now.
    """

    SIZE = 4

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[str, sqlite3.Connection] = {}
        os.register_at_fork(after_in_child=self._forked)

    def take(self, path: pathlib.Path) -> sqlite3.Connection | None:
        with self._lock:
            conn = self._idle.pop(str(path), None)
        if conn is None:
            return None
        if not _same_file(conn, path):
            _ABANDONED.append(conn)
            return None
        return conn

    def give(self, path: pathlib.Path, conn: sqlite3.Connection) -> None:
        with self._lock:
            extra = self._idle.pop(str(path), None)  # another thread's: keep one
            self._idle[str(path)] = conn
            evicted = [extra] if extra is not None else []
            while len(self._idle) > self.SIZE:
                evicted.append(self._idle.pop(next(iter(self._idle))))
        for other in evicted:
            _close(other, getattr(other, 'path', None))

    def close_all(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, {}
        for conn in idle.values():
            _close(conn, getattr(conn, 'path', None))

    def _forked(self) -> None:
        _ABANDONED.extend(self._idle.values())
        self._idle = {}
        self._lock = threading.Lock()


_ABANDONED: list[sqlite3.Connection] = []  # kept, never closed (see _Pool)
_POOL = _Pool()


def close_connections() -> None:
    """Close the index connections this process keeps open between operations.

    Never needed for correctness; useful before unmounting or remounting the
    file system of the registry, which an open database keeps busy.
    """
    _POOL.close_all()


def _identity(path: pathlib.Path) -> tuple[int, int, int] | None:
    """Return what tells this database file (and its WAL index) from another."""
    try:
        stat = os.stat(path)
        shared = os.stat(f'{path}-shm')
    except OSError:
        return None
    return stat.st_dev, stat.st_ino, shared.st_ino


def _same_file(conn: sqlite3.Connection, path: pathlib.Path | None) -> bool:
    """Whether ``conn`` was opened by this process on the file now at its path."""
    if not isinstance(conn, _Connection) or conn.pid != os.getpid():
        return False
    if path is None or conn.identity is None:
        return False
    return conn.identity == _identity(path)


def _close(conn: sqlite3.Connection, path: pathlib.Path | None) -> None:
    """Close ``conn``, unless its file is no longer what it opened (see _Pool)."""
    if _same_file(conn, path):
        with contextlib.suppress(sqlite3.Error):
            conn.close()
    else:
        _ABANDONED.append(conn)


def _check_size(path: pathlib.Path) -> None:
    """Raise ``DatabaseError`` if the file is shorter than its header says.

    SQLite reports a damaged page only when a query reads it; a truncated
    index is found here, when a connection opens, at the cost of one read.
    """
    try:
        with open(path, 'rb') as file:
            header = file.read(100)
            size = os.fstat(file.fileno()).st_size
    except FileNotFoundError:
        return
    if len(header) < 100:
        if header:
            raise sqlite3.DatabaseError('the file is shorter than a database header')
        return
    page = int.from_bytes(header[16:18], 'big')
    page = 65536 if page == 1 else page
    pages = int.from_bytes(header[28:32], 'big')
    valid = header[24:28] == header[92:96]  # the size field is current
    if valid and size < pages * page:
        raise sqlite3.DatabaseError(
            f'the file holds {size} bytes of the {pages * page} its header gives'
        )


def _writable(folder: pathlib.Path) -> bool:
    index = folder / INDEX_FILE
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    return not index.exists() or os.access(index, os.R_OK | os.W_OK)


def signature(stat: os.stat_result) -> Signature:
    """Return what tells one version of a record file from another."""
    return stat.st_ino, stat.st_mtime_ns, stat.st_size


def _folder_state(stat: os.stat_result) -> str:
    return f'{stat.st_dev}:{stat.st_ino}:{stat.st_mtime_ns}'


def _meta(conn: sqlite3.Connection, key: str) -> Any:
    found = conn.execute('SELECT value FROM meta WHERE key = ?', (key,)).fetchone()
    return None if found is None else found[0]


def _set_meta(conn: sqlite3.Connection, key: str, value: Any) -> None:
    conn.execute('INSERT OR REPLACE INTO meta VALUES (?, ?)', (key, value))


def _known(conn: sqlite3.Connection, full: bool) -> dict[str, Any]:
    """Map the indexed record file names to signatures (``full``) or inodes."""
    if full:
        query = (
            "SELECT id || '.toml', ino, mtime_ns, size FROM runs "
            "UNION ALL SELECT id || '.toml', ino, mtime_ns, size FROM broken"
        )
        return {row[0]: (row[1], row[2], row[3]) for row in conn.execute(query)}
    query = (
        "SELECT id || '.toml', ino FROM runs "
        "UNION ALL SELECT id || '.toml', ino FROM broken"
    )
    return dict(conn.execute(query).fetchall())


def _inode(known: Any) -> int | None:
    """Return the inode of what ``_known`` gave (a signature or an inode)."""
    inode: int | None = known[0] if isinstance(known, tuple) else known
    return inode


def _put(
    conn: sqlite3.Connection,
    values: tuple[Any, ...],
    *,
    expected: int | None = None,
    force: bool = False,
) -> None:
    """Store a record's row (and its tags), unless another write got there first.

    A run's writer (``force``) always replaces its row. A lister replaces a
    row only if it still has the inode the lister compared (``expected``), and
    adds one only if none appeared meanwhile, so content read before a run
    wrote again never goes back over the run's newer row.
    """
    run_id = values[0]
    if not force:
        found = conn.execute('SELECT ino FROM runs WHERE id = ?', (run_id,)).fetchone()
        if found is not None and (expected is None or found[0] != expected):
            return
    conn.execute('DELETE FROM broken WHERE id = ?', (run_id,))
    marks = ','.join('?' * len(_COLUMNS))
    conn.execute(f'INSERT OR REPLACE INTO runs VALUES ({marks})', values)
    conn.execute('DELETE FROM tags WHERE id = ?', (run_id,))
    conn.executemany(
        'INSERT OR IGNORE INTO tags VALUES (?, ?)',
        [(run_id, tag) for tag in json.loads(values[12])],
    )


def _drop(conn: sqlite3.Connection, run_id: str, *, expected: int | None) -> None:
    if expected is not None:
        found = conn.execute('SELECT ino FROM runs WHERE id = ?', (run_id,)).fetchone()
        if found is not None and found[0] != expected:
            return
    conn.execute('DELETE FROM runs WHERE id = ?', (run_id,))
    conn.execute('DELETE FROM tags WHERE id = ?', (run_id,))
    conn.execute('DELETE FROM broken WHERE id = ?', (run_id,))


def _values(data: Mapping[str, Any], signature: Signature) -> tuple[Any, ...]:
    pid = data.get('pid')
    return (
        data['id'],
        *signature,
        data['experiment'],
        data['status'],
        *_moment(data.get('created_at')),
        *_moment(data.get('started_at')),
        *_moment(data.get('stopped_at')),
        json.dumps(list(data.get('tags', ()))),
        data.get('config_hash', ''),
        data.get('host'),
        pid if isinstance(pid, int) else None,
    )


def _moment(value: Any) -> tuple[str | None, float | None]:
    if not isinstance(value, datetime.datetime):
        return None, None
    aware = value if value.tzinfo is not None else value.astimezone()
    return value.isoformat(), aware.timestamp()


def _row(values: Sequence[Any]) -> Row:
    (run_id, ino, mtime, size, experiment, status) = values[:6]
    created, started, stopped = values[6], values[8], values[10]
    return Row(
        id=run_id,
        signature=(ino, mtime, size),
        experiment=experiment,
        status=status,
        created_at=datetime.datetime.fromisoformat(created),
        started_at=None
        if started is None
        else datetime.datetime.fromisoformat(started),
        stopped_at=None
        if stopped is None
        else datetime.datetime.fromisoformat(stopped),
        tags=tuple(json.loads(values[12])),
        config_hash=values[13] or '',
        host=values[14],
        pid=values[15],
    )


def _time(text: str | None) -> datetime.datetime | None:
    return None if text is None else datetime.datetime.fromisoformat(text)
