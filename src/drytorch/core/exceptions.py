"""Errors and warnings raised by DRYTorch.

Every error says what went wrong and how to fix it. All derive from
``DryTorchError`` so callers can catch the library's errors in one clause.
"""

from __future__ import annotations

__all__ = [
    'AccessOutsideScopeError',
    'CheckpointError',
    'ComputedBeforeUpdatedError',
    'ConfigMismatchError',
    'ConfigNotImmutableError',
    'ConfigNotRecordableError',
    'CorruptRecordError',
    'DistributedError',
    'DryTorchError',
    'DryTorchWarning',
    'InvalidNameError',
    'LearningSchemaError',
    'LoaderError',
    'ModuleAlreadyRegisteredError',
    'ModuleNotRegisteredError',
    'NoActiveExperimentError',
    'ObjectiveError',
    'PluginError',
    'PluginQueryWarning',
    'PluginStateError',
    'RegistryError',
    'RunAlreadyActiveError',
    'RunAlreadyExistsError',
    'RunInUseError',
    'RunNotFoundError',
    'SeedMismatchError',
    'SettingsError',
    'SlowTrackerWarning',
    'TerminatedError',
    'TrackerError',
    'TrackerFailureWarning',
    'TrainingError',
    'UnknownSettingWarning',
    'UnsafePathError',
]


class DryTorchError(Exception):
    """Base class of every error raised by DRYTorch."""


class DryTorchWarning(UserWarning):
    """Base class of every warning issued by DRYTorch."""


class NoActiveExperimentError(DryTorchError):
    """Something that needs an active run was used while no run is on."""

    def __init__(self, what: str = 'The configuration') -> None:
        super().__init__(
            f'{what} is only available while a run is active. '
            'Start one with `with experiment.create_run(): ...` '
            'or `experiment.create_run().start()`.'
        )


class AccessOutsideScopeError(DryTorchError):
    """The active run belongs to another experiment than the one asked for."""

    def __init__(self, asked: str, active: str) -> None:
        super().__init__(
            f'{asked}.get_config() was called while a run of experiment '
            f'{active!r} is active. Call get_config() on that experiment class '
            '(or on drytorch.Experiment) instead.'
        )


class RunAlreadyActiveError(DryTorchError):
    """A run was started while another run is active in this process."""

    def __init__(self, active: str, new: str) -> None:
        super().__init__(
            f'Cannot start {new}: {active} is still active in this process. '
            'Only one run can be active at a time; call run.stop() on it first.'
        )


class RunAlreadyExistsError(DryTorchError):
    """An explicit run id is already recorded for the experiment."""

    def __init__(self, run_id: str, experiment: str) -> None:
        super().__init__(
            f'Run {run_id!r} already exists for experiment {experiment!r}. '
            'Pass resume=True to continue it, or choose another run_id.'
        )


class RunNotFoundError(DryTorchError):
    """No run with the requested id is recorded."""

    def __init__(self, run_id: str, experiment: str) -> None:
        super().__init__(
            f'No run {run_id!r} is recorded for experiment {experiment!r}. '
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
    """A model that does not belong to the active run was used in it."""


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


class SettingsError(DryTorchError):
    """A DRYTorch setting has an invalid value."""


class PluginError(DryTorchError):
    """A plugin could not be loaded or does not follow the hook contract."""


class PluginQueryWarning(DryTorchWarning):
    """A plugin raised while answering a query; its answer was skipped."""


class PluginStateError(DryTorchError):
    """A plugin's state cannot be saved: not TOML data, or the run is not live."""


class TrackerError(DryTorchError):
    """A tracker could not be subscribed or removed."""


class TrackerFailureWarning(DryTorchWarning):
    """A tracker raised inside a hook; it was unsubscribed and the run went on."""


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
