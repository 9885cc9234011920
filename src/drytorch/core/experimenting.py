"""The original DRYTorch's module path of ``Experiment`` and ``Run``.

Ours live in ``drytorch.core.experiment`` (``Run`` is defined in
``drytorch.core.run``); this module re-exports them so that
``from drytorch.core.experimenting import Experiment, Run`` works unchanged.
"""

from __future__ import annotations

from drytorch.core.experiment import Experiment, Run

__all__ = ['Experiment', 'Run']
