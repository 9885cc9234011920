"""The ``HydraLink`` tracker: a run keeps its Hydra output folder.

Hydra gives each job an output folder of its own (``outputs/<date>/<time>/``:
the composed configuration in ``.hydra/``, the overrides, the job's log).
``HydraLink`` puts that folder in the run's outputs, one entry per session of
the run (a resumed run was started by another Hydra job)::

    <par_dir>/hydra/<experiment>/<run id>/<Hydra folder's name>

With ``copy_hydra`` (the default) the entry is a copy, made when the run
starts and made again when it stops (so it has the job's whole log); it
survives the Hydra folder's deletion. Without, it is a symbolic link to the
Hydra folder (a copy where links cannot be made, with a warning).

The Hydra folder is ``hydra_dir`` when given, else the running Hydra job's
``HydraConfig.get().runtime.output_dir``, read when each run starts (so a
tracker made once serves every job of a multirun). The folders of the run's
sessions are saved in the run's record (``[plugins.hydra]``), where
``drytorch show`` finds them.

Hydra is imported when the tracker is created, not with this module.
"""

from __future__ import annotations

import importlib.util
import os
import pathlib
import shutil
import warnings
from typing import TYPE_CHECKING, Any

from drytorch import Dumper, hookimpl
from drytorch.exceptions import DryTorchWarning, TrackerError

from drytorch_contrib_hydra.plugin import STATE_NAME

if TYPE_CHECKING:
    from drytorch import RunView

__all__ = ['HydraLink', 'HydraNotRunningError', 'hydra_output_dir']

INSTALL_HINT = 'pip install drytorch-contrib-hydra (or pip install hydra-core)'


class HydraNotRunningError(TrackerError):
    """``HydraLink`` has no Hydra folder: no Hydra job runs and no ``hydra_dir``."""

    def __init__(self) -> None:
        super().__init__(
            'HydraLink needs a Hydra output folder: create it inside a function '
            'decorated with @hydra.main (where Hydra sets one up), or pass '
            'hydra_dir= (the folder to keep).'
        )


def hydra_output_dir() -> pathlib.Path | None:
    """Return the running Hydra job's output folder, ``None`` outside a job."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return pathlib.Path(HydraConfig.get().runtime.output_dir)


class HydraLink(Dumper):
    """Puts the Hydra output folder of each session in the run's outputs.

    Args:
        par_dir: the folder to write in; defaults to the experiment's.
        copy_hydra: copy the Hydra folder (at the run's start and stop)
            rather than link it.
        hydra_dir: the folder to keep; by default the running Hydra job's.

    Raises:
        ImportError: Hydra is not installed (and no ``hydra_dir`` is given).
        HydraNotRunningError: no Hydra job runs and no ``hydra_dir`` is given.
    """

    kind = 'hydra'

    def __init__(
        self,
        par_dir: str | os.PathLike[str] | None = None,
        copy_hydra: bool = True,
        hydra_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if hydra_dir is None:
            if importlib.util.find_spec('hydra') is None:
                raise ImportError(f'HydraLink needs Hydra: {INSTALL_HINT}.')
            if hydra_output_dir() is None:
                raise HydraNotRunningError()
        super().__init__(par_dir)
        self.copy_hydra = copy_hydra
        self.hydra_dir = None if hydra_dir is None else pathlib.Path(hydra_dir)
        self._entry: pathlib.Path | None = None  # this session's
        self._source: pathlib.Path | None = None

    @property
    def entry(self) -> pathlib.Path | None:
        """The link or copy of the active session (``None`` between runs)."""
        return self._entry

    def source(self) -> pathlib.Path:
        """Return the Hydra folder to keep now.

        Raises:
            HydraNotRunningError: no ``hydra_dir`` and no Hydra job runs.
        """
        if self.hydra_dir is not None:
            return self.hydra_dir.resolve()
        found = hydra_output_dir()
        if found is None:
            raise HydraNotRunningError()
        return found.resolve()

    @hookimpl
    def on_run_start(self, run: RunView) -> None:
        """Link or copy the Hydra folder into the run's folder; record where."""
        source = self.source()
        if not source.is_dir():
            raise TrackerError(
                f'HydraLink: the Hydra folder {source} does not exist (or is '
                'not a folder).'
            )
        folder = self.run_dir(run)
        state = run.plugin_state(STATE_NAME)
        sessions = [s for s in state.get('sessions', []) if isinstance(s, dict)]
        entry_name = _entry_name(source, sessions)
        entry = folder / entry_name
        if self.copy_hydra:
            _copy(source, entry)
        else:
            self._link(source, entry)
        self._entry, self._source = entry, source
        if not any(s.get('source') == str(source) for s in sessions):
            sessions.append({'source': str(source), 'entry': entry_name})
        run.save_plugin_state(
            STATE_NAME,
            {**state, 'format': 1, 'folder': str(folder), 'sessions': sessions},
        )

    @hookimpl
    def on_run_stop(self) -> None:
        """Copy the Hydra folder again (``copy_hydra``): the job's whole log."""
        entry, source = self._entry, self._source
        self._entry = self._source = None
        if (
            self.copy_hydra
            and entry is not None
            and source is not None
            and not entry.is_symlink()
            and source.is_dir()
        ):
            _copy(source, entry)

    def _link(self, source: pathlib.Path, entry: pathlib.Path) -> None:
        if entry.is_symlink() and entry.resolve() == source:
            return
        _remove(entry)
        try:
            entry.symlink_to(source, target_is_directory=True)
        except OSError as error:  # no links here (Windows without the right)
            warnings.warn(
                f'HydraLink could not link {entry} to {source} ({error}); it '
                'copies the folder instead.',
                DryTorchWarning,
                stacklevel=2,
            )
            _copy(source, entry)

    def __repr__(self) -> str:
        return (
            f'HydraLink(par_dir={self.par_dir!r}, copy_hydra={self.copy_hydra!r}, '
            f'hydra_dir={self.hydra_dir!r})'
        )


def _entry_name(source: pathlib.Path, sessions: list[dict[str, Any]]) -> str:
    """Return the entry of ``source``: its earlier one, else a free name."""
    for session in sessions:
        if session.get('source') == str(source) and session.get('entry'):
            return str(session['entry'])
    taken = {str(s.get('entry')) for s in sessions}
    name, n = source.name or 'hydra', 1
    while name in taken:
        name, n = f'{source.name}-{n}', n + 1
    return name


def _remove(path: pathlib.Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _copy(source: pathlib.Path, entry: pathlib.Path) -> None:
    """Copy ``source`` over ``entry``, leaving out ``entry`` if it lies inside.

    The run's folder is inside the Hydra folder when the experiment's
    ``par_dir`` is Hydra's working directory: the copy must not copy itself.
    """
    if entry.is_symlink():
        entry.unlink()
    inside: pathlib.Path | None = None
    resolved = entry.resolve()
    if resolved.is_relative_to(source):
        inside = source / resolved.relative_to(source).parts[0]

    def ignore(directory: str, names: list[str]) -> list[str]:
        if inside is None:
            return []
        return [n for n in names if pathlib.Path(directory, n).resolve() == inside]

    shutil.copytree(source, entry, symlinks=True, ignore=ignore, dirs_exist_ok=True)
