"""The seed of a run, and deterministic mode.

Every run has a seed: the one passed to ``create_run(seed=...)``, else the
``seed`` setting, else one drawn from the operating system's entropy. When the
run starts, and again whenever it is resumed, Python's ``random``, NumPy's
global generator (when NumPy is installed) and torch's generators, CUDA
included, are seeded from it, so the code that runs before a checkpoint is
loaded (building models, drawing a ``DataLoader``'s shuffling seed) is
repeatable. Resuming then restores the generators' exact states from the
checkpoint.

Deterministic mode makes torch refuse non-deterministic algorithms while the
run is active; the previous settings come back when it stops.
``CUBLAS_WORKSPACE_CONFIG`` is set as soon as a deterministic run is created,
before DRYTORCH looks up the accelerator, and stays set: cuBLAS reads it once
per process, so removing it later would restore nothing.

Nothing here imports torch or NumPy before a run starts.
"""

from __future__ import annotations

import dataclasses
import os
import random
import secrets
import sys
import warnings
from collections.abc import Mapping
from typing import Any, Literal

from drytorch.core import exceptions

__all__ = [
    'CUBLAS_WORKSPACE_CONFIG',
    'SEED_MAX',
    'DeterministicState',
    'RunSeed',
    'check_seed',
    'draw_seed',
    'enable_deterministic',
    'resolve',
    'restore_deterministic',
    'seed_everything',
    'set_cublas_config',
]

SEED_MAX = 2**32 - 1  # NumPy's legacy global generator takes 32-bit seeds
CUBLAS_WORKSPACE_CONFIG = ':4096:8'
_CUBLAS_VAR = 'CUBLAS_WORKSPACE_CONFIG'


def check_seed(value: object, what: str = 'seed') -> int:
    """Return ``value`` as a seed, or raise if it is not one.

    Raises:
        TypeError: ``value`` is not an integer (booleans are refused).
        ValueError: ``value`` is outside ``0 .. SEED_MAX``.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f'{what} must be an integer, got {value!r}.')
    if not 0 <= value <= SEED_MAX:
        raise ValueError(
            f'{what} must be between 0 and {SEED_MAX} (2**32 - 1, the range '
            f'NumPy accepts), got {value}.'
        )
    return int(value)


@dataclasses.dataclass(frozen=True, slots=True)
class RunSeed:
    """A run's seed and mode, and where the seed came from (for the record)."""

    seed: int
    source: Literal['argument', 'setting', 'drawn', 'recorded']
    deterministic: bool


def resolve(
    seed: int | None,
    deterministic: bool | None,
    *,
    setting_seed: int | None,
    setting_deterministic: bool | None,
    recorded: Mapping[str, Any] | None = None,
    run_id: str = '',
    record_path: Any = None,
) -> RunSeed:
    """Decide a run's seed and deterministic mode: the one place that does.

    A new run (``recorded`` is None) takes the argument, else the setting,
    else a drawn seed. A recorded run keeps its recorded seed: a different
    argument is refused, a different setting is warned about; a record older
    than seeds takes the new run's rule. Deterministic mode is the argument,
    else the setting, else (recorded runs) the recorded mode, else off.

    Raises:
        SeedMismatchError: ``seed`` is not the recorded seed.
        CorruptRecordError: the recorded seed is not an integer.
    """
    mode = deterministic if deterministic is not None else setting_deterministic
    if recorded is not None and mode is None:
        mode = recorded.get('deterministic') is True
    found = None if recorded is None else recorded.get('seed')
    if found is None:
        if seed is not None:
            return RunSeed(seed, 'argument', bool(mode))
        if setting_seed is not None:
            return RunSeed(setting_seed, 'setting', bool(mode))
        return RunSeed(draw_seed(), 'drawn', bool(mode))
    if isinstance(found, bool) or not isinstance(found, int):
        raise exceptions.CorruptRecordError(
            record_path, f'field seed has type {type(found).__name__}'
        )
    if seed is not None and seed != found:
        raise exceptions.SeedMismatchError(run_id, found, seed)
    if setting_seed is not None and setting_seed != found:
        warnings.warn(
            f'The seed setting ({setting_seed}) differs from the seed '
            f'run {run_id!r} was created with: it keeps {found}.',
            exceptions.DryTorchWarning,
            stacklevel=4,
        )
    return RunSeed(found, 'recorded', bool(mode))


def draw_seed() -> int:
    """Return a fresh seed from the operating system's entropy source.

    It does not touch any generator, so drawing it is not affected by, and
    does not affect, what the code seeded before.
    """
    return secrets.randbits(32)


def seed_everything(seed: int) -> None:
    """Seed ``random``, NumPy's global generator (if installed) and torch.

    ``torch.manual_seed`` also seeds every CUDA device; on a device not yet
    initialised the seed is applied when it is, so this does not start CUDA.
    """
    random.seed(seed)
    numpy = _import_optional('numpy')
    if numpy is not None:
        numpy.random.seed(seed)
    torch = _import_optional('torch')
    if torch is not None:
        torch.manual_seed(seed)


@dataclasses.dataclass(frozen=True)
class DeterministicState:
    """Torch's determinism settings before a deterministic run changed them."""

    algorithms: bool
    warn_only: bool
    cudnn_deterministic: bool
    cudnn_benchmark: bool


def set_cublas_config() -> None:
    """Set ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless the variable is set.

    cuBLAS reads it when it first runs in the process: if CUDA is initialised
    already, and so may have run cuBLAS, a ``DryTorchWarning`` says so.
    """
    if _CUBLAS_VAR in os.environ:
        return
    os.environ[_CUBLAS_VAR] = CUBLAS_WORKSPACE_CONFIG
    torch = sys.modules.get('torch')
    if torch is not None and torch.cuda.is_initialized():
        warnings.warn(
            f'Deterministic mode set {_CUBLAS_VAR}={CUBLAS_WORKSPACE_CONFIG} '
            'after CUDA was initialised: cuBLAS work done before in this process '
            'may not follow it. Set the variable before launching Python, or '
            'create the run before any CUDA work.',
            exceptions.DryTorchWarning,
            stacklevel=4,
        )


def enable_deterministic() -> DeterministicState:
    """Make torch deterministic; return what ``restore_deterministic`` needs.

    Calls ``torch.use_deterministic_algorithms(True, warn_only=False)``, sets
    ``torch.backends.cudnn.deterministic = True`` and ``benchmark = False``,
    and ``set_cublas_config()``.
    """
    import torch

    set_cublas_config()
    state = DeterministicState(
        algorithms=torch.are_deterministic_algorithms_enabled(),
        warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
        cudnn_deterministic=bool(torch.backends.cudnn.deterministic),
        cudnn_benchmark=bool(torch.backends.cudnn.benchmark),
    )
    torch.use_deterministic_algorithms(True, warn_only=False)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    return state


def restore_deterministic(state: DeterministicState) -> None:
    """Put back the torch settings ``enable_deterministic`` found.

    ``CUBLAS_WORKSPACE_CONFIG`` stays: cuBLAS has read it already.
    """
    import torch

    torch.use_deterministic_algorithms(state.algorithms, warn_only=state.warn_only)
    torch.backends.cudnn.deterministic = state.cudnn_deterministic
    torch.backends.cudnn.benchmark = state.cudnn_benchmark


def _import_optional(name: str) -> Any:
    module = sys.modules.get(name)
    if module is not None:
        return module
    try:
        return __import__(name)
    except ImportError:
        return None
