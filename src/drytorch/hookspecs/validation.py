"""Hooks that validate user input before DRYTorch acts on it."""

from __future__ import annotations

from typing import Any, Literal

from drytorch.hookspecs._markers import hookspec

NameKind = Literal['experiment', 'run', 'model', 'tag']


@hookspec
def validate_name(name: str, kind: NameKind) -> None:
    r"""Validation: refuse an experiment name, run id, model name or tag by raising.

    Names become file and folder names, so the built-in validator refuses
    anything that could escape its folder (``/``, ``\\``, ``..``, control
    characters, over-long names) with ``InvalidNameError``.
    """


@hookspec
def validate_config(config: Any) -> None:
    """Validation: refuse an experiment configuration by raising.

    Called when an ``Experiment`` is created, with the configuration it
    keeps: plain mutable containers (dicts, lists, sets, mutable dataclasses,
    writable OmegaConf nodes) arrive as frozen deep copies. The built-in
    validator refuses what can still change after creation (pydantic models
    that are not frozen) and what cannot be recorded.
    """
