"""A run: one execution of an experiment, recorded in the run registry.

The run owns its record while it is active: every write re-reads the record
under its lock and merges (``_write``), so another process's changes and the
summary kept by the core (``drytorch.core.summary``) never overwrite each
other. Its ``view`` is what hooks see of it.
"""

from __future__ import annotations

import copy
import datetime
import os
import pathlib
import shutil
import sys
import time
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, Self, TypeVar

from drytorch.core import (
    distributed,
    environment,
    exceptions,
    files,
    log_events,
    registry,
    scope,
    seeding,
    summary,
    tracking,
    watchdog,
)
from drytorch.core.plugins import PluginHost, get_host
from drytorch.core.run_view import RunView

if TYPE_CHECKING:
    from drytorch.core.experiment import Experiment

__all__ = ['Run']

ConfigT = TypeVar('ConfigT')


class Flag(int):
    """A truth value that can also be called, for names that were methods once."""

    def __call__(self) -> bool:
        """Return the value as a ``bool``."""
        return bool(self)

    def __repr__(self) -> str:
        return repr(bool(self))

    __str__ = __repr__


_TRUE, _FALSE = Flag(1), Flag(0)


class Run(Generic[ConfigT]):
    """One execution of an experiment, recorded in the run registry.

    Use it as a context manager, or call ``start()`` and ``stop()``. A run left
    running is stopped at interpreter exit by a weak-reference finaliser (its
    record notes it); do not rely on that for correct records.

    Attributes:
        experiment: the experiment it executes.
        id: its id, unique within the experiment.
        summary: plain data about the run that the core keeps from events
            (``drytorch.core.summary``: the last metrics, checkpoints and
            their digests, output locations), the record's ``[summary]``
            table. While the run is active, it is merged into the record at
            every write (``save_summary()`` writes at once); when the run
            starts it is read afresh from the record, so a ``Run`` object
            kept across another process's session never writes old values
            back. Trackers whose hook calls took a noticeable share
            of a session (``drytorch.core.watchdog``) are listed with their
            seconds under ``tracker_seconds``.
        model_names: the names of the models registered in the current
            session; a resumed session starts empty, so a model keeps its
            name (and finds its checkpoints) however often the run resumes.
        world: this process's rank and the number of processes running the
            run (``drytorch.core.distributed``). Rank 0 owns the record; a
            process of a higher rank runs a replica that never writes it.
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
        world: distributed.World = distributed.SINGLE,
        runs: registry.RunRegistry | None = None,
    ) -> None:
        self.experiment = experiment
        self._registry = experiment.registry if runs is None else runs
        self._discard_root: pathlib.Path | None = None  # record=False: its registry
        self._session_resumed = False
        self.world = world
        self.id = run_id
        self.model_names: set[str] = set()
        self.summary: dict[str, Any] = dict(record.get('summary', {}))
        self.start_event: log_events.RunStartEvent | None = None
        self.view: RunView | None = None
        self._record = record
        self._final_status: log_events.RunStatus | None = None
        self._keeper = summary.SummaryKeeper(self)
        self._recorded = recorded
        self._lock = self._registry.lock(experiment.key, run_id)
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._last_error_at_start: object = None
        self._seed = seed
        self._deterministic = deterministic
        self._deterministic_state: seeding.DeterministicState | None = None
        self._session: tuple[int, Any] | None = None
        self._started_clock = time.perf_counter()
        self._written_at = -float('inf')  # time.monotonic() of the last write
        self._restore_signal: Callable[[], None] | None = None

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
        if self._final_status is not None:  # stopping: what the record will say
            return self._final_status
        status: log_events.RunStatus = self._record['status']
        return status

    @property
    def record(self) -> Mapping[str, Any]:
        """The run's record as last read or written by this process.

        The original DRYTorch's ``run.record`` is a bool (whether the run is
        kept in the registry): here that is ``in_registry``.
        """
        return self._record

    @property
    def in_registry(self) -> bool:
        """Whether the run is kept in the run registry (``record=False``: not)."""
        return self._discard_root is None

    @property
    def resumed(self) -> bool:
        """Whether the run continues a recorded run.

        While the run is active: whether this session resumed it. Otherwise:
        whether starting it now would resume it (a run created by
        ``create_run(resume=True)`` of a recorded id, or one that ran
        before).
        """
        if self.is_active:
            return self._session_resumed
        return self._recorded

    @property
    def created_at(self) -> datetime.datetime:
        """When the run was created (its record's ``created_at``), local time."""
        created = self._record.get('created_at')
        if isinstance(created, datetime.datetime):
            return created
        if isinstance(created, str):
            return datetime.datetime.fromisoformat(created)
        raise exceptions.CorruptRecordError(
            self.record_path, f'created_at is {created!r}, not a time'
        )

    @property
    def created_at_str(self) -> str:
        """The creation time as the original formats run ids: ``%Y-%m-%d@%Hh%Mm%Ss``."""
        return self.created_at.strftime('%Y-%m-%d@%Hh%Mm%Ss')

    @property
    def metadata_manager(self) -> tracking.MetadataManager:
        """What describes models and runners for metadata (the original's name).

        Ours has no per-run state: descriptions go to trackers in the events
        (``ActorRegisterEvent.description``); this is a ``MetadataManager``
        whose ``extract_metadata(obj)`` gives the same description.
        """
        return tracking.MetadataManager()

    def add_tags(self, *tags: str | Iterable[str]) -> None:
        """Add tags (strings, or lists of them) to the run's record.

        The experiment's tags stay as they are.

        Tags already there are not repeated; it works whether or not the run
        is active.

        Raises:
            InvalidNameError: a tag is not a printable string.
            RunNotFoundError: the run is not recorded.
        """
        from drytorch.core import housekeeping

        flat: list[str] = []
        for tag in tags:  # add_tags('a', 'b') or the original's add_tags(['a', 'b'])
            flat.extend([tag] if isinstance(tag, str) else tag)
        if self.world.rank > 0:
            return  # a replica: rank 0 owns the record
        written = housekeeping.tag_run(
            self._registry, self.experiment.key, self.id, add=flat
        )
        self._record = {**self._record, 'tags': list(written.data.get('tags', []))}

    @property
    def keeper(self) -> summary.SummaryKeeper:
        """The core's writer of this run's summary."""
        return self._keeper

    @property
    def record_path(self) -> pathlib.Path:
        """The run's record file."""
        return self._registry.record_path(self.experiment.key, self.id)

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
    def is_active(self) -> Flag:
        """Whether this is the active run of the process.

        Read as a property (``if run.is_active:``) or called as the original
        DRYTorch's method (``run.is_active()``): both give the answer.
        """
        return _TRUE if scope.active_run() is self else _FALSE

    def start(self) -> Self:
        """Start (or resume) the run and make it the active one.

        Starting the run that is already active changes nothing and warns
        ``RunAlreadyRunningWarning``.

        Raises:
            RunAlreadyActiveError: another run is already active in this
                process (``NestedScopeError``, a subclass, when it is a run
                of another experiment).
            RunInUseError: another process runs it.
        """
        active = scope.active_run()
        if active is self:
            warnings.warn(exceptions.RunAlreadyRunningWarning(), stacklevel=2)
            return self
        if active is not None:
            if active.experiment.key != self.experiment.key:
                raise exceptions.NestedScopeError(
                    active.experiment.name, self.experiment.name
                )
            raise exceptions.RunAlreadyActiveError(repr(active), repr(self))
        if self._discard_root is not None and not self._discard_root.exists():
            raise exceptions.RunNotFoundError(self.id, self.experiment.name)
        world = self.world
        if world.size == 1:
            return self._start()
        # every rank: the hosts and pids go into rank 0's record
        step = 'the start of the run (run.start(), or "with run:")'
        processes = distributed.gather(
            {'rank': world.rank, 'host': registry.this_host(), 'pid': os.getpid()},
            step,
        )
        if world.rank > 0:
            answer = distributed.broadcast(None, step)
            if isinstance(answer, str):
                raise exceptions.DistributedError(
                    f'Rank 0 could not start {self!r}: {answer}'
                )
            self._seed = answer  # the recorded seed, which rank 0 just read
            self._start_replica()
        else:
            try:
                self._start(processes)
            except BaseException as err:
                distributed.broadcast(f'{type(err).__name__}: {err}', step)
                raise
            distributed.broadcast(self._seed, step)
        self._restore_signal = distributed.raise_on_sigterm()
        return self

    def _start(self, processes: list[dict[str, Any]] | None = None) -> Self:
        """Start the run in the process that owns its record."""
        exp = self.experiment
        self._claim()
        host = get_host()
        started = registry.now()
        installed = environment.packages()
        previous: list[str | None] = []
        ended: dict[str, Any] = {}

        def begin(data: dict[str, Any]) -> None:
            # we hold the lock: a record still 'running' is of a dead process
            status = data.get('status')
            ended['status'] = 'crashed' if status == 'running' else status
            ended['error'] = data.get('error')
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
            if processes is not None:
                session['world_size'] = len(processes)
                session['processes'] = processes
            data.update(
                seed=self._seed,
                deterministic=self._deterministic,
                status='running',
                started_at=started,
                pid=os.getpid(),
                host=registry.this_host(),
                sessions=[*data.get('sessions', []), session],
                world_size=self.world.size,
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
        self._announce(host, started, ended)
        return self

    def _start_replica(self) -> None:
        """Start the replica of a rank above 0: the scope, no record, no lock."""
        exp = self.experiment
        host = get_host()
        data = self._record
        status = data.get('status')
        ended = {
            'status': 'crashed' if status == 'running' else status,
            'error': data.get('error'),
        }
        scope.enter(self)
        try:
            exp.trackers.activate(host)
        except BaseException:
            scope.exit(self)
            raise
        self.model_names = set()
        self._announce(host, registry.now(), ended)

    def _announce(
        self, host: PluginHost, started: datetime.datetime, ended: Mapping[str, Any]
    ) -> None:
        """Tell the plugins the run started, then seed the generators."""
        exp = self.experiment
        resumed = self._recorded
        self._recorded = True
        self._session_resumed = resumed
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
            previous_status=ended['status'] if resumed else None,
            previous_error=ended['error'] if resumed else None,
        )
        self.start_event = event
        self.view = RunView(
            id=self.id,
            experiment=exp.name,
            experiment_class=_qualname(type(exp)),
            par_dir=exp.par_dir,
            config=exp.config,
            seed=self._seed,
            tags=exp.tags,
            resumed=resumed,
            record_path=self.record_path,
            rank=self.world.rank,
            world_size=self.world.size,
            run=self,
        )
        host.reset_tracker_times()
        self._started_clock = time.perf_counter()
        replica = self.world.rank > 0
        host.bind_run(self.view, None if replica else self._keeper)
        host.on_run_start(event)
        outputs = {} if replica else host.run_outputs(self.view)
        # After the trackers: the user's code draws the same numbers whatever
        # the trackers did.
        if self._deterministic:
            self._deterministic_state = seeding.enable_deterministic()
        seeding.seed_everything(self._seed)
        # where plugins write, known even if the run crashes
        if not replica:
            self._keeper.record_outputs(outputs)

    def save_plugin_state(self, name: str, state: Mapping[str, Any]) -> None:
        """Replace ``[plugins.<name>]`` in the record with ``state``, synced, now.

        Plugins call it through ``RunView.save_plugin_state``, which checks
        the name and that ``state`` is TOML data. Nothing is written unless
        the run is active.
        """
        if not self.is_active:
            return
        plain = copy.deepcopy(dict(state))

        def put(data: dict[str, Any]) -> None:
            tables = data.get('plugins')
            tables = dict(tables) if isinstance(tables, Mapping) else {}
            tables[name] = plain
            data['plugins'] = tables

        self._write(put, merge=True)

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
        if self.world.rank > 0:
            return  # a replica: rank 0 owns the record
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

        record = self._registry.update(exp.key, self.id, apply, sync=sync)
        self._written_at = time.monotonic()
        self._record = dict(record.data)
        self.summary.clear()
        self.summary.update(copy.deepcopy(self._record.get('summary', {})))

    def _claim(self) -> None:
        """Hold the run for this process, or raise ``RunInUseError``."""
        if self.world.rank > 0:
            return  # a replica: rank 0 holds the run
        if not self._lock.claim(self):
            exp = self.experiment
            try:
                holder = registry.holder(self._registry.read(exp.key, self.id))
            except (FileNotFoundError, exceptions.CorruptRecordError):
                holder = 'another process'
            raise exceptions.RunInUseError(self.id, holder)

    def stop(self, error: BaseException | None = None, *, reason: str = '') -> None:
        """Stop the run and finalise its record.

        Stopping a run that is not active changes nothing and warns:
        ``RunAlreadyCompletedWarning`` if it completed, else
        ``RunNotStartedWarning``.

        Args:
            error: the exception that ended the run; the run is then ``failed``.
            reason: why the run stopped, when not by the user's code.
        """
        if not self.is_active:
            if self.status == 'completed':
                warnings.warn(exceptions.RunAlreadyCompletedWarning(), stacklevel=2)
            else:
                warnings.warn(exceptions.RunNotStartedWarning(), stacklevel=2)
            return
        exp = self.experiment
        stopped = registry.now()
        status: log_events.RunStatus = 'failed' if error is not None else 'completed'
        message = None
        if error is not None:  # 'KeyboardInterrupt', not 'KeyboardInterrupt: '
            text = str(error)
            message = (
                f'{type(error).__name__}: {text}' if text else type(error).__name__
            )

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
        self._final_status = status
        try:
            host.on_run_stop(
                log_events.RunStopEvent(exp.name, self.id, status, message, stopped)
            )
        finally:
            host.unbind_run()
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
                self._final_status = None
                scope.exit(self)
                if self.world.rank == 0:
                    self._lock.release(self)
                self._restore_sigterm()
                if self._discard_root is not None:  # record=False: nothing kept
                    shutil.rmtree(self._discard_root, ignore_errors=True)

    def _restore_sigterm(self) -> None:
        """Give SIGTERM its default action back, if ``start`` changed it."""
        if self._restore_signal is not None:
            self._restore_signal()
            self._restore_signal = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> Literal[False]:
        if self.is_active:  # not stopped inside the block (an Optuna prune does)
            self.stop(exc)
        return False

    def __repr__(self) -> str:
        return f'Run {self.id!r} of experiment {self.experiment.name!r}'


def _stop_at_exit(ref: weakref.ref[Run[Any]]) -> None:
    """Stop a run still active at interpreter exit (or when it is collected)."""
    run = ref()
    if run is not None and run.is_active:
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


def _write_beside(path: pathlib.Path, content: bytes) -> None:
    """Write a file beside a run record: whole or not at all, not synced."""
    with registry.faults(path, 'write a file of the run'):
        files.replace_file(path, content, sync=False)


def _qualname(cls: type) -> str:
    return f'{cls.__module__}.{cls.__qualname__}'
