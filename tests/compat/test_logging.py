"""The original DRYTorch's ``trackers.logging`` names, and the log lines users see.

Written from ``shared/spec/original-api.md`` (section ``trackers.logging`` and
the Behaviours "Log lines"). At the default verbosity the output is exactly
the seed's; ``set_verbosity(INFO_LEVELS.experiment)`` adds the original's run
lines with the run's id.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest

import drytorch
from drytorch import Experiment
from drytorch.trackers import logging as builtin_logging
from drytorch.trackers.logging import (
    INFO_LEVELS,
    BuiltinLogger,
    DryTorchFilter,
    DryTorchFormatter,
    InfoLevels,
    ProgressFormatter,
    disable_default_handler,
    disable_propagation,
    enable_default_handler,
    enable_propagation,
    get_verbosity,
    set_formatter,
    set_verbosity,
)

STAMP = r'\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] - '


@pytest.fixture(autouse=True)
def logging_state() -> Iterator[None]:
    """Give back the ``drytorch`` logger and the module's state as they were."""
    logger = logging.getLogger('drytorch')
    saved = (list(logger.handlers), logger.propagate, logger.level)
    module = (
        builtin_logging._verbosity,
        builtin_logging._default_disabled,
        builtin_logging._FORMATTER,
        builtin_logging._dropped_for_root,
    )
    drytorch.init_trackers('standard')
    yield
    logger.handlers[:] = saved[0]
    logger.propagate, logger.level = saved[1], saved[2]
    (
        builtin_logging._verbosity,
        builtin_logging._default_disabled,
        builtin_logging._FORMATTER,
        builtin_logging._dropped_for_root,
    ) = module


def lines(text: str) -> list[str]:
    return [re.sub(STAMP, '', line) for line in text.splitlines() if line]


def start_resume_stop(name: str) -> str:
    exp = Experiment(None, name=name)
    with exp.create_run('r'):
        pass
    run = exp.create_run('r', resume=True)
    run.start()
    run.stop()
    return 'r'


def test_info_levels_is_a_dataclass_of_levels() -> None:
    assert dataclasses.is_dataclass(InfoLevels)
    names = [field.name for field in dataclasses.fields(InfoLevels)]
    assert names == [
        'internal',
        'metrics',
        'epoch',
        'model_state',
        'experiment',
        'training',
        'test',
    ]
    assert INFO_LEVELS.metrics == builtin_logging.METRICS  # our default
    assert INFO_LEVELS.experiment < INFO_LEVELS.metrics  # one level more verbose
    assert INFO_LEVELS.internal == builtin_logging.DETAIL


def test_builtin_logger_takes_no_argument() -> None:
    assert BuiltinLogger().level == builtin_logging.METRICS


def test_default_verbosity_prints_the_seed_lines_only(capsys: Any) -> None:
    start_resume_stop('SimpleExp')
    err = capsys.readouterr().err
    assert re.fullmatch(
        f'{STAMP}Running experiment: SimpleExp.\n{STAMP}Running experiment: '
        'SimpleExp.\n',
        err,
    )
    assert get_verbosity() == builtin_logging.METRICS


def test_one_level_up_logs_run_start_resume_and_stop_with_the_id(
    capsys: Any,
) -> None:
    set_verbosity(INFO_LEVELS.experiment)
    assert get_verbosity() == INFO_LEVELS.experiment
    run_id = start_resume_stop('verbose')
    shown = lines(capsys.readouterr().err)
    assert shown == [
        'Running experiment: verbose.',
        f'Experiment: verbose - Starting run: {run_id}',
        f'Experiment: verbose - Stopping run: {run_id}',
        'Running experiment: verbose.',
        f'Experiment: verbose - Resuming run: {run_id}',
        f'Experiment: verbose - Stopping run: {run_id}',
    ]


def test_set_verbosity_quiet_and_detail(capsys: Any) -> None:
    set_verbosity(builtin_logging.QUIET)
    start_resume_stop('quiet')
    assert capsys.readouterr().err == ''
    set_verbosity(INFO_LEVELS.internal)
    with Experiment(None, name='detail').create_run('d'):
        pass
    shown = lines(capsys.readouterr().err)
    assert 'Run d completed.' in shown  # a detail line


def test_set_verbosity_refuses_non_levels() -> None:
    with pytest.raises(TypeError, match='INFO_LEVELS'):
        set_verbosity('info')  # type: ignore[arg-type]


def test_disable_and_enable_default_handler(capsys: Any) -> None:
    disable_default_handler()
    BuiltinLogger()  # a new logger does not bring the handler back
    with Experiment(None, name='muted').create_run():
        pass
    assert capsys.readouterr().err == ''
    stream = io.StringIO()
    enable_default_handler(stream)
    with Experiment(None, name='to-stream').create_run():
        pass
    assert 'Running experiment: to-stream.' in stream.getvalue()
    assert capsys.readouterr().err == ''
    enable_default_handler()
    with Experiment(None, name='back').create_run():
        pass
    assert 'Running experiment: back.' in capsys.readouterr().err


def test_enable_and_disable_propagation(capsys: Any) -> None:
    to_root = io.StringIO()
    root_handler = logging.StreamHandler(to_root)
    logging.getLogger().addHandler(root_handler)
    try:
        enable_propagation()  # the root has a handler: ours is dropped
        with Experiment(None, name='propagated').create_run():
            pass
        assert 'Running experiment: propagated.' in to_root.getvalue()
        assert capsys.readouterr().err == ''
        disable_propagation()
        with Experiment(None, name='own').create_run():
            pass
        assert 'Running experiment: own.' in capsys.readouterr().err
        assert 'own' not in to_root.getvalue()
    finally:
        logging.getLogger().removeHandler(root_handler)


def test_drytorch_filter_drops_drytorch_records() -> None:
    keep = DryTorchFilter()

    def record(name: str) -> logging.LogRecord:
        return logging.LogRecord(name, logging.INFO, __file__, 1, 'x', None, None)

    assert not keep.filter(record('drytorch'))
    assert not keep.filter(record('drytorch.trackers'))
    assert keep.filter(record('drytorchish'))
    assert keep.filter(record('root'))


def test_formatters_and_set_formatter(capsys: Any) -> None:
    record = logging.LogRecord('drytorch', 25, __file__, 1, 'hello', None, None)
    assert re.fullmatch(f'{STAMP}hello', DryTorchFormatter().format(record))
    assert isinstance(ProgressFormatter(), DryTorchFormatter)
    logger = builtin_logging.get_logger()
    set_formatter('progress')
    logger.log(builtin_logging.METRICS, 'Epoch: 1 / 2')
    logger.log(builtin_logging.RUN, 'Run line')
    err = capsys.readouterr().err
    assert err.endswith('Epoch: 1 / 2\r' + err.split('\r', 1)[1])
    assert err.endswith('Run line\n')
    set_formatter('drytorch')
    logger.log(builtin_logging.METRICS, 'Epoch: 2 / 2')
    assert capsys.readouterr().err.endswith('Epoch: 2 / 2\n')
    with pytest.raises(ValueError, match='progress'):
        set_formatter('fancy')  # type: ignore[arg-type]
