"""MLflow for DRYTorch: a tracker logging each DRYTorch run as an MLflow run.

``MLflow`` is imported on first use, so importing this package (as DRYTorch
does when it loads the plugin) imports neither MLflow nor torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drytorch_contrib_mlflow.__about__ import __version__

if TYPE_CHECKING:
    from drytorch_contrib_mlflow.tracker import MLflow

__all__ = ['MLflow', '__version__']


def __getattr__(name: str) -> Any:
    if name == 'MLflow':
        from drytorch_contrib_mlflow.tracker import MLflow

        return MLflow
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
