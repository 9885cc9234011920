"""The ``Wandb`` tracker: a DRYTorch run as a Weights & Biases run.

One DRYTorch run is one W&B run, across every session of it: the W&B run's id
is saved in the run's record (``[plugins.wandb]``) when it starts, and a
resumed DRYTorch run continues that W&B run (``resume='allow'``).

What is logged (``<model>/`` is left out with ``model_prefix=False``):

- ``<model>/<source>/<metric>``: each metric of each ``MetricsEvent``
  (``net/Trainer/MSE``, ``net/Validation/MSE``, ``net/Test/MSE``), in a
  history row that also holds ``epoch``, the model's epoch. ``epoch`` is the
  step metric of these keys (``define_metric``), so W&B charts them against
  the epoch;
- ``<model>/lr/group<i>``: the learning rate of parameter group ``i`` when it
  changes, at the epochs completed when it changed;
- ``<model>/step/<source>/<metric>``: each metric of each ``StepMetricsEvent``
  (the trainer's means every ``step_metrics_every`` optimizer steps,
  validations every N steps), in a row that also holds ``global_step``, the
  optimizer step: the step metric of these keys;
- the config: the run's configuration as W&B config (nested tables stay
  nested), plus ``drytorch``: the run id, experiment, experiment class, seed;
- the summary key ``checkpoints``: each kept checkpoint's model, epoch, batch,
  location and ``sha256`` (deleted checkpoints leave the list);
- the exit code: 0 for a completed run, 1 for a failed one.

W&B's own ``step`` (the history row index) must grow, while a test logs at an
epoch training already logged and a resumed run starts a new W&B session: the
tracker numbers the rows itself and saves the next number in the record, so
the rows of every session, offline ones included, follow each other. Rows of
step metrics, which come often, reserve their numbers ahead in blocks, with
one write of the record per block.

wandb itself is imported when a run starts, not with this module.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import re
import secrets
import string
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from drytorch import Tracker, hookimpl

from drytorch_contrib_wandb.plugin import STATE_NAME

if TYPE_CHECKING:
    import wandb
    from drytorch import RunView, log_events

__all__ = [
    'EPOCH',
    'GLOBAL_STEP',
    'RESERVED_INIT_KWARGS',
    'Wandb',
    'artifact_name',
    'new_wandb_id',
    'project_name',
]

EPOCH = 'epoch'
"""The history key of the epoch, the step metric of the metrics by epoch."""

GLOBAL_STEP = 'global_step'
"""The history key of the optimizer step, the step metric of the metrics by step."""

_STEP_ROWS_AHEAD = 100
"""Row numbers that step metrics reserve with one write of the record."""

RESERVED_INIT_KWARGS = frozenset(
    {
        'config',
        'dir',
        'entity',
        'fork_from',
        'id',
        'mode',
        'project',
        'reinit',
        'resume',
        'resume_from',
        'tags',
    }
)
"""``wandb.init`` arguments the tracker sets itself (or has an option for)."""

_NOT_IN_PROJECT = re.compile(r'[/\\#?%:]')
_NOT_IN_ARTIFACT = re.compile(r'[^\w.-]')
_PROJECT_MAX = 128


_ID_ALPHABET = string.ascii_lowercase + string.digits
_ID_LENGTH = 8


def new_wandb_id() -> str:
    """Return a new W&B run id: 8 random lowercase letters and digits, as W&B's."""
    return ''.join(secrets.choice(_ID_ALPHABET) for _ in range(_ID_LENGTH))


def project_name(experiment: str) -> str:
    """Return the default W&B project of an experiment: its name, made acceptable."""
    return _NOT_IN_PROJECT.sub('-', experiment)[:_PROJECT_MAX] or 'drytorch'


def artifact_name(wandb_id: str, model_name: str) -> str:
    """Return the name of the artifact of a model's checkpoints in a W&B run."""
    return f'checkpoints-{wandb_id}-' + _NOT_IN_ARTIFACT.sub('-', model_name)


class Wandb(Tracker):
    """Log runs to Weights & Biases: metrics per epoch, config, checkpoints.

    It never uploads weights unless asked (``log_checkpoints``). Offline
    (``mode='offline'`` or ``WANDB_MODE=offline``) everything stays in
    ``<dir>/wandb/offline-run-*``; upload it later with ``wandb sync``.

    Args:
        project: the W&B project; by default the experiment's name. A resumed
            run stays in the project it started in.
        entity: the W&B entity (user or team); by default W&B's.
        dir: the folder W&B writes its ``wandb/`` folder in; by default the
            experiment's ``par_dir``.
        mode: ``'online'``, ``'offline'``, ``'disabled'``...; by default W&B's
            own (``WANDB_MODE``, ``wandb offline``, else online).
        model_prefix: begin metric keys with the model's name
            (``net/Trainer/MSE``). Without it (``Trainer/MSE``) the metrics of
            two models of one run share keys.
        log_checkpoints: also log each saved checkpoint as a ``model``
            artifact: ``True`` or ``'reference'`` records a reference to the
            file (its checksum, no upload), ``'file'`` uploads the file.
        init_kwargs: more ``wandb.init`` arguments (``group``, ``job_type``,
            ``notes``, ``name``, ``settings``...), except those the tracker
            sets itself (``RESERVED_INIT_KWARGS``).

    Raises:
        ImportError: wandb is not installed.
        ValueError: ``log_checkpoints`` or ``init_kwargs`` is not valid.
    """

    def __init__(
        self,
        project: str | None = None,
        *,
        entity: str | None = None,
        dir: str | os.PathLike[str] | None = None,  # wandb.init's name
        mode: str | None = None,
        model_prefix: bool = True,
        log_checkpoints: bool | Literal['reference', 'file'] = False,
        init_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if importlib.util.find_spec('wandb') is None:
            raise ImportError(
                'The Wandb tracker needs the wandb package: pip install wandb '
                '(or pip install drytorch-contrib-wandb, which depends on it)'
            )
        if log_checkpoints not in (False, True, 'reference', 'file'):
            raise ValueError(
                "log_checkpoints must be False, True, 'reference' or 'file', "
                f'got {log_checkpoints!r}.'
            )
        reserved = sorted(RESERVED_INIT_KWARGS.intersection(init_kwargs or {}))
        if reserved:
            raise ValueError(
                f'init_kwargs cannot set {", ".join(reserved)}: the tracker sets '
                'them itself (see its options).'
            )
        super().__init__()
        self.project = project
        self.entity = entity
        self.dir = None if dir is None else pathlib.Path(dir)
        self.mode = mode
        self.model_prefix = model_prefix
        self.log_checkpoints: Literal[False, 'reference', 'file'] = (
            'reference' if log_checkpoints is True else log_checkpoints
        )
        self.init_kwargs = dict(init_kwargs or {})
        self._run: wandb.Run | None = None
        self._view: RunView | None = None  # the DRYTorch run of self._run
        self._state: dict[str, Any] = {}
        self._row = 0  # the next history row; the record's next_step is >= it
        self._defined: set[str] = set()

    @property
    def wandb_run(self) -> wandb.Run | None:
        """The W&B run of the active DRYTorch run (``None`` between runs).

        To log values of your own at the tracker's steps, use ``log``.
        """
        return self._run

    def log(self, values: Mapping[str, Any]) -> None:
        """Log ``values`` in a new history row of the active W&B run.

        Raises:
            RuntimeError: no run is active.
        """
        if self._run is None:
            raise RuntimeError('The Wandb tracker has no active run.')
        self._log(dict(values))

    # --- the run ---------------------------------------------------------------

    @hookimpl
    def on_run_start(self, run: RunView) -> None:
        """Start the W&B run, or continue the one of a resumed run."""
        self._finish(exit_code=1)  # left open by a run that never stopped
        if run.rank != 0:
            return
        import wandb

        saved = run.plugin_state(STATE_NAME)
        resume = run.resumed and bool(saved.get('id'))
        folder = self.dir if self.dir is not None else run.par_dir
        folder.mkdir(parents=True, exist_ok=True)
        arguments: dict[str, Any] = {'name': run.id, **self.init_kwargs}
        if resume:  # the W&B run of the first session, where it was
            arguments.update(
                id=str(saved['id']),
                project=str(saved.get('project') or project_name(run.experiment)),
                entity=saved.get('entity') or self.entity,
                resume='allow',  # 'must' fails online for a run never synced
            )
        else:
            arguments.update(
                id=new_wandb_id(),
                project=self.project or project_name(run.experiment),
                entity=self.entity,
            )
        if self.mode is not None:
            arguments['mode'] = self.mode
        self._run = started = wandb.init(
            **arguments,
            config=self._config(run),
            tags=list(run.tags),
            dir=str(folder),
            reinit='create_new',  # never finish nor join a run of the user's
        )
        self._defined = set()
        started.define_metric(EPOCH)
        checkpoints = list(saved.get('checkpoints', [])) if resume else []
        first_step = int(saved.get('next_step', 0)) if resume else 0
        self._state = {
            'id': started.id,
            'project': started.project,
            'entity': started.entity or '',
            'dir': str(folder),
            'next_step': max(first_step, started.step),
            'checkpoints': checkpoints,
        }
        if not started.disabled:  # a disabled run's folder is a fake one
            self._state['run_dir'] = str(pathlib.Path(started.dir).parent)
            if not started.offline and started.url:
                self._state['url'] = started.url
        if checkpoints:  # a new offline session starts with an empty summary
            started.summary['checkpoints'] = checkpoints
        self._row = self._state['next_step']
        self._view = run
        self._save()

    @hookimpl
    def on_run_stop(self, event: log_events.RunStopEvent) -> None:
        """Finish the W&B run: exit code 0 if completed, else 1."""
        self._finish(exit_code=0 if event.status == 'completed' else 1)

    def _finish(self, exit_code: int) -> None:
        if self._run is not None:
            finishing, self._run, self._view = self._run, None, None
            finishing.finish(exit_code=exit_code)

    def _save(self) -> None:
        """Write the state in the run's record: the next session starts from it."""
        assert self._view is not None
        self._view.save_plugin_state(STATE_NAME, self._state)

    def _config(self, run: RunView) -> dict[str, Any]:
        config = dict(run.config_table())
        identity = {
            'run_id': run.id,
            'experiment': run.experiment,
            'experiment_class': run.experiment_class,
            'seed': run.seed,
        }
        if 'drytorch' in config:
            warnings.warn(
                "The configuration has a 'drytorch' key: W&B gets it as it is, "
                'without the run id, experiment and seed the tracker adds there.',
                stacklevel=2,
            )
        else:
            config['drytorch'] = identity
        return config

    # --- metrics ---------------------------------------------------------------

    @hookimpl
    def on_metrics(self, event: log_events.MetricsEvent) -> None:
        """Log the metrics of one source at the model's epoch."""
        if self._run is None:
            return
        prefix = self._prefix(event.model_name, event.source_name)
        values = {f'{prefix}/{name}': float(v) for name, v in event.metrics.items()}
        self._log({EPOCH: event.epoch, **values})

    @hookimpl
    def on_learning_rate(self, event: log_events.LearningRateEvent) -> None:
        """Log the learning rate of each parameter group."""
        if self._run is None:
            return
        prefix = self._prefix(event.model_name, 'lr')
        values = {
            f'{prefix}/group{group}': float(rate)
            for group, rate in enumerate(event.learning_rates)
        }
        self._log({EPOCH: event.epoch, **values})

    @hookimpl
    def on_step_metrics(self, event: log_events.StepMetricsEvent) -> None:
        """Log the metrics of one source at the optimizer step."""
        if self._run is None:
            return
        if GLOBAL_STEP not in self._defined:
            self._run.define_metric(GLOBAL_STEP)
            self._defined.add(GLOBAL_STEP)
        prefix = self._prefix(
            event.model_name, f'step/{event.source_name}', step_metric=GLOBAL_STEP
        )
        values = {f'{prefix}/{name}': float(v) for name, v in event.metrics.items()}
        self._log({GLOBAL_STEP: event.step, **values}, ahead=_STEP_ROWS_AHEAD)

    def _prefix(self, model_name: str, section: str, step_metric: str = EPOCH) -> str:
        prefix = f'{model_name}/{section}' if self.model_prefix else section
        if prefix not in self._defined:
            assert self._run is not None
            self._run.define_metric(f'{prefix}/*', step_metric=step_metric)
            self._defined.add(prefix)
        return prefix

    def _log(self, row: dict[str, Any], ahead: int = 1) -> None:
        """Log a history row; save the next row number unless it is reserved.

        The record's number must stay ahead of the rows logged, so that a
        resumed session's rows come after these, even after a crash: with
        ``ahead`` > 1 one write reserves that many numbers.
        """
        assert self._run is not None
        row_number = self._row
        self._run.log(row, step=row_number, commit=True)
        self._row = row_number + 1
        if ahead == 1 or self._row > self._state['next_step']:
            self._state['next_step'] = max(self._state['next_step'], row_number + ahead)
            self._save()

    # --- checkpoints -----------------------------------------------------------

    @hookimpl
    def on_checkpoint_save(self, event: log_events.CheckpointEvent) -> None:
        """Record the checkpoint's location and digest; log it if asked."""
        if self._run is None:
            return
        entry: dict[str, Any] = {
            'model': event.model_name,
            'epoch': event.epoch,
            'batch': event.batch,
            'location': event.location,
        }
        if event.digest is not None:
            entry['sha256'] = event.digest
        kept = [c for c in self._state['checkpoints'] if not _same(c, event)]
        self._set_checkpoints([*kept, entry])
        if self.log_checkpoints:
            self._log_artifact(event)

    @hookimpl
    def on_checkpoint_delete(self, event: log_events.CheckpointEvent) -> None:
        """Drop a deleted checkpoint from the list."""
        if self._run is None:
            return
        checkpoints = self._state['checkpoints']
        kept = [c for c in checkpoints if not _same(c, event)]
        if len(kept) != len(checkpoints):
            self._set_checkpoints(kept)

    def _set_checkpoints(self, checkpoints: list[dict[str, Any]]) -> None:
        assert self._run is not None
        self._state['checkpoints'] = checkpoints
        self._run.summary['checkpoints'] = checkpoints
        self._save()

    def _log_artifact(self, event: log_events.CheckpointEvent) -> None:
        import wandb

        assert self._run is not None
        metadata = {
            'model': event.model_name,
            'epoch': event.epoch,
            'batch': event.batch,
            'location': event.location,
            'sha256': event.digest,
        }
        artifact = wandb.Artifact(
            artifact_name(self._run.id, event.model_name),
            type='model',
            metadata=metadata,
        )
        path = pathlib.Path(event.location)
        if self.log_checkpoints == 'file':
            if path.is_dir():
                artifact.add_dir(str(path))
            else:
                artifact.add_file(str(path))
        elif '://' in event.location:  # another backend's URI
            artifact.add_reference(event.location)
        else:
            artifact.add_reference(path.resolve().as_uri())
        aliases = [f'epoch-{event.epoch}', 'latest']
        if event.batch:
            aliases[0] += f'-batch-{event.batch}'
        self._run.log_artifact(artifact, aliases=aliases)


def _same(entry: Mapping[str, Any], event: log_events.CheckpointEvent) -> bool:
    """Whether a checkpoint entry is the checkpoint of ``event``."""
    return (entry['model'], entry['epoch'], entry['batch']) == (
        event.model_name,
        event.epoch,
        event.batch,
    )
