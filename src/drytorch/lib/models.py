"""``Model``: an ``nn.Module`` that belongs to one run."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import torch
from torch import nn

from drytorch.core import distributed, registering

__all__ = ['Model', 'default_device']

Input = TypeVar('Input', contravariant=True)
Output = TypeVar('Output', covariant=True)


def default_device() -> torch.device:
    """Return the accelerator when one is available, else the CPU.

    In a distributed run each process takes its node's accelerator of index
    ``LOCAL_RANK``.
    """
    accelerator = getattr(torch, 'accelerator', None)
    if accelerator is not None and accelerator.is_available():
        found = accelerator.current_accelerator()
        if found is not None:
            if distributed.current().size > 1:
                return torch.device(found.type, distributed.local_device_index())
            return torch.device(found)
    return torch.device('cpu')


class Model(Generic[Input, Output]):
    """Wraps an ``nn.Module`` and registers it in the active run.

    Args:
        module: the user's module; ``model.module`` is that same object.
        name: the model's name, made unique within the run (``Model``,
            ``Model_1``, ...); defaults to the class name.
        device: where to move the module; defaults to the accelerator when one
            is available, else the CPU.
        mixed_precision: run the forward pass under ``torch.autocast`` (float16
            on CUDA with gradient scaling in the trainer, bfloat16 elsewhere).
        should_distribute: in a distributed run, train through
            ``DistributedDataParallel``, which averages the gradients of the
            processes at every step. ``module`` stays the user's module, so
            checkpoints hold its plain state dict; evaluation (no gradients)
            calls it directly, with no communication per batch.
        distributed_options: keyword arguments for ``DistributedDataParallel``
            (``find_unused_parameters``, ``static_graph``,
            ``broadcast_buffers``, ...); the device is chosen already.

    Attributes:
        epoch: the number of training epochs completed; checkpoints restore it.
        distributed: the ``DistributedDataParallel`` wrapper used in training,
            or ``None`` outside a distributed run.

    Raises:
        NoActiveExperimentError: no run is active.
        ModuleAlreadyRegisteredError: the module belongs to another run.
    """

    def __init__(
        self,
        module: nn.Module,
        name: str = '',
        device: torch.device | str | None = None,
        *,
        mixed_precision: bool = False,
        should_distribute: bool = True,
        distributed_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f'Model wraps a torch.nn.Module, got {type(module)!r}.')
        self.module = module
        self.device = torch.device(device) if device is not None else default_device()
        self.mixed_precision = mixed_precision
        self.epoch = 0
        self.name = name or type(self).__name__
        self.name = registering.register_model(self, self.name)
        self.module.to(self.device)
        self.distributed: nn.Module | None = None
        if should_distribute and distributed.current().size > 1:
            self.distributed = _wrap(
                self.module, self.device, dict(distributed_options or {})
            )

    def __call__(self, inputs: Input) -> Output:
        """Run the module on ``inputs`` (under autocast with mixed precision)."""
        wrapper = self.distributed
        module = (
            wrapper if wrapper is not None and torch.is_grad_enabled() else self.module
        )
        if self.mixed_precision:
            with torch.autocast(self.device.type):
                mixed: Output = module(inputs)
            return mixed
        output: Output = module(inputs)
        return output

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name={self.name!r}, device={self.device})'


def _wrap(
    module: nn.Module, device: torch.device, options: dict[str, Any]
) -> nn.Module | None:
    """Return ``module`` in ``DistributedDataParallel`` (``None``: nothing to train)."""
    if not any(parameter.requires_grad for parameter in module.parameters()):
        return None  # DDP refuses a module without trainable parameters
    from torch.nn.parallel import DistributedDataParallel

    if device.type == 'cuda':
        index = (
            device.index if device.index is not None else torch.cuda.current_device()
        )
        options.setdefault('device_ids', [index])
    return DistributedDataParallel(module, **options)
