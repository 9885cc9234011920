"""The loss algebra: formula terms, how they print and how they evaluate.

A term is a loss expression built by ``+ - * / **`` from named losses and
numbers. This module knows nothing of the loss classes: ``losses`` turns
losses into terms and terms into a ``CompositionalLoss``.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import torch

if TYPE_CHECKING:
    from drytorch.lib.objectives.losses import LossBase

# Formula precedences, loosest first.
_ADD, _NEG, _MUL, _POW, _ATOM = range(5)

_OPERATIONS: dict[str, tuple[Callable[[Any, Any], Any], int]] = {
    '+': (operator.add, _ADD),
    '-': (operator.sub, _ADD),
    'x': (operator.mul, _MUL),
    '/': (operator.truediv, _MUL),
    '^': (operator.pow, _POW),
}


class _Term(NamedTuple):
    """A loss expression: its leaf losses, how to evaluate it, how to print it."""

    leaves: tuple[LossBase[Any, Any], ...]
    evaluate: Callable[[Mapping[str, torch.Tensor]], Any]
    formula: str
    precedence: int


def _format_number(number: float) -> str:
    if isinstance(number, bool):
        number = int(number)
    if isinstance(number, float) and number.is_integer() and abs(number) < 1e15:
        return repr(int(number))
    return repr(number)


# The evaluation nodes are classes, not closures, so that losses pickle.
class _Constant:
    __slots__ = ('number',)

    def __init__(self, number: float) -> None:
        self.number = number

    def __call__(self, values: Mapping[str, torch.Tensor]) -> float:
        return self.number


class _Leaf:
    __slots__ = ('name',)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return values[self.name]


class _Negative:
    __slots__ = ('operand',)

    def __init__(self, operand: Callable[[Mapping[str, torch.Tensor]], Any]) -> None:
        self.operand = operand

    def __call__(self, values: Mapping[str, torch.Tensor]) -> Any:
        return -self.operand(values)


class _Operation:
    __slots__ = ('left', 'operation', 'right')

    def __init__(
        self,
        operation: Callable[[Any, Any], Any],
        left: Callable[[Mapping[str, torch.Tensor]], Any],
        right: Callable[[Mapping[str, torch.Tensor]], Any],
    ) -> None:
        self.operation = operation
        self.left = left
        self.right = right

    def __call__(self, values: Mapping[str, torch.Tensor]) -> Any:
        return self.operation(self.left(values), self.right(values))


def _parenthesize(formula: str, needed: bool) -> str:
    # A leading minus is always wrapped: "[A] - (-[B])", "2 x (-[A])".
    return f'({formula})' if needed or formula.startswith('-') else formula


def _constant(number: float) -> _Term:
    """Return the term of a number."""
    return _Term((), _Constant(number), _format_number(number), _ATOM)


def _leaf(loss: LossBase[Any, Any]) -> _Term:
    """Return the term of a named loss, printed ``[name]``."""
    name = loss.name
    return _Term((loss,), _Leaf(name), f'[{name}]', _ATOM)


def _negate(term: _Term) -> _Term:
    """Return the term ``-term``."""
    operand = _parenthesize(term.formula, term.precedence <= _NEG)
    return _Term(term.leaves, _Negative(term.evaluate), f'-{operand}', _NEG)


def _apply(symbol: str, left_term: _Term, right_term: _Term) -> _Term:
    """Return the term ``left_term symbol right_term``, parenthesized as needed."""
    operation, precedence = _OPERATIONS[symbol]
    if symbol == '^':
        base = _parenthesize(left_term.formula, left_term.precedence <= _POW)
        exponent = _parenthesize(right_term.formula, right_term.precedence < _ATOM)
        formula = f'{base}^{exponent}'
    else:
        # Only - and / need parentheses around an equally loose right operand.
        right_needed = right_term.precedence < precedence or (
            symbol in '-/' and right_term.precedence == precedence
        )
        first = left_term.formula
        if left_term.precedence < precedence:
            first = f'({first})'
        second = _parenthesize(right_term.formula, right_needed)
        formula = f'{first} {symbol} {second}'
    return _Term(
        left_term.leaves + right_term.leaves,
        _Operation(operation, left_term.evaluate, right_term.evaluate),
        formula,
        precedence,
    )
