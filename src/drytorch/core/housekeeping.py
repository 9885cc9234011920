"""Registry housekeeping: tagging, deleting runs and collecting leftovers.

Everything here works on the registry files directly, so the command line
(``drytorch tag``, ``rm``, ``gc``) and the ``Experiment`` methods
(``tag_run``, ``untag_run``, ``delete_run``) share one implementation.

* Tags are changed with ``RunRegistry.update``: a read-modify-write under the
  record's write lock, so a run running in another process keeps them (its
  own writes merge into what is on disk).
* Deleting a run claims its run lock for the time of the deletion, so no
  process can resume it meanwhile; a run held by a live process, or
  recorded ``running`` on another host, is refused with ``RunInUseError``.
  Only the registry's files of the run and, on request, the run's
  checkpoints (through the storage hooks) and its own tracker folders are
  removed: a tracker folder must lie inside the run's ``par_dir``, end with
  ``<experiment>/<run id>`` and contain no symbolic link on the way.
* Garbage collection removes the temporary files of dead processes and lock
  files of runs that are no longer recorded and held by nobody.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import shutil
import warnings
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import filelock

from drytorch.core import checkpointing, exceptions, files, registry, scope
from drytorch.validators.names import check_name

__all__ = [
    'Deletion',
    'HousekeepingWarning',
    'collect_garbage',
    'delete_run',
    'tag_run',
]

_LAST_RUN_LOCK = 'last_run.lock'


class HousekeepingWarning(exceptions.DryTorchWarning):
    """Something was left in place because removing it would not be safe."""


@dataclasses.dataclass
class Deletion:
    """What deleting a run removes (or, before confirmation, would remove).

    Attributes:
        run_id: the run's id.
        experiment: the experiment's name.
        files: registry files: the record, the files beside it, lock files.
        checkpoints: ``(model, epoch, batch)`` of the checkpoints to delete.
        folders: tracker output folders (and emptied checkpoint folders).
        kept: ``(place, reason)`` of outputs left in place.
        done: whether the deletion was carried out.
    """

    run_id: str
    experiment: str
    files: list[pathlib.Path] = dataclasses.field(default_factory=list)
    checkpoints: list[tuple[str, int, int]] = dataclasses.field(default_factory=list)
    folders: list[pathlib.Path] = dataclasses.field(default_factory=list)
    kept: list[tuple[pathlib.Path, str]] = dataclasses.field(default_factory=list)
    done: bool = False


class _Holder:
    """Owns a run lock while housekeeping works on the run."""

    is_active = True  # a claim of this process's other objects cannot take it


def tag_run(
    reg: registry.RunRegistry,
    key: str,
    run_id: str,
    add: Iterable[str] = (),
    remove: Iterable[str] = (),
) -> registry.RunRecord:
    """Add and remove tags of a recorded run; return the record as written.

    Tags already there are not repeated; removing a missing tag does nothing.

    Raises:
        InvalidNameError: a tag is not a printable string.
        RunNotFoundError: the run is not recorded.
        CorruptRecordError: the record cannot be read.
        RegistryError: the record cannot be written.
    """
    added, removed = list(add), list(remove)
    for tag in (*added, *removed):
        check_name(tag, 'tag')
    gone = set(removed)

    def change(data: dict[str, Any]) -> None:
        tags = [tag for tag in data.get('tags', []) if tag not in gone]
        tags.extend(tag for tag in dict.fromkeys(added) if tag not in tags)
        data['tags'] = tags

    try:
        return reg.update(key, run_id, change)
    except FileNotFoundError:
        raise exceptions.RunNotFoundError(run_id, _name(reg, key)) from None


def delete_run(
    reg: registry.RunRegistry,
    key: str,
    run_id: str,
    *,
    outputs: bool = False,
    confirm: Callable[[Deletion], bool] | None = None,
) -> Deletion:
    """Delete a run's record and the files beside it; with ``outputs``, its outputs.

    Args:
        reg: the registry.
        key: the experiment's registry key.
        run_id: the run to delete.
        outputs: also delete the run's checkpoints (through the storage
            hooks) and the tracker folders listed in ``[summary.outputs]``
            that are the run's own (inside its ``par_dir``, ending with
            ``<experiment>/<run id>``, no symbolic link on the way).
        confirm: called with the plan while the run is held; nothing is
            deleted unless it returns True.

    Returns:
        What was (``done``) or would have been removed.

    Raises:
        RunNotFoundError: the run is not recorded.
        RunInUseError: a live process holds the run, or it is recorded as
            running on another host.
        CorruptRecordError: the record cannot be read, or (with ``outputs``)
            its ``par_dir`` is not the experiment's.
        CheckpointError: the storage backend failed to delete a checkpoint.
    """
    path = reg.record_path(key, run_id)
    try:
        record = reg.read(key, run_id)
    except FileNotFoundError:
        raise exceptions.RunNotFoundError(run_id, _name(reg, key)) from None
    _refuse_in_use(reg, key, record)
    lock = reg.lock(key, run_id)
    holder = _Holder()
    if not lock.claim(holder):
        raise exceptions.RunInUseError(run_id, registry.holder(record))
    try:
        record = reg.read(key, run_id)  # as it is now that nobody else can run it
        plan = Deletion(run_id, record.experiment)
        locations: list[checkpointing.CheckpointLocation] = []
        if outputs:
            par_dir = _par_dir(record, key)
            locations = _checkpoint_locations(record, par_dir, plan)
            for location in locations:
                plan.checkpoints.extend(
                    (location.model_name, epoch, batch)
                    for epoch, batch in checkpointing.list_positions(location)
                )
            plan.folders.extend(_output_folders(record, par_dir, plan))
        beside = [
            path.with_name(f'{path.stem}{end}') for end in ('.packages.txt', '.diff')
        ]
        plan.files.extend(p for p in [path, *beside] if p.exists())
        locks = [lock.path, lock.path.with_name(f'{path.stem}.write.lock')]
        plan.files.extend(p for p in locks if p.exists())
        if confirm is not None and not confirm(plan):
            return plan
        for location in locations:
            for epoch, batch in checkpointing.list_positions(location):
                checkpointing.delete(location, epoch, batch)
            _remove_checkpoint_folder(location, plan)
        for folder in plan.folders:
            _remove_tree(folder, record)
        for file in beside:
            file.unlink(missing_ok=True)
        reg.remove(key, run_id)
        with contextlib.suppress(OSError):  # the files of a run no one holds
            locks[1].unlink(missing_ok=True)
            locks[0].unlink(missing_ok=True)  # while held: a newcomer gets a new one
        plan.done = True
        return plan
    finally:
        lock.release(holder)


def collect_garbage(
    reg: registry.RunRegistry, *, dry_run: bool = False
) -> list[pathlib.Path]:
    """Remove what dead processes and deleted runs left in the registry.

    That is: the temporary files of dead processes in each experiment's
    folder, ``runs/`` and ``locks/``; the lock files of runs that are not
    recorded and that no process holds; and the temporary files of dead
    processes in the checkpoint folders of recorded runs that no process
    holds. A running run's files are never touched.

    Args:
        reg: the registry.
        dry_run: only list what would be removed.

    Returns:
        The files removed (or, with ``dry_run``, that would be).
    """
    found: list[pathlib.Path] = []
    for key in reg.experiment_keys():
        folder = reg.experiment_dir(key)
        for place in (folder, folder / 'runs', folder / 'locks'):
            found.extend(_clean_temporaries(place, files.STALE_AGE, dry_run))
        found.extend(_orphan_locks(reg, key, dry_run))
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', registry.RecordWarning)
            records = reg.list_runs(key)
        for record in records:
            found.extend(_checkpoint_temporaries(reg, key, record, dry_run))
    return found


def _name(reg: registry.RunRegistry, key: str) -> str:
    return str(reg.experiment_info(key).get('name', key))


def _refuse_in_use(
    reg: registry.RunRegistry, key: str, record: registry.RunRecord
) -> None:
    active = scope.active_run()
    if active is not None and (active.experiment.key, active.id) == (key, record.id):
        raise exceptions.RunInUseError(
            record.id, 'this process, where it is the active run (stop it first)'
        )
    if reg.lock(key, record.id).held_elsewhere() or record.status == 'running':
        raise exceptions.RunInUseError(record.id, registry.holder(record))


def _par_dir(record: registry.RunRecord, key: str) -> pathlib.Path:
    """Return the record's ``par_dir`` if it is the experiment's own.

    The experiment key hashes the name and ``par_dir``, so an edited
    ``par_dir`` cannot send a deletion elsewhere.
    """
    from drytorch.core.experiment import experiment_key

    value = record.data.get('par_dir')
    if not isinstance(value, str) or '\0' in value or not os.path.isabs(value):
        raise exceptions.CorruptRecordError(
            record.path, f"field 'par_dir' is not an absolute folder: {value!r}"
        )
    par_dir = pathlib.Path(value)
    if experiment_key(record.experiment, par_dir) != key:
        raise exceptions.CorruptRecordError(
            record.path,
            f"field 'par_dir' ({value!r}) is not the folder of the experiment; "
            'outputs were not deleted',
        )
    return par_dir


def _safe_name(name: object, kind: str) -> bool:
    try:
        check_name(name, kind)  # type: ignore[arg-type]
    except exceptions.InvalidNameError:
        return False
    return True


def _checkpoint_locations(
    record: registry.RunRecord, par_dir: pathlib.Path, plan: Deletion
) -> list[checkpointing.CheckpointLocation]:
    """Return the locations of the run's models, from the record and the disk."""
    summary = record.data.get('summary', {})
    summary = summary if isinstance(summary, dict) else {}
    names: dict[str, None] = {}
    for field in ('checkpoints', 'metrics'):
        table = summary.get(field, {})
        for name in table if isinstance(table, dict) else ():
            names[str(name).split('/')[0] if field == 'checkpoints' else name] = None
    run_folder = par_dir / 'checkpoints' / record.experiment / record.id
    if _links_on_the_way(par_dir, run_folder):
        plan.kept.append((run_folder, 'a symbolic link is on the way'))
        return []
    if run_folder.is_dir():
        for entry in sorted(run_folder.iterdir()):
            if entry.is_dir() and not entry.is_symlink():
                names[entry.name] = None
    locations = []
    for name in names:
        if not _safe_name(name, 'model'):
            plan.kept.append((run_folder / str(name), 'not a safe model name'))
        elif (run_folder / name).is_symlink():
            plan.kept.append((run_folder / name, 'a symbolic link'))
        else:
            locations.append(
                checkpointing.CheckpointLocation(
                    par_dir, record.experiment, record.id, name
                )
            )
    return locations


def _links_on_the_way(top: pathlib.Path, place: pathlib.Path) -> bool:
    """Whether ``top`` is not its real path, or a link is on the way to ``place``."""
    if os.path.realpath(top) != str(top):
        return True
    current = top
    for part in place.relative_to(top).parts:
        current = current / part
        if current.is_symlink():
            return True
    return False


def _output_folders(
    record: registry.RunRecord, par_dir: pathlib.Path, plan: Deletion
) -> list[pathlib.Path]:
    """Return the tracker folders of ``[summary.outputs]`` that are the run's own."""
    summary = record.data.get('summary', {})
    table = summary.get('outputs', {}) if isinstance(summary, dict) else {}
    found: list[pathlib.Path] = []
    for place in table.values() if isinstance(table, dict) else ():
        if not isinstance(place, str) or '\0' in place or not os.path.isabs(place):
            continue
        folder = pathlib.Path(os.path.normpath(place))
        reason = _unsafe_folder(folder, par_dir, record)
        if reason:
            plan.kept.append((folder, reason))
        elif folder.is_dir() and folder not in found:
            found.append(folder)
    return found


def _unsafe_folder(
    folder: pathlib.Path, par_dir: pathlib.Path, record: registry.RunRecord
) -> str:
    """Return why ``folder`` must not be deleted as the run's output, or ''."""
    if not folder.is_relative_to(par_dir) or folder == par_dir:
        return "outside the run's par_dir"
    if folder.parts[-2:] != (record.experiment, record.id):
        return f'does not end with {record.experiment}/{record.id}'
    if _links_on_the_way(par_dir, folder):
        return 'a symbolic link is on the way'
    if folder.exists() and not folder.is_dir():
        return 'not a folder'
    return ''


def _remove_tree(folder: pathlib.Path, record: registry.RunRecord) -> None:
    """Delete a checked folder; links inside are removed, never followed."""
    if folder.is_symlink():  # swapped for a link since the check
        return
    if not folder.exists():  # went with the checkpoints it held
        return
    shutil.rmtree(folder, onerror=_warn_left(record))


def _warn_left(record: registry.RunRecord) -> Callable[..., None]:
    def report(function: Any, place: str, error: Any) -> None:
        warnings.warn(
            f'Run {record.id!r}: {place} could not be removed ({error[1]}).',
            HousekeepingWarning,
            stacklevel=2,
        )

    return report


def _remove_checkpoint_folder(
    location: checkpointing.CheckpointLocation, plan: Deletion
) -> None:
    """Remove the local backend's emptied folders of a model, then of the run."""
    model = location.par_dir / 'checkpoints' / location.experiment_name
    model = model / location.run_id / location.model_name
    if _links_on_the_way(location.par_dir, model) or not model.is_dir():
        return
    files.remove_stale_temporaries(model, min_age=0)  # the run is held: no writer
    for folder in (model, model.parent):
        try:
            folder.rmdir()
        except OSError:
            return  # not empty: something that is not a checkpoint stays
        plan.folders.append(folder)


def _clean_temporaries(
    folder: pathlib.Path, min_age: float, dry_run: bool
) -> list[pathlib.Path]:
    stale = files.stale_temporaries(folder, min_age)
    if dry_run or not stale:
        return stale
    files.remove_stale_temporaries(folder, min_age=min_age)
    return [path for path in stale if not path.exists()]


def _orphan_locks(
    reg: registry.RunRegistry, key: str, dry_run: bool
) -> list[pathlib.Path]:
    """Remove the lock files of runs not recorded and held by no process."""
    locks = reg.experiment_dir(key) / 'locks'
    if locks.is_symlink() or not locks.is_dir():
        return []
    found = []
    for path in sorted(locks.glob('*.lock')):
        if path.name == _LAST_RUN_LOCK or path.is_symlink() or not path.is_file():
            continue
        run_id = path.name.removesuffix('.lock').removesuffix('.write')
        try:
            if reg.exists(key, run_id):
                continue
        except exceptions.InvalidNameError:
            continue
        with _held(reg, key, run_id, path) as free:
            if not free or reg.exists(key, run_id):
                continue
            if not dry_run:
                try:
                    path.unlink()
                except OSError:
                    continue
            found.append(path)
    return found


@contextlib.contextmanager
def _held(
    reg: registry.RunRegistry, key: str, run_id: str, path: pathlib.Path
) -> Iterator[bool]:
    """Take the lock at ``path`` without waiting; yield whether it was free.

    The file is unlinked while held, so a process that opens it meanwhile
    fails to lock it, and one that comes later creates a new file.
    """
    if path.name.endswith('.write.lock'):
        lock = filelock.FileLock(path, timeout=0)
        try:
            lock.acquire()
        except (filelock.Timeout, OSError):
            yield False
            return
        try:
            yield True
        finally:
            lock.release()
        return
    run_lock = reg.lock(key, run_id)
    holder = _Holder()
    try:
        free = not run_lock.held_here() and run_lock.claim(holder)
    except exceptions.RegistryError:
        free = False
    try:
        yield free
    finally:
        if free:
            run_lock.release(holder)


def _checkpoint_temporaries(
    reg: registry.RunRegistry, key: str, record: registry.RunRecord, dry_run: bool
) -> list[pathlib.Path]:
    """Remove dead processes' temporaries in the checkpoint folders of a run."""
    if record.status == 'running':
        return []
    try:
        check_name(record.experiment, 'experiment')
        check_name(record.id, 'run')
        par_dir = _par_dir(record, key)
    except exceptions.DryTorchError:
        return []
    run_folder = par_dir / 'checkpoints' / record.experiment / record.id
    if not run_folder.is_dir() or _links_on_the_way(par_dir, run_folder):
        return []
    lock = reg.lock(key, record.id)
    if lock.held_here() or lock.held_elsewhere():
        return []
    found = []
    for model in sorted(run_folder.iterdir()):
        if model.is_dir() and not model.is_symlink():
            found.extend(_clean_temporaries(model, 0.0, dry_run))
    return found
