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
    'get_logger',
    'use_hydra_logging',
]

LOGGER_NAME = 'drytorch'
DETAIL = 15
"""Model registration, run stop: hidden at the default verbosity."""
METRICS = 21
"""Epoch headers and metrics (training library): the default verbosity."""
RUN = 25
"""The run-start line: shown in every init mode that logs."""

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
        level: the least important level shown: ``RUN`` shows the run-start
            line only, ``METRICS`` (the default) adds epochs and metrics,
            ``DETAIL`` adds model registration and run stop.
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

    def log(self, level: int, message: str, *args: object) -> None:
        """Log ``message`` if ``level`` is shown at this tracker's verbosity."""
        if level >= self.level:
            self._logger.log(level, message, *args)

    @hookimpl
    def on_run_start(self, event: log_events.RunStartEvent) -> None:
        """Log the run line."""
        self.log(RUN, 'Running experiment: %s.', event.experiment_name)

    @hookimpl
    def on_run_stop(self, event: log_events.RunStopEvent) -> None:
        """Log how the run ended."""
        suffix = f': {event.error}' if event.error else '.'
        self.log(DETAIL, 'Run %s %s%s', event.run_id, event.status, suffix)

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
        """Log the epochs to train."""
        self.log(
            DETAIL,
            'Training %s from epoch %d to %d.',
            event.model_name,
            event.start_epoch,
            event.end_epoch,
        )

    @hookimpl
    def on_epoch_start(self, event: log_events.EpochStartEvent) -> None:
        """Log the epoch header."""
        width = len(str(event.end_epoch))
        self.log(METRICS, 'Epoch: %*d / %d', width, event.epoch, event.end_epoch)

    @hookimpl
    def on_metrics(self, event: log_events.MetricsEvent) -> None:
        """Log the metrics of one source."""
        values = '\t'.join(
            f'{name}={value:.4e}' for name, value in event.metrics.items()
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
        """Log where the checkpoint was saved."""
        self._checkpoint(event, 'saved to')

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
