"""Forwarding the original DRYTorch's paths to ``drytorch-contrib-*`` packages.

The original shipped its W&B, TensorBoard, Hydra, Optuna, SQLAlchemy and
plotly integrations inside the package; ours keeps them in separately
installable contrib packages, so that the core depends on none of them. The
modules at the original's paths (``drytorch.trackers.wandb``,
``drytorch.contrib.optuna``...) resolve their names through a module
``__getattr__`` that imports the contrib package on first use: importing the
forwarding module itself costs nothing and never fails, while
``from drytorch.trackers.wandb import Wandb`` fails at that very line, as in
the original, with ``ContribPackageMissingError`` naming the package to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from drytorch.core import exceptions

__all__ = ['ContribPackageMissingError', 'import_contrib']


class ContribPackageMissingError(exceptions.DryTorchError, ModuleNotFoundError):
    """A name at the original's path lives in a contrib package that is missing.

    It is a ``ModuleNotFoundError`` (so an ``ImportError``), whose ``name`` is
    the contrib module, so code that guards an optional import with
    ``except ImportError`` keeps working.
    """

    def __init__(self, message: str, module: str) -> None:
        super().__init__(message, name=module)


def _blocked_or_missing(error: ModuleNotFoundError, module: str) -> bool:
    """Whether ``error`` says ``module`` itself (not one of its imports) is absent."""
    return error.name is not None and (
        error.name == module or module.startswith(f'{error.name}.')
    )


def import_contrib(
    module: str, distribution: str, what: str, *, alternative: str | None = None
) -> ModuleType:
    """Import a contrib package's module, or say which distribution to install.

    Args:
        module: the module to import (``drytorch_contrib_wandb.tracker``).
        distribution: the distribution that provides it.
        what: the name asked for, at the original's path, for the message.
        alternative: for a package not written yet, the built-in to use
            instead; the message then says so.

    Raises:
        ContribPackageMissingError: the module is not installed (or its import
            is blocked). A missing dependency of an installed contrib package
            is reported as it is.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if not _blocked_or_missing(error, module):
            raise
        if alternative is None:
            message = (
                f'{what} is provided by the {distribution} package, which is not '
                f'installed. Install it with `pip install {distribution}` (from a '
                f'DRYTorch checkout: `pip install ./contrib/{distribution}`).'
            )
        else:
            message = (
                f'{what} would be provided by the {distribution} package, which '
                f'is not written yet (`pip install {distribution}` once it '
                f'exists). Use {alternative} instead.'
            )
        raise ContribPackageMissingError(message, module.split('.')[0]) from error
