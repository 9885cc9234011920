"""The original DRYTorch's ``core.exceptions`` names: importable, catchable, readable.

Written from ``shared/spec/original-api.md`` (``core.exceptions``): every one
of the original's 45 names imports from ``drytorch.core.exceptions`` and
``drytorch.exceptions``; an original name for a situation we already raise in
is an alias or subclass of our class, so ``except`` on it catches ours; each
takes the original's constructor arguments and formats its message from them.
"""

from __future__ import annotations

from typing import Any

import pytest

import drytorch
import drytorch.exceptions as public
from drytorch.core import exceptions
from drytorch.core.exceptions import DryTorchError, DryTorchWarning
from tests import training_kit as kit

ORIGINAL_ALL = [
    'AccessOutsideScopeError',
    'CannotStoreOutputWarning',
    'CheckpointNotInitializedError',
    'ComputedBeforeUpdatedWarning',
    'ComputedMetricsTypeError',
    'ConvergenceError',
    'DatasetHasNoLengthError',
    'DeviceMismatchError',
    'DistributedDatasetNotDivisibleWarning',
    'DistributedStorageWarning',
    'DryTorchError',
    'DryTorchWarning',
    'EpochNotFoundError',
    'ExperimentalFeatureWarning',
    'FailedOptionalImportWarning',
    'FuncNotApplicableError',
    'LossNotScalarError',
    'MetricNotFoundError',
    'MissingParamError',
    'ModelDeviceMismatchError',
    'ModelNotFoundError',
    'ModuleAlreadyRegisteredError',
    'ModuleNotDistributedWarning',
    'ModuleNotRegisteredError',
    'NameAlreadyRegisteredError',
    'NamedTupleOnlyError',
    'NestedScopeError',
    'NoActiveExperimentError',
    'NoPreviousRunsWarning',
    'NotExistingRunWarning',
    'ObjectiveSyncWarning',
    'OptimizerNotLoadedWarning',
    'PastEpochWarning',
    'RecursionWarning',
    'ResultNotAvailableError',
    'RunAlreadyCompletedWarning',
    'RunAlreadyRecordedError',
    'RunAlreadyRunningWarning',
    'RunNotRecordedError',
    'RunNotStartedWarning',
    'TerminatedTrainingWarning',
    'TrackerAlreadyRegisteredError',
    'TrackerError',
    'TrackerExceptionWarning',
    'TrackerNotUsedError',
]

# each original name with the original's constructor arguments, and words its
# message must contain
ORIGINAL_ARGS: dict[str, tuple[tuple[Any, ...], tuple[str, ...]]] = {
    'AccessOutsideScopeError': ((), ('active run',)),
    'CannotStoreOutputWarning': ((ValueError('boom'),), ('boom',)),
    'CheckpointNotInitializedError': ((), ('bind_model',)),
    'ComputedBeforeUpdatedWarning': ((object(),), ('object', 'before')),
    'ComputedMetricsTypeError': ((list,), ('list', 'tensor')),
    'ConvergenceError': ((float('nan'),), ('nan',)),
    'DatasetHasNoLengthError': ((), ('__len__',)),
    'DeviceMismatchError': (('acc', 'cpu', 'cuda:0'), ('acc', 'cpu', 'cuda:0')),
    'DistributedDatasetNotDivisibleWarning': (('val', 10, 3), ('val', '10', '3')),
    'DistributedStorageWarning': ((RuntimeError('gather'),), ('gather',)),
    'DryTorchError': (('plain',), ('plain',)),
    'DryTorchWarning': (('plain',), ('plain',)),
    'EpochNotFoundError': ((7, '/ckpt'), ('7', '/ckpt')),
    'ExperimentalFeatureWarning': (('distributed runs',), ('distributed runs',)),
    'FailedOptionalImportWarning': (('tqdm',), ('tqdm', 'pip install')),
    'FuncNotApplicableError': (('to_device', 'set'), ('to_device', 'set')),
    'LossNotScalarError': (((2, 3),), ('(2, 3)', 'scalar')),
    'MetricNotFoundError': (('Validation', 'Accuracy'), ('Validation', 'Accuracy')),
    'MissingParamError': ((['enc', 'dec'], ['enc']), ("['enc', 'dec']",)),
    'ModelDeviceMismatchError': ((), ('device',)),
    'ModelNotFoundError': (('/ckpt',), ('/ckpt',)),
    'ModuleAlreadyRegisteredError': (('net', 'exp', 'r1'), ('net', 'exp', 'r1')),
    'ModuleNotDistributedWarning': ((), ('DistributedDataParallel',)),
    'ModuleNotRegisteredError': (('net', 'exp', 'r1'), ('net', 'exp', 'r1')),
    'NameAlreadyRegisteredError': (('Trainer',), ('Trainer', 'taken')),
    'NamedTupleOnlyError': ((tuple,), ('tuple', 'named tuple')),
    'NestedScopeError': (('exp_a', 'exp_b'), ('exp_a', 'exp_b')),
    'NoActiveExperimentError': ((), ('active',)),
    'NoPreviousRunsWarning': ((), ('new run',)),
    'NotExistingRunWarning': (('r9',), ('r9',)),
    'ObjectiveSyncWarning': (('not syncable', 'use sums'), ('not syncable', 'sums')),
    'OptimizerNotLoadedWarning': ((KeyError('state'),), ('state',)),
    'PastEpochWarning': ((3, 5), ('3', '5')),
    'RecursionWarning': ((), ('itself',)),
    'ResultNotAvailableError': ((), ('not available',)),
    'RunAlreadyCompletedWarning': ((), ('completed',)),
    'RunAlreadyRecordedError': (('r1', 'exp'), ('r1', 'exp', 'resume=True')),
    'RunAlreadyRunningWarning': ((), ('running',)),
    'RunNotRecordedError': (('r1',), ('r1',)),
    'RunNotStartedWarning': ((), ('not active',)),
    'TerminatedTrainingWarning': ((), ('terminated',)),
    'TrackerAlreadyRegisteredError': (('csv', 'exp'), ('csv', 'exp')),
    'TrackerError': ((drytorch.Tracker('mine'), 'misused'), ('[mine] misused',)),
    'TrackerExceptionWarning': (('csv', OSError('disk full')), ('csv', 'disk full')),
    'TrackerNotUsedError': (('CSVDumper',), ('CSVDumper',)),
}


@pytest.fixture(autouse=True)
def no_default_trackers(host: Any) -> None:
    """Only the trackers a test subscribes: the defaults are not under test."""
    drytorch.remove_all_default_trackers()


def test_all_45_original_names_import_from_both_paths() -> None:
    assert len(ORIGINAL_ALL) == 45
    for name in ORIGINAL_ALL:
        assert name in exceptions.__all__, name
        assert getattr(public, name) is getattr(exceptions, name)
    assert set(ORIGINAL_ALL) <= set(public.__all__)


def test_our_names_stay_in_all() -> None:
    for name in ('RunAlreadyExistsError', 'RunNotFoundError', 'TrackerFailureWarning'):
        assert name in exceptions.__all__


@pytest.mark.parametrize('name', ORIGINAL_ALL)
def test_original_constructor_formats_message(name: str) -> None:
    cls = getattr(exceptions, name)
    args, words = ORIGINAL_ARGS[name]
    error = cls(*args)
    assert isinstance(error, DryTorchError | DryTorchWarning)
    for word in words:
        assert word in str(error), (name, str(error))


@pytest.mark.parametrize('name', ORIGINAL_ALL)
def test_errors_and_warnings_derive_from_the_bases(name: str) -> None:
    cls = getattr(exceptions, name)
    if name.endswith('Warning'):
        assert issubclass(cls, DryTorchWarning) and issubclass(cls, UserWarning)
    else:
        assert issubclass(cls, DryTorchError) and issubclass(cls, Exception)


@pytest.mark.parametrize(
    ('original', 'ours'),
    [
        ('RunAlreadyRecordedError', 'RunAlreadyExistsError'),
        ('RunNotRecordedError', 'RunNotFoundError'),
        ('TrackerExceptionWarning', 'TrackerFailureWarning'),
        ('NestedScopeError', 'RunAlreadyActiveError'),
    ],
)
def test_aliases_are_our_classes(original: str, ours: str) -> None:
    assert getattr(exceptions, original) is getattr(exceptions, ours)


@pytest.mark.parametrize(
    ('original', 'ours'),
    [
        ('ConvergenceError', 'TrainingError'),
        ('MetricNotFoundError', 'TrainingError'),
        ('ResultNotAvailableError', 'TrainingError'),
        ('EpochNotFoundError', 'CheckpointError'),
        ('ModelNotFoundError', 'CheckpointError'),
        ('CheckpointNotInitializedError', 'CheckpointError'),
        ('DatasetHasNoLengthError', 'LoaderError'),
        ('MissingParamError', 'LearningSchemaError'),
        ('ComputedMetricsTypeError', 'ObjectiveError'),
        ('LossNotScalarError', 'ObjectiveError'),
        ('DeviceMismatchError', 'ObjectiveError'),
        ('TrackerAlreadyRegisteredError', 'TrackerError'),
        ('TrackerNotUsedError', 'TrackerError'),
        ('ModelDeviceMismatchError', 'DistributedError'),
    ],
)
def test_narrow_original_errors_are_caught_by_our_broad_ones(
    original: str, ours: str
) -> None:
    assert issubclass(getattr(exceptions, original), getattr(exceptions, ours))


def test_our_constructors_still_work() -> None:
    assert 'exp' in str(exceptions.RunNotFoundError('r1', 'exp'))
    assert 'Model.get_config()' in str(exceptions.AccessOutsideScopeError('Model', 'a'))
    assert 'custom text' in str(exceptions.TrackerError('custom text'))
    assert 'custom' in str(exceptions.ModuleNotRegisteredError('custom'))
    assert 'get_config' in str(exceptions.NoActiveExperimentError('get_config'))
    by_class = exceptions.NoActiveExperimentError(experiment_class=drytorch.Experiment)
    assert 'Experiment' in str(by_class)
    assert 'one' in str(exceptions.NoActiveExperimentError(experiment_name='one'))


def test_run_already_recorded_error_caught_when_id_reused() -> None:
    exp = kit.experiment()
    with exp.create_run(run_id='a'):
        pass
    with pytest.raises(exceptions.RunAlreadyRecordedError, match="'a'"):
        exp.create_run(run_id='a')


def test_run_not_recorded_error_caught_for_unknown_run() -> None:
    exp = kit.experiment()
    with pytest.raises(exceptions.RunNotRecordedError, match="'ghost'"):
        exp.tag_run('ghost', 'x')


def test_nested_scope_error_caught_for_a_second_experiments_run() -> None:
    with kit.experiment('one').create_run(run_id='a'):
        other = kit.experiment('two').create_run(run_id='b')
        with pytest.raises(exceptions.NestedScopeError, match='still active'):
            other.start()


def test_no_active_experiment_error_outside_a_run() -> None:
    with pytest.raises(exceptions.NoActiveExperimentError):
        kit.linear()


def test_tracker_already_registered_error_on_duplicate_name() -> None:
    exp = kit.experiment()
    exp.trackers.subscribe(drytorch.Tracker('mine'))
    with pytest.raises(exceptions.TrackerAlreadyRegisteredError, match="'mine'"):
        exp.trackers.subscribe(drytorch.Tracker('mine'))


def test_tracker_exception_warning_when_a_tracker_raises() -> None:
    class Broken(drytorch.Tracker):
        @drytorch.hookimpl
        def on_model_register(self, event: Any) -> None:
            raise RuntimeError('tracker bug')

    exp = kit.experiment()
    exp.trackers.subscribe(Broken())
    with (
        exp.create_run(run_id='a'),
        pytest.warns(exceptions.TrackerExceptionWarning, match='tracker bug'),
    ):
        kit.linear()
    assert 'Broken' not in exp.trackers
