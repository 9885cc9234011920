"""``RunView``: the run as every hook sees it, live or read from its record.

Tracking hooks receive the active run as a view; the CLI builds one from a
record for the query hooks (``run_outputs``, ``load_metrics``). A plugin
written against the view works in both places and cannot change the run:
the one thing it may write is its own state (``save_plugin_state``), kept in
the record's ``[plugins.<name>]`` table, so that a resumed run (maybe in
another process) finds what the plugin needs, such as the id of the matching
MLflow or W&B run.
"""

from __future__ import annotations

import copy
import os
import pathlib
import types
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import tomli_w

from drytorch.core import exceptions, snapshot

if TYPE_CHECKING:
    from drytorch.core.log_events import RunStatus
    from drytorch.core.registry import RunRecord
    from drytorch.core.run import Run
    from drytorch.trackers.base import MetricHistory

__all__ = ['RunView', 'check_record', 'record_par_dir']

_MAX_NAME = 100


class RunView:
    """A read-only view of one run.

    Attributes:
        id: the run's id within its experiment.
        experiment: the experiment's name.
        experiment_class: the experiment's class (qualified name).
        par_dir: the experiment's output folder.
        config: the live configuration object in the process running the run;
            for a recorded run, its TOML table.
        seed: the run's seed (``None`` in records older than seeds).
        tags: the experiment's tags.
        resumed: whether this session continues a run recorded before.
        rank: this process's rank in the run (0 unless distributed).
        world_size: the number of processes running it (1 unless distributed).
        record_path: the run's record file.
        live: whether the run is executed by this process.
    """

    __slots__ = (
        '_record',
        '_run',
        'config',
        'experiment',
        'experiment_class',
        'id',
        'live',
        'par_dir',
        'rank',
        'record_path',
        'resumed',
        'seed',
        'tags',
        'world_size',
    )

    def __init__(
        self,
        *,
        id: str,
        experiment: str,
        experiment_class: str,
        par_dir: pathlib.Path,
        config: Any,
        seed: int | None,
        tags: tuple[str, ...],
        resumed: bool,
        record_path: pathlib.Path,
        rank: int = 0,
        world_size: int = 1,
        run: Run[Any] | None = None,
        record: Mapping[str, Any] | None = None,
    ) -> None:
        self.id = id
        self.experiment = experiment
        self.experiment_class = experiment_class
        self.par_dir = par_dir
        self.config = config
        self.seed = seed
        self.tags = tags
        self.resumed = resumed
        self.record_path = record_path
        self.rank = rank
        self.world_size = world_size
        self.live = run is not None
        self._run = run
        self._record = record if record is not None else {}

    @classmethod
    def of_record(cls, record: RunRecord) -> RunView:
        """Return the view of a recorded run, its fields checked first.

        A record is a file anyone with access to the registry may edit: the
        names that become parts of paths pass the name check, and the output
        folder must be absolute.

        Raises:
            CorruptRecordError: naming the record and the field.
        """
        check_record(record)
        par_dir = record_par_dir(record)
        data = record.data
        seed = data.get('seed')
        config = data.get('config', {})
        return cls(
            id=record.id,
            experiment=record.experiment,
            experiment_class=str(data.get('experiment_class', '')),
            par_dir=par_dir,
            config=config if isinstance(config, Mapping) else {},
            seed=seed if isinstance(seed, int) and not isinstance(seed, bool) else None,
            tags=tuple(str(tag) for tag in record.tags),
            resumed=False,
            record_path=record.path,
            record={**data, 'status': record.status},
        )

    @property
    def status(self) -> RunStatus:
        """The run's status; in ``on_run_stop``, the final one."""
        if self._run is not None:
            return self._run.status
        status: RunStatus = self._record.get('status', 'created')
        return status

    @property
    def summary(self) -> Mapping[str, Any]:
        """A copy of the run's summary: last metrics, checkpoints, outputs."""
        found = (
            self._run.summary if self._run is not None else self._record.get('summary')
        )
        return types.MappingProxyType(
            copy.deepcopy(dict(found)) if isinstance(found, Mapping) else {}
        )

    @property
    def outputs(self) -> Mapping[str, str]:
        """Where plugins wrote the run's outputs, by label (``[summary.outputs]``)."""
        found = self.summary.get('outputs', {})
        if not isinstance(found, Mapping):
            return {}
        return {str(k): v for k, v in found.items() if isinstance(v, str)}

    def config_table(self) -> dict[str, Any]:
        """Return the configuration as plain TOML data (nested tables and values)."""
        if self._run is not None:
            return snapshot.to_toml(self.config)
        return copy.deepcopy(dict(self.config))

    def plugin_state(self, name: str) -> dict[str, Any]:
        """Return a copy of what the plugin ``name`` saved for this run ({} if none)."""
        _check_state_name(name)
        record = self._run.record if self._run is not None else self._record
        tables = record.get('plugins')
        state = tables.get(name) if isinstance(tables, Mapping) else None
        return copy.deepcopy(dict(state)) if isinstance(state, Mapping) else {}

    def save_plugin_state(self, name: str, state: Mapping[str, Any]) -> None:
        """Replace the plugin ``name``'s state in the run's record, durably, now.

        The record is re-read and written under its lock, so nothing another
        writer put there is lost. Keep it small: it is written at once.

        Raises:
            PluginStateError: the run is not executed by this process, or
                ``state`` is not TOML data (strings, numbers, booleans,
                datetimes, and lists and tables of them).
        """
        _check_state_name(name)
        if self._run is None or not self._run.is_active:
            raise exceptions.PluginStateError(
                f'Cannot save the state of plugin {name!r}: run {self.id!r} is '
                'not running in this process (a recorded run is read-only).'
            )
        plain = dict(state)
        try:
            tomli_w.dumps({name: plain})
        except (TypeError, ValueError) as err:
            raise exceptions.PluginStateError(
                f'The state of plugin {name!r} is not TOML data: {err}. Use '
                'strings, numbers, booleans, datetimes, lists and tables.'
            ) from err
        self._run.save_plugin_state(name, plain)

    def metric_history(self) -> dict[str, dict[str, MetricHistory]]:
        """Return ``{model: {source: history}}`` through the ``load_metrics`` hook.

        Empty when no plugin stored metrics for the run.
        """
        from drytorch.core.plugins import get_host

        return get_host().load_metrics(self) or {}

    def __repr__(self) -> str:
        where = 'live' if self.live else 'recorded'
        return f'RunView({self.id!r} of experiment {self.experiment!r}, {where})'


def check_record(record: RunRecord) -> None:
    """Refuse a record whose experiment name or run id is not a safe name.

    Raises:
        CorruptRecordError: naming the record and the field.
    """
    from drytorch.validators.names import check_name

    for field, value, kind in (
        ('experiment', record.experiment, 'experiment'),
        ('id', record.id, 'run'),
    ):
        try:
            check_name(value, kind)
        except exceptions.InvalidNameError as err:
            raise exceptions.CorruptRecordError(
                record.path, f'field {field!r}: {err}'
            ) from None


def record_par_dir(record: RunRecord) -> pathlib.Path:
    """Return the experiment's output folder that the record names.

    Raises:
        CorruptRecordError: the field is missing or not an absolute path.
    """
    value = record.data.get('par_dir')
    if not isinstance(value, str) or '\0' in value or not os.path.isabs(value):
        raise exceptions.CorruptRecordError(
            record.path, f"field 'par_dir' is not an absolute folder: {value!r}"
        )
    return pathlib.Path(value)


def _check_state_name(name: object) -> None:
    if not isinstance(name, str) or not name or len(name) > _MAX_NAME:
        raise exceptions.PluginStateError(
            f'A plugin state needs a non-empty name of at most {_MAX_NAME} '
            f'characters, not {name!r}.'
        )
    if not name.isprintable():
        raise exceptions.PluginStateError(
            f'Plugin state name {name!r} holds control characters.'
        )
