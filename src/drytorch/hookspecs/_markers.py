"""The pluggy markers of the ``drytorch`` project name.

Plugin authors use ``drytorch.hookimpl``; the spec marker stays private so
only this package can add hooks to the contract.
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = 'drytorch'

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)
