"""Query hooks that find what plugins wrote about a run, for people and tools.

``drytorch show``, ``plot`` and ``compare`` run in another process than the
run, where no tracker object exists: they ask these hooks of the entry-point
plugins, with a ``RunView`` of the recorded run. During a run, tracker
objects answer them too. A plugin that writes outputs under a label reads
them back by that label: the label is its part of the contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from drytorch.hookspecs._markers import hookspec

if TYPE_CHECKING:
    from drytorch.core.run_view import RunView
    from drytorch.trackers.base import MetricHistory


@hookspec
def run_outputs(run: RunView) -> Mapping[str, str] | None:
    """Query: where this plugin writes or wrote ``run``'s outputs, by label.

    Locations are for people: a folder, a file, a URL. The core asks right
    after ``on_run_start`` and keeps the answers in the run's summary
    (``[summary.outputs]``), so they are known even if the run crashes; the
    CLI asks again for a recorded run and merges the answers with those. A
    plugin that raises is reported and skipped.
    """
    raise NotImplementedError


@hookspec(firstresult=True)
def load_metrics(run: RunView) -> Mapping[str, Mapping[str, MetricHistory]] | None:
    """Query: ``run``'s metric history as ``{model: {source: MetricHistory}}``.

    Return ``None`` when this plugin stored no metrics for the run; the next
    plugin is asked. A plugin that raises is reported and the next one asked.
    The built-in readers answer from the files of ``CSVDumper`` and
    ``SQLiteTracker``, found through ``run.outputs``.
    """
    raise NotImplementedError
