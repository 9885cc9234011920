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
import dataclasses
import datetime
import errno
import os
import pathlib
import secrets
import socket
import tomllib
import warnings
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any, get_args

import filelock
import tomli_w

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

from drytorch.core import exceptions, files
from drytorch.core.log_events import RunStatus

__all__ = ['RecordWarning', 'RunLock', 'RunRecord', 'RunRegistry', 'faults', 'now']

RECORD_SUFFIX = '.toml'
RECORD_LOCK_TIMEOUT = 60.0  # seconds a record write waits for another's
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


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """A run as recorded in the registry.

    Attributes:
        id: the run id.
        experiment: the experiment's name.
        status: the recorded status, or ``crashed`` for a ``running`` run whose
            process is gone.
        created_at: when the run was created.
        started_at: when the run was last started or resumed.
        stopped_at: when the run last stopped.
        tags: the experiment's tags when the run was created.
        config: the configuration snapshot.
        config_hash: hash of the configuration snapshot.
        path: the record file.
        data: every field of the record, as read.
    """

    id: str
    experiment: str
    status: RunStatus
    created_at: datetime.datetime
    started_at: datetime.datetime | None
    stopped_at: datetime.datetime | None
    tags: tuple[str, ...]
    config: Mapping[str, Any]
    config_hash: str
    path: pathlib.Path
    data: Mapping[str, Any]

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
            config=data.get('config', {}),
            config_hash=data.get('config_hash', ''),
            path=path,
            data=data,
        )

    def to_json(self) -> dict[str, Any]:
        """Return the record as JSON-compatible data (times as ISO strings)."""
        data: dict[str, Any] = _jsonable(dict(self.data, status=self.status))
        return data


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
        return self._effective(RunRecord.from_data(data, path), key)

    def write(self, key: str, record: Mapping[str, Any]) -> None:
        """Replace a run's record whole (for tools that rewrite records).

        Runs never call this: their writes go through ``update``.
        """
        path = self.record_path(key, record['id'])
        content = _dumps(record, path)
        with self._record_lock(key, record['id']), faults(path, 'write the record'):
            _replace_file(path, content)

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
        path = self.record_path(key, run_id)
        return self._effective(RunRecord.from_data(_read_toml(path), path), key)

    def exists(self, key: str, run_id: str) -> bool:
        """Return whether the run is recorded."""
        return self.record_path(key, run_id).exists()

    def last_id(self, key: str) -> str | None:
        """Return the id of the newest run of the experiment, if any."""
        found = _read_pointer(self.root / key / 'last_run')
        if found is not None and self.exists(key, found[0]):
            return found[0]
        runs = self.list_runs(key)
        return runs[-1].id if runs else None

    def list_runs(self, key: str) -> list[RunRecord]:
        """Return the readable records of an experiment, oldest first.

        An unreadable record is reported with a ``RecordWarning`` naming its
        path, skipped and left untouched.
        """
        records = []
        for path in (self.root / key / 'runs').glob(f'*{RECORD_SUFFIX}'):
            try:
                record = RunRecord.from_data(_read_toml(path), path)
            except FileNotFoundError:
                continue
            except exceptions.CorruptRecordError as err:
                warnings.warn(str(err), RecordWarning, stacklevel=2)
                continue
            records.append(self._effective(record, key))
        records.sort(key=lambda r: (_aware(r.created_at), r.id))
        return records

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
        """Report a ``running`` record of a dead process on this host as crashed.

        Probing the lock creates no file: listing is read-only.
        """
        if record.status != 'running' or record.data.get('host') != _HOST:
            return record
        lock = self.lock(key, record.id)
        # held here: running only if the holder runs it (not just created it)
        held = _active(lock.owner) if lock.held_here() else _probe(lock.path)
        if held is None:  # the lock file cannot be read: trust the pid
            held = files.pid_alive(int(record.data.get('pid', -1)))
        return record if held else dataclasses.replace(record, status='crashed')

    def remove(self, key: str, run_id: str) -> None:
        """Delete a run's record under its write lock (housekeeping only).

        The caller holds the run's lock, so no process runs it meanwhile.

        Raises:
            FileNotFoundError: the run is not recorded.
            RegistryError: the record cannot be removed.
        """
        path = self.record_path(key, run_id)
        with self._record_lock(key, run_id), faults(path, 'remove the run record'):
            path.unlink()


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
