"""Losses: ``LossBase``, ``Loss``, their combinations and ``loss | metrics``."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Self, cast

import torch

from drytorch.core.exceptions import ObjectiveError
from drytorch.lib.objectives.adapters import _follows_protocol, _StatefulMetric
from drytorch.lib.objectives.base import (
    Directions,
    Objective,
    Output,
    Target,
    _check_name,
    _repeated,
)
from drytorch.lib.objectives.errors import (
    _duplicate_error,
    _shape_error,
    _type_error,
)
from drytorch.lib.objectives.formulas import (
    _ADD,
    _ATOM,
    _DOWN,
    _UP,
    COMBINED,
    POWER,
    _apply,
    _constant,
    _leaf,
    _negate,
    _Sign,
    _Term,
)
from drytorch.lib.objectives.metrics import MetricCollection

COMBINED_LOSS = COMBINED
"""The name of most combinations of losses (see ``formulas`` for the others)."""


class LossBase(Objective[Output, Target]):
    """A loss: an objective whose value under ``name`` is minimized.

    Calling the loss updates its running means and returns the value to
    backpropagate. Losses combine with numbers and other losses through
    ``+ - * / **`` into a ``CompositionalLoss``, and ``loss | metrics`` adds
    metrics to report alongside.

    Attributes:
        name: the key of the value to minimize.
        formula: how the loss is built from named losses, e.g. ``[MSE]``.
    """

    name: str
    formula: str

    def __new__(cls, *args: Any, **kwargs: Any) -> Self:
        """Create the loss; ``LossBase(criterion, name, ...)`` makes one of functions.

        The original DRYTorch's call form: ``criterion`` combines the values
        of the functions in ``named_fn`` (by name) into the loss. Subclasses
        are created as usual.
        """
        if cls is LossBase:
            made = Objective.__new__(_CriterionLoss)
            return cast('Self', made)  # __init__ follows: it is a LossBase
        return super().__new__(cls, *args, **kwargs)

    @property
    def higher_is_better(self) -> Directions:
        """False for the loss; reads as False too."""
        return Directions({self.name: False}, self.name)

    def forward(self, outputs: Output, targets: Target) -> torch.Tensor:
        """Update the running means and return the loss, attached to the graph.

        A per-sample loss vector is averaged; a batch loss is returned as is.

        Raises:
            ObjectiveError: the loss has 2 or more dimensions or is missing.
        """
        calculated = self.update(outputs, targets)
        try:
            value = calculated[self.name]
        except KeyError:
            raise ObjectiveError(
                f'{self!r} returned no value under its name {self.name!r}, '
                f'only {list(calculated)}.'
            ) from None
        return value if value.ndim == 0 else value.mean()

    def __call__(self, outputs: Output, targets: Target) -> torch.Tensor:
        """Call ``forward``."""
        return self.forward(outputs, targets)

    def __or__(self, other: object) -> LossWithMetrics[Output, Target]:
        """Report metrics alongside this loss; the result is still a loss."""
        if not _follows_protocol(other):
            return NotImplemented
        return LossWithMetrics(self, other)

    def __add__(
        self, other: LossBase[Output, Target] | float
    ) -> CompositionalLoss[Output, Target]:
        return _binary('+', self, other)

    def __radd__(self, other: float) -> CompositionalLoss[Output, Target]:
        return _binary('+', other, self)

    def __sub__(
        self, other: LossBase[Output, Target] | float
    ) -> CompositionalLoss[Output, Target]:
        return _binary('-', self, other)

    def __rsub__(self, other: float) -> CompositionalLoss[Output, Target]:
        return _binary('-', other, self)

    def __mul__(
        self, other: LossBase[Output, Target] | float
    ) -> CompositionalLoss[Output, Target]:
        return _binary('x', self, other)

    def __rmul__(self, other: float) -> CompositionalLoss[Output, Target]:
        return _binary('x', other, self)

    def __truediv__(
        self, other: LossBase[Output, Target] | float
    ) -> CompositionalLoss[Output, Target]:
        return _binary('/', self, other)

    def __rtruediv__(self, other: float) -> CompositionalLoss[Output, Target]:
        return _binary('/', other, self)

    def __pow__(
        self, other: LossBase[Output, Target] | float
    ) -> CompositionalLoss[Output, Target]:
        return _binary('^', self, other)

    def __rpow__(self, other: float) -> CompositionalLoss[Output, Target]:
        return _binary('^', other, self)

    def __neg__(self) -> CompositionalLoss[Output, Target]:
        term = _term(self)
        assert term is not None  # a loss is always a term
        return CompositionalLoss._from_term(_negate(term))

    def __repr__(self) -> str:
        return f'{type(self).__name__}({getattr(self, "formula", "")})'


class Loss(LossBase[Output, Target]):
    """A loss computed by a function of the outputs and targets.

    Args:
        fn: returns a 0-dim loss or a 1-dim per-sample loss vector.
        name: the key of the value; the formula is ``[name]``.
        higher_is_better: accepted as the original DRYTorch spells it; a loss
            is minimised, so only ``False`` is valid.

    Raises:
        ObjectiveError: ``fn`` is not callable, or ``higher_is_better`` is true.
    """

    def __init__(
        self,
        fn: Callable[[Output, Target], torch.Tensor],
        name: str,
        higher_is_better: bool = False,
    ) -> None:
        if not callable(fn):
            raise ObjectiveError(f'Loss needs a callable, got {fn!r}.')
        if higher_is_better is not False:
            raise ObjectiveError(
                f'Loss {name!r}: a loss is minimised, so higher_is_better must be '
                f'False, got {higher_is_better!r}. Report a value to maximise with '
                'Metric(fn, name, higher_is_better=True), joined with loss | metric.'
            )
        self.fn = fn
        self.name = _check_name(name)
        self.formula = f'[{name}]'

    def calculate(self, outputs: Output, targets: Target) -> dict[str, torch.Tensor]:
        """Return ``{name: fn(outputs, targets)}``."""
        return {self.name: self.fn(outputs, targets)}


class _Component(Loss[Output, Target]):
    """A function given by name to the original's ``LossBase``/``CompositionalLoss``.

    Its direction is unknown: the original's named functions may be metrics.
    """

    @property
    def higher_is_better(self) -> Directions:
        """None: the function's direction is unknown."""
        return Directions({self.name: None}, self.name)


def _batch_value(name: str, value: object) -> torch.Tensor:
    # The value a component contributes to a combined loss for one batch.
    if not isinstance(value, torch.Tensor):
        raise _type_error(name, value)
    if value.ndim == 0:
        return value
    if value.ndim == 1:
        return value.mean()
    raise _shape_error(name, value)


class CompositionalLoss(LossBase[Output, Target]):
    """A loss combined from named losses; usually built with ``+ - * / **``.

    For each batch, every component loss is reduced to its batch value (a
    per-sample vector by its mean) and the combination is applied to those.
    ``calculate`` returns the combined value under ``name`` first, then every
    component's values in order of first appearance, so each is tracked on
    its own.

    Two call forms: ours, ``CompositionalLoss(components, combine, formula)``
    with component losses; and the original DRYTorch's,
    ``CompositionalLoss(criterion, *, name='Loss', higher_is_better,
    formula='', **named_fn)`` with functions of the outputs and targets by
    name, whose values ``criterion`` combines.

    Args:
        components: the losses combined (not compositional ones), by name; or,
            in the original's form, ``criterion``.
        combine: the combined loss from the components' batch values by name.
        formula: a readable description; wrap it in parentheses if it could
            be misread inside a larger formula.
        name: the key of the combined value (``Combined Loss`` in our form,
            ``Loss`` in the original's).
        higher_is_better: the combined value's direction (False by default).
        criterion: the original's keyword for ``components``.
        named_fn: the original's component functions, by name.

    Raises:
        ObjectiveError: two different components share a name, or the call
            mixes the two forms.
    """

    _bare_formula: str
    _sign: _Sign = _UP

    def __init__(
        self,
        components: Sequence[LossBase[Output, Target]]
        | Callable[[Mapping[str, torch.Tensor]], torch.Tensor]
        | None = None,
        combine: Callable[[Mapping[str, torch.Tensor]], torch.Tensor] | None = None,
        formula: str = '',
        *,
        name: str | None = None,
        higher_is_better: bool | None = None,
        criterion: Callable[[Mapping[str, torch.Tensor]], torch.Tensor] | None = None,
        **named_fn: Callable[[Output, Target], torch.Tensor],
    ) -> None:
        if criterion is not None or (
            callable(components) and not isinstance(components, Sequence)
        ):
            function = criterion if criterion is not None else components
            if combine is not None or (criterion is not None and components):
                raise ObjectiveError(
                    'CompositionalLoss takes either (components, combine, formula) '
                    'or (criterion, name=..., formula=..., **named_fn), not both.'
                )
            self._setup_functions(
                cast('Callable[..., torch.Tensor]', function),
                named_fn,
                formula,
                POWER if name is None else name,
            )
        else:
            if named_fn or components is None or combine is None:
                raise ObjectiveError(
                    'CompositionalLoss needs (components, combine, formula): the '
                    'losses, a function of their batch values by name, and a '
                    'formula; or the original form (criterion, **named_fn).'
                )
            self._setup(
                components,
                combine,
                formula,
                COMBINED if name is None else name,
            )
        if higher_is_better is not None:
            self._set_direction(higher_is_better)

    def _set_direction(self, higher_is_better: bool) -> None:
        self._sign = _DOWN if higher_is_better else _UP
        self._directions[self.name] = higher_is_better

    def _setup_functions(
        self,
        criterion: Callable[[Mapping[str, torch.Tensor]], torch.Tensor],
        named_fn: Mapping[str, Callable[[Output, Target], torch.Tensor]],
        formula: str,
        name: str,
    ) -> None:
        # The original's form: components from functions by name.
        leaves = [_Component(fn, key) for key, fn in named_fn.items()]
        self._setup(leaves, criterion, formula, name)

    def _setup(
        self,
        components: Sequence[LossBase[Output, Target]],
        combine: Callable[[Mapping[str, torch.Tensor]], torch.Tensor],
        formula: str,
        name: str,
    ) -> None:
        self.components = _merge_components(components)
        taken = {component.name for component in self.components}
        if name in taken and name != COMBINED:
            name = COMBINED  # e.g. Loss(f, 'Loss') ** 2
        if name in taken:
            raise ObjectiveError(
                f'A component is named {name!r}, which is reserved for the '
                'combined value: rename it.'
            )
        self._combine = combine
        self.name = _check_name(name)
        self.formula = formula or f'[{name}]'
        self._bare_formula = self.formula
        # A formula given by the user may need parentheses anywhere.
        self._precedence = _ADD if formula else _ATOM
        directions: dict[str, bool | None] = {name: self._sign == _DOWN}
        for component in self.components:
            directions.update(component.higher_is_better)
        self._directions = directions

    @classmethod
    def _from_term(cls, term: _Term) -> CompositionalLoss[Any, Any]:
        loss: CompositionalLoss[Any, Any] = cls.__new__(cls)
        loss._sign = term.sign
        loss._setup(term.leaves, term.evaluate, term.shown, term.name)
        loss._bare_formula = term.formula
        loss._precedence = term.precedence
        return loss

    @property
    def higher_is_better(self) -> Directions:
        """The combined value's direction, then the components'.

        True for a combination that falls as its losses fall (``-mse``,
        ``1 / mse``, ``2 - mse``); False otherwise, and also when it is not
        monotonic (``mse - mae``): a loss is minimised. It reads as the
        combined value's direction.
        """
        return Directions(self._directions, self.name)

    def calculate(self, outputs: Output, targets: Target) -> dict[str, torch.Tensor]:
        """Return the combined loss, then the components' values.

        Raises:
            ObjectiveError: a component has 2 or more dimensions, misses its
                name, or two components return the same name.
        """
        values: dict[str, torch.Tensor] = {}
        parts = []
        expected = 1
        batch: dict[str, torch.Tensor] = {}
        for component in self.components:
            part = component.calculate(outputs, targets)
            parts.append(part)
            expected += len(part)
            values.update(part)
            name = component.name
            if name not in part:
                raise ObjectiveError(
                    f'{component!r} returned no value under its name {name!r}.'
                )
            batch[name] = _batch_value(name, part[name])
        result = {self.name: self._combine(batch), **values}
        if len(result) != expected:
            names = [self.name, *(name for part in parts for name in part)]
            raise _duplicate_error(_repeated(names))
        return result


class _CriterionLoss(CompositionalLoss[Output, Target]):
    """What the original's call ``LossBase(criterion, name, ...)`` makes."""

    def __init__(
        self,
        criterion: Callable[[Mapping[str, torch.Tensor]], torch.Tensor],
        name: str,
        higher_is_better: bool = False,
        formula: str = '',
        **named_fn: Callable[[Output, Target], torch.Tensor],
    ) -> None:
        self._setup_functions(criterion, named_fn, formula, name)
        self._set_direction(higher_is_better)

    def __repr__(self) -> str:
        return f'LossBase({self.formula})'


class LossWithMetrics(LossBase[Output, Target], MetricCollection[Output, Target]):
    """A loss reported with metrics: the result of ``loss | metrics``.

    ``calculate`` returns the loss's values first, then the metrics'. It is
    still a loss: calling it returns the loss value to backpropagate.

    Attributes:
        loss: the loss to minimize.
        metrics: the objectives reported alongside.

    Args:
        loss: the loss to minimize.
        metrics: objectives, or objects with update/compute/reset.

    Raises:
        ObjectiveError: ``loss`` is not a loss, or two names coincide.
    """

    def __init__(
        self,
        loss: LossBase[Output, Target],
        *metrics: Objective[Output, Target] | _StatefulMetric,
    ) -> None:
        if isinstance(loss, LossWithMetrics):
            metrics = (*loss.metrics, *metrics)
            loss = loss.loss
        if not isinstance(loss, LossBase):
            raise ObjectiveError(f'LossWithMetrics needs a loss first, got {loss!r}.')
        MetricCollection.__init__(self, loss, *metrics)
        self.loss: LossBase[Output, Target] = loss
        self.metrics: tuple[Objective[Output, Target], ...] = self.objectives[1:]
        self.name = loss.name
        self.formula = loss.formula

    @property
    def higher_is_better(self) -> Directions:
        """The loss's directions, then the metrics'; reads as the loss's."""
        return Directions(self._directions, self.name)

    def __repr__(self) -> str:
        return MetricCollection.__repr__(self)


def _term(operand: object) -> _Term | None:
    if isinstance(operand, int | float):
        return _constant(operand)
    if isinstance(operand, LossWithMetrics):
        raise ObjectiveError(
            f'Cannot combine {operand!r}: combine the losses first, then add the '
            'metrics, as in (loss_a + loss_b) | metrics.'
        )
    if isinstance(operand, CompositionalLoss):
        return _Term(
            operand.components,
            operand._combine,
            getattr(operand, '_bare_formula', operand.formula),  # older pickles
            operand._precedence,
            operand._sign,
            name=operand.name,
        )
    if isinstance(operand, LossBase):
        return _leaf(operand)
    return None


def _merge_components(
    groups: Iterable[LossBase[Output, Target]],
) -> tuple[LossBase[Output, Target], ...]:
    by_name: dict[str, LossBase[Output, Target]] = {}
    for loss in groups:
        if isinstance(loss, CompositionalLoss | LossWithMetrics) or not isinstance(
            loss, LossBase
        ):
            raise ObjectiveError(
                'A component of a CompositionalLoss must be a named loss, '
                f'got {loss!r}.'
            )
        if by_name.setdefault(loss.name, loss) is not loss:
            raise ObjectiveError(
                f'Two different losses are named {loss.name!r}: '
                f'{by_name[loss.name]!r} and {loss!r}. Give them distinct names.'
            )
    return tuple(by_name.values())


def _binary(symbol: str, left: object, right: object) -> CompositionalLoss[Any, Any]:
    # NotImplemented for an unsupported operand, as binary dunders return.
    left_term = _term(left)
    right_term = _term(right)
    if left_term is None or right_term is None:
        return cast('CompositionalLoss[Any, Any]', NotImplemented)
    return CompositionalLoss._from_term(_apply(symbol, left_term, right_term))
