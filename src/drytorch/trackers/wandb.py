"""The original DRYTorch's ``trackers.wandb``: forwards to the contrib package.

``Wandb`` is a thin subclass of ``drytorch_contrib_wandb.Wandb`` (install
``drytorch-contrib-wandb``) that also takes the original's arguments,
``Wandb(par_dir=None, settings=None)``: ``par_dir`` is where W&B writes its
``wandb/`` folder (ours: ``dir``), and ``settings`` a ``wandb.Settings`` passed
to ``wandb.init``, whose ``project`` and ``entity`` are used when not given
otherwise. Every keyword of the contrib tracker works too. The class is built
on first use, so importing this module imports neither the contrib package
nor wandb; ``from drytorch.trackers.wandb import Wandb`` fails at that line
when the package is missing, with an error naming it.

``WandbWarning`` exists for imports and warning filters written for the
original; the contrib tracker issues no warning of that class.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from drytorch.core import exceptions
from drytorch.trackers._contrib import import_contrib

if TYPE_CHECKING:
    from drytorch_contrib_wandb.tracker import Wandb as ContribWandb

__all__ = ['Wandb', 'WandbWarning']  # noqa: F822 (Wandb: module __getattr__)

DISTRIBUTION = 'drytorch-contrib-wandb'


class WandbWarning(exceptions.DryTorchWarning):
    """The original's W&B warning; kept for imports, not issued by ours."""


def _build() -> type[ContribWandb]:
    """Return the subclass of the contrib tracker taking the original's arguments."""
    module = import_contrib(
        'drytorch_contrib_wandb.tracker', DISTRIBUTION, f'{__name__}.Wandb'
    )
    base: type[ContribWandb] = module.Wandb

    class Wandb(base):  # type: ignore[valid-type,misc]
        """The contrib ``Wandb`` tracker, also taking the original's arguments.

        Args:
            par_dir: where W&B writes its ``wandb/`` folder (ours: ``dir``).
            settings: a ``wandb.Settings`` for ``wandb.init``; its ``project``
                and ``entity`` apply unless ``project=`` / ``entity=`` say
                otherwise.
            **kwargs: the contrib tracker's keywords (``project``, ``mode``,
                ``init_kwargs``...).
        """

        def __init__(
            self,
            par_dir: str | os.PathLike[str] | None = None,
            settings: Any = None,
            *,
            project: str | None = None,
            entity: str | None = None,
            dir: str | os.PathLike[str] | None = None,
            mode: str | None = None,
            model_prefix: bool = True,
            log_checkpoints: bool | Literal['reference', 'file'] = False,
            init_kwargs: Mapping[str, Any] | None = None,
        ) -> None:
            if par_dir is not None and dir is not None:
                raise TypeError('Give par_dir= or dir= (the same thing), not both.')
            extra = dict(init_kwargs or {})
            if settings is not None:
                if 'settings' in extra:
                    raise TypeError(
                        'Give settings= or init_kwargs={"settings": ...}, not both.'
                    )
                extra['settings'] = settings
                project = project or getattr(settings, 'project', None) or None
                entity = entity or getattr(settings, 'entity', None) or None
            super().__init__(
                project,
                entity=entity,
                dir=par_dir if dir is None else dir,
                mode=mode,
                model_prefix=model_prefix,
                log_checkpoints=log_checkpoints,
                init_kwargs=extra,
            )

    Wandb.__module__ = __name__
    Wandb.__qualname__ = 'Wandb'
    return Wandb


def __getattr__(name: str) -> Any:
    if name == 'Wandb':
        value = _build()
        globals()[name] = value
        return value
    raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
