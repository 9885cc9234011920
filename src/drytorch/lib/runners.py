"""Runners: loops that run a model over a loader and report what they measure.

``ModelRunner`` holds the batch loop shared by every runner. ``Diagnostic``
measures quietly, ``Validation`` reports metrics at the model's epoch, and
``Test`` reports a test; the ``Trainer`` (``drytorch.lib.train``) adds the
optimisation step.

The batch loop never synchronises with the device: objectives accumulate on
it and are read once, at the end of the epoch. Progress displays get a
``live_metrics`` callable they may call at a throttled rate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Generic, Protocol, TypeVar

import torch

from drytorch.core import distributed, exceptions, log_events, registering, scope
from drytorch.core.plugins import get_host
from drytorch.lib import objectives
from drytorch.lib.models import Model

__all__ = [
    'Diagnostic',
    'Evaluation',
    'ModelRunner',
    'Test',
    'Validation',
    'describe',
    'to_device',
]

Input = TypeVar('Input')
Target = TypeVar('Target')
Output = TypeVar('Output')


class SizedLoader(Protocol):
    """What a runner needs of a loader: batches of (inputs, targets), and a length.

    A loader whose ``len()`` raises ``TypeError`` (a torch loader over an
    ``IterableDataset``, a stream) works too: its epochs end when its
    iterator does, and progress displays get no total.
    """

    def __iter__(self) -> Any: ...

    def __len__(self) -> int: ...


def loader_length(loader: Any) -> int | None:
    """Return the batches of ``loader``, or ``None`` when it cannot tell."""
    try:
        return len(loader)
    except TypeError:  # an iterable dataset, a generator: no length
        return None


def to_device(data: Any, device: torch.device) -> Any:
    """Move the tensors in ``data`` (nested tuples, lists, dicts) to ``device``."""
    if isinstance(data, torch.Tensor):
        return data if data.device == device else data.to(device, non_blocking=True)
    if isinstance(data, tuple):
        moved = [to_device(item, device) for item in data]
        return type(data)(*moved) if hasattr(data, '_fields') else tuple(moved)
    if isinstance(data, list):
        return [to_device(item, device) for item in data]
    if isinstance(data, dict):
        return {key: to_device(value, device) for key, value in data.items()}
    return data


def detach_to_cpu(data: Any) -> Any:
    """Return ``data`` with its tensors detached and on the CPU."""
    if isinstance(data, torch.Tensor):
        return data.detach().cpu()
    if dataclasses.is_dataclass(data) and not isinstance(data, type):
        values = {
            f.name: detach_to_cpu(getattr(data, f.name))
            for f in dataclasses.fields(data)
        }
        return dataclasses.replace(data, **values)
    if isinstance(data, tuple):
        moved = [detach_to_cpu(item) for item in data]
        return type(data)(*moved) if hasattr(data, '_fields') else tuple(moved)
    if isinstance(data, list):
        return [detach_to_cpu(item) for item in data]
    if isinstance(data, dict):
        return {key: detach_to_cpu(value) for key, value in data.items()}
    return data


def describe(obj: Any) -> Any:
    """Return a readable, TOML-friendly description of ``obj`` for metadata."""
    method = getattr(obj, 'describe', None)
    if callable(method) and not isinstance(obj, type):
        return method()
    if isinstance(obj, bool | int | float | str):
        return obj
    formula = getattr(obj, 'formula', None)
    if isinstance(formula, str):  # a loss: its formula is what readers look for
        return {'repr': repr(obj), 'formula': formula}
    if isinstance(obj, Mapping):
        return {str(key): describe(value) for key, value in obj.items()}
    if isinstance(obj, list | tuple):
        return [describe(item) for item in obj]
    return repr(obj)


class ModelRunner(Generic[Input, Target, Output]):
    """Runs a model over a loader and aggregates an objective.

    Args:
        model: the model; it must belong to the active run.
        loader: yields ``(inputs, targets)`` batches and has a length.
        objective: what to measure (a metric, a collection or a loss; a
            torchmetrics metric is wrapped with ``as_objective``).
        name: the runner's name in reports; defaults to the class name.

    Attributes:
        computed_metrics: the metrics of the last epoch, as floats.
        computed_epoch: the model's epoch when ``computed_metrics`` were
            computed (``None`` before the first run).
        computed_step: the trainer's optimizer steps when a validation
            computed them during training (``None`` otherwise).
        outputs_list: the outputs of the last epoch when stored (detached,
            on the CPU).
    """

    reports = True
    """Whether the runner tells the trackers about itself and its batches."""

    _batches: Iterator[Any] | None = None  # the running epoch's iterator

    def __init__(
        self,
        model: Model[Input, Output],
        *,
        loader: SizedLoader,
        objective: objectives.Objective[Output, Target] | objectives.StatefulMetric,
        name: str = '',
    ) -> None:
        self.model = model
        self.loader = loader
        # A torchmetrics metric is wrapped, anything else refused, here and
        # not after an epoch of work.
        self.objective = objectives.as_objective(objective)
        self.name = name or type(self).__name__
        self.computed_metrics: dict[str, float] = {}
        self.computed_epoch: int | None = None
        self.computed_step: int | None = None
        self.outputs_list: list[Output] = []
        self._registered_in: registering.RunKey | None = None

    def describe(self) -> dict[str, Any]:
        """Return a readable description of the runner and its parts."""
        return {
            'class': type(self).__name__,
            'model': self.model.name,
            'loader': describe(self.loader),
            'objective': describe(self.objective),
        }

    def _check_run(self) -> None:
        """Check the model belongs to the active run; announce the runner once."""
        registering.require_registered(self.model)
        run = scope.active_run()
        assert run is not None
        key = registering.RunKey.of(run)
        if self.reports and self._registered_in != key:
            self._registered_in = key
            event = log_events.ActorRegisterEvent(
                self.name, self.model.name, run.id, self.describe()
            )
            get_host().on_actor_register(event)

    def _run_epoch(
        self,
        *,
        store_outputs: bool = False,
        done: int = 0,
        discard: int = 0,
        batches: Iterator[Any] | None = None,
    ) -> dict[str, float]:
        """Run every batch of the loader once; return the aggregated metrics.

        Args:
            store_outputs: keep the outputs, detached and on the CPU.
            done: batches of this epoch already aggregated in the objective
                (an epoch resumed from a checkpoint): the objective is not
                reset and the batches are numbered from ``done + 1``.
            discard: batches to draw from the loader and drop first (a
                loader that cannot skip them itself).
            batches: the iterator to go on with (an epoch paused in this
                process); by default a new one from the loader.
        """
        host = get_host()
        device = self.model.device
        progress = self.reports and host.handles_batches()
        n_batches = loader_length(self.loader)
        if not done:
            self.objective.reset()
        self.outputs_list = []
        if batches is None:
            batches = iter(self.loader)
        self._batches = batches  # what a trainer pausing the epoch goes on with
        for _ in range(discard):
            next(batches, None)
        batch = done
        for batch, (inputs, targets) in enumerate(batches, start=done + 1):
            moved_inputs = to_device(inputs, device)
            outputs = self._run_batch(moved_inputs, to_device(targets, device))
            if store_outputs:
                self.outputs_list.append(detach_to_cpu(outputs))
            if progress:
                event = log_events.IterateBatchEvent(
                    self.name, batch, n_batches, _batch_size(inputs), self._live_metrics
                )
                host.on_batch_end(event)
        if batch == 0:
            raise exceptions.TrainingError(
                f'{self.name}: the loader of model {self.model.name!r} yielded no '
                'batch (is the dataset smaller than one batch in training mode?).'
            )
        return self._finish_epoch()

    def _finish_epoch(self) -> dict[str, float]:
        """Compute the epoch's metrics (of every process), read them on the host."""
        if distributed.current().size > 1:  # one collective per epoch
            self.objective.all_reduce()
        computed = self.objective.compute()
        self.computed_metrics = {name: value.item() for name, value in computed.items()}
        self.computed_epoch = self.model.epoch
        self.computed_step = None
        return self.computed_metrics

    def _run_batch(self, inputs: Input, targets: Target) -> Output:
        """Run one batch: forward pass and objective update."""
        outputs = self.model(inputs)
        self.objective.update(outputs, targets)
        return outputs

    def _live_metrics(self) -> dict[str, float]:
        """Return the running metrics of the epoch (synchronises the device).

        In a distributed run they are this process's share of the epoch; an
        objective that would synchronise with the others to compute reports
        nothing here, since only rank 0 displays.
        """
        if not self.objective.computes_locally and distributed.current().size > 1:
            return {}
        try:
            computed = self.objective.compute()
        except exceptions.ComputedBeforeUpdatedError:
            return {}
        return {name: value.item() for name, value in computed.items()}

    def _evaluate(self, *, store_outputs: bool = False) -> dict[str, float]:
        """Run an epoch in inference mode, leaving the module's mode as it was."""
        self._check_run()
        module = self.model.module
        was_training = module.training
        module.eval()
        try:
            with torch.inference_mode():
                return self._run_epoch(store_outputs=store_outputs)
        finally:
            module.train(was_training)

    def _report(self) -> None:
        get_host().on_metrics(
            log_events.MetricsEvent(
                self.model.name,
                self.name,
                self.model.epoch,
                dict(self.computed_metrics),
            ),
        )

    def __repr__(self) -> str:
        return f'{type(self).__name__}(model={self.model.name!r}, name={self.name!r})'


class Evaluation(ModelRunner[Input, Target, Output]):
    """A runner that measures a model with a metric, in inference mode.

    Args:
        model: the model to measure.
        loader: the batches to measure it on.
        metric: what to measure (a metric, a collection, or a loss; a
            torchmetrics metric is wrapped with ``as_objective``).
        name: the name in reports; defaults to the class name.
        objective: the same as ``metric``, as the original DRYTorch names it.

    Raises:
        TypeError: neither or both of ``metric`` and ``objective`` are given.
    """

    def __init__(
        self,
        model: Model[Input, Output],
        *,
        loader: SizedLoader,
        metric: objectives.Objective[Output, Target]
        | objectives.StatefulMetric
        | None = None,
        name: str = '',
        objective: objectives.Objective[Output, Target]
        | objectives.StatefulMetric
        | None = None,
    ) -> None:
        if (metric is None) == (objective is None):
            raise TypeError(
                f'{type(self).__name__} needs what to measure: pass metric= (or '
                'objective=, its name in the original DRYTorch), once.'
            )
        chosen = metric if metric is not None else objective
        assert chosen is not None
        super().__init__(model, loader=loader, objective=chosen, name=name)


class Diagnostic(Evaluation[Input, Target, Output]):
    """Measures a model without reporting to trackers (for hooks and checks)."""

    reports = False

    def __call__(self, *, store_outputs: bool = False) -> dict[str, float]:
        """Run the loader once in inference mode; return the metrics."""
        return self._evaluate(store_outputs=store_outputs)


class Validation(Evaluation[Input, Target, Output]):
    """Measures a model during training and reports at the model's epoch."""

    def __call__(
        self, *, store_outputs: bool = False, step: int | None = None
    ) -> dict[str, float]:
        """Run the loader once in inference mode, report and return the metrics.

        Args:
            store_outputs: keep the outputs, detached and on the CPU.
            step: the trainer's optimizer steps, kept as ``computed_step``.
        """
        metrics = self._evaluate(store_outputs=store_outputs)
        self.computed_step = step
        self._report()
        return metrics

    def measure_at_step(self, step: int) -> dict[str, float]:
        """Validate inside an epoch; report the metrics with the trainer's ``step``.

        Trackers get them through ``on_step_metrics`` (curves by step), not
        as the epoch's metrics.
        """
        metrics = self._evaluate()
        self.computed_step = step
        get_host().on_step_metrics(
            log_events.StepMetricsEvent(
                self.model.name, self.name, self.model.epoch, step, dict(metrics)
            )
        )
        return metrics


class Test(Evaluation[Input, Target, Output]):
    """Tests a model: reports the start, the metrics and the end of the test."""

    __test__ = False  # not a pytest test class

    def __call__(self, *, store_outputs: bool = False) -> dict[str, float]:
        """Run the test; see ``test``."""
        return self.test(store_outputs=store_outputs)

    def test(self, *, store_outputs: bool = False) -> dict[str, float]:
        """Run the test once and return the metrics.

        Args:
            store_outputs: keep the outputs, detached and on the CPU, in
                ``outputs_list``.
        """
        self._check_run()
        host = get_host()
        epoch = self.model.epoch
        name = self.model.name
        host.on_test_start(log_events.TestStartEvent(name, self.name, epoch))
        metrics = self._evaluate(store_outputs=store_outputs)
        self._report()
        host.on_test_end(log_events.TestEndEvent(name, self.name, epoch))
        return metrics


def _batch_size(inputs: Any) -> int:
    if isinstance(inputs, torch.Tensor):
        return int(inputs.shape[0]) if inputs.ndim else 1
    if isinstance(inputs, list | tuple | dict):
        items: Iterable[Any] = inputs.values() if isinstance(inputs, dict) else inputs
        for item in items:
            size = _batch_size(item)
            if size:
                return size
    return 0
