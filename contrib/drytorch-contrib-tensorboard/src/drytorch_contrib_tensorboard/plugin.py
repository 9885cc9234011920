"""The DRYTorch plugin (entry point ``tensorboard``): offers the tracker by name.

It implements ``tracker_types`` only. It deliberately does not implement
``default_trackers``: installing the package must not make every experiment
start writing event files. Users opt in, by name in the settings
(``[tool.drytorch] trackers = ["TensorBoard"]``) or by subscribing an instance.

Nothing heavy is imported here, so ``drytorch plugins`` stays fast.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from drytorch import hookimpl

if TYPE_CHECKING:
    from drytorch import Tracker


@hookimpl
def tracker_types() -> Mapping[str, Callable[[], Tracker]]:
    """Offer the ``TensorBoard`` tracker."""
    from drytorch_contrib_tensorboard.tracker import TensorBoard

    return {'TensorBoard': TensorBoard}
