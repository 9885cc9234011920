"""``TomlDumper``: a run's configuration, models and runners as TOML files.

Layout, under ``<par_dir>/metadata/<experiment>/<run id>/``::

    config.toml                   the experiment's configuration
    <model>/architecture.toml     model name, parameter count, printed module
    <model>/<runner>.toml         what the runner is: loader, objective, ...

Metadata documents a run; it must never cost one. Files are replaced
atomically, so a reader never sees half a file, and a description that differs
from the one on disk (a resumed run whose runner changed) moves the old one to
``<name>.<n>.toml`` instead of clobbering it. A folder that cannot be written
gives one warning per run, and the run goes on.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import re
import tomllib
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import tomli_w

from drytorch import hookimpl
from drytorch.core import exceptions, files, snapshot
from drytorch.trackers import base

if TYPE_CHECKING:
    from drytorch.core import log_events
    from drytorch.core.run_view import RunView

__all__ = ['TomlDumper', 'file_name']

CONFIG = 'config'
ARCHITECTURE = 'architecture'
_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')
_DEVICES = {'CON', 'PRN', 'AUX', 'NUL'} | {
    f'{port}{n}' for port in ('COM', 'LPT') for n in range(1, 10)
}
_MAX_NAME = 100


def file_name(name: str, *, reserved: tuple[str, ...] = ()) -> str:
    """Return ``name`` made safe as a file name on common file systems.

    Runner names are free text, and a name that is fine on Linux (``a:b``,
    ``CON``) breaks the copy of the folder on Windows; ``reserved`` names
    (compared case-insensitively) get a trailing ``_`` so that no runner can
    overwrite a file of the layout.
    """
    clean = _UNSAFE.sub('_', name).strip(' .')[:_MAX_NAME].strip(' .') or '_'
    if clean.split('.')[0].upper() in _DEVICES:
        clean = f'_{clean}'
    if clean.lower() in {word.lower() for word in reserved}:
        clean = f'{clean}_'
    return clean


class TomlDumper(base.Dumper):
    """Writes the metadata of each run: configuration, models and runners.

    Args:
        par_dir: the folder to write in; defaults to the experiment's.
    """

    kind = 'metadata'
    suffix = '.toml'
    """The files' extension; a subclass writing another format changes it
    and ``dump``."""

    def __init__(self, par_dir: str | os.PathLike[str] | None = None) -> None:
        super().__init__(par_dir)
        self._session: RunView | None = None  # the session written for
        self._warned = False  # once per session

    @hookimpl
    def on_run_start(self, run: RunView) -> None:
        """Write the run's configuration."""
        self._begin(run)

    @hookimpl
    def on_run_stop(self) -> None:
        """Forget the run."""
        self._session = None

    @hookimpl
    def on_model_register(
        self, event: log_events.ModelRegisterEvent, run: RunView
    ) -> None:
        """Write the model's architecture."""
        data = {
            'model': event.model_name,
            'n_parameters': event.n_parameters,
            'architecture': event.architecture,
        }
        self._write(run, ARCHITECTURE, event.model_name, data)

    @hookimpl
    def on_actor_register(
        self, event: log_events.ActorRegisterEvent, run: RunView
    ) -> None:
        """Write what the runner is: its loader, objective, schedule..."""
        stem = file_name(event.actor_name, reserved=(ARCHITECTURE,))
        self._write(run, stem, event.model_name, _plain(event.description))

    def _begin(self, run: RunView) -> None:
        """Start a session of ``run``: warn afresh, write its configuration."""
        self._session = run
        self._warned = False
        self._write(run, CONFIG, None, run.config_table())

    def dump(self, path: pathlib.Path, data: Mapping[str, Any]) -> None:
        """Write ``data`` to ``path``, keeping a differing old file beside it."""
        write_kept(
            path, tomli_w.dumps(data, multiline_strings=True).encode(), _same_toml
        )

    def _write(
        self, run: RunView, stem: str, model: str | None, data: Mapping[str, Any]
    ) -> None:
        """Write ``data`` to the file ``stem`` (in the model's folder if given).

        A session whose start this tracker did not see gets its
        configuration written first.
        """
        if run is not self._session:
            self._begin(run)
        folder = self.folder(run)
        if model is not None:
            folder /= file_name(model, reserved=(f'{CONFIG}{self.suffix}',))
        path = folder / f'{stem}{self.suffix}'
        try:
            self.dump(path, data)
        except OSError as err:
            if not self._warned:
                self._warned = True
                warnings.warn(
                    f'{self.name} could not write the run metadata to {path}: '
                    f'{err}. The run goes on without it.',
                    exceptions.DryTorchWarning,
                    stacklevel=2,
                )


def write_kept(
    path: pathlib.Path, content: bytes, same: Callable[[bytes, bytes], bool]
) -> None:
    """Write ``content`` to ``path``; keep a differing old file as ``<stem>.<n>``.

    ``same`` tells whether the old file holds the same data in other words.
    """
    try:
        old = path.read_bytes()
    except FileNotFoundError:
        old = None
    if old is not None:
        if old == content or same(old, content):
            return
        _keep(path, old)
    path.parent.mkdir(parents=True, exist_ok=True)
    files.replace_file(path, content)


def _same_toml(old: bytes, new: bytes) -> bool:
    """Whether two files hold the same data (one may be formatted otherwise)."""
    try:
        return tomllib.loads(old.decode()) == tomllib.loads(new.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError):
        return False


def _keep(path: pathlib.Path, content: bytes) -> None:
    """Save ``content`` as the first free ``<stem>.<n><suffix>`` beside ``path``.

    The copy is linked into place, which fails rather than replace a file
    another process created meanwhile.
    """
    temp = files.write_temp(path.parent, content)
    try:
        n = 1
        while True:
            target = path.with_name(f'{path.stem}.{n}{path.suffix}')
            try:
                os.link(temp, target)
                return
            except FileExistsError:
                n += 1
            except OSError:  # no hard links here: take a free name, less safely
                if not target.exists():
                    os.replace(temp, target)
                    return
                n += 1
    finally:
        temp.unlink(missing_ok=True)


def _plain(value: Any) -> Any:
    """Return ``value`` with what TOML cannot hold made readable text."""
    if value is None:
        return snapshot.NONE_MARK
    if isinstance(value, bool | int | float | str | datetime.date | datetime.time):
        return value  # a datetime is a date
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, set | frozenset):  # sorted: the same set, the same file
        return sorted((_plain(item) for item in value), key=repr)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return repr(value)
