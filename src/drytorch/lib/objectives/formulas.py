"""The loss algebra: formula terms, how they print and how they evaluate.

A term is a loss expression built by ``+ - * / **`` from named losses and
numbers. This module knows nothing of the loss classes: ``losses`` turns
losses into terms and terms into a ``CompositionalLoss``.

Names, formulas and directions are spelled as the original DRYTorch spells
them, so that code and logs written for it read the same: an operation with a
number, or a negation, is wrapped in parentheses when it is the whole formula
(``(2 x [MSE])``); numbers come first in sums and products (``mse + 3`` is
``(3 + [MSE])``); dividing by a number multiplies by its reciprocal, and
``loss ** -1`` is ``(1 / [loss])``. ``-loss`` is named ``Negative <name>``,
powers and reciprocals ``Loss``, anything else ``Combined Loss``. A term also
knows whether it grows with its losses (``sign``): a loss that falls as they
fall (``-mse``, ``1 / mse``) has a higher value when better.
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


COMBINED = 'Combined Loss'
"""The name of a combination of losses."""

POWER = 'Loss'
"""The name of a power or a reciprocal of a loss (the original's default)."""

# How a term varies with its leaf losses: growing, falling, constant, unknown.
_UP, _DOWN, _FLAT = 1, -1, 0
_Sign = int | None


class _Term(NamedTuple):
    """A loss expression: its leaf losses, how to evaluate it, how to print it.

    ``formula`` is the bare formula, parenthesized only inside; ``wrap`` tells
    whether the whole formula is shown in parentheses; ``number`` is the value
    of a constant term.
    """

    leaves: tuple[LossBase[Any, Any], ...]
    evaluate: Callable[[Mapping[str, torch.Tensor]], Any]
    formula: str
    precedence: int
    sign: _Sign = _UP
    wrap: bool = False
    name: str = COMBINED
    number: float | None = None

    @property
    def shown(self) -> str:
        """The formula as a loss shows it."""
        return f'({self.formula})' if self.wrap else self.formula


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
    value = int(number) if isinstance(number, bool) else number
    return _Term(
        (), _Constant(value), _format_number(value), _ATOM, _FLAT, number=value
    )


def _leaf(loss: LossBase[Any, Any]) -> _Term:
    """Return the term of a named loss, printed ``[name]``."""
    name = loss.name
    return _Term((loss,), _Leaf(name), f'[{name}]', _ATOM, _UP, name=name)


def _flip(sign: _Sign) -> _Sign:
    return None if sign is None else -sign


def _scale(sign: _Sign, number: float) -> _Sign:
    # The sign of number * term.
    if number == 0:
        return _FLAT
    return sign if number > 0 else _flip(sign)


def _add_signs(first: _Sign, second: _Sign) -> _Sign:
    if first is None or second is None:
        return None
    if first in (_FLAT, second):
        return second
    return first if second == _FLAT else None


def _sign(symbol: str, left: _Term, right: _Term) -> _Sign:
    """How ``left symbol right`` varies with the losses (None: not monotonic)."""
    if symbol == '+':
        return _add_signs(left.sign, right.sign)
    if symbol == '-':
        return _add_signs(left.sign, _flip(right.sign))
    if symbol == 'x':
        if left.number is not None:
            return _scale(right.sign, left.number)
        if right.number is not None:
            return _scale(left.sign, right.number)
        return _UP if left.sign == right.sign == _UP else None
    if symbol == '/':
        if right.number is not None:
            return _scale(left.sign, 1.0) if right.number > 0 else None
        if left.number is not None:
            return _scale(_flip(right.sign), left.number)
        return _add_signs(left.sign, _flip(right.sign))
    # '^'
    if right.number is not None:
        return _scale(left.sign, right.number)
    if left.number is not None:
        if left.number <= 0:
            return None
        return _scale(right.sign, left.number - 1)
    return None


def _negate(term: _Term) -> _Term:
    """Return the term ``-term``, named ``Negative <name>``."""
    operand = _parenthesize(term.formula, term.precedence <= _NEG)
    return _Term(
        term.leaves,
        _Negative(term.evaluate),
        f'-{operand}',
        _NEG,
        _flip(term.sign),
        wrap=True,
        name=f'Negative {term.name}',
    )


def _apply(symbol: str, left_term: _Term, right_term: _Term) -> _Term:
    """Return the term ``left_term symbol right_term``, spelled as the original.

    Dividing by a (non-zero) number multiplies by its reciprocal, a power of
    -1 is a reciprocal, and a number goes first in a sum or a product.
    """
    right_number = right_term.number
    if symbol == '/' and right_number is not None and right_number != 0:
        symbol, right_term = 'x', _constant(1 / right_number)
    elif symbol == '^' and right_number == -1 and left_term.number is None:
        symbol, left_term, right_term = '/', _constant(1), left_term
    if symbol in '+x' and right_term.number is not None and left_term.number is None:
        left_term, right_term = right_term, left_term
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
    reciprocal = symbol == '/' and left_term.number == 1
    return _Term(
        left_term.leaves + right_term.leaves,
        _Operation(operation, left_term.evaluate, right_term.evaluate),
        formula,
        precedence,
        _sign(symbol, left_term, right_term),
        wrap=left_term.number is not None or right_term.number is not None,
        name=POWER if symbol == '^' or reciprocal else COMBINED,
    )
