"""The original DRYTorch's ``trackers.tensorboard``: forwards to the contrib package.

``TensorBoard`` is ``drytorch_contrib_tensorboard.TensorBoard`` itself (install
``drytorch-contrib-tensorboard``). The module imports nothing until the name
is used: ``from drytorch.trackers.tensorboard import TensorBoard`` fails at
that line when the package is missing, with an error naming it.

It takes the original's ``TensorBoard(par_dir=None, start_server=True,
max_queue_size=10, flush_secs=120)`` arguments, with two defaults of ours:
``start_server=False`` (a server is a long-lived thread and a port, started
only when asked; else run ``tensorboard --logdir <par_dir>/tensorboard``) and
``flush_secs=10``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drytorch.trackers._contrib import forwarder

if TYPE_CHECKING:
    from drytorch_contrib_tensorboard import TensorBoard

__all__ = ['TensorBoard']

DISTRIBUTION = 'drytorch-contrib-tensorboard'


__getattr__ = forwarder(
    __name__,
    dict.fromkeys(__all__, 'drytorch_contrib_tensorboard.tracker'),
    DISTRIBUTION,
)
