"""``BuiltinLogger``: run events as lines of the standard ``drytorch`` logger."""

from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING, TextIO

from drytorch import hookimpl
from drytorch.core import tracking

if TYPE_CHECKING:
    from drytorch.core import log_events

__all__ = [
    'DETAIL',
    'LOGGER_NAME',
    'METRICS',
    'RUN',
    'BuiltinLogger',
    'format_metric',
    'get_logger',
    'use_hydra_logging',
]

LOGGER_NAME = 'drytorch'
DETAIL = 15
"""Model registration, checkpoint saves, the stop of a run that trained
nothing: hidden at the default verbosity."""
METRICS = 21
"""Epoch headers and metrics (training library): the default verbosity."""
RUN = 25
"""The run line, why a run resumes, nothing left to train, early stopping,
and how a run that trained or failed ended: shown in every mode that logs."""

_FORMATTER = logging.Formatter('[%(asctime)s] - %(message)s', '%Y-%m-%d %H:%M:%S')

logging.addLevelName(DETAIL, 'DETAIL')
logging.addLevelName(METRICS, 'METRICS')
logging.addLevelName(RUN, 'RUN')


class _CurrentStderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is when a record is emitted.

    Notebooks and test runners replace ``sys.stderr``; a handler bound to the
    stream of import time would write where nobody looks.
    """

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


def get_logger() -> logging.Logger:
    """Return the ``drytorch`` logger, with a stderr handler if it has none."""
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers and not logger.propagate:
        use_stderr_logging()
    if logger.level == logging.NOTSET:
        logger.setLevel(DETAIL)
    return logger


def use_stderr_logging() -> None:
    """Print DRYTorch's log records on stderr, unless the user set handlers.

    Undoes ``use_hydra_logging``: the last ``BuiltinLogger`` built decides.
    """
    logger = logging.getLogger(LOGGER_NAME)
    _remove(logger, _StdoutHandler)
    if not logger.handlers:
        handler = _CurrentStderrHandler()
        handler.setFormatter(_FORMATTER)
        logger.addHandler(handler)
    logger.propagate = False


def use_hydra_logging() -> None:
    """Send DRYTorch's log records to the root logger, as Hydra expects.

    Hydra configures the root logger (its console handler on stdout and the
    job's log file), so records must propagate there instead of going to a
    handler of DRYTorch's own. Without a configured root logger, the records
    go to stdout.
    """
    logger = logging.getLogger(LOGGER_NAME)
    _remove(logger, _CurrentStderrHandler)
    if logging.getLogger().handlers:
        _remove(logger, _StdoutHandler)
        logger.propagate = True
    elif not logger.handlers:
        handler = _StdoutHandler(sys.stdout)
        handler.setFormatter(_FORMATTER)
        logger.addHandler(handler)


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """DRYTorch's own stdout handler, for Hydra mode without a root logger."""


def _remove(logger: logging.Logger, kind: type[logging.Handler]) -> None:
    for handler in list(logger.handlers):
        if isinstance(handler, kind):
            logger.removeHandler(handler)


class BuiltinLogger(tracking.Tracker):
    """Logs run events to the ``drytorch`` logger at this tracker's verbosity.

    Args:
        level: the least important level shown: ``RUN`` shows the run line,
            why a run resumes and how a run that trained ended; ``METRICS``
            (the default) adds epochs, metrics, checkpoint loads and where
            training resumed; ``DETAIL`` adds model registration, checkpoint
            saves and the stop of runs that trained nothing.
        hydra: log through the root logger that Hydra configures (stdout and
            the job's log file) instead of DRYTorch's own stderr handler.
    """

    def __init__(self, level: int = METRICS, *, hydra: bool = False) -> None:
        super().__init__()
        self.level = level
        if hydra:
            use_hydra_logging()
        else:
            use_stderr_logging()
        self._logger = get_logger()
        self._trained: dict[str, _Trained] = {}  # this session's, by model

    def log(self, level: int, message: str, *args: object) -> None:
        """Log ``message`` if ``level`` is shown at this tracker's verbosity."""
        if level >= self.level:
            self._logger.log(level, message, *args)

    @hookimpl
    def on_run_start(self, event: log_events.RunStartEvent) -> None:
        """Log the run line, and why an unfinished run is resumed."""
        self._trained = {}
        self.log(RUN, 'Running experiment: %s.', event.experiment_name)
        how = _how_it_ended(event.previous_status, event.previous_error)
        if how:
            self.log(RUN, 'Resuming run %s: %s.', event.run_id, how)

    @hookimpl
    def on_run_stop(self, event: log_events.RunStopEvent) -> None:
        """Log how the run ended: at the run's verbosity if it trained or failed.

        A run that trained names itself and says what it trained, so that
        the end of a long log tells which run it was and where it resumed.
        """
        status: str = event.status
        suffix = f' ({event.error})' if event.error else ''
        if _interrupted(event.error):
            status, suffix = 'interrupted', ''
        trained = '; '.join(
            part.describe(model) for model, part in self._trained.items()
        )
        self._trained = {}
        level = RUN if trained or event.status == 'failed' else DETAIL
        ending = f': {trained}.' if trained else '.'
        self.log(level, 'Run %s %s%s%s', event.run_id, status, suffix, ending)

    @hookimpl
    def on_model_register(self, event: log_events.ModelRegisterEvent) -> None:
        """Log the model and its size."""
        self.log(
            DETAIL,
            'Model %s registered (%d parameters).',
            event.model_name,
            event.n_parameters,
        )

    @hookimpl
    def on_training_start(self, event: log_events.TrainingStartEvent) -> None:
        """Log the epochs to train, where training resumes, or that none are left."""
        model, start, end = event.model_name, event.start_epoch, event.end_epoch
        if event.stopped is not None:
            self.log(
                RUN,
                'Nothing left to train: %s stopped at epoch %d (%s).',
                model,
                start,
                event.stopped,
            )
        elif start >= end:
            self.log(
                RUN,
                'Nothing left to train: %s has completed %d of %d epochs.',
                model,
                start,
                end,
            )
        elif model not in self._trained and start > 0:
            self.log(
                METRICS, 'Training %s resumed from epoch %d, to %d.', model, start, end
            )
        else:
            self.log(DETAIL, 'Training %s from epoch %d to %d.', model, start, end)
        if model not in self._trained and event.stopped is None and start < end:
            self._trained[model] = _Trained(start)

    @hookimpl
    def on_epoch_start(self, event: log_events.EpochStartEvent) -> None:
        """Log the epoch header."""
        trained = self._trained.get(event.model_name)
        if trained is not None:
            trained.completed = max(trained.completed, event.epoch - 1)
        width = len(str(event.end_epoch))
        self.log(METRICS, 'Epoch: %*d / %d', width, event.epoch, event.end_epoch)

    @hookimpl
    def on_training_end(self, event: log_events.TrainingEndEvent) -> None:
        """Note the epoch training reached, for the run's last line."""
        trained = self._trained.get(event.model_name)
        if trained is not None:
            trained.completed = max(trained.completed, event.epoch)

    @hookimpl
    def on_metrics(self, event: log_events.MetricsEvent) -> None:
        """Log the metrics of one source."""
        values = '\t'.join(
            f'{name}={format_metric(value)}' for name, value in event.metrics.items()
        )
        self.log(METRICS, '%s: %s', event.source_name, values)

    @hookimpl
    def on_termination(self, event: log_events.TerminationEvent) -> None:
        """Log why training stopped early."""
        self.log(
            RUN,
            '%s terminated training at epoch %d: %s.',
            event.source_name,
            event.epoch,
            event.reason,
        )

    @hookimpl
    def on_test_start(self, event: log_events.TestStartEvent) -> None:
        """Log the test."""
        self.log(METRICS, 'Testing %s at epoch %d.', event.model_name, event.epoch)

    @hookimpl
    def on_learning_rate(self, event: log_events.LearningRateEvent) -> None:
        """Log the new learning rates."""
        rates = ', '.join(f'{rate:.3e}' for rate in event.learning_rates)
        self.log(
            DETAIL,
            'Learning rate of %s: %s (%s).',
            event.model_name,
            rates,
            event.reason,
        )

    @hookimpl
    def on_checkpoint_save(self, event: log_events.CheckpointEvent) -> None:
        """Log where the checkpoint was saved (in detail: saves can be many)."""
        self._checkpoint(event, 'saved to', DETAIL)

    @hookimpl
    def on_checkpoint_load(self, event: log_events.CheckpointEvent) -> None:
        """Log where the checkpoint was loaded from."""
        self._checkpoint(event, 'loaded from')

    @hookimpl
    def on_checkpoint_delete(self, event: log_events.CheckpointEvent) -> None:
        """Log the checkpoint that retention deleted."""
        self._checkpoint(event, 'deleted from', DETAIL)

    def _checkpoint(
        self, event: log_events.CheckpointEvent, action: str, level: int = METRICS
    ) -> None:
        where = f' batch {event.batch}' if event.batch else ''
        self.log(
            level,
            'Checkpoint of %s at epoch %d%s %s %s.',
            event.model_name,
            event.epoch,
            where,
            action,
            event.location,
        )


def format_metric(value: float) -> str:
    """Return ``value`` with five significant digits, in plain notation when short.

    Accuracies, losses and most metrics (1e-4 to 1e5) read as ``0.95123``
    or ``2.3026``; only very small or large values use an exponent.
    """
    return f'{value:.5g}'


class _Trained:
    """What one model trained in this session: for the run's last line."""

    __slots__ = ('completed', 'start')

    def __init__(self, start: int) -> None:
        self.start = start
        self.completed = start

    def describe(self, model: str) -> str:
        if self.completed <= self.start:
            return f'{model} at epoch {self.start}'
        if self.start > 0:
            return (
                f'{model} resumed from epoch {self.start}, '
                f'trained to epoch {self.completed}'
            )
        if self.completed == 1:
            return f'{model} trained epoch 1'
        return f'{model} trained epochs 1 to {self.completed}'


def _how_it_ended(status: str | None, error: str | None) -> str:
    """Return how the last session of a resumed run ended, if it did not complete."""
    if status == 'crashed':
        return 'its last session crashed (its process ended without stopping it)'
    if status == 'failed':
        if _interrupted(error):
            return 'its last session was interrupted'
        return f'its last session failed ({error})' if error else 'it failed'
    if status == 'created':
        return 'it was created and never started'
    return ''


def _interrupted(error: str | None) -> bool:
    """Return whether a run's error is Ctrl-C rather than a failure."""
    return error is not None and error.split(':', 1)[0] == 'KeyboardInterrupt'
