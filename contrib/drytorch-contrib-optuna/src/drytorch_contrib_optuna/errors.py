"""The errors of the Optuna integration."""

from __future__ import annotations

from drytorch.exceptions import DryTorchError

__all__ = ['OptunaError']


class OptunaError(DryTorchError, ValueError):
    """An Optuna trial, tuning configuration or reported value cannot be used."""
