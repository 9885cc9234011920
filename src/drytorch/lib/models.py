"""``Model``: an ``nn.Module`` that belongs to one run."""

from __future__ import annotations

from typing import Generic, TypeVar

import torch
from torch import nn

from drytorch.core import registering

__all__ = ['Model', 'default_device']

Input = TypeVar('Input', contravariant=True)
Output = TypeVar('Output', covariant=True)


def default_device() -> torch.device:
    """Return the accelerator when one is available, else the CPU."""
    accelerator = getattr(torch, 'accelerator', None)
    if accelerator is not None and accelerator.is_available():
        found = accelerator.current_accelerator()
        if found is not None:
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

    Attributes:
        epoch: the number of training epochs completed; checkpoints restore it.

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

    def __call__(self, inputs: Input) -> Output:
        """Run the module on ``inputs`` (under autocast with mixed precision)."""
        if self.mixed_precision:
            with torch.autocast(self.device.type):
                mixed: Output = self.module(inputs)
            return mixed
        output: Output = self.module(inputs)
        return output

    def __repr__(self) -> str:
        return f'{type(self).__name__}(name={self.name!r}, device={self.device})'
