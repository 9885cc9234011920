"""A scratch DRYTorch environment for the benchmarks.

Each benchmark runs in a temporary folder through ``drytorch.testing.isolated``:
its own registry and working directory, a fresh plugin host, and no
``DRYTORCH_*`` variable from the caller, so the user's registry is never
touched and the caller's settings do not change what is measured.
"""

from __future__ import annotations

import contextlib
import pathlib
import tempfile
from collections.abc import Iterator


@contextlib.contextmanager
def scratch_environment(init_mode: str) -> Iterator[pathlib.Path]:
    """Yield a temporary folder holding the registry and the working directory.

    Args:
        init_mode: the ``init_mode`` setting: which default trackers exist.
    """
    from drytorch import testing  # not at import: import_time.py must not pay it

    with tempfile.TemporaryDirectory(prefix='drytorch-bench-') as name:
        folder = pathlib.Path(name).resolve()
        with testing.isolated(folder, init_mode=init_mode):
            yield folder
