"""The original DRYTorch's events, tracking, registering, protocols and module paths.

Written from ``shared/spec/original-api.md`` (sections ``core.log_events``,
``core.tracking``, ``core.registering``, ``core.experimenting`` and
``core.protocols``). The key row: a tracker written as in the original's
tutorials (a ``functools.singledispatchmethod`` ``notify`` annotated with
``log_events.Event`` and overloads for the registration events, each
calling ``super().notify(event)``) receives those events in a real run.
"""

from __future__ import annotations

import functools
import pathlib
import warnings
from typing import Any

import pytest
import torch

import drytorch
from drytorch import log_events as public_events
from drytorch.core import exceptions, log_events, protocols, registering, tracking
from drytorch.lib import gradient_ops
from tests import training_kit as kit

ORIGINAL_EVENTS = [
    'ActorRegistrationEvent',
    'EndEpochEvent',
    'EndTestEvent',
    'EndTrainingEvent',
    'Event',
    'IterateBatchEvent',
    'LearningRateEvent',
    'LoadModelEvent',
    'MetricEvent',
    'ModelRegistrationEvent',
    'SaveModelEvent',
    'StartEpochEvent',
    'StartExperimentEvent',
    'StartTestEvent',
    'StartTrainingEvent',
    'StopExperimentEvent',
    'TerminatedTrainingEvent',
]


@pytest.fixture(autouse=True)
def no_default_trackers(host: Any) -> None:
    """Only the trackers a test subscribes: the defaults are not under test."""
    drytorch.remove_all_default_trackers()


class TutorialTracker(drytorch.Tracker):
    """The tracker of the original's tutorial, written as it is there."""

    def __init__(self) -> None:
        super().__init__()
        self.models: list[Any] = []
        self.actors: list[Any] = []
        self.others: list[Any] = []

    @functools.singledispatchmethod
    def notify(self, event: log_events.Event) -> None:
        self.others.append(event)
        return super().notify(event)

    @notify.register
    def _(self, event: log_events.ModelRegistrationEvent) -> None:
        self.models.append(event)
        return super().notify(event)

    @notify.register
    def _(self, event: log_events.ActorRegistrationEvent) -> None:
        self.actors.append(event)
        return super().notify(event)


class CheckpointTracker(drytorch.Tracker):
    """Dispatches on the original's save and load events."""

    def __init__(self) -> None:
        super().__init__()
        self.saved: list[Any] = []
        self.loaded: list[Any] = []

    @functools.singledispatchmethod
    def notify(self, event: log_events.Event) -> None:
        return super().notify(event)

    @notify.register
    def _(self, event: log_events.SaveModelEvent) -> None:
        self.saved.append(event)

    @notify.register
    def _(self, event: log_events.LoadModelEvent) -> None:
        self.loaded.append(event)


def test_the_17_original_event_names_import() -> None:
    for name in ORIGINAL_EVENTS:
        assert name in log_events.__all__, name
        assert getattr(public_events, name) is getattr(log_events, name)


def test_every_event_derives_from_event() -> None:
    for name in log_events.__all__:
        value = getattr(log_events, name)
        if isinstance(value, type) and name.endswith('Event'):
            assert issubclass(value, log_events.Event), name


def test_events_stay_slotted() -> None:
    event = log_events.EpochEndEvent('m', 'Trainer', 1)
    assert not hasattr(event, '__dict__')
    with pytest.raises(AttributeError):
        event.epoch = 2  # type: ignore[misc]


def test_tutorial_tracker_receives_model_and_actor_registration() -> None:
    exp = kit.experiment()
    tracker = TutorialTracker()
    exp.trackers.subscribe(tracker)
    with exp.create_run(run_id='a'):
        model = kit.linear('net')
        trainer = kit.trainer(model)
        trainer.train(1)
    assert [event.model_name for event in tracker.models] == ['net']
    model_event = tracker.models[0]
    assert 'Linear' in model_event.architecture_repr
    assert model_event.model_ts.tzinfo is not None
    assert [event.actor_name for event in tracker.actors] == ['Trainer']
    actor_event = tracker.actors[0]
    assert actor_event.model_name == 'net'
    assert actor_event.metadata['model'] == 'net'  # the nested description
    assert actor_event.actor_ts >= model_event.model_ts
    assert actor_event.model_ts == model_event.model_ts
    # the catch-all got the rest, but no per-batch event (nothing per batch)
    kinds = {type(event) for event in tracker.others}
    assert log_events.StartExperimentEvent in kinds
    assert log_events.MetricEvent in kinds
    assert log_events.IterateBatchEvent not in kinds


def test_start_and_stop_experiment_events_have_the_original_fields() -> None:
    exp = drytorch.Experiment(None, name='fields', par_dir='.', tags=['t1'])
    tracker = TutorialTracker()
    exp.trackers.subscribe(tracker)
    with exp.create_run(run_id='a'):
        pass
    start = next(e for e in tracker.others if isinstance(e, log_events.RunStartEvent))
    assert isinstance(start, log_events.StartExperimentEvent)
    assert start.exp_name == 'fields'
    assert start.run_id == 'a'
    assert start.run_ts == start.timestamp
    assert start.resumed is False
    assert start.config is None
    assert list(start.tags) == ['t1']
    assert isinstance(start.par_dir, pathlib.Path)
    stop = next(e for e in tracker.others if isinstance(e, log_events.RunStopEvent))
    assert isinstance(stop, log_events.StopExperimentEvent)
    assert stop.exp_name == 'fields'


def test_training_events_are_the_original_classes() -> None:
    exp = kit.experiment()
    tracker = TutorialTracker()
    exp.trackers.subscribe(tracker)
    with exp.create_run(run_id='a'):
        trainer = kit.trainer(kit.linear('net'))
        trainer.train(1)
        trainer.terminate_training('enough')
    kinds = {type(event) for event in tracker.others}
    for name in (
        'StartTrainingEvent',
        'EndTrainingEvent',
        'StartEpochEvent',
        'EndEpochEvent',
        'MetricEvent',
        'TerminatedTrainingEvent',
    ):
        assert getattr(log_events, name) in kinds, name
    terminated = next(
        e for e in tracker.others if isinstance(e, log_events.TerminatedTrainingEvent)
    )
    assert (terminated.source_name, terminated.reason) == ('Trainer', 'enough')


def test_save_and_load_model_events_dispatch_apart() -> None:
    exp = kit.experiment()
    tracker = CheckpointTracker()
    exp.trackers.subscribe(tracker)
    with exp.create_run(run_id='a'):
        trainer = kit.trainer(kit.linear('net'))
        trainer.train(1)
        trainer.save_checkpoint()
        trainer.load_checkpoint()
    assert len(tracker.saved) == 1 and len(tracker.loaded) == 1
    saved, loaded = tracker.saved[0], tracker.loaded[0]
    assert isinstance(saved, log_events.CheckpointEvent) and saved.action == 'save'
    assert loaded.action == 'load'
    assert (saved.model_name, saved.epoch) == ('net', 1)
    assert saved.definition == 'checkpoint'
    assert saved.location == loaded.location


def test_checkpoint_event_keeps_its_class_for_a_deletion() -> None:
    deleted = log_events.CheckpointEvent('m', 1, 'delete', 'here')
    assert type(deleted) is log_events.CheckpointEvent
    saved = log_events.CheckpointEvent(
        model_name='m', epoch=1, action='save', location='here'
    )
    assert type(saved) is log_events.SaveModelEvent
    assert saved == log_events.SaveModelEvent('m', 1, 'save', 'here')


def test_renamed_fields_read_as_the_original() -> None:
    batch = log_events.IterateBatchEvent('Trainer', 1, 6, 8, dict)
    assert batch.n_iter == 6
    one = log_events.LearningRateEvent('m', 'Trainer', 1, (0.1,), 'epoch start')
    assert one.base_lr == 0.1
    two = log_events.LearningRateEvent('m', 'Trainer', 1, (0.1, 0.2), 'hook')
    assert two.base_lr == (0.1, 0.2)


def test_set_auto_publish_sends_every_event_to_func() -> None:
    received: list[Any] = []
    log_events.Event.set_auto_publish(received.append)
    try:
        with kit.experiment().create_run(run_id='a'):
            kit.trainer(kit.linear('net')).train(1)
    finally:
        log_events.Event.set_auto_publish(None)
    kinds = {type(event) for event in received}
    assert log_events.StartExperimentEvent in kinds
    assert log_events.ModelRegistrationEvent in kinds
    assert log_events.IterateBatchEvent not in kinds
    count = len(received)
    with kit.experiment().create_run(run_id='b'):
        pass
    assert len(received) == count  # None stopped it


# -- core.tracking -------------------------------------------------------------


def test_get_current_raises_tracker_not_used_error() -> None:
    with (
        kit.experiment().create_run(run_id='a'),
        pytest.raises(exceptions.TrackerNotUsedError, match='TutorialTracker'),
    ):
        TutorialTracker.get_current()


def test_clean_up_runs_after_each_run_stops() -> None:
    class Cleaning(TutorialTracker):
        def __init__(self) -> None:
            super().__init__()
            self.cleaned: list[int] = []

        def clean_up(self) -> None:
            stops = [e for e in self.others if isinstance(e, log_events.RunStopEvent)]
            self.cleaned.append(len(stops))  # after the stop event

    class HookCleaning(drytorch.Tracker):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[str] = []

        @drytorch.hookimpl
        def on_run_stop(self, event: Any) -> None:
            self.calls.append('stop')

        def clean_up(self) -> None:
            self.calls.append('clean_up')

    exp = kit.experiment()
    cleaning, hooked = Cleaning(), HookCleaning()
    exp.trackers.subscribe(cleaning, hooked)
    for run_id in ('a', 'b'):
        with exp.create_run(run_id=run_id):
            assert hooked.calls.count('clean_up') == (run_id == 'b')
    assert cleaning.cleaned == [1, 2]
    assert hooked.calls == ['stop', 'clean_up', 'stop', 'clean_up']


def test_event_dispatcher_subscribes_publishes_and_removes() -> None:
    dispatcher = tracking.EventDispatcher('exp')
    first, second = TutorialTracker(), TutorialTracker()
    dispatcher.subscribe(first, other=second)
    assert dispatcher.names == ['TutorialTracker', 'other']
    event = log_events.ModelRegistrationEvent('net', 'exp', 'r', 'Linear()', 3)
    dispatcher.publish(event)
    assert first.models == [event] and second.models == [event]
    dispatcher.remove('other')
    assert dispatcher.names == ['TutorialTracker']
    dispatcher.remove_all()
    assert len(dispatcher) == 0


def test_event_dispatcher_calls_hook_methods() -> None:
    class Hooked(drytorch.Tracker):
        def __init__(self) -> None:
            super().__init__()
            self.runs: list[Any] = []

        @drytorch.hookimpl
        def on_epoch_end(self, event: Any, run: Any) -> None:
            self.runs.append((event, run))

    dispatcher = tracking.EventDispatcher('exp')
    hooked = Hooked()
    dispatcher.subscribe(hooked)
    event = log_events.EndEpochEvent('m', 'Trainer', 2)
    dispatcher.publish(event)
    dispatcher.publish(log_events.StartEpochEvent('m', 'Trainer', 3, 4))  # no hook
    assert hooked.runs == [(event, None)]


def test_event_dispatcher_duplicate_name_raises() -> None:
    dispatcher = tracking.EventDispatcher('exp')
    dispatcher.subscribe(TutorialTracker())
    with pytest.raises(exceptions.TrackerAlreadyRegisteredError, match="'exp'"):
        dispatcher.subscribe(TutorialTracker())


def test_event_dispatcher_skips_a_raising_tracker_with_a_warning() -> None:
    class Broken(drytorch.Tracker):
        @functools.singledispatchmethod
        def notify(self, event: log_events.Event) -> None:
            raise ValueError('cannot handle')

    dispatcher = tracking.EventDispatcher('exp')
    good = TutorialTracker()
    dispatcher.subscribe(Broken(), good)
    event = log_events.ModelRegistrationEvent('net', 'exp', 'r', 'Linear()', 3)
    with pytest.warns(exceptions.TrackerExceptionWarning, match='cannot handle'):
        dispatcher.publish(event)
    assert good.models == [event]
    assert 'Broken' in dispatcher  # skipped, not removed


def test_experiment_trackers_subscribe_by_keyword() -> None:
    exp = kit.experiment()
    tracker = TutorialTracker()
    exp.trackers.subscribe(mine=tracker)
    assert exp.trackers.get('mine') is tracker
    with exp.create_run(run_id='a'):
        kit.linear('net')
    assert [event.model_name for event in tracker.models] == ['net']


def test_default_trackers_is_a_live_view() -> None:
    drytorch.remove_all_default_trackers()
    assert dict(tracking.DEFAULT_TRACKERS) == {}
    tracker = TutorialTracker()
    drytorch.extend_default_trackers([tracker])
    assert tracking.DEFAULT_TRACKERS['TutorialTracker'] is tracker
    assert list(tracking.DEFAULT_TRACKERS) == ['TutorialTracker']
    with pytest.raises(TypeError):
        tracking.DEFAULT_TRACKERS['x'] = tracker  # type: ignore[index]


def test_metadata_manager_extracts_nested_metadata() -> None:
    manager = tracking.MetadataManager()
    with kit.experiment().create_run(run_id='a'):
        trainer = kit.trainer(kit.linear('net'))
        metadata = manager.extract_metadata({'trainer': trainer, 'lr': [0.1, 0.2]})
    assert metadata['lr'] == [0.1, 0.2]
    assert metadata['trainer']['model'] == 'net'
    loop: list[Any] = [1]
    loop.append(loop)
    with pytest.warns(exceptions.RecursionWarning):
        assert manager.extract_metadata(loop) == [1, '...']


# -- core.registering ----------------------------------------------------------


def test_register_model_with_one_argument() -> None:
    with kit.experiment().create_run(run_id='a') as run:
        model = kit.linear('net')
        registering.unregister_model(model)
        assert model.module not in registering.ALL_MODULES
        assert registering.register_model(model) == 'net'
        assert registering.ALL_MODULES[model.module].run_id == run.id
        with pytest.raises(exceptions.ModuleAlreadyRegisteredError):
            registering.register_model(model)


def test_register_actor_checks_and_announces() -> None:
    exp = kit.experiment()
    tracker = TutorialTracker()
    exp.trackers.subscribe(tracker)
    with exp.create_run(run_id='a'):
        model = kit.linear('net')
        trainer = kit.trainer(model)
        registering.register_actor(trainer, model)
        assert registering.ALL_ACTORS[trainer] is model
        trainer.train(1)  # not announced a second time
        registering.unregister_actor(trainer)
        assert trainer not in registering.ALL_ACTORS
    assert [event.actor_name for event in tracker.actors] == ['Trainer']
    with (
        kit.experiment('other').create_run(run_id='b'),
        pytest.raises(exceptions.ModuleNotRegisteredError),
    ):
        registering.register_actor(trainer, model)


def test_all_modules_is_read_only() -> None:
    with pytest.raises(TypeError):
        registering.ALL_MODULES['x'] = None  # type: ignore[index]


# -- core.experimenting --------------------------------------------------------


def test_experimenting_module_path() -> None:
    from drytorch.core import experiment, experimenting

    assert experimenting.Experiment is experiment.Experiment is drytorch.Experiment
    assert experimenting.Run is drytorch.Run
    assert experimenting.__all__ == ['Experiment', 'Run']


# -- core.protocols ------------------------------------------------------------


def test_protocols_all() -> None:
    assert len(protocols.__all__) == 14
    for name in protocols.__all__:
        assert hasattr(protocols, name)


def test_objective_and_loss_protocols() -> None:
    metric = drytorch.Metric(kit.mse_fn, 'MSE')
    loss = kit.mse()
    assert isinstance(metric, protocols.ObjectiveProtocol)
    assert not isinstance(metric, protocols.LossProtocol)
    assert isinstance(loss, protocols.ObjectiveProtocol)
    assert isinstance(loss, protocols.LossProtocol)
    assert not isinstance(object(), protocols.ObjectiveProtocol)


def test_torchmetrics_metric_satisfies_objective_and_loss_protocols() -> None:
    torchmetrics = pytest.importorskip('torchmetrics')
    metric = torchmetrics.MeanSquaredError()
    assert isinstance(metric, protocols.ObjectiveProtocol)
    assert isinstance(metric, protocols.LossProtocol)


def test_model_trainer_loader_learning_protocols() -> None:
    with kit.experiment().create_run(run_id='a'):
        model = kit.linear('net')
        trainer = kit.trainer(model)
        assert isinstance(model, protocols.ModelProtocol)
        assert isinstance(trainer, protocols.TrainerProtocol)
        assert isinstance(trainer, protocols.MonitorProtocol)
        assert isinstance(trainer.loader, protocols.LoaderProtocol)
        assert isinstance(trainer.learning_schema, protocols.LearningProtocol)
        assert isinstance(model.checkpoint, protocols.CheckpointProtocol)
    assert not isinstance(torch.nn.Linear(1, 1), protocols.ModelProtocol)


def test_gradient_op_and_scheduler_protocols() -> None:
    assert isinstance(gradient_ops.GradNormClipper(1.0), protocols.GradientOpProtocol)

    def halving(base_lr: float, epoch: int) -> float:
        return base_lr / 2**epoch

    assert isinstance(halving, protocols.SchedulerProtocol)


def test_type_aliases_describe_tensors() -> None:
    hints = {'Tensors', 'InputType', 'TargetType', 'OutputType'}
    assert hints <= set(protocols.__all__)
    assert torch.Tensor in protocols.Tensors.__args__


def test_no_warning_from_original_spellings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        _ = (
            log_events.ModelRegistrationEvent,
            tracking.EventDispatcher('exp'),
            exceptions.RunAlreadyRecordedError,
        )
