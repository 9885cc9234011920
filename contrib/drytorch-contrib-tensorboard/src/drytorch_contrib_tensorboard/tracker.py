"""The ``TensorBoard`` tracker: a run's metrics and configuration as event files.

Layout, one folder per run (``<par_dir>`` is the tracker's or the experiment's)::

    <par_dir>/tensorboard/<experiment>/<run id>/events.out.tfevents.*
    <par_dir>/tensorboard/<experiment>/<run id>/steps/events.out.tfevents.*

Point TensorBoard at ``<par_dir>/tensorboard`` to compare every run of every
experiment, or at one experiment's folder. Each session of a run (its start,
then each resume) writes a new event file in the run's folder; TensorBoard
merges them into one run.

What is written:

- ``<model>/<source>-<metric>``: each metric of each ``MetricsEvent`` (training
  epochs, validations, tests), at step = the model's epoch;
- ``<model>/lr-group<i>``: the learning rate of parameter group ``i`` when it
  changes, at step = the epochs completed when it changed;
- ``config``: the run's configuration as TOML text, at each session's start;
- ``<model>/step/<source>-<metric>``, in the ``steps`` folder (TensorBoard's
  run ``<run id>/steps``): each metric of each ``StepMetricsEvent`` (the
  trainer's means every ``step_metrics_every`` optimizer steps, validations
  every N steps), at step = the optimizer step.

When a checkpoint is loaded, the steps after its epoch are purged: a run that
was interrupted and continued from a checkpoint shows each epoch once, with
the values of the session that finished it. TensorBoard purges by step number
in every tag of a folder, which is why the curves by optimizer step have their
own folder: there, the purge happens at the model's first step point after
the checkpoint, from that step on.

TensorBoard itself is imported when the first event file is opened, not with
this module.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import pathlib
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import tomli_w
from drytorch import Dumper, exceptions, hookimpl

if TYPE_CHECKING:
    from drytorch import RunView
    from drytorch.log_events import (
        CheckpointEvent,
        LearningRateEvent,
        MetricsEvent,
        StepMetricsEvent,
    )
    from torch.utils.tensorboard import SummaryWriter

__all__ = [
    'CONFIG_TAG',
    'STEPS_FOLDER',
    'TensorBoard',
    'config_text',
    'lr_tag',
    'metric_tag',
    'step_tag',
]

CONFIG_TAG = 'config'
STEPS_FOLDER = 'steps'
"""The subfolder of a run's folder with the curves by optimizer step."""


def metric_tag(model_name: str, source_name: str, metric_name: str) -> str:
    """Return the scalar tag of a metric: ``<model>/<source>-<metric>``."""
    return f'{model_name}/{source_name}-{metric_name}'


def step_tag(model_name: str, source_name: str, metric_name: str) -> str:
    """Return the scalar tag of a metric by optimizer step.

    ``<model>/step/<source>-<metric>``: never an epoch tag, so no chart mixes
    the two axes.
    """
    return f'{model_name}/step/{source_name}-{metric_name}'


def lr_tag(model_name: str, group: int) -> str:
    """Return the scalar tag of a parameter group's learning rate."""
    return f'{model_name}/lr-group{group}'


def config_text(table: Mapping[str, Any]) -> str:
    """Return a configuration table as a Markdown TOML block, as TensorBoard shows it.

    ``table`` is the configuration as TOML data (``run.config_table()``).
    """
    try:
        body = tomli_w.dumps(dict(table))
    except (TypeError, ValueError):  # never lose the run's tracking over this
        body = json.dumps(table, indent=2, default=repr) + '\n'
        return f'```json\n{body}```'
    return f'```toml\n{body}```'


@dataclasses.dataclass
class _Session:
    """One session of a run: its writers, each opened on first use."""

    run: RunView
    pending_config: str | None
    # opened lazily: a resumed session that loads a checkpoint first opens
    # its one event file with the purge step of that checkpoint
    purge_step: int | None = None
    writer: SummaryWriter | None = None
    step_writer: SummaryWriter | None = None  # the steps folder's, opened on use
    # the models whose checkpoint was loaded: their next step point purges
    # the steps folder from that step on
    purge_steps_of: set[str] = dataclasses.field(default_factory=set)

    def close(self) -> None:
        self.close_steps()
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close()

    def close_steps(self) -> None:
        if self.step_writer is not None:
            writer, self.step_writer = self.step_writer, None
            writer.close()

    def flush(self) -> None:
        for writer in (self.writer, self.step_writer):
            if writer is not None:
                writer.flush()


class TensorBoard(Dumper):
    """Write metrics, learning rates and the configuration for TensorBoard.

    By default it starts no TensorBoard server: run ``tensorboard --logdir
    <par_dir>/tensorboard`` yourself, or pass ``start_server=True`` (the
    original DRYTorch's default) to serve that folder from this process.

    Args:
        par_dir: the folder to write in; defaults to the experiment's.
        start_server: at the first run, start a TensorBoard server in a
            background thread of this process, on localhost, serving every
            run of ``par_dir``; its address is ``server_url`` and is logged.
        max_queue_size: the summaries kept in memory before a write (the
            writer's ``max_queue``).
        flush_secs: how often, in seconds, pending events are written to disk
            (they are also written when training or a test ends, and when the
            run stops).

    Attributes:
        server_url: the address of the started server, else ``None``.

    Raises:
        ImportError: TensorBoard is not installed.
        ValueError: ``flush_secs`` or ``max_queue_size`` is not positive.
    """

    kind = 'tensorboard'

    def __init__(
        self,
        par_dir: str | os.PathLike[str] | None = None,
        start_server: bool = False,
        max_queue_size: int = 10,
        flush_secs: float = 10.0,
    ) -> None:
        if importlib.util.find_spec('tensorboard') is None:
            raise ImportError(
                'The TensorBoard tracker needs the tensorboard package: '
                'pip install tensorboard'
            )
        if not flush_secs > 0:
            raise ValueError(f'flush_secs must be positive, got {flush_secs!r}.')
        if isinstance(max_queue_size, bool) or not (
            isinstance(max_queue_size, int) and max_queue_size > 0
        ):
            raise ValueError(
                f'max_queue_size must be a positive integer, got {max_queue_size!r}.'
            )
        super().__init__(par_dir)
        self.start_server = start_server
        self.max_queue_size = max_queue_size
        self.flush_secs = flush_secs
        self.server_url: str | None = None
        self._session: _Session | None = None

    @property
    def writer(self) -> SummaryWriter:
        """The open writer of the active run, for extra summaries of your own.

        Raises:
            TrackerError: no run of this tracker's experiment is active.
        """
        if self._session is None:
            raise exceptions.TrackerError(
                f'{self.name} is not tracking a run: start a run of its experiment.'
            )
        return self._writer(self._session)

    def _writer(self, session: _Session) -> SummaryWriter:
        if session.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            # A new writer makes a new event file: a resumed run appends a
            # file to its folder and never rewrites the earlier ones.
            session.writer = SummaryWriter(
                log_dir=str(self.run_dir(session.run)),
                max_queue=self.max_queue_size,
                flush_secs=self.flush_secs,
                purge_step=session.purge_step,
            )
            if session.pending_config is not None:
                session.writer.add_text(
                    CONFIG_TAG, session.pending_config, global_step=0
                )
                session.pending_config = None
        return session.writer

    def _step_writer(self, session: _Session, event: StepMetricsEvent) -> SummaryWriter:
        """Return the steps folder's writer, opened anew to purge when needed."""
        purge_step = None
        if event.model_name in session.purge_steps_of:
            # the model's first step after its checkpoint: the points an
            # earlier session logged from here on are superseded
            session.purge_steps_of.discard(event.model_name)
            session.close_steps()
            purge_step = event.step
        if session.step_writer is None:
            from torch.utils.tensorboard import SummaryWriter

            session.step_writer = SummaryWriter(
                log_dir=str(self.run_dir(session.run) / STEPS_FOLDER),
                max_queue=self.max_queue_size,
                flush_secs=self.flush_secs,
                purge_step=purge_step,
            )
        return session.step_writer

    def _begin(self, run: RunView) -> _Session:
        """Start a session of ``run``; close a writer another left open."""
        if self._session is not None:
            self._session.close()
        self._session = _Session(run, config_text(run.config_table()))
        return self._session

    def _current(self, run: RunView) -> _Session:
        """Return the session of ``run``, begun now if its start was not seen."""
        session = self._session
        if session is None or session.run is not run:
            session = self._begin(run)
        return session

    @hookimpl
    def on_run_start(self, run: RunView) -> None:
        """Note the configuration; the event file opens with the first summary."""
        self._begin(run)
        if self.start_server and self.server_url is None:
            self._serve(self.run_dir(run).parents[1])

    def _serve(self, logdir: pathlib.Path) -> None:
        """Serve ``logdir`` from a TensorBoard thread of this process (once)."""
        from tensorboard import program  # type: ignore[import-untyped]

        server = program.TensorBoard()
        server.configure(logdir=str(logdir), host='localhost')
        self.server_url = server.launch()
        print(f'TensorBoard serves {logdir} at {self.server_url}', file=sys.stderr)

    @hookimpl
    def on_metrics(self, event: MetricsEvent, run: RunView) -> None:
        """Write each metric at step = the model's epoch."""
        writer = self._writer(self._current(run))
        for name, value in event.metrics.items():
            writer.add_scalar(
                metric_tag(event.model_name, event.source_name, name),
                float(value),
                global_step=event.epoch,
            )

    @hookimpl
    def on_step_metrics(self, event: StepMetricsEvent, run: RunView) -> None:
        """Write each metric at step = the optimizer step, in the steps folder."""
        writer = self._step_writer(self._current(run), event)
        for name, value in event.metrics.items():
            writer.add_scalar(
                step_tag(event.model_name, event.source_name, name),
                float(value),
                global_step=event.step,
            )

    @hookimpl
    def on_learning_rate(self, event: LearningRateEvent, run: RunView) -> None:
        """Write each parameter group's new learning rate."""
        writer = self._writer(self._current(run))
        for group, rate in enumerate(event.learning_rates):
            writer.add_scalar(
                lr_tag(event.model_name, group), float(rate), global_step=event.epoch
            )

    @hookimpl
    def on_checkpoint_load(self, event: CheckpointEvent, run: RunView) -> None:
        """Drop from TensorBoard what comes after the checkpoint's epoch."""
        # Epochs after the checkpoint will be measured again: TensorBoard
        # drops what an interrupted session logged from there on.
        session = self._current(run)
        session.close()
        session.purge_step = event.epoch + 1
        session.purge_steps_of.add(event.model_name)

    @hookimpl
    def on_training_end(self) -> None:
        """Write pending events to disk."""
        self._flush()

    @hookimpl
    def on_test_end(self) -> None:
        """Write pending events to disk."""
        self._flush()

    @hookimpl
    def on_run_stop(self) -> None:
        """Close the event file (a session that logged nothing shows its config)."""
        session, self._session = self._session, None
        if session is None:
            return
        if session.pending_config is not None:
            self._writer(session)
        session.close()

    def _flush(self) -> None:
        if self._session is not None:
            self._session.flush()
