"""Runners: loops that run a model over a loader and report what they measure.

``ModelRunner`` holds the batch loop shared by every runner; called, it is
one plain pass of the model over the loader. ``Diagnostic`` measures
quietly, ``Validation`` reports metrics at the model's epoch, and ``Test``
reports a test; the ``Trainer`` (``drytorch.lib.train``) adds the
optimisation step.

The original DRYTorch's hierarchy is here too, as thin layers over the same
loop: ``ModelCaller`` (a named object bound to a model), ``ModelRunner``
(which there has no objective: ours takes one optionally),
``ModelRunnerWithObjective``, ``ModelRunnerWithLogs`` (reports its metrics)
and ``EvaluationMixin`` (calls run in inference mode).

The batch loop never synchronises with the device: objectives accumulate on
it and are read once, at the end of the epoch. Progress displays get a
``live_metrics`` callable they may call at a throttled rate.
"""

from __future__ import annotations

import abc
import dataclasses
import sys
import warnings
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, ClassVar, Generic, Protocol, TypeVar

import torch

from drytorch.core import distributed, exceptions, log_events, registering, scope
from drytorch.core.plugins import get_host
from drytorch.lib import objectives
from drytorch.lib.models import Model

__all__ = [
    'Diagnostic',
    'Evaluation',
    'EvaluationMixin',
    'ModelCaller',
    'ModelRunner',
    'ModelRunnerWithLogs',
    'ModelRunnerWithObjective',
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


class ModelCaller(abc.ABC, Generic[Input, Output]):
    """A named object bound to a model of the active run; the base of runners.

    The original DRYTorch's ``ModelCaller``: subclasses define ``__call__``.
    Created while a run is active, it checks at once that the model belongs
    to that run; every call checks it again (a run may have ended since).

    Args:
        model: the model; it must belong to the active run.
        name: the name in reports; defaults to the class name.

    Raises:
        ModuleNotRegisteredError: a run is active and the model is not in it.
    """

    reports = True
    """Whether the runner tells the trackers about itself and its batches."""

    def __init__(self, model: Model[Input, Output], name: str = '') -> None:
        if scope.active_run() is not None:
            registering.require_registered(model)
        self.model = model
        self.name = name or type(self).__name__
        self._registered_in: registering.RunKey | None = None

    @abc.abstractmethod
    def __call__(self, store_outputs: bool = False) -> Any:
        """Do the caller's work once."""

    def describe(self) -> dict[str, Any]:
        """Return a readable description of the caller."""
        return {'class': type(self).__name__, 'model': self.model.name}

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

    def __repr__(self) -> str:
        return f'{type(self).__name__}(model={self.model.name!r}, name={self.name!r})'


class _NoObjective(objectives.Objective[Any, Any]):
    """What a runner given no objective measures: nothing."""

    def calculate(self, outputs: Any, targets: Any) -> dict[str, torch.Tensor]:
        return {}

    def update(self, outputs: Any, targets: Any) -> dict[str, torch.Tensor]:
        return {}

    def compute(self) -> dict[str, torch.Tensor]:
        return {}

    def __repr__(self) -> str:
        return 'NoObjective()'


class ModelRunner(ModelCaller[Input, Output], Generic[Input, Target, Output]):
    """Runs a model over a loader and aggregates an objective.

    Called (``runner(store_outputs=False)``), it is one plain pass over the
    loader: the module keeps its mode and gradients follow the caller's
    context, so outside ``torch.inference_mode()`` a ``DataLoader`` gives
    its training batches. ``Diagnostic`` is the pass in inference mode.

    Args:
        model: the model; it must belong to the active run.
        name: the runner's name in reports; defaults to the class name.
        loader: yields ``(inputs, targets)`` batches and has a length.
        objective: what to measure (a metric, a collection or a loss; a
            torchmetrics metric is wrapped with ``as_objective``); ``None``
            (the original DRYTorch's ``ModelRunner``): nothing, the pass
            only runs the model (``computed_metrics`` stays empty).

    Attributes:
        computed_metrics: the metrics of the last epoch, as floats.
        computed_epoch: the model's epoch when ``computed_metrics`` were
            computed (``None`` before the first run).
        computed_step: the trainer's optimizer steps when a validation
            computed them during training (``None`` otherwise).
        outputs_list: the outputs of the last epoch when stored (detached,
            on the CPU), at most ``max_stored_output`` of them.

    Raises:
        ModuleNotRegisteredError: a run is active and the model is not in it.
    """

    max_stored_output: ClassVar[int] = sys.maxsize
    """The most outputs an epoch keeps with ``store_outputs=True``."""

    _batches: Iterator[Any] | None = None  # the running epoch's iterator

    def __init__(
        self,
        model: Model[Input, Output],
        name: str = '',
        *,
        loader: SizedLoader,
        objective: objectives.Objective[Output, Target]
        | objectives.StatefulMetric
        | None = None,
    ) -> None:
        super().__init__(model, name)
        self.loader = loader
        # A torchmetrics metric is wrapped, anything else refused, here and
        # not after an epoch of work.
        self.objective: objectives.Objective[Output, Target] = (
            _NoObjective() if objective is None else objectives.as_objective(objective)
        )
        self.computed_metrics: dict[str, float] = {}
        self.computed_epoch: int | None = None
        self.computed_step: int | None = None
        self.outputs_list: list[Output] = []
        self._store_warned = False

    def __call__(self, store_outputs: bool = False) -> dict[str, float]:
        """Run the model over the loader once; return the metrics.

        Args:
            store_outputs: keep the outputs, detached and on the CPU, in
                ``outputs_list``.

        Raises:
            ModuleNotRegisteredError: the model is not in the active run.
        """
        self._check_run()
        return self._run_epoch(store_outputs=store_outputs)

    def describe(self) -> dict[str, Any]:
        """Return a readable description of the runner and its parts."""
        description = super().describe()
        description['loader'] = describe(self.loader)
        if not isinstance(self.objective, _NoObjective):
            description['objective'] = describe(self.objective)
        return description

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
        self._store_warned = False
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
                self._store_output(outputs)
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

    def _store_output(self, outputs: Output) -> None:
        """Keep ``outputs`` detached on the CPU; warn once if they cannot be kept."""
        if len(self.outputs_list) >= self.max_stored_output:
            self._warn_not_stored(
                ValueError(
                    f'{self.name} keeps at most max_stored_output='
                    f'{self.max_stored_output} outputs per epoch; the rest are '
                    'dropped'
                )
            )
            return
        try:
            stored = detach_to_cpu(outputs)
        except (TypeError, ValueError, RuntimeError) as error:
            self._warn_not_stored(error)
            return
        self.outputs_list.append(stored)

    def _warn_not_stored(self, error: Exception) -> None:
        if not self._store_warned:
            self._store_warned = True
            warnings.warn(
                exceptions.CannotStoreOutputWarning(error),
                stacklevel=4,
            )

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
        with _inference(self.model):
            return self._run_epoch(store_outputs=store_outputs)

    def _report(self) -> None:
        get_host().on_metrics(
            log_events.MetricsEvent(
                self.model.name,
                self.name,
                self.model.epoch,
                dict(self.computed_metrics),
            ),
        )


class _inference:  # a context manager, named as one
    """Eval mode and ``torch.inference_mode()``; the module's mode restored."""

    def __init__(self, model: Model[Any, Any]) -> None:
        self.module = model.module
        self.was_training = self.module.training
        self.mode = torch.inference_mode()

    def __enter__(self) -> None:
        self.module.eval()
        self.mode.__enter__()

    def __exit__(self, *exc: object) -> None:
        try:
            self.mode.__exit__(*exc)
        finally:
            self.module.train(self.was_training)


class ModelRunnerWithObjective(ModelRunner[Input, Target, Output]):
    """A runner that measures an objective (the original DRYTorch's name).

    Our ``ModelRunner`` takes an objective already; this one requires it.

    Args:
        model: the model; it must belong to the active run.
        name: the name in reports; defaults to the class name.
        loader: yields ``(inputs, targets)`` batches.
        objective: what to measure.
    """

    def __init__(
        self,
        model: Model[Input, Output],
        name: str = '',
        *,
        loader: SizedLoader,
        objective: objectives.Objective[Output, Target] | objectives.StatefulMetric,
    ) -> None:
        super().__init__(model, name, loader=loader, objective=objective)


class ModelRunnerWithLogs(ModelRunnerWithObjective[Input, Target, Output]):
    """A runner whose call reports its metrics to the trackers (``on_metrics``)."""

    def __call__(self, store_outputs: bool = False) -> dict[str, float]:
        """Run the loader once, report the metrics and return them."""
        metrics = super().__call__(store_outputs)
        self._report()
        return metrics


class EvaluationMixin:
    """Makes a runner's call a pass in inference mode (and the module in eval).

    The original DRYTorch's mixin: put it first among the bases, as in
    ``class Probe(EvaluationMixin, ModelRunnerWithLogs)``. The module's mode
    is restored afterwards.
    """

    model: Model[Any, Any]

    def __call__(self, store_outputs: bool = False) -> dict[str, float]:
        """Run the runner's call in inference mode; return its metrics."""
        with _inference(self.model):
            metrics: dict[str, float] = super().__call__(store_outputs)  # type: ignore[misc]
        return metrics


class Evaluation(EvaluationMixin, ModelRunnerWithObjective[Input, Target, Output]):
    """A runner that measures a model with a metric, in inference mode.

    Args:
        model: the model to measure.
        name: the name in reports; defaults to the class name (positional
            as in the original DRYTorch, or keyword).
        loader: the batches to measure it on.
        metric: what to measure (a metric, a collection, or a loss; a
            torchmetrics metric is wrapped with ``as_objective``).
        objective: the same as ``metric``, as the original DRYTorch names it.

    Raises:
        TypeError: neither or both of ``metric`` and ``objective`` are given.
    """

    def __init__(
        self,
        model: Model[Input, Output],
        name: str = '',
        *,
        loader: SizedLoader,
        metric: objectives.Objective[Output, Target]
        | objectives.StatefulMetric
        | None = None,
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
        super().__init__(model, name, loader=loader, objective=chosen)


class Diagnostic(Evaluation[Input, Target, Output]):
    """Measures a model without reporting to trackers (for hooks and checks).

    Called, it runs the loader once in inference mode and returns the metrics.
    """

    reports = False


class Validation(
    Evaluation[Input, Target, Output], ModelRunnerWithLogs[Input, Target, Output]
):
    """Measures a model during training and reports at the model's epoch."""

    def __call__(
        self, store_outputs: bool = False, *, step: int | None = None
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


class Test(
    Evaluation[Input, Target, Output], ModelRunnerWithLogs[Input, Target, Output]
):
    """Tests a model: reports the start, the metrics and the end of the test."""

    __test__ = False  # not a pytest test class

    def __call__(self, store_outputs: bool = False) -> dict[str, float]:
        """Run the test; see ``test``."""
        return self.test(store_outputs)

    def test(self, store_outputs: bool = False) -> dict[str, float]:
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
