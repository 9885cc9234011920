"""The ``TensorBoard`` tracker: a run's metrics and configuration as event files.

Layout, one folder per run (``<par_dir>`` is the tracker's or the experiment's)::

    <par_dir>/tensorboard/<experiment>/<run id>/events.out.tfevents.*

Point TensorBoard at ``<par_dir>/tensorboard`` to compare every run of every
experiment, or at one experiment's folder. Each session of a run (its start,
then each resume) writes a new event file in the run's folder; TensorBoard
merges them into one run.

What is written:

- ``<model>/<source>-<metric>``: each metric of each ``MetricsEvent`` (training
  epochs, validations, tests), at step = the model's epoch;
- ``<model>/lr-group<i>``: the learning rate of parameter group ``i`` when it
  changes, at step = the epochs completed when it changed;
- ``config``: the run's configuration as TOML text, at each session's start.

When a checkpoint is loaded, the steps after its epoch are purged: a run that
was interrupted and continued from a checkpoint shows each epoch once, with
the values of the session that finished it.

TensorBoard itself is imported when a run starts, not with this module.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
from typing import TYPE_CHECKING, Any

import tomli_w
from drytorch.core import log_events, snapshot
from drytorch.trackers.base import Dumper

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ['CONFIG_TAG', 'TensorBoard', 'config_text', 'lr_tag', 'metric_tag']

CONFIG_TAG = 'config'


def metric_tag(model_name: str, source_name: str, metric_name: str) -> str:
    """Return the scalar tag of a metric: ``<model>/<source>-<metric>``."""
    return f'{model_name}/{source_name}-{metric_name}'


def lr_tag(model_name: str, group: int) -> str:
    """Return the scalar tag of a parameter group's learning rate."""
    return f'{model_name}/lr-group{group}'


def config_text(config: Any) -> str:
    """Return the configuration as a Markdown TOML block, as TensorBoard shows it."""
    table = snapshot.to_toml(config)
    try:
        body = tomli_w.dumps(table)
    except (TypeError, ValueError):  # never lose the run's tracking over this
        body = json.dumps(table, indent=2, default=repr) + '\n'
        return f'```json\n{body}```'
    return f'```toml\n{body}```'


class TensorBoard(Dumper):
    """Write metrics, learning rates and the configuration for TensorBoard.

    It never starts a TensorBoard server: run ``tensorboard --logdir
    <par_dir>/tensorboard`` yourself.

    Args:
        par_dir: the folder to write in; defaults to the experiment's.
        flush_secs: how often, in seconds, pending events are written to disk
            (they are also written when training or a test ends, and when the
            run stops).

    Raises:
        ImportError: TensorBoard is not installed.
        ValueError: ``flush_secs`` is not positive.
    """

    kind = 'tensorboard'

    def __init__(
        self,
        par_dir: str | os.PathLike[str] | None = None,
        flush_secs: float = 10.0,
    ) -> None:
        if importlib.util.find_spec('tensorboard') is None:
            raise ImportError(
                'The TensorBoard tracker needs the tensorboard package: '
                'pip install tensorboard'
            )
        if not flush_secs > 0:
            raise ValueError(f'flush_secs must be positive, got {flush_secs!r}.')
        super().__init__(par_dir)
        self.flush_secs = flush_secs
        self._writer: SummaryWriter | None = None
        # opened lazily: a resumed session that loads a checkpoint first opens
        # its one event file with the purge step of that checkpoint
        self._pending_config: str | None = None
        self._purge_step: int | None = None

    @property
    def writer(self) -> SummaryWriter:
        """The open writer of the active run, for extra summaries of your own.

        Raises:
            TrackerError: no run of this tracker's experiment is active.
        """
        if self._writer is None:
            self._writer = self._open(self._purge_step)
            if self._pending_config is not None:
                self._writer.add_text(CONFIG_TAG, self._pending_config, global_step=0)
                self._pending_config = None
        return self._writer

    def _open(self, purge_step: int | None = None) -> SummaryWriter:
        from torch.utils.tensorboard import SummaryWriter

        # A new writer makes a new event file: a resumed run appends a file to
        # its folder and never rewrites the earlier ones.
        return SummaryWriter(
            log_dir=str(self.run_dir),
            flush_secs=self.flush_secs,
            purge_step=purge_step,
        )

    def _close(self) -> None:
        if self._writer is not None:
            writer, self._writer = self._writer, None
            writer.close()

    @functools.singledispatchmethod
    def notify(self, event: object) -> None:
        """Write what TensorBoard shows of ``event``; ignore the other events."""
        super().notify(event)

    @notify.register
    def _(self, event: log_events.RunStartEvent) -> None:
        self._close()  # a writer left open by a run that never stopped
        super().notify(event)
        self._pending_config = config_text(event.config)
        self._purge_step = None

    @notify.register
    def _(self, event: log_events.MetricsEvent) -> None:
        for name, value in event.metrics.items():
            self.writer.add_scalar(
                metric_tag(event.model_name, event.source_name, name),
                float(value),
                global_step=event.epoch,
            )

    @notify.register
    def _(self, event: log_events.LearningRateEvent) -> None:
        for group, rate in enumerate(event.learning_rates):
            self.writer.add_scalar(
                lr_tag(event.model_name, group), float(rate), global_step=event.epoch
            )

    @notify.register
    def _(self, event: log_events.CheckpointEvent) -> None:
        if event.action == 'load':
            # Epochs after the checkpoint will be measured again: TensorBoard
            # drops what an interrupted session logged from there on.
            self._close()
            self._purge_step = event.epoch + 1

    @notify.register
    def _(self, event: log_events.TrainingEndEvent) -> None:
        if self._writer is not None:
            self._writer.flush()

    @notify.register
    def _(self, event: log_events.TestEndEvent) -> None:
        if self._writer is not None:
            self._writer.flush()

    @notify.register
    def _(self, event: log_events.RunStopEvent) -> None:
        if self._pending_config is not None:
            _ = self.writer  # a session that logged nothing still shows its config
        self._close()
        super().notify(event)
