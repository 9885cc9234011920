"""Averaged models: train the live weights, evaluate an average of them.

``EMAModel`` keeps an exponential moving average of the weights, updated after
every optimizer step; ``SWAModel`` averages the weights of every epoch from
``start_epoch`` on (stochastic weight averaging). Training runs the live
weights; evaluation (``Validation``, ``Test``, ``Diagnostic``, anything under
``torch.inference_mode``) runs the average once there is one. The average is
torch's ``torch.optim.swa_utils.AveragedModel``, and checkpoints hold its
state, so a resumed run continues the same average.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.optim import swa_utils

from drytorch.core import distributed
from drytorch.lib.models import Input, Model, Output, _compile
from drytorch.lib.runners import to_device

if TYPE_CHECKING:
    from drytorch.lib.checkpoints import AbstractCheckpoint

__all__ = ['AveragedModel', 'EMAModel', 'SWAModel']

_Tensors = tuple[torch.Tensor, ...] | list[torch.Tensor]
MultiAvgFn = Callable[[_Tensors, _Tensors, torch.Tensor | int], None]
"""torch's in-place averaging: (averaged tensors, live tensors, n_averaged)."""


class AveragedModel(Model[Input, Output]):
    """A model that evaluates with averaged weights; base of the two below.

    The averaged copy is of the plain module (never of its compiled or DDP
    wrapper) and lives on the model's device; under DDP every process averages
    its own copy, identical since the weights are. Evaluation compiles the copy
    as the model is compiled, and runs it in the live module's mode (the
    runners switch that one to ``eval``). Until the first average is taken,
    evaluation runs the live weights: the copy made at construction would miss
    weights loaded into ``model.module`` afterwards.

    A subclass decides when to call ``average`` (``post_batch_update`` or
    ``post_epoch_update``); ``kind`` names the average in checkpoints, which
    refuse to load one kind into another.

    Args:
        module, name, device, checkpoint, mixed_precision,
            should_distribute, distributed_options, compile: as for
            ``Model``; the original DRYTorch's positional order.
        multi_avg_fn: torch's in-place averaging function (``None``: the equal
            average of SWA).
        use_buffers: average the buffers (BatchNorm statistics) too; else
            torch copies them from the live module at each average.

    Attributes:
        averaged_module: torch's ``AveragedModel``: the averaged copy is
            ``averaged_module.module``, the number of averages taken
            ``averaged_module.n_averaged``.
    """

    kind: ClassVar[str] = 'average'

    def __init__(
        self,
        module: nn.Module,
        /,
        name: str = '',
        device: torch.device | str | None = None,
        checkpoint: AbstractCheckpoint | None = None,
        mixed_precision: bool = False,
        *,
        multi_avg_fn: MultiAvgFn | None = None,
        use_buffers: bool = False,
        should_distribute: bool = True,
        distributed_options: Mapping[str, Any] | None = None,
        compile: bool | Mapping[str, Any] = False,
    ) -> None:
        super().__init__(
            module,
            name,
            device,
            checkpoint,
            mixed_precision=mixed_precision,
            should_distribute=should_distribute,
            distributed_options=distributed_options,
            compile=compile,
        )
        # no device given: n_averaged stays on the CPU, so reading it per step
        # or per batch never waits for an accelerator; the copy is on
        # self.device already, as self.module is
        averaged = swa_utils.AveragedModel(
            self.module, multi_avg_fn=multi_avg_fn, use_buffers=use_buffers
        )
        averaged.requires_grad_(False)
        self.averaged_module = averaged
        options = self._compile_options
        self._averaged_evaluating = (
            averaged.module if options is None else _compile(averaged.module, options)
        )

    def __call__(self, inputs: Input) -> Output:
        """Run the live weights with gradients, the average without."""
        if torch.is_grad_enabled() or not self.averaged_module.n_averaged:
            return super().__call__(inputs)
        copy = self.averaged_module.module
        if copy.training != self.module.training:
            copy.train(self.module.training)
        return self._forward(self._averaged_evaluating, inputs)

    def average(self) -> None:
        """Add the live weights to the average (the first call copies them).

        In a distributed run the copy's buffers are then rank 0's on every
        process: each process's BatchNorm statistics come from its own
        batches, and checkpoints save rank 0's average.
        """
        self.averaged_module.update_parameters(self.module)
        if distributed.current().size > 1:
            _broadcast_from_rank_zero(list(self.averaged_module.module.buffers()))

    def update_batch_norm(self, loader: Iterable[Any]) -> None:
        """Measure the BatchNorm statistics of the averaged weights on ``loader``.

        ``SWAModel(bn_loader=...)`` calls it after every average; call it
        yourself for a final measure. Only the normalisation layers run in
        training mode, so dropout draws no random numbers; the pass runs in
        inference mode, where DRYTorch's ``DataLoader`` keeps its order, so
        the statistics repeat on resume.

        Args:
            loader: batches of ``(inputs, targets)``; the targets are
                ignored. In a distributed run each process measures on its
                share and the statistics are averaged over the processes.
        """
        copy = self.averaged_module.module
        norms = [layer for layer in copy.modules() if isinstance(layer, _BatchNorm)]
        if not norms:
            return
        was_training = copy.training
        momenta = [norm.momentum for norm in norms]
        copy.eval()
        for norm in norms:
            norm.reset_running_stats()
            norm.momentum = None  # the plain average over the batches
            norm.train()
        try:
            with torch.inference_mode():
                for inputs, _ in loader:
                    self._forward(copy, to_device(inputs, self.device))
        finally:
            for norm, momentum in zip(norms, momenta, strict=True):
                norm.momentum = momentum
            copy.train(was_training)
        world = distributed.current()
        if world.size > 1:  # the same statistics on every process
            for norm in norms:
                for stat in (norm.running_mean, norm.running_var):
                    if stat is not None:
                        distributed.all_reduce_sum(stat)
                        stat.div_(world.size)

    def own_state_dict(self) -> dict[str, Any]:
        """Return the averaged weights and ``n_averaged``, for checkpoints."""
        return {'kind': self.kind, 'averaged': self.averaged_module.state_dict()}

    def load_own_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the average saved by ``own_state_dict``.

        A checkpoint without one (a plain ``Model``'s) restarts the average
        from the weights just loaded: nothing is averaged yet, so evaluation
        runs them, and the next average copies them.

        Raises:
            ValueError: the saved average is of another kind or does not fit
                the module (the trainer reports it as a ``CheckpointError``).
        """
        averaged = self.averaged_module
        if not state:
            averaged.module.load_state_dict(self.module.state_dict())
            averaged.n_averaged.zero_()
            return
        self.check_own_state_dict(state)
        averaged.load_state_dict(state['averaged'])

    def check_own_state_dict(self, state: Mapping[str, Any]) -> None:
        """Refuse an average that ``load_own_state_dict`` could not load whole.

        Raises:
            ValueError: the saved average is of another kind or does not fit.
        """
        if not state:
            return  # a plain Model's checkpoint: the average restarts
        averaged = self.averaged_module
        if state.get('kind') != self.kind:
            raise ValueError(
                f'the saved average is of kind {state.get("kind")!r}, but '
                f'{type(self).__name__} {self.name!r} keeps a {self.kind!r} average'
            )
        saved = state.get('averaged')
        if not isinstance(saved, Mapping):
            raise ValueError('the saved average holds no weights')
        current = averaged.state_dict()
        problems = [f'missing {key}' for key in current if key not in saved]
        problems += [f'unexpected {key}' for key in saved if key not in current]
        problems += [
            f'the average of {key} has shape {tuple(value.shape)}, the model '
            f'{tuple(current[key].shape)}'
            for key, value in saved.items()
            if key in current
            and isinstance(value, torch.Tensor)
            and value.shape != current[key].shape
        ]
        if problems:
            raise ValueError(
                f'the saved averaged weights do not fit: {"; ".join(problems)}'
            )


class EMAModel(AveragedModel[Input, Output]):
    """Evaluates with an exponential moving average (EMA) of the weights.

    After every optimizer step, ``average = decay * average + (1 - decay) *
    weights``; the first step copies the weights, so the initialisation never
    weighs on the average (torch's ``AveragedModel``). Buffers are averaged
    likewise: BatchNorm statistics follow the weights they go with.

    Args:
        module, name, device, checkpoint, mixed_precision,
            should_distribute, distributed_options, compile: as for
            ``Model``; the original DRYTorch's positional order.
        decay: the weight of the past, in (0, 1); the average spans about
            ``1 / (1 - decay)`` steps.

    Raises:
        ValueError: ``decay`` is not a number in (0, 1).
    """

    kind: ClassVar[str] = 'ema'

    def __init__(
        self,
        module: nn.Module,
        /,
        name: str = '',
        device: torch.device | str | None = None,
        checkpoint: AbstractCheckpoint | None = None,
        mixed_precision: bool = False,
        decay: float = 0.999,
        *,
        should_distribute: bool = True,
        distributed_options: Mapping[str, Any] | None = None,
        compile: bool | Mapping[str, Any] = False,
    ) -> None:
        if (
            isinstance(decay, bool)
            or not isinstance(decay, int | float)
            or not 0 < decay < 1  # NaN too
        ):  # checked before the model registers in the run
            raise ValueError(
                f'EMAModel: decay must be a number strictly between 0 and 1 '
                f'(such as 0.999), got {decay!r}.'
            )
        self.decay = float(decay)
        ema = swa_utils.get_ema_multi_avg_fn(self.decay)  # type: ignore[no-untyped-call]
        super().__init__(
            module,
            name,
            device,
            checkpoint,
            multi_avg_fn=ema,
            use_buffers=True,
            mixed_precision=mixed_precision,
            should_distribute=should_distribute,
            distributed_options=distributed_options,
            compile=compile,
        )

    def post_batch_update(self) -> None:
        """Average after every optimizer step."""
        self.average()


class SWAModel(AveragedModel[Input, Output]):
    """Evaluates with the equal average of the weights of the last epochs (SWA).

    At the end of every epoch from ``start_epoch`` on (epochs count from 1),
    the epoch's final weights join the average, before validation, so
    validation measures the average from epoch ``start_epoch`` on and the
    live weights before it.

    BatchNorm statistics measured with the live weights do not fit averaged
    weights. With ``bn_loader``, every average is followed by a pass over it
    that measures them anew for the averaged weights (``update_batch_norm``,
    the SWA paper's recipe, as torch's ``update_bn``). Without it the buffers
    are averaged as the weights are, a cheap approximation that needs no
    data.

    Args:
        module, name, device, checkpoint, mixed_precision,
            should_distribute, distributed_options, compile: as for
            ``Model``; the original DRYTorch's positional order.
        start_epoch: the first epoch whose weights are averaged, from 1.
        bn_loader: batches of ``(inputs, targets)``, usually the training
            data, to measure the BatchNorm statistics on after every average.

    Raises:
        ValueError: ``start_epoch`` is not an integer >= 1.
    """

    kind: ClassVar[str] = 'swa'

    def __init__(
        self,
        module: nn.Module,
        /,
        start_epoch: int,
        name: str = '',
        device: torch.device | str | None = None,
        checkpoint: AbstractCheckpoint | None = None,
        mixed_precision: bool = False,
        *,
        bn_loader: Iterable[Any] | None = None,
        should_distribute: bool = True,
        distributed_options: Mapping[str, Any] | None = None,
        compile: bool | Mapping[str, Any] = False,
    ) -> None:
        if (
            isinstance(start_epoch, bool)
            or not isinstance(start_epoch, int)
            or start_epoch < 1
        ):  # checked before the model registers in the run
            raise ValueError(
                'SWAModel: start_epoch must be an integer >= 1 (the first epoch '
                f'whose weights are averaged; epochs count from 1), got '
                f'{start_epoch!r}.'
            )
        self.start_epoch = start_epoch
        self.bn_loader = bn_loader
        super().__init__(
            module,
            name,
            device,
            checkpoint,
            use_buffers=bn_loader is None,
            mixed_precision=mixed_precision,
            should_distribute=should_distribute,
            distributed_options=distributed_options,
            compile=compile,
        )

    def post_epoch_update(self) -> None:
        """Average the epoch's weights from ``start_epoch`` on."""
        if self.epoch < self.start_epoch:
            return
        self.average()
        if self.bn_loader is not None:
            self.update_batch_norm(self.bn_loader)


def _broadcast_from_rank_zero(tensors: list[torch.Tensor]) -> None:
    """Copy rank 0's ``tensors`` in place, one collective per dtype and device."""
    import torch.distributed as dist

    groups: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
    for tensor in tensors:
        groups.setdefault((tensor.dtype, tensor.device), []).append(tensor)
    for group in groups.values():
        flat = torch.cat([tensor.reshape(-1) for tensor in group])
        dist.broadcast(flat, src=0)
        for tensor, part in zip(
            group, torch.split(flat, [t.numel() for t in group]), strict=True
        ):
            tensor.copy_(part.view_as(tensor))
