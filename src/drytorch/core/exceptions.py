"""Errors and warnings raised by DRYTorch.

Every error says what went wrong and how to fix it. All derive from
``DryTorchError`` so callers can catch the library's errors in one clause.

The names of the original DRYTorch (0.1.0rc7) are here too, so that code
written for it imports and catches them unchanged: where we have a class for
the same situation, the original's name is an alias of it
(``RunAlreadyRecordedError is RunAlreadyExistsError``) or a subclass of our
broader class (``ConvergenceError`` of ``TrainingError``), so that an
``except`` on either name catches what we raise. Each takes the original's
constructor arguments and formats its message from them.
"""

from __future__ import annotations

__all__ = [
    'AccessOutsideScopeError',
    'CannotStoreOutputWarning',
    'CheckpointError',
    'CheckpointNotInitializedError',
    'ComputedBeforeUpdatedError',
    'ComputedBeforeUpdatedWarning',
    'ComputedMetricsTypeError',
    'ConfigMismatchError',
    'ConfigNotImmutableError',
    'ConfigNotRecordableError',
    'ConvergenceError',
    'CorruptRecordError',
    'DatasetHasNoLengthError',
    'DeviceMismatchError',
    'DistributedDatasetNotDivisibleWarning',
    'DistributedError',
    'DistributedStorageWarning',
    'DryTorchError',
    'DryTorchWarning',
    'EpochNotFoundError',
    'ExperimentalFeatureWarning',
    'FailedOptionalImportWarning',
    'FuncNotApplicableError',
    'InvalidNameError',
    'LearningSchemaError',
    'LoaderError',
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
    'ObjectiveError',
    'ObjectiveSyncWarning',
    'OptimizerNotLoadedWarning',
    'PastEpochWarning',
    'PluginError',
    'PluginQueryWarning',
    'PluginStateError',
    'RecursionWarning',
    'RegistryError',
    'ResultNotAvailableError',
    'RunAlreadyActiveError',
    'RunAlreadyCompletedWarning',
    'RunAlreadyExistsError',
    'RunAlreadyRecordedError',
    'RunAlreadyRunningWarning',
    'RunInUseError',
    'RunNotFoundError',
    'RunNotRecordedError',
    'RunNotStartedWarning',
    'SeedMismatchError',
    'SettingsError',
    'SlowTrackerWarning',
    'TerminatedError',
    'TerminatedTrainingWarning',
    'TrackerAlreadyRegisteredError',
    'TrackerError',
    'TrackerExceptionWarning',
    'TrackerFailureWarning',
    'TrackerNotUsedError',
    'TrainingError',
    'UnknownSettingWarning',
    'UnsafePathError',
]


class DryTorchError(Exception):
    """Base class of every error raised by DRYTorch."""


class DryTorchWarning(UserWarning):
    """Base class of every warning issued by DRYTorch."""


class NoActiveExperimentError(DryTorchError):
    """Something that needs an active run was used while no run is on.

    ``what`` names what was asked for. The original's keyword forms,
    ``experiment_name=`` and ``experiment_class=``, name the experiment
    whose run is missing.
    """

    def __init__(
        self,
        what: str | None = None,
        experiment_class: type | None = None,
        *,
        experiment_name: str | None = None,
    ) -> None:
        if what is None:
            if experiment_class is not None:
                what = f'A run of {experiment_class.__name__}'
            elif experiment_name is not None:
                what = f'A run of experiment {experiment_name!r}'
            else:
                what = 'The configuration'
        super().__init__(
            f'{what} is only available while a run is active. '
            'Start one with `with experiment.create_run(): ...` '
            'or `experiment.create_run().start()`.'
        )


class AccessOutsideScopeError(DryTorchError):
    """The active run belongs to another experiment than the one asked for."""

    def __init__(self, asked: str | None = None, active: str | None = None) -> None:
        if asked is None or active is None:  # the original's form: no argument
            super().__init__(
                'This operation needs an active run of the experiment it belongs '
                'to; start one with `with experiment.create_run(): ...`.'
            )
            return
        super().__init__(
            f'{asked}.get_config() was called while a run of experiment '
            f'{active!r} is active. Call get_config() on that experiment class '
            '(or on drytorch.Experiment) instead.'
        )


class RunAlreadyActiveError(DryTorchError):
    """A run was started while another run is active in this process."""

    def __init__(self, active: str, new: str) -> None:
        self.active = active
        self.new = new
        super().__init__(
            f'Cannot start {new}: {active} is still active in this process. '
            'Only one run can be active at a time; call run.stop() on it first.'
        )


class RunAlreadyExistsError(DryTorchError):
    """An explicit run id is already recorded for the experiment."""

    def __init__(self, run_id: str, experiment: str) -> None:
        self.run_id = run_id
        self.experiment = experiment
        super().__init__(
            f'Run {run_id!r} already exists for experiment {experiment!r}. '
            'Pass resume=True to continue it, or choose another run_id.'
        )


class RunNotFoundError(DryTorchError):
    """No run with the requested id is recorded."""

    def __init__(self, run_id: str, experiment: str | None = None) -> None:
        self.run_id = run_id
        self.experiment = experiment
        where = f' for experiment {experiment!r}' if experiment is not None else ''
        super().__init__(
            f'No run {run_id!r} is recorded{where}. '
            'List the recorded runs with experiment.list_runs() or `drytorch runs`.'
        )


class RunInUseError(DryTorchError):
    """Another live process holds the run."""

    def __init__(self, run_id: str, holder: str) -> None:
        super().__init__(
            f'Run {run_id!r} is in use by {holder}. Wait for it to stop, '
            'or resume another run.'
        )


class ConfigMismatchError(DryTorchError):
    """A run was resumed with a configuration different from its recorded one."""

    def __init__(self, run_id: str, differences: list[str]) -> None:
        self.differences = differences
        lines = '\n'.join(f'  {line}' for line in differences)
        super().__init__(
            f'Cannot resume run {run_id!r}: the configuration differs from the '
            f'recorded one (recorded -> current):\n{lines}\n'
            'A changed configuration is a new experiment: start a new run instead.'
        )


class ConfigNotImmutableError(DryTorchError):
    """The experiment configuration can be changed after creation."""


class ConfigNotRecordableError(DryTorchError):
    """The configuration holds values the run registry cannot record faithfully."""


class InvalidNameError(DryTorchError, ValueError):
    """A run id, experiment or model name cannot be used safely."""


class CorruptRecordError(DryTorchError):
    """A run record on disk cannot be read. The file is left untouched."""

    def __init__(self, path: object, reason: str) -> None:
        self.path = path
        super().__init__(
            f'Run record {path} cannot be read ({reason}). It was left untouched; '
            'fix or move the file to use that run again.'
        )


class ModuleAlreadyRegisteredError(DryTorchError):
    """A module registered in one run was wrapped again in another run."""

    def __init__(self, module_name: str, owner: str, current: str) -> None:
        super().__init__(
            f'Module {module_name} is registered in {owner} and cannot be used in '
            f'{current}: runs must not share state. Build a fresh module, or release '
            'it first with drytorch.core.registering.unregister_model(model).'
        )


class ModuleNotRegisteredError(DryTorchError):
    """A model that does not belong to the active run was used in it.

    Takes a message, or the original's ``(model_name, exp_name, run_id)``.
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 3:
            model_name, exp_name, run_id = args
            args = (
                f'Model {model_name!r} is not registered in run {run_id!r} of '
                f'experiment {exp_name!r}; create the Model inside the run that '
                'uses it.',
            )
        super().__init__(*args)


class SeedMismatchError(DryTorchError):
    """A run was resumed with an explicit seed other than its recorded one."""

    def __init__(self, run_id: str, recorded: int, asked: int) -> None:
        self.recorded = recorded
        self.asked = asked
        super().__init__(
            f'Cannot resume run {run_id!r} with seed {asked}: it was created with '
            f'seed {recorded}, and a run keeps its seed. Resume it without a seed '
            '(its recorded one is used), or start a new run to use another seed.'
        )


class SettingsError(DryTorchError, ValueError):
    """A DRYTorch setting has an invalid value."""


class PluginError(DryTorchError):
    """A plugin could not be loaded or does not follow the hook contract."""


class PluginQueryWarning(DryTorchWarning):
    """A plugin raised while answering a query; its answer was skipped."""


class PluginStateError(DryTorchError):
    """A plugin's state cannot be saved: not TOML data, or the run is not live."""


class TrackerError(DryTorchError):
    """A tracker could not be subscribed or removed.

    Takes a message, or the original's ``(tracker, tracker_msg)``.
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 2:
            tracker, tracker_msg = args
            self.tracker = tracker
            name = getattr(tracker, 'name', None) or type(tracker).__name__
            args = (f'[{name}] {tracker_msg}',)
        super().__init__(*args)


class TrackerFailureWarning(DryTorchWarning):
    """A tracker raised inside a hook; it was unsubscribed and the run went on.

    Takes a message, or the original's ``(subscriber_name, error)``.
    """

    def __init__(self, *args: object) -> None:
        if len(args) == 2 and isinstance(args[1], BaseException):
            name, error = args
            args = (
                f'Tracker {name!r} raised {type(error).__name__}: {error}. '
                'It was skipped; the run goes on without it.',
            )
        super().__init__(*args)


class UnknownSettingWarning(DryTorchWarning):
    """A ``[tool.drytorch]`` key is not known to DRYTorch."""


class SlowTrackerWarning(DryTorchWarning):
    """One hook call of a tracker has been running longer than allowed."""


class RegistryError(DryTorchError, OSError):
    """The run registry cannot be read or written (a file, disk or permission issue).

    The message names the path and the fix; no record is left half-written.
    """


class UnsafePathError(DryTorchError, OSError):
    """A path from a record or an output folder would read or write outside.

    Raised for symbolic links planted where DRYTorch writes, and for names
    read from files that would leave their folder.
    """


class ObjectiveError(DryTorchError, ValueError):
    """A loss or metric was defined or used in a way that cannot work."""


class ComputedBeforeUpdatedError(ObjectiveError):
    """An objective was asked for its value before seeing any batch."""


class LearningSchemaError(DryTorchError, ValueError):
    """An optimizer, learning rate or parameter grouping cannot be built."""


class LoaderError(DryTorchError, ValueError):
    """A data loader cannot be built or split as asked."""


class TrainingError(DryTorchError):
    """Training cannot go on (a non-finite loss, a non-scalar loss, no batch)."""


class CheckpointError(DryTorchError):
    """A checkpoint cannot be saved, found or loaded."""


class DistributedError(DryTorchError):
    """The processes of a distributed run could not agree (rank 0 failed)."""


class TerminatedError(SystemExit):
    """A process of a distributed run received SIGTERM.

    ``torchrun`` sends it to every process when one of them fails; raised in
    the main thread, it stops the run, recorded ``failed``, instead of killing
    the process with the record left ``running``. A ``SystemExit``, so that
    ``except Exception`` in user code does not swallow it.
    """

    def __init__(self, signal_number: int) -> None:
        super().__init__(128 + signal_number)
        self.signal_number = signal_number

    def __str__(self) -> str:
        return (
            f'terminated by signal {self.signal_number} (torchrun stops every '
            'process of the job when one of them fails: see its log)'
        )


# The original DRYTorch's names. An alias where our class covers the same
# situation; a subclass of our broader class where it names a narrower one.

RunAlreadyRecordedError = RunAlreadyExistsError
"""The original's name of ``RunAlreadyExistsError``: ``(run_id, exp_name)``."""

RunNotRecordedError = RunNotFoundError
"""The original's name of ``RunNotFoundError``: ``(run_id)``."""

TrackerExceptionWarning = TrackerFailureWarning
"""The original's name of ``TrackerFailureWarning``: ``(subscriber_name, error)``."""

NestedScopeError = RunAlreadyActiveError
"""The original's name of ``RunAlreadyActiveError``: ``(current, new)``.

The original raised it for a run of another experiment; we raise it for any
second active run, so ``except NestedScopeError`` catches both.
"""


def _type_name(obj: object) -> str:
    return obj.__name__ if isinstance(obj, type) else type(obj).__name__


class TrackerAlreadyRegisteredError(TrackerError):
    """A tracker of the same name is already subscribed to the experiment."""

    def __init__(self, tracker_name: str, exp_name: str) -> None:
        self.tracker_name = tracker_name
        self.exp_name = exp_name
        super().__init__(
            f'Experiment {exp_name!r} already has a tracker named '
            f'{tracker_name!r}; remove it first or give the new one another name.'
        )


class TrackerNotUsedError(TrackerError):
    """``Tracker.get_current()`` found no such tracker in the active experiment."""

    def __init__(self, tracker_name: str, exp_name: str | None = None) -> None:
        self.tracker_name = tracker_name
        where = f'Experiment {exp_name!r}' if exp_name else 'The active experiment'
        super().__init__(
            f'{where} has no {tracker_name} tracker; subscribe one with '
            f'experiment.trackers.subscribe({tracker_name}()).'
        )


class NameAlreadyRegisteredError(DryTorchError, ValueError):
    """A name (of a model or runner) is already taken in the active run."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f'The name {name!r} is already taken in the active run; '
            'choose another name.'
        )


class CheckpointNotInitializedError(CheckpointError):
    """A checkpoint was used before a model was bound to it."""

    def __init__(self) -> None:
        super().__init__(
            'The checkpoint has no model bound to it; bind one with '
            'checkpoint.bind_model(model) before saving or loading.'
        )


class EpochNotFoundError(CheckpointError):
    """No checkpoint was saved at the requested epoch."""

    def __init__(self, epoch: int, checkpoint_directory: object) -> None:
        self.epoch = epoch
        self.checkpoint_directory = checkpoint_directory
        super().__init__(
            f'No checkpoint of epoch {epoch} in {checkpoint_directory}; load one '
            'of the saved epochs, or -1 for the last one.'
        )


class ModelNotFoundError(CheckpointError):
    """A checkpoint folder holds no saved model."""

    def __init__(self, checkpoint_directory: object) -> None:
        self.checkpoint_directory = checkpoint_directory
        super().__init__(
            f'No saved model in {checkpoint_directory}; save a checkpoint first '
            'or check the folder.'
        )


class ConvergenceError(TrainingError):
    """The loss became non-finite (NaN or infinite); training cannot go on."""

    def __init__(self, criterion: object, message: str | None = None) -> None:
        self.criterion = criterion
        super().__init__(
            message
            or f'The loss is {criterion}: training diverged. Lower the learning '
            'rate, clip the gradients or check the data for non-finite values.'
        )


class MetricNotFoundError(TrainingError):
    """A hook monitors a metric that its source does not compute."""

    def __init__(self, source_name: str, metric_name: str) -> None:
        self.source_name = source_name
        self.metric_name = metric_name
        super().__init__(
            f'{source_name} computes no metric named {metric_name!r}; monitor '
            'one of the metrics of its objective.'
        )


class ResultNotAvailableError(TrainingError):
    """A hook's result was read before the hook ran."""

    def __init__(self) -> None:
        super().__init__(
            "The hook's result is not available yet: it is set the first time "
            'the hook runs.'
        )


class ComputedMetricsTypeError(ObjectiveError, TypeError):
    """An objective's ``compute()`` returned neither a tensor nor a mapping."""

    def __init__(self, computed_metrics_type: object) -> None:
        self.computed_metrics_type = computed_metrics_type
        super().__init__(
            f'compute() returned a {_type_name(computed_metrics_type)}; it must '
            'return a tensor or a mapping of names to tensors.'
        )


class LossNotScalarError(ObjectiveError):
    """The loss (or a batched loss's mean) is not a scalar."""

    def __init__(self, size: object) -> None:
        self.size = size
        super().__init__(
            f'The loss has size {size}; it must be a scalar (reduce it, e.g. '
            'with .mean()).'
        )


class DeviceMismatchError(ObjectiveError):
    """A stateful metric lives on another device than the model's outputs."""

    def __init__(
        self, metric_name: str, metric_device: object, target_device: object
    ) -> None:
        self.metric_name = metric_name
        super().__init__(
            f'Metric {metric_name!r} is on {metric_device} but the outputs are '
            f'on {target_device}; move it with metric.to({str(target_device)!r}).'
        )


class DatasetHasNoLengthError(LoaderError):
    """A dataset without ``__len__`` was given where its length is needed."""

    def __init__(self) -> None:
        super().__init__(
            'The dataset has no __len__; give it one, or use an iterable '
            'dataset with a loader that does not need the length.'
        )


class MissingParamError(LearningSchemaError):
    """A per-module learning-rate mapping does not cover every parameter."""

    def __init__(self, module_names: object, lr_param_groups: object) -> None:
        self.module_names = module_names
        self.lr_param_groups = lr_param_groups
        super().__init__(
            f'The learning rates name {lr_param_groups}, which do not cover every '
            f'parameter of the modules {module_names}; add the missing modules.'
        )


class FuncNotApplicableError(DryTorchError, TypeError):
    """A function cannot be applied recursively to a value of this type."""

    def __init__(self, func_name: str, type_name: str) -> None:
        super().__init__(
            f'{func_name} cannot be applied to {type_name}: use tensors, or '
            'sequences, mappings or named tuples of them.'
        )


class NamedTupleOnlyError(DryTorchError, TypeError):
    """A tuple subclass that is not a named tuple cannot be rebuilt."""

    def __init__(self, tuple_type: object) -> None:
        super().__init__(
            f'{_type_name(tuple_type)} is a tuple subclass but not a named tuple, '
            'so it cannot be rebuilt after moving it; use a namedtuple or a tuple.'
        )


class ModelDeviceMismatchError(DistributedError):
    """Parameters and outputs of a model are on different device types."""

    def __init__(self) -> None:
        super().__init__(
            "The model's parameters and outputs are on different device types; "
            'keep the model and its outputs on the same device.'
        )


class ComputedBeforeUpdatedWarning(DryTorchWarning):
    """The original warned here; we raise ``ComputedBeforeUpdatedError``.

    Kept so that the original's filters and imports work. An empty
    ``compute()`` is a bug we report as an error.
    """

    def __init__(self, calculator: object = None) -> None:
        what = 'The objective' if calculator is None else _type_name(calculator)
        super().__init__(f'{what} was computed before any update; it has no value.')


class CannotStoreOutputWarning(DryTorchWarning):
    """An output could not be stored (``store_outputs=True``)."""

    def __init__(self, error: BaseException | str) -> None:
        self.error = error
        super().__init__(f'The outputs could not be stored: {error}')


class DistributedDatasetNotDivisibleWarning(DryTorchWarning):
    """A dataset's length is not divisible by the processes evaluating it."""

    def __init__(self, name: str, len_dataset: int, n_processes: int) -> None:
        super().__init__(
            f'{name}: {len_dataset} samples do not divide among {n_processes} '
            'processes; some samples are counted twice. Use a dataset length '
            'divisible by the world size for exact metrics.'
        )


class DistributedStorageWarning(DryTorchWarning):
    """Stored outputs could not be gathered across processes."""

    def __init__(self, error: BaseException | str) -> None:
        self.error = error
        super().__init__(f'The stored outputs could not be gathered: {error}')


class ExperimentalFeatureWarning(DryTorchWarning):
    """An experimental feature is used; its behaviour may change."""

    def __init__(self, feature: str) -> None:
        self.feature = feature
        super().__init__(f'{feature} is experimental and may change.')


class FailedOptionalImportWarning(DryTorchWarning):
    """An optional package is missing; what needs it was skipped."""

    def __init__(self, package_name: str) -> None:
        self.package_name = package_name
        super().__init__(
            f'The optional package {package_name!r} is not installed; what needs '
            f'it was skipped. Install it with `pip install {package_name}`.'
        )


class ModuleNotDistributedWarning(DryTorchWarning):
    """A distributed run uses a model not wrapped for data parallelism."""

    def __init__(self) -> None:
        super().__init__(
            'The run is distributed but the module is not wrapped in '
            'DistributedDataParallel; processes will not share gradients.'
        )


class NoPreviousRunsWarning(DryTorchWarning):
    """``resume=True`` found no recorded run; a new one was started."""

    def __init__(self) -> None:
        super().__init__('No previous run to resume: a new run was started.')


class NotExistingRunWarning(DryTorchWarning):
    """The run id to resume is not recorded; a new run was started."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f'Run {run_id!r} is not recorded: a new run was started.')


class ObjectiveSyncWarning(DryTorchWarning):
    """An objective cannot be synchronised across processes."""

    def __init__(self, issue: str, recommend: str) -> None:
        super().__init__(f'{issue}; {recommend}')


class OptimizerNotLoadedWarning(DryTorchWarning):
    """A checkpoint's optimizer state could not be loaded; it starts afresh."""

    def __init__(self, error: BaseException | str) -> None:
        self.error = error
        super().__init__(
            f'The optimizer state could not be loaded ({error}); the optimizer '
            'starts from a fresh state.'
        )


class PastEpochWarning(DryTorchWarning):
    """Training was asked to reach an epoch that has already passed."""

    def __init__(self, selected_epoch: int, current_epoch: int) -> None:
        self.selected_epoch = selected_epoch
        self.current_epoch = current_epoch
        super().__init__(
            f'Epoch {selected_epoch} has already passed (the model is at epoch '
            f'{current_epoch}); nothing was trained.'
        )


class RecursionWarning(DryTorchWarning):
    """Metadata extraction met an object that contains itself; it was cut."""

    def __init__(self) -> None:
        super().__init__(
            'An object refers to itself; its description was cut at the cycle.'
        )


class RunAlreadyCompletedWarning(DryTorchWarning):
    """A completed run was stopped again; nothing changed."""

    def __init__(self) -> None:
        super().__init__('The run is already completed; stopping it does nothing.')


class RunAlreadyRunningWarning(DryTorchWarning):
    """A running run was started again; nothing changed."""

    def __init__(self) -> None:
        super().__init__('The run is already running; starting it does nothing.')


class RunNotStartedWarning(DryTorchWarning):
    """A run that is not active was stopped; nothing changed."""

    def __init__(self) -> None:
        super().__init__('The run is not active; stopping it does nothing.')


class TerminatedTrainingWarning(DryTorchWarning):
    """Training was asked to go on after it was terminated; nothing ran."""

    def __init__(self) -> None:
        super().__init__(
            'Training was terminated (early stopping or terminate_training); '
            'no epoch was trained. Load an earlier checkpoint to train again.'
        )
