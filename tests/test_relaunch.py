"""Relaunching: ``create_run(resume='unfinished')`` and what the console says."""

from __future__ import annotations

import dataclasses
import logging
import pathlib
from collections.abc import Callable

import pytest

import drytorch
from drytorch import Experiment
from drytorch.exceptions import PluginError
from drytorch.trackers.logging import LOGGER_NAME, RUN, BuiltinLogger, format_metric
from tests import training_kit as kit
from tests.conftest import run_python
from tests.test_registry_processes import PRELUDE, spawn, wait_until  # noqa: F401


@dataclasses.dataclass(frozen=True)
class Config:
    lr: float = 0.1
    epochs: int = 2


def exp(lr: float = 0.1) -> Experiment[Config]:
    return Experiment(Config(lr=lr), name='exp')


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    """The messages the BuiltinLogger logged so far."""
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(caplog.handler)

    def read() -> list[str]:
        return [record.getMessage() for record in caplog.records]

    yield read
    logger.removeHandler(caplog.handler)


def fail(experiment: Experiment[Config], error: BaseException, run_id: str) -> None:
    with pytest.raises(type(error)), experiment.create_run(run_id):
        raise error


# choosing the run


def test_with_nothing_recorded_a_new_run_is_created() -> None:
    with exp().create_run(resume='unfinished') as run:
        assert not run.view.resumed
    assert [r.id for r in exp().list_runs()] == [run.id]


def test_a_completed_run_is_never_resumed() -> None:
    with exp().create_run('done'):
        pass
    with exp().create_run(resume='unfinished') as run:
        assert run.id != 'done'


def test_the_newest_unfinished_run_of_this_config_is_resumed(lines) -> None:
    fail(exp(), RuntimeError('boom'), 'older')
    fail(exp(), KeyboardInterrupt(), 'newer')
    fail(exp(lr=0.5), RuntimeError('other config'), 'other')
    with exp().create_run(resume='unfinished') as run:
        assert run.id == 'newer' and run.view.resumed
    assert 'Resuming run newer: its last session was interrupted.' in lines()
    with exp().create_run(resume='unfinished') as run:
        assert run.id == 'older'
    assert 'Resuming run older: its last session failed (RuntimeError: boom).' in (
        lines()
    )
    with exp().create_run(resume='unfinished') as run:  # none left of lr=0.1
        assert run.id not in {'older', 'newer', 'other'}


def test_an_interrupt_is_recorded_without_an_empty_message() -> None:
    fail(exp(), KeyboardInterrupt(), 'stopped')
    assert exp().registry.read(exp().key, 'stopped').data['error'] == (
        'KeyboardInterrupt'
    )


def test_a_crashed_run_is_resumed_and_said_so(lines) -> None:
    code = PRELUDE + "exp.create_run('lost').start()\nos._exit(1)\n"
    done = run_python(code, pathlib.Path.cwd(), {'DRYTORCH_INIT_MODE': 'none'})
    assert done.returncode == 1, done.stderr
    assert exp().registry.read(exp().key, 'lost').status == 'crashed'
    with exp().create_run(resume='unfinished') as run:
        assert run.id == 'lost'
        assert run.start_event.previous_status == 'crashed'
    crashed = 'Resuming run lost: its last session crashed'
    assert any(line.startswith(crashed) for line in lines())


def test_a_run_another_live_process_holds_is_passed_over(spawn) -> None:  # noqa: F811
    held = spawn(
        "run = exp.create_run('held')\ntouch(sys.argv[1])\nwait_for(sys.argv[2])\n",
        'ready',
        'go',
    )
    wait_until(lambda: pathlib.Path('ready').exists(), [held], 'the holder')
    with exp().create_run(resume='unfinished') as run:  # 'held' is 'created'
        assert run.id != 'held'
    pathlib.Path('go').touch()
    assert held.wait(timeout=60) == 0


def test_run_id_names_the_new_run_when_nothing_is_unfinished() -> None:
    with exp().create_run('first', resume='unfinished') as run:
        assert run.id == 'first'


def test_resume_accepts_only_booleans_and_unfinished() -> None:
    with pytest.raises(ValueError, match="'unfinished'"):
        exp().create_run(resume='last')  # type: ignore[arg-type]


# what the console says


def two_sessions(run_id: str, until: int, then: int) -> None:
    """Train to epoch ``until`` and checkpoint; resume and train to ``then``."""
    experiment = kit.experiment()
    with experiment.create_run(run_id):
        trainer = kit.trainer()
        trainer.train_until(until)
        trainer.save_checkpoint()
    with experiment.create_run(run_id, resume=True):
        trainer = kit.trainer()
        trainer.resume()
        trainer.train_until(then)


def test_a_run_that_trained_ends_with_its_id_and_epochs(lines) -> None:
    two_sessions('trained', 2, 3)
    assert 'Run trained completed: Model trained epochs 1 to 2.' in lines()
    assert 'Training Model resumed from epoch 2, to 3.' in lines()
    assert lines()[-1] == (
        'Run trained completed: Model resumed from epoch 2, trained to epoch 3.'
    )


def test_a_run_that_trained_nothing_ends_quietly(lines) -> None:
    with kit.experiment().create_run('quiet'):
        pass
    assert lines() == ['Running experiment: exp.']


def test_nothing_left_to_train_is_said_plainly(lines) -> None:
    two_sessions('full', 2, 2)
    assert 'Nothing left to train: Model has completed 2 of 2 epochs.' in lines()
    assert not any(line.startswith('Run full') for line in lines()[-2:])  # detail


def stop_after_an_epoch(trainer: object) -> None:
    trainer.terminate_training('enough')  # type: ignore[attr-defined]


def test_a_run_stopped_early_has_nothing_left_to_train(lines) -> None:
    experiment = kit.experiment()
    with experiment.create_run('early'):
        trainer = kit.trainer()
        trainer.post_epoch_hooks.register(stop_after_an_epoch)
        trainer.train(3)
        trainer.save_checkpoint()
    with experiment.create_run('early', resume=True):
        trainer = kit.trainer()
        trainer.post_epoch_hooks.register(stop_after_an_epoch)
        trainer.resume()
        trainer.train_until(10)
    assert 'Nothing left to train: Model stopped at epoch 1 (enough).' in lines()
    assert lines()[-1].startswith('Nothing left to train')  # the end: in detail
    assert 'Run early completed: Model trained epoch 1.' in lines()


def test_a_default_stays_when_its_replacement_breaks_the_contract() -> None:
    class Broken(drytorch.Tracker):
        name = 'CSVDumper'

        @drytorch.hookimpl
        def on_run_strat(self, event: object) -> None:
            pass

    experiment = kit.experiment()
    default = experiment.trackers.get('CSVDumper')
    with pytest.raises(PluginError):
        experiment.trackers.subscribe(Broken())
    assert experiment.trackers.get('CSVDumper') is default


def test_a_failed_run_says_so_at_the_run_level(lines) -> None:
    experiment = kit.experiment()
    experiment.trackers.remove_all()
    experiment.trackers.subscribe(BuiltinLogger(level=RUN))  # run lines only
    with pytest.raises(ValueError), experiment.create_run('broken'):
        raise ValueError('bad batch')
    assert lines()[-1] == 'Run broken failed (ValueError: bad batch).'


def test_minimal_mode_logs_nothing_even_for_a_failed_run(lines) -> None:
    drytorch.init_trackers('minimal')  # as the original's: the traceback tells
    experiment = kit.experiment()
    with pytest.raises(ValueError), experiment.create_run('broken'):
        raise ValueError('bad batch')
    assert lines() == []


@pytest.mark.parametrize(
    ('value', 'text'),
    [
        (0.95123456, '0.95123'),
        (2.302585, '2.3026'),
        (0.0030081, '0.0030081'),
        (12345.678, '12346'),
        (3.2e-07, '3.2e-07'),
        (1.5e9, '1.5e+09'),
    ],
)
def test_metrics_read_without_an_exponent_when_short(value: float, text: str) -> None:
    assert format_metric(value) == text
