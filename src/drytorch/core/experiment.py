"""Experiments and their runs.

An ``Experiment`` is code defined entirely by one immutable configuration;
its identity is its name and output folder (``par_dir``), so building the
same experiment again, in a notebook cell or a new process, addresses the same
recorded runs. A ``Run`` is one execution of it, recorded in the registry.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import os
import pathlib
import re
import sys
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar

from drytorch.core import (
    environment,
    exceptions,
    files,
    log_events,
    registry,
    scope,
    seeding,
    selection,
    settings,
    snapshot,
    tracking,
    watchdog,
)
from drytorch.core.plugins import get_host

__all__ = ['Experiment', 'Run', 'experiment_key']

ConfigT = TypeVar('ConfigT')
RECORD_VERSION = 1


class Experiment(Generic[ConfigT]):
    """An experiment: code defined entirely by one immutable configuration.

    Subclass it, or annotate it, with the configuration type::

        class MyExperiment(Experiment[MyConfig]): ...

        exp = MyExperiment(MyConfig(...), name='baseline', par_dir='outputs')
        with exp.create_run() as run:
            MyExperiment.get_config()  # the configuration, anywhere in the code

    Args:
        config: the configuration: a frozen dataclass, a NamedTuple, a frozen
            pydantic model, or ``None``.
        name: the experiment's name; defaults to the class name.
        par_dir: the folder where trackers write outputs; defaults to the
            ``par_dir`` setting (the working directory).
        tags: labels recorded with every run.

    Attributes:
        name: the experiment's name.
        par_dir: the absolute output folder.
        tags: the experiment's tags.
        key: the registry key, unique for a name and ``par_dir``.
        trackers: the trackers of this experiment.
        registry: the run registry it records to.
    """

    def __init__(
        self,
        config: ConfigT,
        *,
        name: str = '',
        par_dir: str | os.PathLike[str] | None = None,
        tags: Iterable[str] = (),
    ) -> None:
        config_settings = settings.get_settings()
        host = get_host()
        self.name = name or type(self).__name__
        host.hook.validate_name(name=self.name, kind='experiment')
        host.hook.validate_config(config=config)
        self._config = config
        self.tags = tuple(tags) if not isinstance(tags, str) else (tags,)
        if not all(isinstance(tag, str) for tag in self.tags):
            raise TypeError(f'Experiment tags must be strings, got {self.tags!r}.')
        for tag in self.tags:
            host.hook.validate_name(name=tag, kind='tag')
        base = par_dir if par_dir is not None else config_settings.par_dir
        self.par_dir = pathlib.Path(base).expanduser().resolve()
        self.key = experiment_key(self.name, self.par_dir)
        self.registry = registry.RunRegistry(config_settings.registry_dir)
        self.trackers = tracking.TrackerRegistry(self.name, tracking.default_trackers())
        self._runs: dict[str, Run[ConfigT]] = {}

    @property
    def config(self) -> ConfigT:
        """The experiment's configuration."""
        return self._config

    @classmethod
    def get_config(cls) -> ConfigT:
        """Return the configuration of the active run.

        Raises:
            NoActiveExperimentError: no run is active.
            AccessOutsideScopeError: the active run belongs to an experiment
                that is not an instance of this class.
        """
        result = get_host().hook.get_config(experiment_class=cls)
        if result is None and scope.active_run() is None:
            raise exceptions.NoActiveExperimentError(f'{cls.__name__}.get_config()')
        return result  # type: ignore[no-any-return]

    def create_run(
        self,
        run_id: str | None = None,
        *,
        resume: bool = False,
        seed: int | None = None,
        deterministic: bool | None = None,
    ) -> Run[ConfigT]:
        """Create a run, or get a recorded one back with ``resume=True``.

        Args:
            run_id: the run's id; by default the creation time. With
                ``resume=True`` and no recorded run of that id, the run is
                created (with a warning), so one script serves the first
                launch and every relaunch.
            resume: continue the run ``run_id``, or the newest run of this
                experiment when ``run_id`` is ``None``. With no run recorded, a
                new run is created (with a warning).
            seed: the run's seed, from 0 to 2**32 - 1; by default the ``seed``
                setting, else one drawn at random. Python's ``random``, NumPy
                and torch are seeded from it whenever the run starts. A
                resumed run keeps its recorded seed.
            deterministic: make torch use deterministic algorithms while the
                run is active; by default the ``deterministic`` setting, and
                for a resumed run, when that is not set, its recorded mode.

        Returns:
            The run, not started yet: use it as a context manager, or call
            ``start()`` and ``stop()``. Resuming in the process that created
            the run returns the same object.

        Raises:
            RunAlreadyExistsError: ``run_id`` is recorded and ``resume`` is False.
            ConfigMismatchError: the recorded run has another configuration.
            RunInUseError: another live process holds it (runs it, or created
                or resumed it and has not stopped it).
            CorruptRecordError: its record cannot be read.
            InvalidNameError: ``run_id`` cannot be used as a file name.
            SeedMismatchError: ``seed`` is not the resumed run's recorded seed.
            TypeError, ValueError: ``seed`` is not an integer in range.
        """
        if run_id is not None:
            get_host().hook.validate_name(name=run_id, kind='run')
        if seed is not None:
            seed = seeding.check_seed(seed)
        if deterministic is not None and not isinstance(deterministic, bool):
            raise TypeError(f'deterministic must be a boolean, got {deterministic!r}.')
        if not resume:
            return self._new_run(run_id, seed, deterministic)
        target = run_id if run_id is not None else self.registry.last_id(self.key)
        if target is None:
            warnings.warn(
                f'No run of experiment {self.name!r} is recorded: starting a new one.',
                exceptions.DryTorchWarning,
                stacklevel=2,
            )
            return self._new_run(None, seed, deterministic)
        if target in self._runs:
            run = self._runs[target]
            if seed is not None and seed != run.seed:
                raise exceptions.SeedMismatchError(target, run.seed, seed)
            run._claim()
            if deterministic is not None:
                run._deterministic = deterministic
            if run.deterministic:
                seeding.set_cublas_config()
            return run
        try:
            record = self.registry.read(self.key, target)
        except FileNotFoundError:
            warnings.warn(
                f'Run {target!r} of experiment {self.name!r} is not recorded yet: '
                'creating it.',
                exceptions.DryTorchWarning,
                stacklevel=2,
            )
            try:
                return self._new_run(target, seed, deterministic)
            except exceptions.RunAlreadyExistsError:  # another process won the race
                record = self.registry.read(self.key, target)
        return self._resume(record, seed, deterministic)

    def list_runs(
        self,
        *,
        status: str | Sequence[str] | None = None,
        tags: str | Sequence[str] = (),
        since: datetime.datetime | str | None = None,
        sort: selection.SortKey = 'created',
        descending: bool = False,
        limit: int | None = None,
        refresh: bool = False,
    ) -> selection.RunList:
        """Return the recorded runs of this experiment, oldest first.

        The filters are those of ``drytorch runs``. The registry index chooses
        the runs, so this answers at once at any size; the list reads each
        record when first used.

        Args:
            status: keep runs with this status, or one of these (``crashed``
                included: the effective status).
            tags: keep runs that carry every one of these tags.
            since: keep runs created at or after this time: a datetime, an ISO
                date or time (``2026-12-01``, ``2026-12-01T10:00``), or an age
                (``30m``, ``12h``, ``7d``).
            sort: order by creation, start or stop time, id or status; runs
                without the time come first.
            descending: list in reverse order (newest first, by default).
            limit: keep the ``limit`` runs with the highest sort values (the
                newest, by default), whichever way they are listed.
            refresh: compare every record file with the index first, which
                finds edits made in place in registries of over 5,000 runs
                (smaller ones are always compared whole).

        Raises:
            ValueError: an unknown status or sort key, a bad ``since``, a
                negative ``limit``.
        """
        return self.registry.select_runs(
            [self.key],
            status=status,
            tags=tags,
            since=since,
            sort=sort,
            descending=descending,
            limit=limit,
            refresh=refresh,
        )

    def _new_run(
        self, run_id: str | None, seed: int | None, deterministic: bool | None
    ) -> Run[ConfigT]:
        self.registry.ensure_experiment(
            self.key,
            {
                'name': self.name,
                'class': _qualname(type(self)),
                'par_dir': str(self.par_dir),
                'created_at': registry.now(),
            },
        )
        config_settings = settings.get_settings()
        if seed is not None:
            seed_source = 'argument'
        elif config_settings.seed is not None:
            seed, seed_source = config_settings.seed, 'setting'
        else:
            seed, seed_source = seeding.draw_seed(), 'drawn'
        if deterministic is None:
            deterministic = bool(config_settings.deterministic)
        if deterministic:  # before the accelerator lookup may initialise CUDA
            seeding.set_cublas_config()
        env = environment.capture_all()
        record = {
            'record_version': RECORD_VERSION,
            'pid': os.getpid(),
            'host': registry.this_host(),
            'experiment': self.name,
            'experiment_class': _qualname(type(self)),
            'experiment_key': self.key,
            'status': 'created',
            'created_at': registry.now(),
            'par_dir': str(self.par_dir),
            'tags': list(self.tags),
            'config_class': _qualname(type(self.config)),
            'config_hash': snapshot.config_hash(self.config),
            'seed': seed,
            'seed_source': seed_source,
            'deterministic': deterministic,
            'config': snapshot.to_toml(self.config),
            'environment': env.record,
        }
        try:
            new_id = self.registry.create(self.key, record, run_id, owner=self)
        except FileExistsError:
            assert run_id is not None
            raise exceptions.RunAlreadyExistsError(run_id, self.name) from None
        run = Run(
            self,
            new_id,
            {'id': new_id, **record},
            recorded=False,
            seed=seed,
            deterministic=deterministic,
        )
        run._claim()  # from the experiment, which claimed it before the record
        _write_beside(run.packages_path, env.packages.text.encode())
        if env.diff is not None:
            _write_beside(run.diff_path, env.diff)
        self._runs[new_id] = run
        return run

    def _resume(
        self,
        record: registry.RunRecord,
        seed: int | None,
        deterministic: bool | None,
    ) -> Run[ConfigT]:
        if record.config_hash != snapshot.config_hash(self.config):
            differences = snapshot.diff(record.config, snapshot.to_toml(self.config))
            raise exceptions.ConfigMismatchError(
                record.id,
                differences
                or [
                    f'hash {record.config_hash} -> {snapshot.config_hash(self.config)}'
                ],
            )
        active = scope.active_run()
        if active is not None and (active.experiment.key, active.id) == (
            self.key,
            record.id,
        ):
            raise exceptions.RunInUseError(
                record.id, 'this process, where it is the active run (stop it first)'
            )
        if record.status == 'running' and record.data.get('host') != (
            registry.this_host()
        ):
            raise exceptions.RunInUseError(record.id, registry.holder(record))
        recorded_seed = record.data.get('seed')
        config_settings = settings.get_settings()
        if recorded_seed is None:  # recorded before runs had seeds
            recorded_seed = seed
            if recorded_seed is None:
                recorded_seed = config_settings.seed
            if recorded_seed is None:
                recorded_seed = seeding.draw_seed()
        elif isinstance(recorded_seed, bool) or not isinstance(recorded_seed, int):
            raise exceptions.CorruptRecordError(
                record.path, f'field seed has type {type(recorded_seed).__name__}'
            )
        elif seed is not None and seed != recorded_seed:
            raise exceptions.SeedMismatchError(record.id, recorded_seed, seed)
        elif config_settings.seed is not None and config_settings.seed != recorded_seed:
            warnings.warn(
                f'The seed setting ({config_settings.seed}) differs from the seed '
                f'run {record.id!r} was created with: it keeps {recorded_seed}.',
                exceptions.DryTorchWarning,
                stacklevel=3,
            )
        if deterministic is None:
            deterministic = config_settings.deterministic
        if deterministic is None:
            deterministic = record.data.get('deterministic') is True
        if deterministic:
            seeding.set_cublas_config()
        run = Run(
            self,
            record.id,
            dict(record.data),
            recorded=True,
            seed=recorded_seed,
            deterministic=deterministic,
        )
        run._claim()
        self._runs[record.id] = run
        return run

    def __repr__(self) -> str:
        return (
            f'{type(self).__name__}(name={self.name!r}, par_dir={str(self.par_dir)!r})'
        )

    def tag_run(self, run_id: str, *tags: str) -> registry.RunRecord:
        """Add ``tags`` to a recorded run, even one running in another process.

        Raises:
            InvalidNameError: a tag is not a printable string.
            RunNotFoundError: the run is not recorded.
        """
        from drytorch.core import housekeeping

        return housekeeping.tag_run(self.registry, self.key, run_id, add=tags)

    def untag_run(self, run_id: str, *tags: str) -> registry.RunRecord:
        """Remove ``tags`` from a recorded run (missing ones are ignored).

        Raises:
            InvalidNameError: a tag is not a printable string.
            RunNotFoundError: the run is not recorded.
        """
        from drytorch.core import housekeeping

        return housekeeping.tag_run(self.registry, self.key, run_id, remove=tags)

    def delete_run(self, run_id: str, outputs: bool = False) -> None:
        """Delete a run's record and files beside it; ``outputs``: its outputs too.

        With ``outputs``, its checkpoints and its own tracker folders (inside
        ``par_dir``, ending with ``<name>/<run id>``) are deleted as well.

        Raises:
            RunNotFoundError: the run is not recorded.
            RunInUseError: this or another live process holds the run.
        """
        from drytorch.core import housekeeping

        housekeeping.delete_run(self.registry, self.key, run_id, outputs=outputs)
        self._runs.pop(run_id, None)


class Run(Generic[ConfigT]):
    """One execution of an experiment, recorded in the run registry.

    Use it as a context manager, or call ``start()`` and ``stop()``. A run left
    running is stopped at interpreter exit by a weak-reference finaliser (its
    record notes it); do not rely on that for correct records.

    Attributes:
        experiment: the experiment it executes.
        id: its id, unique within the experiment.
        summary: plain data that plugins keep about the run (the last
            metrics, for instance), the record's ``[summary]`` table. While
            the run is active, what plugins put there is merged into the
            record at every write (``save_summary()`` writes at once); when
            the run starts it is read afresh from the record, so a ``Run``
            object kept across another process's session never writes old
            values back. Trackers whose hook calls took a noticeable share
            of a session (``drytorch.core.watchdog``) are listed with their
            seconds under ``tracker_seconds``.
        model_names: the names of the models registered in the current
            session; a resumed session starts empty, so a model keeps its
            name (and finds its checkpoints) however often the run resumes.
    """

    def __init__(
        self,
        experiment: Experiment[ConfigT],
        run_id: str,
        record: dict[str, Any],
        *,
        recorded: bool,
        seed: int,
        deterministic: bool,
    ) -> None:
        self.experiment = experiment
        self.id = run_id
        self.model_names: set[str] = set()
        self.summary: dict[str, Any] = dict(record.get('summary', {}))
        self.start_event: log_events.RunStartEvent | None = None
        self._record = record
        self._recorded = recorded
        self._lock = experiment.registry.lock(experiment.key, run_id)
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._last_error_at_start: object = None
        self._seed = seed
        self._deterministic = deterministic
        self._deterministic_state: seeding.DeterministicState | None = None
        self._session: tuple[int, Any] | None = None
        self._started_clock = time.perf_counter()
        self._written_at = -float('inf')  # time.monotonic() of the last write

    @property
    def seed(self) -> int:
        """The run's seed: every start and resume seeds the generators with it."""
        return self._seed

    @property
    def deterministic(self) -> bool:
        """Whether torch runs in deterministic mode while the run is active."""
        return self._deterministic

    @property
    def status(self) -> log_events.RunStatus:
        """The run's status as last read or written by this process."""
        status: log_events.RunStatus = self._record['status']
        return status

    @property
    def record_path(self) -> pathlib.Path:
        """The run's record file."""
        return self.experiment.registry.record_path(self.experiment.key, self.id)

    @property
    def packages_path(self) -> pathlib.Path:
        """The file listing the installed packages, beside the record."""
        record = self.record_path
        return record.with_name(f'{record.stem}.packages.txt')

    @property
    def diff_path(self) -> pathlib.Path:
        """The file with the uncommitted changes of the code, beside the record.

        It exists only if the code's git work tree was dirty at creation.
        """
        record = self.record_path
        return record.with_name(f'{record.stem}.diff')

    @property
    def is_active(self) -> bool:
        """Whether this is the active run of the process."""
        return scope.active_run() is self

    def start(self) -> Self:
        """Start (or resume) the run and make it the active one.

        Raises:
            RunAlreadyActiveError: a run is already active in this process.
            RunInUseError: another process runs it.
        """
        active = scope.active_run()
        if active is not None:
            raise exceptions.RunAlreadyActiveError(repr(active), repr(self))
        exp = self.experiment
        self._claim()
        host = get_host()
        started = registry.now()
        installed = environment.packages()
        previous: list[str | None] = []

        def begin(data: dict[str, Any]) -> None:
            recorded_seed = data.get('seed')
            if isinstance(recorded_seed, int) and not isinstance(recorded_seed, bool):
                self._seed = recorded_seed  # the record wins a race
            previous.append(_last_packages_hash(data))
            session = {
                'started_at': started,
                'pid': os.getpid(),
                'host': registry.this_host(),
                'seed': self._seed,
                'deterministic': self._deterministic,
                'packages_hash': installed.hash,
            }
            data.update(
                seed=self._seed,
                deterministic=self._deterministic,
                status='running',
                started_at=started,
                pid=os.getpid(),
                host=registry.this_host(),
                sessions=[*data.get('sessions', []), session],
            )
            data.pop('error', None)

        try:
            scope.enter(self)
            exp.trackers.activate(host)
            self.model_names = set()
            self._write(begin, merge=False)
            self._session = (os.getpid(), started)
            if previous[-1] != installed.hash or not self.packages_path.exists():
                _write_beside(self.packages_path, installed.text.encode())
        except BaseException:
            exp.trackers.deactivate()
            scope.exit(self)
            self._lock.release(self)
            raise
        resumed = self._recorded
        self._recorded = True
        self._last_error_at_start = getattr(sys, 'last_value', None)
        self._finalizer = weakref.finalize(self, _stop_at_exit, weakref.ref(self))
        event = log_events.RunStartEvent(
            experiment_name=exp.name,
            experiment_class=type(exp).__name__,
            run_id=self.id,
            resumed=resumed,
            config=exp.config,
            par_dir=exp.par_dir,
            tags=exp.tags,
            record_path=self.record_path,
            timestamp=started,
        )
        self.start_event = event
        host.reset_tracker_times()
        self._started_clock = time.perf_counter()
        host.broadcast('on_run_start', event)
        # After the trackers: the user's code draws the same numbers whatever
        # the trackers did.
        if self._deterministic:
            self._deterministic_state = seeding.enable_deterministic()
        seeding.seed_everything(self._seed)
        self.save_summary()  # where trackers write, known even if the run crashes
        return self

    def save_summary(
        self,
        *,
        remove: Iterable[tuple[str, ...]] = (),
        sync: bool = True,
        unless_written_within: float = 0.0,
    ) -> None:
        """Write ``summary`` into the record now, merged with what is on disk.

        Plugins call it when what the record says must hold even if the
        process dies next: a checkpoint saved or deleted, the last metrics.
        Nothing is written unless the run is active.

        Args:
            remove: paths of summary entries to delete, such as
                ``('checkpoints', 'model/epoch_3.pt')``; merging alone never
                deletes.
            sync: ``fsync`` the record (False: it survives a crash of the
                process, not a power loss).
            unless_written_within: skip the write if the record was written
                less than this many seconds ago; the change then goes with
                the next write (a checkpoint, the stop). For frequent,
                replaceable data such as metrics.
        """
        if not self.is_active:
            return
        if (
            unless_written_within > 0
            and time.monotonic() - self._written_at < unless_written_within
        ):
            return
        removals = [tuple(path) for path in remove]
        for path in removals:
            _remove_entry(self.summary, path)
        if removals or self.summary != self._record.get('summary', {}):
            self._write(None, merge=True, remove=removals, sync=sync)

    def _write(
        self,
        change: Callable[[dict[str, Any]], None] | None,
        *,
        merge: bool,
        remove: Iterable[tuple[str, ...]] = (),
        sync: bool = True,
    ) -> None:
        """Read, change and write the record under its lock; refresh this copy.

        With ``merge``, the in-memory summary is merged into the recorded one
        (recorded entries it does not have are kept); without, the recorded
        summary replaces the in-memory one.
        """
        exp = self.experiment
        mine = copy.deepcopy(self.summary) if merge else {}

        def apply(data: dict[str, Any]) -> None:
            if change is not None:
                change(data)
            recorded = data.get('summary')
            merged = copy.deepcopy(recorded) if isinstance(recorded, dict) else {}
            _merge(merged, mine)
            for path in remove:
                _remove_entry(merged, path)
            if merged:
                data['summary'] = merged
            else:
                data.pop('summary', None)

        record = exp.registry.update(exp.key, self.id, apply, sync=sync)
        self._written_at = time.monotonic()
        self._record = dict(record.data)
        self.summary.clear()
        self.summary.update(copy.deepcopy(self._record.get('summary', {})))

    def _claim(self) -> None:
        """Hold the run for this process, or raise ``RunInUseError``."""
        if not self._lock.claim(self):
            exp = self.experiment
            try:
                holder = registry.holder(exp.registry.read(exp.key, self.id))
            except (FileNotFoundError, exceptions.CorruptRecordError):
                holder = 'another process'
            raise exceptions.RunInUseError(self.id, holder)

    def stop(self, error: BaseException | None = None, *, reason: str = '') -> None:
        """Stop the run and finalise its record; do nothing if it is not active.

        Args:
            error: the exception that ended the run; the run is then ``failed``.
            reason: why the run stopped, when not by the user's code.
        """
        if not self.is_active:
            return
        exp = self.experiment
        stopped = registry.now()
        status: log_events.RunStatus = 'failed' if error is not None else 'completed'
        message = f'{type(error).__name__}: {error}' if error is not None else None

        def end(data: dict[str, Any]) -> None:
            data.update(status=status, stopped_at=stopped)
            if message is not None:
                data['error'] = message
            for session in reversed(data.get('sessions', [])):
                if (session.get('pid'), session.get('started_at')) == self._session:
                    session.update(status=status, stopped_at=stopped)
                    if reason:
                        session['stop_reason'] = reason
                    break

        host = get_host()
        try:
            host.broadcast(
                'on_run_stop',
                log_events.RunStopEvent(exp.name, self.id, status, message, stopped),
            )
        finally:
            slow = watchdog.noticeable_tracker_times(
                host.tracker_times(), time.perf_counter() - self._started_clock
            )
            if slow:  # this session's; earlier sessions' stay in the record
                self.summary['tracker_seconds'] = {
                    name: round(seconds, 3) for name, seconds in slow.items()
                }
            exp.trackers.deactivate()
            if self._deterministic_state is not None:
                seeding.restore_deterministic(self._deterministic_state)
                self._deterministic_state = None
            if self._finalizer is not None:
                self._finalizer.detach()
            try:
                self._write(end, merge=True)
            finally:
                scope.exit(self)
                self._lock.release(self)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        self.stop(exc)
        return False

    def __repr__(self) -> str:
        return f'Run {self.id!r} of experiment {self.experiment.name!r}'


def _stop_at_exit(ref: weakref.ref[Run[Any]]) -> None:
    """Stop a run still active at interpreter exit (or when it is collected)."""
    run = ref()
    if run is not None:
        error = getattr(sys, 'last_value', None)  # set by an uncaught exception
        if error is run._last_error_at_start or not isinstance(error, BaseException):
            error = None
        run.stop(error, reason='stopped at interpreter exit: run.stop() not called')


def _last_packages_hash(data: Mapping[str, Any]) -> str | None:
    """Return the packages hash of the record's last session (or its creation)."""
    sessions = data.get('sessions') or []
    last = sessions[-1] if sessions and isinstance(sessions[-1], dict) else {}
    env = data.get('environment')
    found = last.get('packages_hash') or (
        env.get('packages_hash') if isinstance(env, dict) else None
    )
    return found if isinstance(found, str) else None


def _merge(into: dict[str, Any], update: Mapping[str, Any]) -> None:
    """Merge ``update`` into ``into``: tables recursively, other values replaced."""
    for key, value in update.items():
        current = into.get(key)
        if isinstance(value, Mapping) and isinstance(current, dict):
            _merge(current, value)
        else:
            into[key] = copy.deepcopy(value)


def _remove_entry(data: dict[str, Any], path: tuple[str, ...]) -> None:
    """Delete ``data[path[0]]...[path[-1]]`` if present."""
    for key in path[:-1]:
        child = data.get(key)
        if not isinstance(child, dict):
            return
        data = child
    if path:
        data.pop(path[-1], None)


def experiment_key(name: str, par_dir: pathlib.Path) -> str:
    """Return the registry key of an experiment: a readable slug and a short hash.

    Two projects' experiments with the same name never collide because the
    hash covers the absolute ``par_dir``.
    """
    slug = re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')[:40] or 'experiment'
    digest = hashlib.sha256(f'{name}\0{par_dir}'.encode()).hexdigest()[:10]
    return f'{slug}-{digest}'


def _qualname(cls: type) -> str:
    return f'{cls.__module__}.{cls.__qualname__}'


def _write_beside(path: pathlib.Path, content: bytes) -> None:
    """Write a file beside a run record: whole or not at all, not synced."""
    with registry.faults(path, 'write a file of the run'):
        files.replace_file(path, content, sync=False)
