"""Trackers: per-experiment registries, fault isolation, defaults, HookRecorder."""

from __future__ import annotations

import re
from typing import Any

import pytest
import torch

import drytorch
from drytorch import Experiment, Model, Tracker
from drytorch.core import log_events, plugins
from drytorch.core.exceptions import (
    NoActiveExperimentError,
    PluginError,
    SettingsError,
    TrackerError,
    TrackerFailureWarning,
)
from drytorch.testing import HookRecorder
from drytorch.trackers import logging as builtin_logging

RUN_LINE = re.compile(
    r'^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\] - Running experiment: (.+)\.$', re.M
)
EVENT_NAMES = {
    log_events.RunStartEvent: 'on_run_start',
    log_events.RunStopEvent: 'on_run_stop',
    log_events.ModelRegisterEvent: 'on_model_register',
    log_events.ModelUnregisterEvent: 'on_model_unregister',
}


class Recorder(Tracker):
    """Records the hook name of every event it receives."""

    def __init__(self, name: str | None = None) -> None:
        super().__init__(name)
        self.events: list[Any] = []

    def notify(self, event: object) -> None:
        self.events.append(event)

    def names(self) -> list[str]:
        return [EVENT_NAMES[type(event)] for event in self.events]


class Faulty(Recorder):
    """Raises in one hook (by default, every hook) after recording the event."""

    def __init__(self, fail_in: str | None = None) -> None:
        super().__init__()
        self.fail_in = fail_in

    def notify(self, event: object) -> None:
        super().notify(event)
        if self.fail_in in (None, EVENT_NAMES[type(event)]):
            raise ValueError('tracker broke')


def use_model() -> Model[Any, Any]:
    return Model(torch.nn.Linear(2, 2), device='cpu')


STANDARD = ['BuiltinLogger', 'TqdmLogger', 'TomlDumper', 'CSVDumper']


def run_lines(text: str) -> list[str]:
    return RUN_LINE.findall(text)


# 5. A tracker that raises never stops the run or the other trackers

ALL_EVENTS = ['on_run_start', 'on_model_register', 'on_run_stop']


@pytest.mark.parametrize('fail_in', ALL_EVENTS)
def test_failing_tracker_is_isolated(fail_in: str) -> None:
    exp = Experiment(None, name='faults')
    before, after = Recorder('before'), Recorder('after')
    faulty = Faulty(fail_in)
    exp.trackers.subscribe(before, faulty, after)
    with pytest.warns(TrackerFailureWarning) as caught, exp.create_run() as run:
        use_model()
    failures = [w for w in caught if w.category is TrackerFailureWarning]
    assert len(failures) == 1
    message = str(failures[0].message)
    assert 'Faulty' in message
    assert fail_in in message
    assert 'Faulty' not in exp.trackers
    assert exp.trackers.names == [*STANDARD, 'before', 'after']
    assert faulty.names() == ALL_EVENTS[: ALL_EVENTS.index(fail_in) + 1]
    assert before.names() == after.names() == ALL_EVENTS
    assert exp.registry.read(exp.key, run.id).status == 'completed'
    assert run.status == 'completed'


def test_failing_tracker_gets_no_events_of_later_runs() -> None:
    exp = Experiment(None, name='later')
    faulty, other = Faulty(), Recorder('other')
    exp.trackers.subscribe(faulty, other)
    with pytest.warns(TrackerFailureWarning) as caught:
        with exp.create_run('r1'):
            pass
        with exp.create_run('r2'):
            use_model()
    assert len([w for w in caught if w.category is TrackerFailureWarning]) == 1
    assert faulty.names() == ['on_run_start']
    assert other.names() == ['on_run_start', 'on_run_stop', *ALL_EVENTS]
    assert [r.status for r in exp.list_runs()] == ['completed', 'completed']


def test_failing_tracker_does_not_affect_other_experiments() -> None:
    broken = Experiment(None, name='broken')
    healthy = Experiment(None, name='healthy')
    broken.trackers.subscribe(Faulty())
    healthy.trackers.subscribe(Recorder('Faulty'))
    with pytest.warns(TrackerFailureWarning), broken.create_run():
        pass
    with healthy.create_run():
        pass
    assert 'Faulty' not in broken.trackers
    assert healthy.trackers.get('Faulty').names() == ['on_run_start', 'on_run_stop']


def test_failed_run_still_reaches_trackers() -> None:
    exp = Experiment(None, name='fails')
    faulty, other = Faulty('on_run_stop'), Recorder('other')
    exp.trackers.subscribe(faulty, other)
    failing = pytest.raises(KeyError)
    with pytest.warns(TrackerFailureWarning), failing, exp.create_run() as run:
        raise KeyError('user code')
    assert other.names() == ['on_run_start', 'on_run_stop']
    assert exp.registry.read(exp.key, run.id).status == 'failed'


# 6. Trackers are per experiment


def test_removing_builtin_logger_silences_one_experiment(capsys) -> None:
    quiet = Experiment(None, name='quiet')
    loud = Experiment(None, name='loud')
    quiet.trackers.remove('BuiltinLogger')
    with quiet.create_run():
        pass
    assert run_lines(capsys.readouterr().err) == []
    with loud.create_run():
        pass
    assert run_lines(capsys.readouterr().err) == ['loud']
    assert 'BuiltinLogger' in loud.trackers
    with Experiment(None, name='new').create_run():
        pass
    assert run_lines(capsys.readouterr().err) == ['new']


def test_run_line_format(capsys) -> None:
    with Experiment(None, name='formatted').create_run():
        pass
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if 'Running experiment' in line)
    assert RUN_LINE.fullmatch(line), line


def test_subscribe_duplicate_name_raises() -> None:
    exp = Experiment(None, name='dup')
    exp.trackers.subscribe(Recorder('mine'))
    with pytest.raises(TrackerError, match="'mine'"):
        exp.trackers.subscribe(Recorder('mine'))
    assert exp.trackers.names == [*STANDARD, 'mine']


def test_subscribed_tracker_replaces_the_default_of_its_name() -> None:
    exp = Experiment(None, name='mine')
    default = exp.trackers.get('BuiltinLogger')
    own = builtin_logging.BuiltinLogger()
    exp.trackers.subscribe(own)  # a default gives way
    assert exp.trackers.get('BuiltinLogger') is own is not default
    assert sorted(exp.trackers.names) == sorted(STANDARD)
    with pytest.raises(TrackerError, match="'BuiltinLogger'"):
        exp.trackers.subscribe(builtin_logging.BuiltinLogger())  # yours does not


def test_subscribe_tracker_without_name_raises() -> None:
    with pytest.raises(TrackerError, match='name'):
        Experiment(None, name='anon').trackers.subscribe(HookRecorder())


class Typo(Tracker):
    @drytorch.hookimpl
    def on_run_strat(self, event: object) -> None:
        pass


def test_tracker_breaking_the_contract_is_refused_on_subscribe() -> None:
    exp = Experiment(None, name='typo')
    with pytest.raises(PluginError, match="'on_run_strat'"):
        exp.trackers.subscribe(Typo())
    assert 'Typo' not in exp.trackers
    with exp.create_run('r1') as run:
        with pytest.raises(PluginError, match="'on_run_strat'"):
            exp.trackers.subscribe(Typo())
        assert 'Typo' not in exp.trackers
    with exp.create_run('r2'):
        pass
    assert [r.status for r in exp.list_runs()] == ['completed', 'completed']
    assert run.status == 'completed'


def test_remove_unknown_name_lists_names() -> None:
    exp = Experiment(None, name='unknown')
    exp.trackers.subscribe(Recorder('mine'))
    with pytest.raises(TrackerError) as caught:
        exp.trackers.remove('missing')
    for name in ('missing', 'BuiltinLogger', 'mine'):
        assert f"'{name}'" in str(caught.value)


def test_remove_all(capsys) -> None:
    exp = Experiment(None, name='bare')
    recorder = Recorder()
    exp.trackers.subscribe(recorder)
    exp.trackers.remove_all()
    assert len(exp.trackers) == 0
    assert exp.trackers.names == []
    with exp.create_run():
        pass
    assert recorder.events == []
    assert run_lines(capsys.readouterr().err) == []
    with pytest.raises(TrackerError, match='none'):
        exp.trackers.remove('BuiltinLogger')


def test_trackers_see_only_their_experiment() -> None:
    exp_a = Experiment(None, name='A')
    exp_b = Experiment(None, name='B')
    rec_a, rec_b = Recorder(), Recorder()
    exp_a.trackers.subscribe(rec_a)
    exp_b.trackers.subscribe(rec_b)
    with exp_b.create_run():
        use_model()
    assert rec_a.events == []
    assert rec_b.names() == ALL_EVENTS
    with exp_a.create_run():
        pass
    assert {event.experiment_name for event in rec_a.events} == {'A'}
    assert {event.experiment_name for event in rec_b.events} == {'B'}
    assert rec_a.names() == ['on_run_start', 'on_run_stop']


def test_subscribe_and_remove_during_a_run(host: plugins.PluginHost) -> None:
    exp = Experiment(None, name='live')
    late, leaving = Recorder('late'), Recorder('leaving')
    exp.trackers.subscribe(leaving)
    with exp.create_run('r1'):
        exp.trackers.subscribe(late)
        assert host.has_plugin('tracker:late')
        exp.trackers.remove('leaving')
        use_model()
    # a late tracker first sees the run start, then what follows
    assert late.names() == ['on_run_start', 'on_model_register', 'on_run_stop']
    assert late.events[0].run_id == 'r1'
    assert leaving.names() == ['on_run_start']
    assert not host.has_plugin('tracker:late')  # only while a run is on
    with exp.create_run('r2'):
        pass
    assert late.names()[-2:] == ['on_run_start', 'on_run_stop']
    assert leaving.names() == ['on_run_start']


def test_get_current() -> None:
    class Special(Recorder):
        pass

    exp = Experiment(None, name='current')
    special = Special()
    exp.trackers.subscribe(Recorder(), special)
    with pytest.raises(NoActiveExperimentError):
        Special.get_current()
    with exp.create_run():
        assert Special.get_current() is special
        assert Recorder.get_current() in list(exp.trackers)
        assert isinstance(
            builtin_logging.BuiltinLogger.get_current(), builtin_logging.BuiltinLogger
        )
    other = Experiment(None, name='without')
    with other.create_run(), pytest.raises(TrackerError, match='Special'):
        Special.get_current()


# Default trackers


def test_init_trackers_none(capsys) -> None:
    drytorch.init_trackers('none')
    exp = Experiment(None, name='silent')
    assert len(exp.trackers) == 0
    with exp.create_run():
        pass
    assert run_lines(capsys.readouterr().err) == []


@pytest.mark.parametrize(
    ('mode', 'level', 'names', 'lines'),
    [  # minimal prints no run line, as the original's minimal mode
        ('minimal', builtin_logging.QUIET, ['BuiltinLogger', 'TqdmLogger'], []),
        ('standard', builtin_logging.METRICS, STANDARD, ['standard']),
    ],
)
def test_init_trackers_logging_modes(
    mode: str, level: int, names: list[str], lines: list[str], capsys
) -> None:
    drytorch.init_trackers(mode)
    exp = Experiment(None, name=mode)
    assert exp.trackers.names == names
    assert exp.trackers.get('BuiltinLogger').level == level
    with exp.create_run():
        pass
    assert run_lines(capsys.readouterr().err) == lines


def test_init_trackers_unknown_mode() -> None:
    with pytest.raises(SettingsError, match='loud'):
        drytorch.init_trackers('loud')


def test_init_trackers_applies_to_new_experiments_only() -> None:
    before = Experiment(None, name='before')
    drytorch.init_trackers('none')
    assert before.trackers.names == STANDARD
    assert Experiment(None, name='after').trackers.names == []


def test_extend_default_trackers() -> None:
    old = Experiment(None, name='old')
    extra = Recorder('extra')
    drytorch.extend_default_trackers([extra])
    new = Experiment(None, name='new')
    assert new.trackers.names == [*STANDARD, 'extra']
    assert old.trackers.names == STANDARD
    with new.create_run():
        pass
    assert extra.names() == ['on_run_start', 'on_run_stop']
    with pytest.raises(TrackerError, match="'extra'"):
        drytorch.extend_default_trackers([Recorder('extra')])


def test_extend_default_trackers_replaces_the_mode_tracker_of_its_name(
    tmp_path,
) -> None:
    from drytorch.trackers.csv import CSVDumper

    own = CSVDumper(par_dir=tmp_path)
    drytorch.extend_default_trackers([own])
    exp = Experiment(None, name='own-csv')
    assert exp.trackers.get('CSVDumper') is own
    assert exp.trackers.names.count('CSVDumper') == 1
    with pytest.raises(TrackerError, match="'CSVDumper'"):
        drytorch.extend_default_trackers([CSVDumper()])


def test_remove_all_default_trackers() -> None:
    drytorch.remove_all_default_trackers()
    assert Experiment(None, name='nothing').trackers.names == []


# HookRecorder


def test_hook_recorder_records_run_in_order(host: plugins.PluginHost) -> None:
    recorder = HookRecorder()
    host.register(recorder, 'recorder')
    exp = Experiment(None, name='recorded', tags=['t'])
    with exp.create_run(run_id='r1') as run:
        model = use_model()
    assert recorder.names() == ['on_run_start', 'on_model_register', 'on_run_stop']
    (start,) = recorder.events('on_run_start')
    assert (start.run_id, start.experiment_name, start.resumed) == (
        'r1',
        'recorded',
        False,
    )
    assert start.tags == ('t',)
    assert start.record_path == run.record_path
    (registered,) = recorder.events('on_model_register')
    assert registered.model_name == model.name
    assert registered.run_id == 'r1'
    assert registered.n_parameters == 6
    (stop,) = recorder.events('on_run_stop')
    assert (stop.run_id, stop.status, stop.error) == ('r1', 'completed', None)


def test_hook_recorder_sees_resume(host: plugins.PluginHost) -> None:
    recorder = HookRecorder()
    host.register(recorder, 'recorder')
    with Experiment(None, name='resumable').create_run(run_id='r1'):
        pass
    again = Experiment(None, name='resumable')
    with again.create_run(run_id='r1', resume=True):
        pass
    with again.create_run(resume=True):  # the newest run
        pass
    starts = recorder.events('on_run_start')
    assert [(e.run_id, e.resumed) for e in starts] == [
        ('r1', False),
        ('r1', True),
        ('r1', True),
    ]


def test_hook_recorder_sees_failure(host: plugins.PluginHost) -> None:
    recorder = HookRecorder()
    host.register(recorder, 'recorder')
    exp = Experiment(None, name='failing')
    with pytest.raises(RuntimeError, match='boom'), exp.create_run(run_id='bad'):
        raise RuntimeError('boom')
    assert recorder.names() == ['on_run_start', 'on_run_stop']
    (stop,) = recorder.events('on_run_stop')
    assert stop.status == 'failed'
    assert stop.error is not None
    assert 'RuntimeError' in stop.error
    assert 'boom' in stop.error
    record = exp.registry.read(exp.key, 'bad')
    assert record.status == 'failed'
    assert 'boom' in record.data['error']


def test_only_trackers_that_handle_batches_are_called_per_batch(
    host: plugins.PluginHost,
) -> None:
    import functools

    from drytorch.core import log_events
    from tests import training_kit as kit

    class EpochsOnly(Tracker):
        @functools.singledispatchmethod
        def notify(self, event: object) -> None:
            pass

        @notify.register
        def _(self, event: log_events.MetricsEvent) -> None:
            pass

    class Batches(Tracker):
        batches = 0

        @functools.singledispatchmethod
        def notify(self, event: object) -> None:
            pass

        @notify.register
        def _(self, event: log_events.IterateBatchEvent) -> None:
            self.batches += 1

    exp = kit.experiment('batches')
    exp.trackers.remove_all()
    batches = Batches()
    exp.trackers.subscribe(EpochsOnly(), batches, Recorder('all'))
    with exp.create_run():
        kit.trainer(n=48, batch_size=8).train(1)
        assert sorted(host.implementers('on_batch_end')) == [
            'tracker:Batches',
            'tracker:all',
        ]
    assert batches.batches == 6


def test_notify_with_the_run_and_hook_methods_side_by_side() -> None:
    class Mixed(Tracker):
        def __init__(self) -> None:
            super().__init__()
            self.notified: list[tuple[str, str]] = []
            self.stops: list[str] = []

        @drytorch.hookimpl
        def on_run_stop(self, run: drytorch.RunView) -> None:
            self.stops.append(run.status)

        def notify(self, event: object, run: drytorch.RunView) -> None:
            self.notified.append((type(event).__name__, run.id))

    exp = Experiment(None, name='mixed', par_dir='.')
    exp.trackers.remove_all()
    mixed = Mixed()
    exp.trackers.subscribe(mixed)
    with exp.create_run(run_id='m'):
        Model(torch.nn.Linear(1, 1), device='cpu')
    # the hook method gets its event; notify everything else, never a batch
    assert mixed.stops == ['completed']
    assert mixed.notified == [('RunStartEvent', 'm'), ('ModelRegisterEvent', 'm')]
