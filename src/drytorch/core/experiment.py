"""Experiments and their runs.

An ``Experiment`` is code defined entirely by one immutable configuration;
its identity is its name and output folder (``par_dir``), so building the
same experiment again, in a notebook cell or a new process, addresses the same
recorded runs. A ``Run`` is one execution of it, recorded in the registry.
"""

from __future__ import annotations

import datetime
import hashlib
import logging
import os
import pathlib
import re
import shutil
import tempfile
import time
import warnings
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, Generic, Literal, TypeVar

from drytorch.core import (
    distributed,
    environment,
    exceptions,
    registry,
    scope,
    seeding,
    selection,
    settings,
    snapshot,
    tracking,
)
from drytorch.core.plugins import get_host
from drytorch.core.run import Run, _qualname, _write_beside
from drytorch.validators.config import freeze_config

__all__ = ['Experiment', 'Run', 'Tags', 'experiment_key']


ConfigT = TypeVar('ConfigT')
_LOGGER = logging.getLogger('drytorch')
_UNFINISHED = ('crashed', 'failed', 'created')
RECORD_VERSION = 1
_CREATION_WAIT_S = 30.0  # how long a racing creator may take to write its record
_STEP = 'create_run()'  # what every process of a distributed run calls


class Tags(tuple[str, ...]):
    """An experiment's tags: a tuple that also equals the list of the same tags.

    The original DRYTorch keeps tags in a list; code comparing them with one
    (``exp.tags == ['a']``) keeps working, and nothing can change them in place.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, list):
            return tuple(self) == tuple(other)
        return tuple.__eq__(self, other)

    def __ne__(self, other: object) -> bool:
        return not self == other

    __hash__ = tuple.__hash__


class Experiment(Generic[ConfigT]):
    """An experiment: code defined entirely by one immutable configuration.

    Subclass it, or annotate it, with the configuration type::

        class MyExperiment(Experiment[MyConfig]): ...

        exp = MyExperiment(MyConfig(...), name='baseline', par_dir='outputs')
        with exp.create_run() as run:
            MyExperiment.get_config()  # the configuration, anywhere in the code

    Args:
        config: the configuration: a frozen dataclass, a NamedTuple, a frozen
            pydantic model, a read-only OmegaConf container, or ``None``. A
            dict, list, set, mutable dataclass or writable OmegaConf container
            is accepted as a frozen deep copy (read-only mappings, tuples, a
            frozen view of the dataclass): ``config`` and ``get_config()``
            return the copy, so changing the original later changes nothing
            in the run, and the record holds exactly what the run used.
        name: the experiment's name; defaults to the class name.
        par_dir: the folder where trackers write outputs; defaults to the
            ``par_dir`` setting (the working directory).
        tags: labels recorded with every run.

    Attributes:
        name: the experiment's name.
        par_dir: the absolute output folder.
        tags: the experiment's tags (a tuple; compares equal to a list of
            the same tags, as the original's list does).
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
        tags: Iterable[str] | None = (),
    ) -> None:
        config_settings = settings.get_settings()
        host = get_host()
        self.name = name or type(self).__name__
        host.validate_name(name=self.name, kind='experiment')
        config = freeze_config(config)
        host.validate_config(config=config)
        self._config = config
        self.tags = tags
        base = par_dir if par_dir is not None else config_settings.par_dir
        self.par_dir = pathlib.Path(base).expanduser().resolve()
        self.key = experiment_key(self.name, self.par_dir)
        self.registry = registry.RunRegistry(config_settings.registry_dir)
        self.trackers = tracking.TrackerRegistry(
            self.name, defaults=tracking.default_trackers()
        )
        self._runs: dict[str, Run[ConfigT]] = {}

    @property
    def config(self) -> ConfigT:
        """The experiment's configuration (the frozen copy of a mutable one)."""
        return self._config

    @property
    def tags(self) -> Tags:
        """The experiment's tags: a tuple that also equals the list of them."""
        return Tags(self._tags)

    @tags.setter
    def tags(self, tags: Iterable[str] | str | None) -> None:
        if tags is None:  # the original's default
            tags = ()
        checked = tuple(tags) if not isinstance(tags, str) else (tags,)
        if not all(isinstance(tag, str) for tag in checked):
            raise TypeError(f'Experiment tags must be strings, got {checked!r}.')
        host = get_host()
        for tag in checked:
            host.validate_name(name=tag, kind='tag')
        self._tags = checked

    @property
    def run(self) -> Run[ConfigT]:
        """The active run of this experiment.

        Read-only: a run becomes active by starting it (``with run:`` or
        ``run.start()``), which also keeps the record right.

        Raises:
            NoActiveExperimentError: no run of this experiment is active.
        """
        active = scope.active_run()
        if active is None or active.experiment.key != self.key:
            raise exceptions.NoActiveExperimentError(f'{self.name}.run')
        return active

    @property
    def previous_runs(self) -> list[str]:
        """The ids of this experiment's recorded runs, oldest first.

        The original DRYTorch's attribute, read from our registry: the same
        as ``list_runs().ids``.
        """
        return self.list_runs().ids

    @classmethod
    def get_current(cls) -> Experiment[ConfigT]:
        """Return the experiment of the active run, checked against ``cls``.

        Raises:
            NoActiveExperimentError: no run is active.
            AccessOutsideScopeError: the active run's experiment is not an
                instance of ``cls``.
        """
        active = scope.active_run()
        if active is None:
            raise exceptions.NoActiveExperimentError(f'{cls.__name__}.get_current()')
        if not isinstance(active.experiment, cls):
            raise exceptions.AccessOutsideScopeError(
                cls.__name__, active.experiment.name
            )
        return active.experiment

    @staticmethod
    def set_current(exp: Experiment[Any]) -> None:
        """Check that ``exp`` is the current one (the original's setter).

        In ours an experiment is current exactly while one of its runs is
        active: that is what ``get_config()`` reads, and the run's record
        says what ran. So this does not switch experiments behind a run:
        it accepts the experiment of the active run and refuses any other.

        Raises:
            NoActiveExperimentError: no run is active; start one of
                ``exp`` (``with exp.create_run(): ...``).
            NestedScopeError: a run of another experiment is active.
        """
        active = scope.active_run()
        if active is None:
            raise exceptions.NoActiveExperimentError(
                f'Making {exp.name!r} the current experiment'
            )
        if active.experiment.key != exp.key:
            raise exceptions.NestedScopeError(active.experiment.name, exp.name)

    @classmethod
    def get_config(cls) -> ConfigT:
        """Return the configuration of the active run.

        Raises:
            NoActiveExperimentError: no run is active.
            AccessOutsideScopeError: the active run belongs to an experiment
                that is not an instance of this class.
        """
        result = get_host().get_config(experiment_class=cls)
        if result is None and scope.active_run() is None:
            raise exceptions.NoActiveExperimentError(f'{cls.__name__}.get_config()')
        return result  # type: ignore[no-any-return]

    def create_run(
        self,
        run_id: str | None = None,
        *,
        resume: bool | Literal['unfinished'] = False,
        seed: int | None = None,
        deterministic: bool | None = None,
        record: bool = True,
    ) -> Run[ConfigT]:
        """Create a run, or get a recorded one back with ``resume``.

        ``resume='unfinished'`` is the relaunch pattern: the same script,
        started again after a crash, a kill or Ctrl-C, continues the run that
        did not finish, and otherwise starts a new one::

            with experiment.create_run(resume='unfinished'):
                ...  # build the model and trainer
                trainer.resume()  # its latest checkpoint, if it has one
                trainer.train_until(100)

        Args:
            run_id: the run's id; by default the creation time. With
                ``resume=True`` and no recorded run of that id, the run is
                created (logged at INFO, no warning), so one script serves the
                first launch and every relaunch.
            resume: ``True``: continue the run ``run_id``, or the newest run
                of this experiment when ``run_id`` is ``None``; with no run
                recorded, a new run is created (with a warning).
                ``'unfinished'``: continue the newest run of this experiment
                with this configuration that did not complete (it crashed,
                failed, was interrupted or never started) and that no live
                process holds; with none, create a new run (``run_id`` then
                names it). The trackers say which run was resumed and how
                its last session ended.
            seed: the run's seed, from 0 to 2**32 - 1; by default the ``seed``
                setting, else one drawn at random. Python's ``random``, NumPy
                and torch are seeded from it whenever the run starts. A
                resumed run keeps its recorded seed.
            deterministic: make torch use deterministic algorithms while the
                run is active; by default the ``deterministic`` setting, and
                for a resumed run, when that is not set, its recorded mode.
            record: ``False`` keeps the run out of the run registry (the
                original's ``record=False``): its record lives in a temporary
                folder, deleted when the run stops, so ``list_runs`` and
                ``drytorch runs`` never show it and it cannot be resumed.
                The trackers still write their outputs under ``par_dir``.
                Not with ``resume``, nor under ``torchrun``.

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
            DistributedError: in a process of rank above 0, rank 0 could not
                create or resume the run (its error is in the message).

        Under ``torchrun``, every process calls it and gets the same run:
        global rank 0 creates or resumes it and tells the others its id; they
        run a replica that never writes the record (``Run.world``). The
        process group is initialised here from the launcher's environment if
        the script has not done it, and destroyed when the process exits.
        """
        if not isinstance(record, bool):
            raise TypeError(f'record must be a boolean, got {record!r}.')
        if not record:
            return self._unrecorded_run(run_id, resume, seed, deterministic)
        distributed.join(settings.get_settings().distributed_timeout)
        world = distributed.current()
        if world.size == 1:
            return self._create_run(run_id, resume, seed, deterministic)
        if world.rank == 0:
            try:
                run = self._create_run(run_id, resume, seed, deterministic)
            except BaseException as err:
                distributed.broadcast(f'{type(err).__name__}: {err}', _STEP)
                raise
            distributed.broadcast(
                (run.id, run._recorded, run.seed, run.deterministic, dict(run.record)),
                _STEP,
            )
        else:
            answer = distributed.broadcast(None, _STEP)
            if isinstance(answer, str):
                raise exceptions.DistributedError(
                    f'Rank 0 could not create the run of experiment '
                    f'{self.name!r}: {answer}'
                )
            run_id, recorded, seed, deterministic, data = answer
            known = self._runs.get(run_id)
            if known is None or known.is_active:
                run = Run(
                    self,
                    run_id,
                    data,
                    recorded=recorded,
                    seed=seed,
                    deterministic=deterministic,
                    world=world,
                )
                self._runs[run_id] = run
            else:  # resumed in this process: the same object, as on rank 0
                run = known
                run._record, run._recorded = data, recorded
                run._seed, run._deterministic = seed, deterministic
        run.world = world
        return run

    def _unrecorded_run(
        self,
        run_id: str | None,
        resume: bool | Literal['unfinished'],
        seed: int | None,
        deterministic: bool | None,
    ) -> Run[ConfigT]:
        """Create a run whose record lives in a throwaway registry."""
        if resume is not False:
            raise ValueError(
                'record=False makes a run that is not recorded, so it cannot '
                'resume one: drop resume=, or drop record=False.'
            )
        if distributed.current().size > 1:
            raise exceptions.DistributedError(
                'record=False is not supported under torchrun: every rank must '
                'find the same record. Drop record=False.'
            )
        if run_id is not None:
            get_host().validate_name(name=run_id, kind='run')
        if seed is not None:
            seed = seeding.check_seed(seed)
        if deterministic is not None and not isinstance(deterministic, bool):
            raise TypeError(f'deterministic must be a boolean, got {deterministic!r}.')
        root = pathlib.Path(tempfile.mkdtemp(prefix='drytorch-unrecorded-'))
        try:
            run = self._new_run(
                run_id, seed, deterministic, registry.RunRegistry(root), keep=False
            )
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        run._discard_root = root
        weakref.finalize(run, shutil.rmtree, root, True)
        return run

    def _create_run(
        self,
        run_id: str | None,
        resume: bool | Literal['unfinished'],
        seed: int | None,
        deterministic: bool | None,
    ) -> Run[ConfigT]:
        """Create or resume the run in the process that owns the record."""
        if run_id is not None:
            get_host().validate_name(name=run_id, kind='run')
        if seed is not None:
            seed = seeding.check_seed(seed)
        if deterministic is not None and not isinstance(deterministic, bool):
            raise TypeError(f'deterministic must be a boolean, got {deterministic!r}.')
        if resume == 'unfinished':
            unfinished = self._resume_unfinished(seed, deterministic)
            if unfinished is not None:
                return unfinished
            return self._new_run(run_id, seed, deterministic)
        if not isinstance(resume, bool):
            raise ValueError(
                f"resume must be True, False or 'unfinished', got {resume!r}."
            )
        if not resume:
            return self._new_run(run_id, seed, deterministic)
        target = run_id if run_id is not None else self.registry.last_id(self.key)
        if target is None:
            warning = exceptions.NoPreviousRunsWarning()  # the original's class
            warning.args = (
                f'No run of experiment {self.name!r} is recorded: starting a new one.',
            )
            warnings.warn(warning, stacklevel=3)
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
            # the first launch of a script that resumes by id: expected, no warning
            _LOGGER.info(
                'Run %r of experiment %r is not recorded yet: creating it.',
                target,
                self.name,
            )
            found = self._create_or_await(target, seed, deterministic)
            if isinstance(found, Run):
                return found
            record = found
        return self._resume(record, seed, deterministic)

    def _create_or_await(
        self, run_id: str, seed: int | None, deterministic: bool | None
    ) -> Run[ConfigT] | registry.RunRecord:
        """Create ``run_id``, or read it once the process that won the race wrote it.

        The winner claims the run's lock before it writes the record, so the
        loser may find neither: it polls until the record appears, and retries
        the creation if the winner died before writing it (its lock is then
        free again).
        """
        deadline = time.monotonic() + _CREATION_WAIT_S
        while True:
            try:
                return self._new_run(run_id, seed, deterministic)
            except exceptions.RunAlreadyExistsError:  # another process won the race
                pass
            while True:
                try:
                    return self.registry.read(self.key, run_id)
                except FileNotFoundError:
                    if time.monotonic() > deadline:
                        raise exceptions.RegistryError(
                            f'Run {run_id!r} of experiment {self.name!r} is being '
                            f'created by another process, which has not written '
                            f'its record in {_CREATION_WAIT_S:.0f} s. Check that '
                            'process, or resume the run again once it finished.'
                        ) from None
                    time.sleep(0.02)
                    if not self.registry.lock(self.key, run_id).held_elsewhere():
                        break  # the creator is gone: try to create it again

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

    def _resume_unfinished(
        self, seed: int | None, deterministic: bool | None
    ) -> Run[ConfigT] | None:
        """Resume the newest unfinished run with this configuration, if any.

        A run that another live process holds, or that cannot be resumed
        with ``seed``, is passed over: a second launch beside the first one
        starts its own run instead of failing.
        """
        config_hash = snapshot.config_hash(self.config)
        candidates = self.list_runs(status=_UNFINISHED, sort='created', descending=True)
        for listed in candidates:
            if listed.config_hash != config_hash:
                continue
            run = self._runs.get(listed.id)
            if run is not None and run.is_active:
                continue
            try:
                return self._create_run(listed.id, True, seed, deterministic)
            except (
                exceptions.RunInUseError,
                exceptions.SeedMismatchError,
                exceptions.CorruptRecordError,
            ):
                continue
        return None

    def _new_run(
        self,
        run_id: str | None,
        seed: int | None,
        deterministic: bool | None,
        runs: registry.RunRegistry | None = None,
        *,
        keep: bool = True,
    ) -> Run[ConfigT]:
        runs = self.registry if runs is None else runs
        runs.ensure_experiment(
            self.key,
            {
                'name': self.name,
                'class': _qualname(type(self)),
                'par_dir': str(self.par_dir),
                'created_at': registry.now(),
            },
        )
        config_settings = settings.get_settings()
        chosen = seeding.resolve(
            seed,
            deterministic,
            setting_seed=config_settings.seed,
            setting_deterministic=config_settings.deterministic,
        )
        seed, seed_source, deterministic = (
            chosen.seed,
            chosen.source,
            chosen.deterministic,
        )
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
            'tags': list(self._tags),
            'config_class': _qualname(type(self.config)),
            'config_hash': snapshot.config_hash(self.config),
            'seed': seed,
            'seed_source': seed_source,
            'deterministic': deterministic,
            'config': snapshot.to_toml(self.config),
            'environment': env.record,
        }
        try:
            new_id = runs.create(self.key, record, run_id, owner=self)
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
            runs=runs,
        )
        run._claim()  # from the experiment, which claimed it before the record
        _write_beside(run.packages_path, env.packages.text.encode())
        if env.diff is not None:
            _write_beside(run.diff_path, env.diff)
        if keep:
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
        config_settings = settings.get_settings()
        chosen = seeding.resolve(
            seed,
            deterministic,
            setting_seed=config_settings.seed,
            setting_deterministic=config_settings.deterministic,
            recorded=record.data,
            run_id=record.id,
            record_path=record.path,
        )
        if chosen.deterministic:
            seeding.set_cublas_config()
        run = Run(
            self,
            record.id,
            dict(record.data),
            recorded=True,
            seed=chosen.seed,
            deterministic=chosen.deterministic,
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


def experiment_key(name: str, par_dir: pathlib.Path) -> str:
    """Return the registry key of an experiment: a readable slug and a short hash.

    Two projects' experiments with the same name never collide because the
    hash covers the absolute ``par_dir``.
    """
    slug = re.sub(r'[^a-z0-9]+', '-', name.lower()).strip('-')[:40] or 'experiment'
    digest = hashlib.sha256(f'{name}\0{par_dir}'.encode()).hexdigest()[:10]
    return f'{slug}-{digest}'
