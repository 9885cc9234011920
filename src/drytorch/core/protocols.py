"""Structural types of DRYTorch's parts (the original DRYTorch's protocols).

Type-hint with them, or check an object with ``isinstance``: every protocol
here is runtime-checkable, which checks that the members exist (not their
signatures). Our own classes satisfy them (``Objective`` and ``Loss``,
``Model``, ``Trainer``, ``DataLoader``, ``LearningSchema``, the gradient
operations), and so do third-party metrics: a ``torchmetrics.Metric`` is an
``ObjectiveProtocol`` and a ``LossProtocol``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, MutableSequence
from typing import Any, Protocol, TypeAlias, TypeVar, runtime_checkable

import torch

__all__ = [
    'CheckpointProtocol',
    'GradientOpProtocol',
    'InputType',
    'LearningProtocol',
    'LoaderProtocol',
    'LossProtocol',
    'ModelProtocol',
    'MonitorProtocol',
    'ObjectiveProtocol',
    'OutputType',
    'SchedulerProtocol',
    'TargetType',
    'Tensors',
    'TrainerProtocol',
]

Tensors: TypeAlias = torch.Tensor | MutableSequence[torch.Tensor]
"""A tensor, or a mutable sequence (a list) of tensors."""

InputType: TypeAlias = Tensors | tuple[Any, ...]
"""What a model takes: tensors, or a (named) tuple of them."""

TargetType: TypeAlias = Tensors | tuple[Any, ...]
"""What an objective compares outputs with: tensors, or a (named) tuple."""

OutputType: TypeAlias = Any
"""What a model returns: anything its objective understands."""

_Batch_co = TypeVar('_Batch_co', covariant=True)
_Input_contra = TypeVar('_Input_contra', contravariant=True)
_Output_co = TypeVar('_Output_co', covariant=True)
_Output_contra = TypeVar('_Output_contra', contravariant=True)
_Target_contra = TypeVar('_Target_contra', contravariant=True)


@runtime_checkable
class ObjectiveProtocol(Protocol[_Output_contra, _Target_contra]):
    """Accumulates a metric over batches: ``update``, ``compute``, ``reset``."""

    def update(self, outputs: _Output_contra, targets: _Target_contra, /) -> Any:
        """Accumulate the values of one batch."""
        ...

    def compute(self) -> Mapping[str, torch.Tensor] | torch.Tensor | None:
        """Return the values accumulated since the last reset."""
        ...

    def reset(self) -> Any:
        """Forget the accumulated values."""
        ...


@runtime_checkable
class LossProtocol(
    ObjectiveProtocol[_Output_contra, _Target_contra],
    Protocol[_Output_contra, _Target_contra],
):
    """An objective whose ``forward`` gives the scalar to minimise."""

    def forward(self, outputs: _Output_contra, targets: _Target_contra, /) -> Any:
        """Return the loss of one batch (a scalar tensor)."""
        ...


@runtime_checkable
class SchedulerProtocol(Protocol):
    """Gives the learning rate of an epoch from the base one."""

    def __call__(self, base_lr: float, epoch: int) -> float:
        """Return the learning rate at ``epoch``."""
        ...


@runtime_checkable
class GradientOpProtocol(Protocol):
    """Changes gradients in place before the optimizer step (clipping...)."""

    def __call__(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Apply the operation to the parameters' gradients."""
        ...


@runtime_checkable
class LearningProtocol(Protocol):
    """How a model learns: optimizer, learning rate, schedule, gradient op."""

    optimizer_cls: Any
    base_lr: Any
    scheduler: Any
    optimizer_defaults: Mapping[str, Any]
    gradient_op: Any


@runtime_checkable
class LoaderProtocol(Protocol[_Batch_co]):
    """A sized iterable of batches with its dataset and sampler."""

    batch_size: int | None
    dataset: Any
    sampler: Any

    def __iter__(self) -> Iterator[_Batch_co]:
        """Yield the batches of one epoch."""
        ...

    def __len__(self) -> int:
        """Return the number of batches in one epoch."""
        ...


@runtime_checkable
class CheckpointProtocol(Protocol):
    """Saves and loads the state of a model and its optimizer."""

    def bind_model(self, model: Any, /) -> None:
        """Bind the model whose state is stored."""
        ...

    def bind_module(self, name: str, module: torch.nn.Module, /) -> None:
        """Bind another module stored with the model."""
        ...

    def bind_optimizer(self, optimizer: torch.optim.Optimizer, /) -> None:
        """Bind the optimizer whose state is stored."""
        ...

    def save(self) -> Any:
        """Store the current state."""
        ...

    def load(self, epoch: int = -1) -> Any:
        """Restore the state of ``epoch`` (-1: the last one saved)."""
        ...


@runtime_checkable
class ModelProtocol(Protocol[_Input_contra, _Output_co]):
    """A named module with a device and an epoch count."""

    device: torch.device
    module: torch.nn.Module
    name: str
    epoch: int
    checkpoint: Any
    mixed_precision: bool

    def __call__(self, inputs: _Input_contra, /) -> _Output_co:
        """Return the module's outputs."""
        ...

    def increment_epoch(self) -> None:
        """Count one more epoch of training."""
        ...

    def post_batch_update(self) -> None:
        """Update what follows the weights after each batch (averages)."""
        ...

    def post_epoch_update(self) -> None:
        """Update what follows the weights after each epoch."""
        ...


@runtime_checkable
class MonitorProtocol(Protocol):
    """Something that measures a model: its model, name and last metrics."""

    model: Any
    name: str

    @property
    def computed_metrics(self) -> Mapping[str, Any]:
        """The metrics of the last pass."""
        ...


@runtime_checkable
class TrainerProtocol(MonitorProtocol, Protocol):
    """Trains a model: the members of ``drytorch.Trainer`` that others use."""

    @property
    def learning_schema(self) -> Any:
        """How the model learns."""
        ...

    objective: Any
    validation: Any

    @property
    def terminated(self) -> bool:
        """Whether training was terminated."""
        ...

    def train(self, n_epochs: int, /) -> None:
        """Train for ``n_epochs`` epochs."""
        ...

    def terminate_training(self, reason: str, /) -> None:
        """Stop training at the end of the epoch."""
        ...

    def save_checkpoint(self) -> Any:
        """Store the model and optimizer state."""
        ...

    def load_checkpoint(self, epoch: int = -1) -> Any:
        """Restore the state of ``epoch``."""
        ...

    def update_learning_rate(self, base_lr: Any = None, scheduler: Any = None) -> Any:
        """Change the learning rate or its schedule."""
        ...
