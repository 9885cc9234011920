"""The run registry: one small TOML file per run, safe across processes.

Layout under the registry root::

    <root>/<experiment key>/experiment.toml   name and par_dir, written once
    <root>/<experiment key>/runs/<run id>.toml one record per run
    <root>/<experiment key>/locks/<run id>.lock held while the run is active
    <root>/<experiment key>/last_run          id of the newest run

A record appears whole: it is written to a temporary file and hard-linked to
its final name, which fails if the name is taken, so two processes can never
claim the same id and no reader ever sees half a record. Updates replace the
file with ``os.replace``. Writing one run never touches another.

A run is active while its process holds an OS lock on its lock file; the OS
releases it when the process dies, even by SIGKILL, so a record still saying
``running`` whose lock is free is reported as ``crashed``.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import os
import pathlib
import secrets
import socket
import tomllib
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, get_args

import filelock
import tomli_w

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from drytorch.core import exceptions, files, registry_index, selection
from drytorch.core.log_events import RunStatus

__all__ = ['RecordWarning', 'RunLock', 'RunRecord', 'RunRegistry', 'faults', 'now']

RECORD_SUFFIX = '.toml'
RECORD_LOCK_TIMEOUT = 60.0  # seconds a record write waits for another's
_SETTLE_TRIES = 5  # reads of a record that changes while its status is checked
_HOST = socket.gethostname()
_STATUSES = frozenset(get_args(RunStatus))
_REQUIRED_FIELDS = ('id', 'experiment', 'status', 'created_at')
_FIELD_TYPES: dict[str, type | tuple[type, ...]] = {
    'id': str,
    'experiment': str,
    'status': str,
    'created_at': datetime.datetime,
    'started_at': datetime.datetime,
    'stopped_at': datetime.datetime,
    'tags': list,
    'config': dict,
    'config_hash': str,
    'sessions': list,
    'pid': int,
    'host': str,
}


class RecordWarning(exceptions.DryTorchWarning):
    """A run record could not be read and was skipped (it is left untouched)."""


def now() -> datetime.datetime:
    """Return the current local time, timezone aware."""
    return datetime.datetime.now().astimezone()


class RunRecord:
    """A run as recorded in the registry.

    Records from a listing are built from the registry index, which holds
    what listings filter and sort on; ``config`` and ``data`` are read from
    the record file when first used.

    Attributes:
        id: the run id.
        experiment: the experiment's name.
        status: the recorded status, or ``crashed`` for a ``running`` run whose
            process is gone.
        created_at: when the run was created.
        started_at: when the run was last started or resumed.
        stopped_at: when the run last stopped.
        tags: the run's tags.
        config_hash: hash of the configuration snapshot.
        path: the record file.
    """

    __slots__ = (
        '_data',
        'config_hash',
        'created_at',
        'experiment',
        'id',
        'path',
        'started_at',
        'status',
        'stopped_at',
        'tags',
    )

    def __init__(
        self,
        *,
        id: str,
        experiment: str,
        status: RunStatus,
        created_at: datetime.datetime,
        started_at: datetime.datetime | None = None,
        stopped_at: datetime.datetime | None = None,
        tags: tuple[str, ...] = (),
        config_hash: str = '',
        path: pathlib.Path,
        data: Mapping[str, Any] | None = None,
    ) -> None:
        self.id = id
        self.experiment = experiment
        self.status: RunStatus = status
        self.created_at = created_at
        self.started_at = started_at
        self.stopped_at = stopped_at
        self.tags = tags
        self.config_hash = config_hash
        self.path = path
        self._data = data

    @property
    def data(self) -> Mapping[str, Any]:
        """Every field of the record, as read.

        Read from the file on first use for a listed record; a record removed
        or broken since it was listed gives the fields the listing had.
        """
        if self._data is None:
            try:
                data = _read_toml(self.path)
                RunRecord.from_data(data, self.path)
            except (FileNotFoundError, exceptions.CorruptRecordError):
                data = self._listed_fields()
            self._data = data
        return self._data

    @property
    def config(self) -> Mapping[str, Any]:
        """The configuration snapshot."""
        config = self.data.get('config', {})
        return config if isinstance(config, Mapping) else {}

    @classmethod
    def from_data(cls, data: Mapping[str, Any], path: pathlib.Path) -> RunRecord:
        """Build a record from parsed TOML; raise ``CorruptRecordError`` if invalid.

        Besides missing fields, a field of the wrong type, an unknown status
        and an id that is not the file's name make a record invalid: the
        last would make a resumed run write over another run's record.
        """
        missing = [f for f in _REQUIRED_FIELDS if f not in data]
        if missing:
            raise exceptions.CorruptRecordError(path, f'missing field {missing[0]!r}')
        for field, kinds in _FIELD_TYPES.items():
            value = data.get(field)
            if value is not None and not isinstance(value, kinds):
                raise exceptions.CorruptRecordError(
                    path, f'field {field!r} has type {type(value).__name__}'
                )
        if data['status'] not in _STATUSES:
            raise exceptions.CorruptRecordError(
                path, f'unknown status {data["status"]!r}'
            )
        if data['id'] != path.stem:
            raise exceptions.CorruptRecordError(
                path, f'its id {data["id"]!r} is not its file name'
            )
        if not all(isinstance(tag, str) for tag in data.get('tags', ())):
            raise exceptions.CorruptRecordError(path, "field 'tags' is not strings")
        return cls(
            id=data['id'],
            experiment=data['experiment'],
            status=data['status'],
            created_at=data['created_at'],
            started_at=data.get('started_at'),
            stopped_at=data.get('stopped_at'),
            tags=tuple(data.get('tags', ())),
            config_hash=data.get('config_hash', ''),
            path=path,
            data=data,
        )

    def replace(self, **changes: Any) -> RunRecord:
        """Return a copy with some fields changed (``data`` is shared)."""
        fields = {name: getattr(self, name) for name in _RECORD_FIELDS}
        fields.update(changes)
        return RunRecord(**fields, data=self._data)

    def to_json(self) -> dict[str, Any]:
        """Return the record as JSON-compatible data (times as ISO strings)."""
        data: dict[str, Any] = _jsonable(dict(self.data, status=self.status))
        return data

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunRecord):
            return NotImplemented
        return all(getattr(self, f) == getattr(other, f) for f in _RECORD_FIELDS)

    def __hash__(self) -> int:
        return hash((self.path, self.id, self.status, self.created_at))

    def __repr__(self) -> str:
        return (
            f'RunRecord(id={self.id!r}, experiment={self.experiment!r}, '
            f'status={self.status!r}, created_at={self.created_at.isoformat()!r}, '
            f'tags={self.tags!r}, path={str(self.path)!r})'
        )

    def _listed_fields(self) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name in _RECORD_FIELDS}
        fields['tags'] = list(self.tags)
        del fields['path']
        return {name: value for name, value in fields.items() if value is not None}


_RECORD_FIELDS = (
    'id',
    'experiment',
    'status',
    'created_at',
    'started_at',
    'stopped_at',
    'tags',
    'config_hash',
    'path',
)


class RunLock:
    """The OS-level lock that makes a run belong to one process.

    The process that creates or resumes a run claims it at once and keeps it
    until the run stops (or the ``Run`` object is collected): between
    ``create_run()`` and ``start()`` no other process can take the run over.
    There is one ``RunLock`` per lock file in a process; within the process,
    a ``Run`` object that is not active gives the claim up to a newer object
    of the same run (a re-run notebook cell builds new objects).
    """

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._lock = filelock.FileLock(
            path, timeout=0, thread_local=False, preserve_lock_file=True
        )
        self._owner: weakref.ref[Any] | None = None

    @property
    def owner(self) -> Any:
        """The object of this process that holds the claim, if any."""
        return self._owner() if self._owner is not None else None

    def claim(self, owner: Any) -> bool:
        """Take the lock for ``owner`` without waiting; return whether it is held.

        Raises:
            RegistryError: the lock file cannot be created.
        """
        if self._lock.is_locked:
            current = self.owner
            if current is not None and current is not owner and _active(current):
                return False
        else:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._lock.acquire()
            except filelock.Timeout:
                return False
            except OSError as err:
                raise _fault(err, self.path, 'take the run lock') from err
        self._owner = weakref.ref(owner, self._owner_gone)
        return True

    def release(self, owner: Any = None) -> None:
        """Release the lock if ``owner`` (or, with ``None``, anyone) holds it."""
        if owner is not None and self.owner is not owner:
            return
        self._owner = None
        if self._lock.is_locked:
            self._lock.release(force=True)

    def held_here(self) -> bool:
        """Return whether this process holds the lock."""
        return bool(self._lock.is_locked)

    def held_elsewhere(self) -> bool:
        """Return whether another process holds the lock; create no file."""
        if self._lock.is_locked:
            return False
        return bool(_probe(self.path))

    def _owner_gone(self, ref: weakref.ref[Any]) -> None:
        if self._owner is ref:
            self.release()


_LOCKS: dict[pathlib.Path, RunLock] = {}
_SWEPT: set[pathlib.Path] = set()  # runs folders cleaned of stale temporaries


def _active(owner: Any) -> bool:
    """Whether ``owner`` is running its run (a claim it cannot give up)."""
    return bool(getattr(owner, 'is_active', False))


def _probe(path: pathlib.Path) -> bool | None:
    """Return whether some process holds the lock on ``path``, never creating it.

    A shared, non-blocking lock on a read-only descriptor conflicts with the
    holder's exclusive one; a missing file cannot be locked by anyone.
    ``None``: the file cannot be read, so nobody can tell.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    except OSError:
        return None
    try:
        if fcntl is None:  # pragma: no cover - Windows
            return _probe_windows(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        except OSError:
            return None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def _probe_windows(path: pathlib.Path) -> bool:  # pragma: no cover - Windows
    lock = filelock.FileLock(path, timeout=0, preserve_lock_file=True)
    try:
        lock.acquire()
    except filelock.Timeout:
        return True
    lock.release(force=True)
    return False


class RunRegistry:
    """Reads and writes the run records under ``root``."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = pathlib.Path(root)

    def experiment_dir(self, key: str) -> pathlib.Path:
        """Return the folder of the experiment with ``key``."""
        return self.root / key

    def record_path(self, key: str, run_id: str) -> pathlib.Path:
        """Return the record file of a run."""
        return self.root / key / 'runs' / f'{_file_name(run_id)}{RECORD_SUFFIX}'

    def index(self, key: str) -> registry_index.RegistryIndex:
        """Return the index of the experiment with ``key`` (see ``registry_index``)."""
        return registry_index.RegistryIndex(self.root / key, key, _parse_record)

    def lock(self, key: str, run_id: str) -> RunLock:
        """Return this process's lock object of a run (not necessarily held)."""
        path = self.root / key / 'locks' / f'{_file_name(run_id)}.lock'
        found = _LOCKS.get(path)
        if found is None:
            found = _LOCKS[path] = RunLock(path)
        return found

    def ensure_experiment(self, key: str, info: Mapping[str, Any]) -> None:
        """Write the experiment's description once; keep an existing one.

        Raises:
            RegistryError: the registry folder cannot be written.
        """
        path = self.root / key / 'experiment.toml'
        if path.exists():
            return
        content = _dumps(info, path)
        with faults(path, 'record the experiment'):
            _create_file(path, content)  # taken: another process wrote it

    def create(
        self,
        key: str,
        record: Mapping[str, Any],
        run_id: str | None = None,
        owner: Any = None,
    ) -> str:
        """Record a new run and return its id.

        With ``run_id=None`` the id is the creation time, made unique with a
        suffix when several runs start in the same second. With an ``owner``,
        the run's lock is claimed for it before the record exists, so no
        other process can resume the run before its creator releases it.

        Raises:
            FileExistsError: ``run_id`` is already recorded (or being created).
            RegistryError: the registry folder cannot be written.
        """
        runs = self.root / key / 'runs'
        with faults(runs, 'create the runs folder'):
            runs.mkdir(parents=True, exist_ok=True)
        if runs not in _SWEPT:  # once a process: the folder holds every run
            _SWEPT.add(runs)
            files.remove_stale_temporaries(runs)
        for candidate in [run_id] if run_id else _timestamp_ids(record['created_at']):
            path = self.record_path(key, candidate)
            if path.exists():
                if run_id:
                    raise FileExistsError(path)
                continue
            lock = self.lock(key, candidate) if owner is not None else None
            if lock is not None and not lock.claim(owner):
                if run_id:  # another process is creating it right now
                    raise FileExistsError(path)
                continue
            content = _dumps({'id': candidate, **record}, path)
            try:
                with faults(path, 'create the run record'):
                    created = _create_file(path, content)
            except BaseException:
                if lock is not None:
                    lock.release(owner)
                raise
            if not created:
                if lock is not None:
                    lock.release(owner)
                if run_id:
                    raise FileExistsError(path)
                continue
            with (
                contextlib.suppress(exceptions.RegistryError),
                self._record_lock(key, candidate),
            ):
                self.index(key).put({'id': candidate, **record}, path)
            self._point_last(key, candidate, record['created_at'])
            return candidate
        raise AssertionError('unreachable: timestamp ids never run out')

    def update(
        self,
        key: str,
        run_id: str,
        change: Callable[[dict[str, Any]], None],
        *,
        sync: bool = True,
    ) -> RunRecord:
        """Change a run's record on disk and return it as written.

        The record is read, changed by ``change`` and written back while this
        process holds the record's write lock, so what another process wrote
        in between is kept: no write ever replaces a record from a copy held
        in memory. ``sync=False`` skips the ``fsync`` (the data survives a
        crash of the process, not a power loss).

        Raises:
            FileNotFoundError: the run is not recorded.
            CorruptRecordError: the record on disk cannot be parsed.
            RegistryError: the record cannot be written; it is left as it was.
        """
        path = self.record_path(key, run_id)
        with self._record_lock(key, run_id):
            data = _read_toml(path)
            RunRecord.from_data(data, path)
            change(data)
            content = _dumps(data, path)
            with faults(path, 'write the run record'):
                files.replace_file(path, content, sync=sync)
            self.index(key).put(data, path)
        return self._effective(RunRecord.from_data(data, path), key)

    def write(self, key: str, record: Mapping[str, Any]) -> None:
        """Replace a run's record whole (for tools that rewrite records).

        Runs never call this: their writes go through ``update``.
        """
        path = self.record_path(key, record['id'])
        content = _dumps(record, path)
        with self._record_lock(key, record['id']):
            with faults(path, 'write the record'):
                _replace_file(path, content)
            self.index(key).put(record, path)

    @contextlib.contextmanager
    def _record_lock(self, key: str, run_id: str) -> Iterator[None]:
        path = self.root / key / 'locks' / f'{_file_name(run_id)}.write.lock'
        with faults(path, 'take the record write lock'):
            path.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(path, timeout=RECORD_LOCK_TIMEOUT)
        try:
            with faults(path, 'take the record write lock'):
                lock.acquire()
        except filelock.Timeout:
            raise exceptions.RegistryError(
                f'The record of run {run_id!r} has been locked for writing for '
                f'{RECORD_LOCK_TIMEOUT:.0f} s ({path}): a process is stuck while '
                'writing it. Stop that process, then try again.'
            ) from None
        try:
            yield
        finally:
            lock.release()

    def _point_last(self, key: str, run_id: str, created: datetime.datetime) -> None:
        """Point ``last_run`` at ``run_id`` unless a newer run is already there.

        Creators race: the pointer only moves forward in creation time.
        """
        pointer = self.root / key / 'last_run'
        lock = filelock.FileLock(self.root / key / 'locks' / 'last_run.lock')
        with faults(pointer, 'update the last-run pointer'), lock:
            current = _read_pointer(pointer)
            if (
                current is not None
                and current[1] is not None
                and (_aware(current[1]), current[0]) > (_aware(created), run_id)
            ):
                return
            # a hint, not synced: a lost pointer makes last_id() scan the records
            files.replace_file(
                pointer, f'{run_id}\n{created.isoformat()}\n'.encode(), sync=False
            )

    def read(self, key: str, run_id: str) -> RunRecord:
        """Return a run's record with its effective status.

        Raises:
            FileNotFoundError: the run is not recorded.
            CorruptRecordError: the record cannot be parsed.
        """
        return self._read_settled(key, self.record_path(key, run_id))[0]

    def _read_settled(
        self, key: str, path: pathlib.Path
    ) -> tuple[RunRecord, registry_index.Signature]:
        """Read a record with its effective status, and the signature it had.

        A run found ``running`` with its lock free is crashed only if its
        record did not change meanwhile: a run writes its record before it
        lets its lock go, so a changed record means it stopped while this
        process looked, and it is read again.
        """
        for _ in range(_SETTLE_TRIES):
            before = registry_index.signature(os.stat(path))
            data = _read_toml(path)
            record = self._effective(RunRecord.from_data(data, path), key)
            if record.status != 'crashed' or data['status'] == 'crashed':
                return record, before
            if registry_index.signature(os.stat(path)) == before:
                return record, before
        return record, before  # it keeps changing: as last read

    def exists(self, key: str, run_id: str) -> bool:
        """Return whether the run is recorded."""
        return self.record_path(key, run_id).exists()

    def last_id(self, key: str) -> str | None:
        """Return the id of the newest run of the experiment, if any."""
        found = _read_pointer(self.root / key / 'last_run')
        if found is not None and self.exists(key, found[0]):
            return found[0]
        return self.index(key).newest()

    def list_runs(self, key: str, *, refresh: bool = False) -> selection.RunList:
        """Return every readable record of an experiment, oldest first.

        See ``select_runs``, which chooses among them.
        """
        return self.select_runs([key], refresh=refresh)

    def select_runs(
        self,
        keys: Sequence[str],
        *,
        status: str | Sequence[str] | None = None,
        tags: str | Sequence[str] = (),
        since: datetime.datetime | str | None = None,
        sort: selection.SortKey = 'created',
        descending: bool = False,
        limit: int | None = None,
        refresh: bool = False,
    ) -> selection.RunList:
        """Return the runs of these experiments that match, in order.

        The filters are those of ``Experiment.list_runs``. The registry index
        chooses the runs, so the cost grows with the runs returned, not the
        runs recorded; records are read when first used (``RunList``).
        ``refresh`` compares every record file with the index first (for
        edits made in place to a registry of more than
        ``registry_index.FULL_CHECK`` runs). An unreadable record is reported
        with a ``RecordWarning`` naming its path, skipped and left untouched.

        Raises:
            ValueError: an unknown status or sort key, or a bad ``since``.
        """
        wanted, required, start = selection.criteria(status, tags, since, sort, limit)
        effective = bool(wanted & {'running', 'crashed'}) or sort == 'status'
        recorded = wanted | {'running'} if 'crashed' in wanted else wanted
        chosen: list[registry_index.Entry] = []
        matched = 0
        for key in keys:
            entries, total, broken = self.index(key).select(
                statuses=recorded,
                tags=required,
                since=start,
                sort=sort,
                limit=None if effective else limit,
                refresh=refresh,
            )
            for _, problem in broken:
                warnings.warn(problem, RecordWarning, stacklevel=3)
            if effective:
                entries = [self._effective_entry(entry, sort) for entry in entries]
                if wanted:
                    entries = [e for e in entries if e[registry_index.STATUS] in wanted]
                total = len(entries)
            chosen.extend(entries)
            matched += total
        if len(keys) > 1 or effective:
            chosen.sort(key=registry_index.order)
        if limit is not None:
            chosen = chosen[max(len(chosen) - limit, 0) :]
        if descending:
            chosen.reverse()
        return selection.RunList(chosen, self._load, matched=matched)

    def _effective_entry(
        self, entry: registry_index.Entry, sort: str
    ) -> registry_index.Entry:
        run_id, status, host, created, value, key = entry
        if status != 'running':
            return entry
        now = self._effective_status(key, run_id, status, host)
        if now == status:
            return entry
        return run_id, now, host, created, now if sort == 'status' else value, key

    def _load(self, entries: Sequence[registry_index.Entry]) -> list[RunRecord]:
        """Build the records of listed runs, each as its file now reads."""
        ids: dict[str, list[str]] = {}
        for run_id, _, _, _, _, key in entries:
            ids.setdefault(key, []).append(run_id)
        rows = {key: self.index(key).rows(chosen) for key, chosen in ids.items()}
        return [
            self._current(entry, rows[entry[-1]].get(entry[0])) for entry in entries
        ]

    def _current(
        self, entry: registry_index.Entry, row: registry_index.Row | None
    ) -> RunRecord:
        """Return a listed run's record: from its row if the file is unchanged."""
        run_id, status, _, created, _, key = entry
        path = self.record_path(key, run_id)
        try:
            signature = registry_index.signature(os.stat(path))
        except FileNotFoundError:
            signature = None
        if row is not None and signature == row.signature:
            record = _from_row(row, path)
            now = self._effective_status(key, row.id, row.status, row.host, row.pid)
            if now == record.status:
                return record
            with contextlib.suppress(FileNotFoundError):  # see _read_settled
                if registry_index.signature(os.stat(path)) == row.signature:
                    return record.replace(status=now)
        try:  # changed since it was indexed: edited in place, or rewritten
            record, signature = self._read_settled(key, path)
        except FileNotFoundError:
            pass
        except exceptions.CorruptRecordError as err:
            warnings.warn(str(err), RecordWarning, stacklevel=4)
        else:
            if row is not None and signature != row.signature:
                self.index(key).refresh_row(record.data, signature, row.signature)
            return record
        if row is None:  # removed since it was listed
            return RunRecord(
                id=run_id,
                experiment=self.experiment_info(key).get('name', key),
                status=status,  # type: ignore[arg-type]
                created_at=datetime.datetime.fromtimestamp(created).astimezone(),
                path=path,
            )
        return _from_row(row, path)  # its file is gone or broken now

    def experiment_keys(self) -> list[str]:
        """Return the keys of every recorded experiment."""
        if not self.root.is_dir():
            return []
        return sorted(
            p.name for p in self.root.iterdir() if (p / 'experiment.toml').exists()
        )

    def experiment_info(self, key: str) -> Mapping[str, Any]:
        """Return an experiment's description (empty if unreadable)."""
        try:
            return _read_toml(self.root / key / 'experiment.toml')
        except (OSError, exceptions.CorruptRecordError):
            return {}

    def _effective(self, record: RunRecord, key: str) -> RunRecord:
        """Report a ``running`` record of a dead process on this host as crashed."""
        data = record.data
        pid = data.get('pid')
        status = self._effective_status(
            key, record.id, record.status, data.get('host'), pid
        )
        return record if status == record.status else record.replace(status=status)

    def _effective_status(
        self,
        key: str,
        run_id: str,
        status: str,
        host: object,
        pid: object = None,
    ) -> RunStatus:
        """Return ``crashed`` for a ``running`` run of a dead process on this host.

        Probing the lock creates no file: listing is read-only.
        """
        if status != 'running' or host != _HOST:
            return status  # type: ignore[return-value]
        lock = self.lock(key, run_id)
        # held here: running only if the holder runs it (not just created it)
        held = _active(lock.owner) if lock.held_here() else _probe(lock.path)
        if held is None:  # the lock file cannot be read: trust the pid
            held = files.pid_alive(pid if isinstance(pid, int) else -1)
        return 'running' if held else 'crashed'

    def remove(self, key: str, run_id: str) -> None:
        """Delete a run's record under its write lock (housekeeping only).

        The caller holds the run's lock, so no process runs it meanwhile.

        Raises:
            FileNotFoundError: the run is not recorded.
            RegistryError: the record cannot be removed.
        """
        path = self.record_path(key, run_id)
        with self._record_lock(key, run_id):
            with faults(path, 'remove the run record'):
                path.unlink()
            self.index(key).drop(run_id)


def _from_row(row: registry_index.Row, path: pathlib.Path) -> RunRecord:
    return RunRecord(
        id=row.id,
        experiment=row.experiment,
        status=row.status,  # type: ignore[arg-type]
        created_at=row.created_at,
        started_at=row.started_at,
        stopped_at=row.stopped_at,
        tags=row.tags,
        config_hash=row.config_hash,
        path=path,
    )


def holder(record: RunRecord) -> str:
    """Describe the process that holds a run."""
    what = 'created by' if record.status == 'created' else 'run by'
    return f'{what} process {record.data.get("pid")} on host {record.data.get("host")}'


def this_host() -> str:
    """Return this machine's host name, as recorded in runs."""
    return _HOST


def _file_name(run_id: str) -> str:
    """Refuse ids that would leave their folder, even with validators disabled."""
    if not run_id or run_id.startswith('.') or any(c in run_id for c in '/\\\0'):
        raise exceptions.InvalidNameError(
            f'Run id {run_id!r} cannot be a file name in the registry.'
        )
    return run_id


def _aware(moment: datetime.datetime) -> datetime.datetime:
    """Return ``moment`` with a timezone (local time if it has none)."""
    return moment if moment.tzinfo is not None else moment.astimezone()


def _timestamp_ids(created: datetime.datetime) -> Iterator[str]:
    base = created.strftime('%Y-%m-%d_%H-%M-%S')
    yield base
    for n in range(2, 10):
        yield f'{base}_{n}'
    while True:
        yield f'{base}_{secrets.token_hex(3)}'


def _parse_record(path: pathlib.Path) -> dict[str, Any]:
    """Read and check a record file (for the index)."""
    data = _read_toml(path)
    RunRecord.from_data(data, path)
    return data


def _read_toml(path: pathlib.Path) -> dict[str, Any]:
    try:
        with path.open('rb') as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise exceptions.CorruptRecordError(path, str(err)) from err


def _create_file(path: pathlib.Path, content: bytes) -> bool:
    """Create ``path`` with ``content`` whole; return False if the name is taken.

    The data is synced only once the name is ours, so a burst of runs racing
    for the same second does not pay one ``fsync`` per taken id.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = files.temp_path(path.parent)
    try:
        with temp.open('xb') as file:
            file.write(content)
            file.flush()
            try:
                os.link(temp, path)
            except FileExistsError:
                return False
            except OSError as err:
                if err.errno in _FULL | _NOT_WRITABLE:
                    raise
                # no hard links on this file system: exclusive create
                try:
                    exclusive = open(path, 'xb')  # noqa: SIM115
                except FileExistsError:
                    return False
                try:
                    with exclusive:
                        exclusive.write(content)
                        exclusive.flush()
                        os.fsync(exclusive.fileno())
                except BaseException:
                    path.unlink(missing_ok=True)  # never a half-written record
                    raise
            else:
                os.fsync(file.fileno())
        return True
    finally:
        temp.unlink(missing_ok=True)


def _read_pointer(
    pointer: pathlib.Path,
) -> tuple[str, datetime.datetime | None] | None:
    """Return the id and creation time in ``last_run`` (older files: id only)."""
    try:
        lines = pointer.read_text(encoding='utf-8').split('\n')
    except (OSError, UnicodeDecodeError):
        return None
    run_id = lines[0].strip()
    if not run_id:
        return None
    created = None
    with contextlib.suppress(IndexError, ValueError):
        created = datetime.datetime.fromisoformat(lines[1].strip())
    return run_id, created


def _dumps(data: Mapping[str, Any], path: pathlib.Path) -> bytes:
    """Return ``data`` as TOML bytes, or a drytorch error naming what cannot be."""
    try:
        return tomli_w.dumps(dict(data)).encode()
    except UnicodeEncodeError as err:
        raise exceptions.RegistryError(
            f'{path} cannot be written: a text in it is not valid Unicode '
            f'({err.reason}: {err.object[err.start : err.end]!r}). Use names, tags '
            'and configuration strings without lone surrogates.'
        ) from None
    except (TypeError, ValueError, RecursionError) as err:
        raise exceptions.RegistryError(
            f'{path} cannot be written: {type(err).__name__}: {err}.'
        ) from None


_NOT_WRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})
_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})


def _fault(err: OSError, path: pathlib.Path, action: str) -> exceptions.RegistryError:
    """Return the drytorch error that says what went wrong with ``path`` and the fix."""
    if isinstance(err, exceptions.RegistryError):
        return err
    where = (
        'Point DRYTORCH_REGISTRY_DIR (or registry_dir in [tool.drytorch]) at a '
        'writable folder'
    )
    if err.errno in _FULL:
        problem = 'the disk is full. Free some space and run again'
    elif err.errno in _NOT_WRITABLE:
        problem = f'it is read-only or not writable by this user. {where}'
    elif err.errno in {errno.ENOTDIR, errno.EEXIST} or isinstance(
        err, NotADirectoryError | FileExistsError
    ):
        problem = f'part of the path is a file, not a folder. {where}'
    elif err.errno == errno.EISDIR or isinstance(err, IsADirectoryError):
        problem = 'a folder stands where a file is expected; remove or rename it'
    else:
        problem = f'{err.strerror or err}. Check the folder and run again'
    return exceptions.RegistryError(
        f'Cannot {action} at {path}: {problem}. Nothing was half-written.'
    )


@contextlib.contextmanager
def faults(path: pathlib.Path, action: str) -> Iterator[None]:
    """Turn ``OSError``s other than the expected ones into ``RegistryError``s."""
    try:
        yield
    except (FileNotFoundError, exceptions.DryTorchError):
        raise
    except OSError as err:
        raise _fault(err, path, action) from err


def _replace_file(path: pathlib.Path, content: bytes) -> None:
    """Replace ``path`` with ``content``: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files.replace_file(path, content)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    return value
