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
import os
import pathlib
import secrets
import socket
import tomllib
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, get_args

import filelock
import tomli_w

from drytorch.core import exceptions, files
from drytorch.core.log_events import RunStatus

__all__ = ['RecordWarning', 'RunLock', 'RunRecord', 'RunRegistry', 'now']

RECORD_SUFFIX = '.toml'
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
    """An OS-level lock held by the process that runs a run."""

    def __init__(self, path: pathlib.Path) -> None:
        self.path = path
        self._lock = filelock.FileLock(
            path, timeout=0, thread_local=False, preserve_lock_file=True
        )

    def try_acquire(self) -> bool:
        """Take the lock without waiting; return whether it was taken."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except filelock.Timeout:
            return False
        return True

    def release(self) -> None:
        """Release the lock if held."""
        if self._lock.is_locked:
            self._lock.release(force=True)


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
        """Return the lock of a run (not yet acquired)."""
        return RunLock(self.root / key / 'locks' / f'{_file_name(run_id)}.lock')

    def ensure_experiment(self, key: str, info: Mapping[str, Any]) -> None:
        """Write the experiment's description once; keep an existing one."""
        path = self.root / key / 'experiment.toml'
        if not path.exists():
            with contextlib.suppress(FileExistsError):
                _create_file(path, tomli_w.dumps(dict(info)).encode())

    def create(
        self, key: str, record: Mapping[str, Any], run_id: str | None = None
    ) -> str:
        """Record a new run and return its id.

        With ``run_id=None`` the id is the creation time, made unique with a
        suffix when several runs start in the same second.

        Raises:
            FileExistsError: ``run_id`` is already recorded.
        """
        runs = self.root / key / 'runs'
        runs.mkdir(parents=True, exist_ok=True)
        for candidate in [run_id] if run_id else _timestamp_ids(record['created_at']):
            content = tomli_w.dumps({'id': candidate, **record}).encode()
            try:
                _create_file(self.record_path(key, candidate), content)
            except FileExistsError:
                if run_id:
                    raise
                continue
            _replace_file(self.root / key / 'last_run', candidate.encode())
            return candidate
        raise AssertionError('unreachable: timestamp ids never run out')

    def write(self, key: str, record: Mapping[str, Any]) -> None:
        """Replace a run's record atomically."""
        content = tomli_w.dumps(dict(record)).encode()
        _replace_file(self.record_path(key, record['id']), content)

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
        pointer = self.root / key / 'last_run'
        with contextlib.suppress(OSError, UnicodeDecodeError):
            run_id = pointer.read_text(encoding='utf-8').strip()
            if run_id and self.exists(key, run_id):
                return run_id
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
        """Report a ``running`` record of a dead process on this host as crashed."""
        if record.status != 'running' or record.data.get('host') != _HOST:
            return record
        lock = self.lock(key, record.id)
        try:
            free = lock.try_acquire()
        except OSError:
            free = not _pid_alive(int(record.data.get('pid', -1)))
        if free:
            lock.release()
            return dataclasses.replace(record, status='crashed')
        return record


def holder(record: RunRecord) -> str:
    """Describe the process that holds a run."""
    return f'process {record.data.get("pid")} on host {record.data.get("host")}'


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


def _create_file(path: pathlib.Path, content: bytes) -> None:
    """Create ``path`` with ``content`` whole, or raise ``FileExistsError``.

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
                raise
            except OSError:  # no hard links on this file system: exclusive create
                with open(path, 'xb') as exclusive:
                    exclusive.write(content)
                    exclusive.flush()
                    os.fsync(exclusive.fileno())
            else:
                os.fsync(file.fileno())
    finally:
        temp.unlink(missing_ok=True)


def _replace_file(path: pathlib.Path, content: bytes) -> None:
    """Replace ``path`` with ``content``: readers see the old or the new file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files.replace_file(path, content)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime.datetime | datetime.date | datetime.time):
        return value.isoformat()
    return value
