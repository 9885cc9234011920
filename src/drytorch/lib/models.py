"""``Model``: an ``nn.Module`` that belongs to one run."""

from __future__ import annotations

import pathlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import torch
from torch import nn

from drytorch.core import distributed, registering, scope

if TYPE_CHECKING:
    from drytorch.lib.averaging import AveragedModel, EMAModel, SWAModel
    from drytorch.lib.checkpoints import AbstractCheckpoint

__all__ = ['AveragedModel', 'EMAModel', 'Model', 'SWAModel', 'default_device']

_AVERAGING = frozenset({'AveragedModel', 'EMAModel', 'SWAModel'})


def __getattr__(name: str) -> Any:
    """Import the averaged models on first use: their module imports this one."""
    if name in _AVERAGING:
        from drytorch.lib import averaging

        return getattr(averaging, name)
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')


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
        checkpoint: what ``save_state``/``load_state`` (and the original
            DRYTorch's checkpoint calls) go through; defaults to a
            ``LocalCheckpoint``, made on first use.
        mixed_precision: run the forward pass under ``torch.autocast`` (float16
            on CUDA with gradient scaling in the trainer, bfloat16 elsewhere).
        should_compile: the original DRYTorch's switch for ``compile``:
            ``True`` compiles as ``compile=True`` does. Not given, nothing is
            compiled (the original compiles by default; compiling costs more
            than it saves on small models).
        should_distribute: in a distributed run, train through
            ``DistributedDataParallel``, which averages the gradients of the
            processes at every step. ``module`` stays the user's module, so
            checkpoints hold its plain state dict; evaluation (no gradients)
            calls it directly, with no communication per batch.
        distributed_options: keyword arguments for ``DistributedDataParallel``
            (``find_unused_parameters``, ``static_graph``,
            ``broadcast_buffers``, ...); the device is chosen already.
        compile: run the forward pass through ``torch.compile`` (``True``, or
            a dict of its keyword arguments such as ``{'mode':
            'reduce-overhead'}``). A module already compiled is accepted as
            well. Either way ``model.module`` is the plain module, so
            checkpoints hold its state dict without the ``_orig_mod.``
            prefix and load in compiled and plain models alike.

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
        checkpoint: AbstractCheckpoint | None = None,
        mixed_precision: bool = False,
        should_compile: bool | None = None,
        should_distribute: bool = True,
        *,
        distributed_options: Mapping[str, Any] | None = None,
        compile: bool | Mapping[str, Any] = False,
    ) -> None:
        if not isinstance(module, nn.Module):
            raise TypeError(f'Model wraps a torch.nn.Module, got {type(module)!r}.')
        if checkpoint is not None:
            _check_checkpoint(checkpoint)
        given_compiled = _compiled_original(module)
        compiled: nn.Module | None = None
        if given_compiled is not None:
            compiled, module = module, given_compiled
        options = _compile_options(_merge_compile(compile, should_compile))
        self._checkpoint: AbstractCheckpoint | None = None
        self.module = module
        self.device = torch.device(device) if device is not None else default_device()
        self.mixed_precision = mixed_precision
        self.epoch = 0
        self.name = name or type(self).__name__
        self.name = registering.register_model(self, self.name)
        self.module.to(self.device)
        if options is not None and compiled is None:
            compiled = _compile(self.module, options)
        # how a subclass compiles a module of its own (None: not compiled)
        self._compile_options = None if compiled is None else (options or {})
        self.distributed: nn.Module | None = None
        if should_distribute and distributed.current().size > 1:
            self.distributed = _wrap(
                self.module, self.device, dict(distributed_options or {})
            )
        # what runs the forward pass: with gradients (training), without
        self._evaluating: nn.Module = compiled if compiled is not None else module
        self._training: nn.Module = self._evaluating
        if self.distributed is not None:
            self._training = self.distributed
            if compiled is not None:  # DDP first, then compile: torch's order
                self._training = _compile(self.distributed, options or {})
        if checkpoint is not None:
            self.checkpoint = checkpoint

    @property
    def checkpoint(self) -> AbstractCheckpoint:
        """The model's checkpoint, bound to it (a ``LocalCheckpoint`` by default).

        Assigning one binds it to the model.
        """
        if self._checkpoint is None:
            from drytorch.lib.checkpoints import LocalCheckpoint

            self.checkpoint = LocalCheckpoint()
        assert self._checkpoint is not None
        return self._checkpoint

    @checkpoint.setter
    def checkpoint(self, checkpoint: AbstractCheckpoint) -> None:
        _check_checkpoint(checkpoint)
        self._checkpoint = checkpoint
        checkpoint.bind_model(self)

    def _checkpoint_par_dir(self) -> pathlib.Path | None:
        """Where the checkpoint puts its files, if not the experiment's folder."""
        par_dir = getattr(self._checkpoint, 'par_dir', None)
        return None if par_dir is None else pathlib.Path(par_dir)

    def increment_epoch(self) -> None:
        """Count one more completed epoch (the trainer counts its own)."""
        self.epoch += 1

    def save_state(self) -> str:
        """Save through ``checkpoint``; return where the checkpoint went.

        With a ``Trainer`` of this model, the trainer's whole checkpoint
        (``trainer.save_checkpoint()``); without one, the weights (and what
        is bound to the checkpoint) at the current epoch.
        """
        return self.checkpoint.save()

    def load_state(self, epoch: int = -1) -> None:
        """Load through ``checkpoint`` the state saved at ``epoch`` (-1: the last).

        Raises:
            ModelNotFoundError: nothing was saved for this model.
            EpochNotFoundError: nothing was saved at ``epoch``.
        """
        self.checkpoint.load(epoch)

    def register(self) -> None:
        """Register the model in the active run again (after ``unregister``).

        Nothing happens if it belongs to the active run already.

        Raises:
            NoActiveExperimentError: no run is active.
            ModuleAlreadyRegisteredError: the module belongs to another run.
        """
        run = scope.require_active_run(f'Model {self.name!r}')
        if registering.owner_of(self.module) == registering.RunKey.of(run):
            return
        self.name = registering.register_model(self, self.name)

    def unregister(self) -> None:
        """Release the model from its run, so its module may join another."""
        registering.unregister_model(self)

    def prepare_module(self, module: nn.Module) -> nn.Module:
        """Return ``module`` on the model's device, compiled as the model is.

        For modules that run beside the model's own (an averaged copy).
        """
        module.to(self.device)
        if self._compile_options is None:
            return module
        return _compile(module, self._compile_options)

    def __call__(self, inputs: Input) -> Output:
        """Run the module on ``inputs`` (under autocast with mixed precision)."""
        module = self._training if torch.is_grad_enabled() else self._evaluating
        if self.mixed_precision:
            return self._forward(module, inputs)
        output: Output = module(inputs)  # inline: once per batch
        return output

    def _forward(self, module: nn.Module, inputs: Input) -> Output:
        """Run ``module`` on ``inputs`` (under autocast with mixed precision)."""
        if self.mixed_precision:
            with torch.autocast(self.device.type):
                mixed: Output = module(inputs)
            return mixed
        output: Output = module(inputs)
        return output

    def post_batch_update(self) -> None:
        """Update after each optimizer step (the trainer calls it); no-op here.

        Subclasses that follow the weights (``EMAModel``) update here.
        """

    def post_epoch_update(self) -> None:
        """Update after each training epoch, before validation; no-op here.

        The trainer calls it once ``epoch`` counts the finished epoch;
        subclasses that average per epoch (``SWAModel``) update here.
        """

    def own_state_dict(self) -> dict[str, Any]:
        """Return the state the model holds beyond its module (none here).

        Checkpoints save it beside the module's state dict, so that a
        subclass with state of its own (averaged weights) resumes exactly.
        """
        return {}

    def check_own_state_dict(self, state: Mapping[str, Any]) -> None:
        """Raise ``ValueError`` if ``state`` cannot be loaded whole (never here).

        Checkpoints call it before loading anything, so that a refused
        checkpoint changes nothing.
        """

    def load_own_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``own_state_dict`` returned (nothing here)."""

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


def _compiled_original(module: nn.Module) -> nn.Module | None:
    """Return the module that ``torch.compile`` wrapped, if ``module`` is compiled.

    torch gives no public accessor: its wrapper keeps the module as
    ``_orig_mod``, the name its state dict keys are prefixed with.
    """
    original = getattr(module, '_orig_mod', None)
    return original if isinstance(original, nn.Module) else None


def _compile(module: nn.Module, options: Mapping[str, Any]) -> nn.Module:
    """Return ``torch.compile(module, **options)``: a module wrapping ``module``."""
    compiled: nn.Module = torch.compile(module, **options)  # type: ignore[assignment]
    return compiled


def _check_checkpoint(checkpoint: object) -> None:
    from drytorch.lib.checkpoints import AbstractCheckpoint

    if not isinstance(checkpoint, AbstractCheckpoint):
        raise TypeError(
            'Model(checkpoint=...) takes a drytorch.lib.checkpoints checkpoint '
            f'(such as LocalCheckpoint()) or None, got {checkpoint!r}.'
        )


def _merge_compile(
    compile: bool | Mapping[str, Any], should_compile: bool | None
) -> bool | Mapping[str, Any]:
    """Return ``compile``, with the original DRYTorch's ``should_compile`` applied."""
    if should_compile is None:
        return compile
    if not isinstance(should_compile, bool):
        raise TypeError(
            f'should_compile must be True or False, got {should_compile!r}.'
        )
    if compile is not False and not should_compile:
        raise TypeError(
            'Model(compile=..., should_compile=False) disagree: give one of them '
            '(should_compile is the original DRYTorch name of compile).'
        )
    return compile if compile is not False else should_compile


def _compile_options(value: object) -> dict[str, Any] | None:
    """Return ``torch.compile``'s keyword arguments from ``Model(compile=...)``."""
    if value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(
        'Model(compile=...) takes True, False, or a dict of torch.compile '
        f'arguments, got {value!r}.'
    )
