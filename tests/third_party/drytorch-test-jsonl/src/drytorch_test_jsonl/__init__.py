"""A third-party tracker built on DRYTorch's public contract alone.

``JsonlTracker`` appends every metrics event to ``<par_dir>/jsonl/<experiment>/
<run id>.jsonl`` and counts the sessions of each run in its plugin state. The
module-level ``load_metrics`` reads the file back for ``drytorch plot``, in a
process where no tracker exists.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Mapping
from typing import Any

from drytorch import MetricHistory, RunView, Tracker, hookimpl
from drytorch.log_events import MetricsEvent, RunStartEvent

LABEL = 'JsonlTracker'


def _file(run: RunView) -> pathlib.Path:
    return run.par_dir / 'jsonl' / run.experiment / f'{run.id}.jsonl'


class JsonlTracker(Tracker):
    """Metrics as JSON lines, and a session count kept in the plugin state."""

    @hookimpl
    def on_run_start(self, event: RunStartEvent, run: RunView) -> None:
        state = run.plugin_state('jsonl')
        sessions = int(state.get('sessions', 0)) + 1
        run.save_plugin_state('jsonl', {'sessions': sessions, 'file': str(_file(run))})

    @hookimpl
    def on_metrics(self, event: MetricsEvent, run: RunView) -> None:
        path = _file(run)
        path.parent.mkdir(parents=True, exist_ok=True)
        line = {
            'model': event.model_name,
            'source': event.source_name,
            'epoch': event.epoch,
            'metrics': dict(event.metrics),
        }
        with path.open('a', encoding='utf-8') as file:
            file.write(json.dumps(line) + '\n')

    @hookimpl
    def run_outputs(self, run: RunView) -> Mapping[str, str]:
        return {LABEL: str(_file(run))}


@hookimpl
def tracker_types() -> Mapping[str, Any]:
    """Offer the tracker by name."""
    return {LABEL: JsonlTracker}


@hookimpl
def load_metrics(run: RunView) -> dict[str, dict[str, MetricHistory]] | None:
    """Read the run's JSON lines back, if this tracker wrote them."""
    place = run.outputs.get(LABEL)
    if place is None or not pathlib.Path(place).is_file():
        return None
    found: dict[str, dict[str, MetricHistory]] = {}
    for text in pathlib.Path(place).read_text(encoding='utf-8').splitlines():
        line = json.loads(text)
        sources = found.setdefault(line['model'], {})
        sources.setdefault(line['source'], MetricHistory()).add(
            line['epoch'], line['metrics']
        )
    return found
