"""``BuiltinLogger``: run events as lines of the standard ``drytorch`` logger.

Each ``BuiltinLogger`` shows lines down to its own ``level``; ``set_verbosity``
(the original DRYTorch's helper) sets one level for all of them and for the
``drytorch`` logger. The original's names are here beside ours:
``INFO_LEVELS`` maps each kind of line onto our levels, and
``enable_default_handler`` / ``enable_propagation`` are the original's
spellings of ``use_stderr_logging`` / ``use_hydra_logging``.
"""

from __future__ import annotations

import dataclasses
import logging
import sys
from typing import TYPE_CHECKING, Literal, TextIO

from drytorch import hookimpl
from drytorch.core import tracking

if TYPE_CHECKING:
    from drytorch.core import log_events

__all__ = [
    'DETAIL',
    'INFO_LEVELS',
    'LOGGER_NAME',
    'METRICS',
    'QUIET',
    'RUN',
    'RUN_IDS',
    'BuiltinLogger',
    'DryTorchFilter',
    'DryTorchFormatter',
    'InfoLevels',
    'ProgressFormatter',
    'disable_default_handler',
    'disable_propagation',
    'enable_default_handler',
    'enable_propagation',
    'format_metric',
    'get_logger',
    'get_verbosity',
    'reset_verbosity',
    'set_formatter',
    'set_verbosity',
    'use_hydra_logging',
    'use_stderr_logging',
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
RUN_IDS = logging.INFO
"""The original DRYTorch's run lines, with the run's id: ``Experiment: <name> -
Starting run: <id>`` (or ``Resuming run:``) and ``... - Stopping run: <id>``.
One level more verbose than the default: ``set_verbosity(RUN_IDS)`` (or
``INFO_LEVELS.experiment``) shows them, and the default output stays as it was."""
QUIET = logging.WARNING
"""Above every line of ours: a logger at this level prints nothing (minimal mode)."""


@dataclasses.dataclass(frozen=True)
class InfoLevels:
    """The original DRYTorch's kinds of log lines, each with its logging level.

    Each value is the level that shows every line of that kind here:
    ``set_verbosity(INFO_LEVELS.metrics)`` shows the metrics (our default),
    ``INFO_LEVELS.experiment`` adds the run lines with ids, and
    ``INFO_LEVELS.internal`` shows everything.
    """

    internal: int
    metrics: int
    epoch: int
    model_state: int
    experiment: int
    training: int
    test: int


INFO_LEVELS = InfoLevels(
    internal=DETAIL,
    metrics=METRICS,
    epoch=METRICS,
    model_state=DETAIL,  # checkpoint saves are detail lines
    experiment=RUN_IDS,
    training=DETAIL,  # where training starts is a detail line
    test=METRICS,
)
"""The original's ``INFO_LEVELS`` mapped onto our levels (its numbers were
19 to 29; ours keep the default output of our own levels)."""

_DATE_FORMAT = '%Y-%m-%d %H:%M:%S'


class DryTorchFormatter(logging.Formatter):
    """Our line format: ``[YYYY-MM-DD HH:MM:SS] - <message>`` for every line."""

    def __init__(self) -> None:
        super().__init__('[%(asctime)s] - %(message)s', _DATE_FORMAT)


class ProgressFormatter(DryTorchFormatter):
    """Like ``DryTorchFormatter``; epoch and metric lines overwrite each other.

    DRYTorch's own stream handler ends lines at the ``METRICS`` level with a
    carriage return instead of a new line while this formatter is set, so
    a terminal shows only the latest of them.
    """


class DryTorchFilter(logging.Filter):
    """Drop the records of the ``drytorch`` logger (and its children).

    For handlers of other loggers that should not repeat DRYTorch's lines,
    for example the root logger's when ``drytorch`` propagates.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Return whether ``record`` comes from outside DRYTorch."""
        name = record.name
        return not (name == LOGGER_NAME or name.startswith(LOGGER_NAME + '.'))


_FORMATTER: logging.Formatter = DryTorchFormatter()
_verbosity: int | None = None  # set_verbosity's level, for every BuiltinLogger
_default_disabled = False  # disable_default_handler() was called
_dropped_for_root = False  # enable_propagation() removed our stderr handler

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

    def emit(self, record: logging.LogRecord) -> None:
        self.terminator = _terminator(self, record)
        super().emit(record)


def _terminator(handler: logging.Handler, record: logging.LogRecord) -> str:
    """End metric lines with a carriage return under the progress formatter."""
    in_place = isinstance(handler.formatter, ProgressFormatter)
    return '\r' if in_place and record.levelno == METRICS else '\n'


def get_logger() -> logging.Logger:
    """Return the ``drytorch`` logger, with a stderr handler if it has none."""
    logger = logging.getLogger(LOGGER_NAME)
    if not logger.handlers and not logger.propagate and not _default_disabled:
        use_stderr_logging()
    if logger.level == logging.NOTSET:
        logger.setLevel(min(DETAIL, RUN_IDS))
    return logger


def use_stderr_logging() -> None:
    """Print DRYTorch's log records on stderr, unless the user set handlers.

    Undoes ``use_hydra_logging`` and ``disable_default_handler``: the last
    ``BuiltinLogger`` built decides.
    """
    global _default_disabled
    _default_disabled = False
    _use_stderr()


def _use_stderr() -> None:
    logger = logging.getLogger(LOGGER_NAME)
    _remove(logger, _StdoutHandler)
    if not logger.handlers and not _default_disabled:
        handler = _CurrentStderrHandler()
        handler.setFormatter(_FORMATTER)
        logger.addHandler(handler)
    logger.propagate = False


def set_verbosity(level_no: int) -> None:
    """Show DRYTorch's lines down to ``level_no`` in every ``BuiltinLogger``.

    The original DRYTorch's helper. It overrides each tracker's ``level``
    and sets the ``drytorch`` logger's level: ``METRICS`` (or
    ``INFO_LEVELS.metrics``) is the default output, ``RUN_IDS`` (or
    ``INFO_LEVELS.experiment``) adds the lines naming each run that starts,
    resumes and stops, ``DETAIL`` shows everything, ``RUN`` only run-level
    lines, ``QUIET`` nothing.

    Raises:
        TypeError: ``level_no`` is not an integer.
    """
    global _verbosity
    if isinstance(level_no, bool) or not isinstance(level_no, int):
        raise TypeError(
            f'set_verbosity takes a logging level number, such as '
            f'INFO_LEVELS.experiment or logging.INFO; got {level_no!r}.'
        )
    _verbosity = level_no
    logging.getLogger(LOGGER_NAME).setLevel(level_no)


def reset_verbosity() -> None:
    """Undo ``set_verbosity``: each ``BuiltinLogger`` shows its own ``level`` again."""
    global _verbosity
    _verbosity = None
    logging.getLogger(LOGGER_NAME).setLevel(min(DETAIL, RUN_IDS))


def get_verbosity() -> int:
    """Return the level ``set_verbosity`` set, else the default, ``METRICS``."""
    return METRICS if _verbosity is None else _verbosity


def enable_default_handler(stream: TextIO | None = None) -> None:
    """Print DRYTorch's lines with its own handler, on ``stream`` (default: stderr).

    The original DRYTorch's spelling of ``use_stderr_logging``; records stop
    propagating to the root logger.
    """
    global _default_disabled, _dropped_for_root
    _default_disabled = _dropped_for_root = False
    logger = logging.getLogger(LOGGER_NAME)
    if stream is None or stream is sys.stderr:
        _remove(logger, _StdoutHandler)  # and _OwnStreamHandler
        _add_own(logger, _CurrentStderrHandler())
    else:
        _remove_own(logger)
        _add_own(logger, _OwnStreamHandler(stream))
    logger.propagate = False


def _add_own(logger: logging.Logger, handler: logging.Handler) -> None:
    """Add ``handler`` unless one of the same kind is there already."""
    if any(type(known) is type(handler) for known in logger.handlers):
        return
    handler.setFormatter(_FORMATTER)
    logger.addHandler(handler)


def disable_default_handler() -> None:
    """Remove DRYTorch's own handler; new built-in loggers do not add it back.

    With propagation off too, DRYTorch's lines go nowhere: handlers the user
    adds to the ``drytorch`` logger still get them.
    """
    global _default_disabled
    _default_disabled = True
    _remove_own(logging.getLogger(LOGGER_NAME))


def enable_propagation(deduplicate_stream: bool = True) -> None:
    """Send DRYTorch's records to the root logger too (the original's helper).

    Args:
        deduplicate_stream: remove DRYTorch's own handler when the root
            logger has handlers, so a console shows each line once.
    """
    global _dropped_for_root
    logger = logging.getLogger(LOGGER_NAME)
    logger.propagate = True
    if deduplicate_stream and logging.getLogger().handlers:
        _dropped_for_root = any(
            isinstance(handler, _CurrentStderrHandler) for handler in logger.handlers
        )
        _remove_own(logger)


def disable_propagation() -> None:
    """Stop sending DRYTorch's records to the root logger; print them on stderr.

    DRYTorch's own handler comes back unless ``disable_default_handler`` was
    called.
    """
    global _dropped_for_root
    logger = logging.getLogger(LOGGER_NAME)
    logger.propagate = False
    if (_dropped_for_root or not logger.handlers) and not _default_disabled:
        _add_own(logger, _CurrentStderrHandler())
    _dropped_for_root = False


def set_formatter(style: Literal['drytorch', 'progress']) -> None:
    """Choose the format of DRYTorch's own handlers' lines.

    Args:
        style: ``'drytorch'``, timestamped lines (the default);
            ``'progress'``, the same, with epoch and metric lines written
            over each other in place.

    Raises:
        ValueError: an unknown style.
    """
    global _FORMATTER
    if style == 'drytorch':
        _FORMATTER = DryTorchFormatter()
    elif style == 'progress':
        _FORMATTER = ProgressFormatter()
    else:
        raise ValueError(
            f"Unknown formatter style {style!r}; use 'drytorch' or 'progress'."
        )
    for handler in logging.getLogger(LOGGER_NAME).handlers:
        if isinstance(
            handler, _CurrentStderrHandler | _StdoutHandler | _OwnStreamHandler
        ):
            handler.setFormatter(_FORMATTER)


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

    def emit(self, record: logging.LogRecord) -> None:
        self.terminator = _terminator(self, record)
        super().emit(record)


class _OwnStreamHandler(_StdoutHandler):
    """DRYTorch's own handler on a stream the user chose."""


def _remove(logger: logging.Logger, kind: type[logging.Handler]) -> None:
    for handler in list(logger.handlers):
        if isinstance(handler, kind):
            logger.removeHandler(handler)


def _remove_own(logger: logging.Logger) -> None:
    _remove(logger, _CurrentStderrHandler)
    _remove(logger, _StdoutHandler)  # and _OwnStreamHandler


class BuiltinLogger(tracking.Tracker):
    """Logs run events to the ``drytorch`` logger at this tracker's verbosity.

    Args:
        level: the least important level shown (``set_verbosity`` overrides
            it for every logger): ``RUN`` shows the run line,
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
            _use_stderr()
        self._logger = get_logger()
        self._trained: dict[str, _Trained] = {}  # this session's, by model

    def log(self, level: int, message: str, *args: object) -> None:
        """Log ``message`` if ``level`` is shown at the verbosity in force.

        That is ``set_verbosity``'s level if it was called, else this
        tracker's ``level``.
        """
        if level >= (self.level if _verbosity is None else _verbosity):
            self._logger.log(level, message, *args)

    @hookimpl
    def on_run_start(self, event: log_events.RunStartEvent) -> None:
        """Log the run line, the run's id, and why an unfinished run is resumed."""
        self._trained = {}
        self.log(RUN, 'Running experiment: %s.', event.experiment_name)
        action = 'Resuming' if event.resumed else 'Starting'
        self.log(
            RUN_IDS,
            'Experiment: %s - %s run: %s',
            event.experiment_name,
            action,
            event.run_id,
        )
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
        self.log(
            RUN_IDS,
            'Experiment: %s - Stopping run: %s',
            event.experiment_name,
            event.run_id,
        )
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
