"""What the ``drytorch`` command takes from a run record, checked before use.

A record is a file that anyone who can write the registry can edit, so
nothing in it is trusted: its experiment name and run id become parts of
paths, and its model and source names lines on the terminal. They pass the
same check as names given in code (``drytorch.validators.names.check_name``),
whatever validators are enabled. A record whose experiment name, run id or
folder fails is refused with a ``CorruptRecordError`` naming the file and the
field; a failing entry inside it (a model's metrics) is skipped with a
``RecordWarning`` that says which.
"""

from __future__ import annotations

import os
import pathlib
import warnings
from collections.abc import Mapping
from typing import Any

from drytorch.cli.tables import printable
from drytorch.core import exceptions, registry, run_view
from drytorch.validators.names import MAX_LENGTH, check_name

__all__ = ['check_record', 'last_metrics', 'outputs', 'par_dir']


def check_record(record: registry.RunRecord) -> None:
    """Refuse a record whose experiment name or run id is not a safe name.

    Raises:
        CorruptRecordError: naming the record and the field.
    """
    run_view.check_record(record)


def par_dir(record: registry.RunRecord) -> pathlib.Path:
    """Return the experiment's output folder that the record names.

    Raises:
        CorruptRecordError: the field is missing or not an absolute path.
    """
    return run_view.record_par_dir(record)


def outputs(record: registry.RunRecord) -> dict[str, pathlib.Path]:
    """Return the absolute output places of ``[summary.outputs]``; skip the rest."""
    found = _summary(record).get('outputs', {})
    places = {}
    for name, place in found.items() if isinstance(found, Mapping) else ():
        if isinstance(place, str) and '\0' not in place and os.path.isabs(place):
            places[str(name)] = pathlib.Path(place)
        else:
            _skip(record, f'summary.outputs.{name}', 'is not an absolute path')
    return places


def last_metrics(record: registry.RunRecord) -> dict[str, dict[str, dict[str, Any]]]:
    """Return ``{model: {source: metrics}}`` as recorded when the run stopped.

    Models with an unsafe name, sources and metrics whose names are not
    printable text, and values that are not numbers are skipped with a
    warning.
    """
    models = _summary(record).get('metrics', {})
    found: dict[str, dict[str, dict[str, Any]]] = {}
    for model, sources in models.items() if isinstance(models, Mapping) else ():
        field = f'summary.metrics.{model}'
        try:
            check_name(model, 'model')
        except exceptions.InvalidNameError as err:
            _skip(record, field, str(err))
            continue
        if not isinstance(sources, Mapping):
            _skip(record, field, 'is not a table')
            continue
        for source, metrics in sources.items():
            checked = _metrics(record, f'{field}.{source}', source, metrics)
            if checked is not None:
                found.setdefault(model, {})[source] = checked
    return found


def _metrics(
    record: registry.RunRecord, field: str, source: str, metrics: object
) -> dict[str, Any] | None:
    problem = _label_problem(source)
    if problem:
        _skip(record, field, f'the source name {problem}')
        return None
    if not isinstance(metrics, Mapping):
        _skip(record, field, 'is not a table')
        return None
    checked = {}
    for name, value in metrics.items():
        problem = _label_problem(name)
        if problem:
            _skip(record, f'{field}.{name}', f'the metric name {problem}')
        elif isinstance(value, bool) or not isinstance(value, int | float):
            _skip(record, f'{field}.{name}', 'is not a number')
        else:
            checked[name] = value
    return checked


def _label_problem(name: object) -> str:
    """Return why ``name`` cannot be shown as a source or metric name, or ''.

    Source and metric names are labels, never file names (the trackers make
    file names from them safely), so they only need to be printable.
    """
    if not isinstance(name, str) or not name:
        return 'is empty'
    if len(name) > MAX_LENGTH:
        return f'is longer than {MAX_LENGTH} characters'
    if printable(name) != name:
        return f'{printable(name)!r} holds control characters'
    return ''


def _summary(record: registry.RunRecord) -> Mapping[str, Any]:
    summary = record.data.get('summary', {})
    return summary if isinstance(summary, Mapping) else {}


def _skip(record: registry.RunRecord, field: str, problem: str) -> None:
    warnings.warn(
        f'Run record {record.path}: {printable(field)} {problem}; it was skipped.',
        registry.RecordWarning,
        stacklevel=3,
    )
