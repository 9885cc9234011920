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
import sys
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from drytorch.core import exceptions

__all__ = ['ContribPackageMissingError', 'forwarder', 'import_contrib']


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


def import_contrib(module: str, distribution: str, what: str) -> ModuleType:
    """Import a contrib package's module, or say which distribution to install.

    Args:
        module: the module to import (``drytorch_contrib_wandb.tracker``).
        distribution: the distribution that provides it.
        what: the name asked for, at the original's path, for the message.

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
        message = (
            f'{what} is provided by the {distribution} package, which is not '
            f'installed. Install it with `pip install {distribution}` (from a '
            f'DRYTorch checkout: `pip install ./contrib/{distribution}`).'
        )
        raise ContribPackageMissingError(message, module.split('.')[0]) from error


def forwarder(
    module_name: str, modules: Mapping[str, str], distribution: str
) -> Callable[[str], Any]:
    """Return the module ``__getattr__`` of a forwarding module.

    Args:
        module_name: the forwarding module (its ``__name__``).
        modules: each forwarded name and the contrib module that holds it.
        distribution: the distribution of those modules.

    The first use of a name imports its contrib module and caches the value
    in the forwarding module, so later uses are plain attribute reads.
    """

    def __getattr__(name: str) -> Any:
        if name not in modules:
            raise AttributeError(f'module {module_name!r} has no attribute {name!r}')
        module = import_contrib(modules[name], distribution, f'{module_name}.{name}')
        value = getattr(module, name)
        setattr(sys.modules[module_name], name, value)
        return value

    return __getattr__
