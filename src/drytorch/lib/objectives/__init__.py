"""Losses and metrics with exact aggregation over an epoch, and a loss algebra.

An objective computes named values for one batch (``calculate``) and keeps
running sums of them on their device (``update``), so the mean over an epoch
(``compute``) is exact even when batches have different sizes, and no batch
forces the host to wait for the accelerator.

Example:
    >>> mse = Loss(lambda o, t: ((o - t) ** 2).mean(), 'MSE')
    >>> mae = Loss(lambda o, t: (o - t).abs().mean(), 'MAE')
    >>> loss = mse**2 + 0.5 * mae
    >>> loss.formula
    '[MSE]^2 + 0.5 x [MAE]'

Layout, each module building only on those before it:

* ``errors``: the messages of the errors raised here;
* ``sums``: ``_RunningSums``, what an objective has accumulated since its
  last reset and the means it makes of it (where a cross-process reduction
  goes);
* ``base``: ``Objective`` and the helpers its subclasses share;
* ``adapters``: torchmetrics-style objects (update/compute/reset) as
  objectives: ``as_objective``; ``compute_metrics``, values as floats;
* ``metrics``: ``Metric`` and ``MetricCollection``;
* ``formulas``: the terms of the loss algebra, how they print and evaluate;
* ``losses``: ``LossBase``, ``Loss``, ``CompositionalLoss``,
  ``LossWithMetrics``;
* ``loss_adapters``: differentiable torchmetrics metrics as losses:
  ``as_loss``.

Every name is importable from this package.
"""

# Besides __all__: the type variables, COMBINED_LOSS, and the private classes
# that objectives pickled when this package was a single module refer to.
from typing import Any

from drytorch.lib.objectives.adapters import _ProtocolObjective as _ProtocolObjective
from drytorch.lib.objectives.adapters import _StatefulMetric as StatefulMetric
from drytorch.lib.objectives.adapters import as_objective, compute_metrics
from drytorch.lib.objectives.base import Directions as Directions
from drytorch.lib.objectives.base import Objective
from drytorch.lib.objectives.base import Output as Output
from drytorch.lib.objectives.base import Target as Target
from drytorch.lib.objectives.formulas import _Constant as _Constant
from drytorch.lib.objectives.formulas import _Leaf as _Leaf
from drytorch.lib.objectives.formulas import _Negative as _Negative
from drytorch.lib.objectives.formulas import _Operation as _Operation
from drytorch.lib.objectives.loss_adapters import _BatchMetric as BatchMetric
from drytorch.lib.objectives.loss_adapters import as_loss
from drytorch.lib.objectives.losses import COMBINED_LOSS as COMBINED_LOSS
from drytorch.lib.objectives.losses import (
    CompositionalLoss,
    Loss,
    LossBase,
    LossWithMetrics,
)
from drytorch.lib.objectives.metrics import Metric, MetricCollection

__all__ = [
    'BatchMetric',
    'CompositionalLoss',
    'Loss',
    'LossBase',
    'LossWithMetrics',
    'Metric',
    'MetricCollection',
    'Objective',
    'StatefulMetric',
    'as_loss',
    'as_objective',
    'compute_metrics',
]


def __getattr__(name: str) -> Any:
    """Return ``MetricTracker`` (``lib.monitors``), imported only when asked."""
    if name == 'MetricTracker':
        from drytorch.lib.monitors import MetricTracker

        return MetricTracker
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
