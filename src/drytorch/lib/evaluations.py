"""The original DRYTorch's ``drytorch.lib.evaluations``: the evaluation runners.

Ours live in ``drytorch.lib.runners``; these are the same classes, importable
from the original's path. Each takes the name positionally or as a keyword
(``Validation(model, 'val', loader=..., metric=...)``).
"""

from __future__ import annotations

from drytorch.lib.runners import Diagnostic, EvaluationMixin, Test, Validation

__all__ = ['Diagnostic', 'EvaluationMixin', 'Test', 'Validation']
