"""The original DRYTorch's ``trackers.sqlalchemy``, from the contrib package.

``SQLConnection(engine=None)`` keeps runs, their metrics by epoch and their
tags in a SQL database through SQLAlchemy (ORM tables ``Experiment``,
``Run``, ``Source``, ``Log``, ``Tags``) and reads them back
(``load_metrics``). The names live in the ``drytorch-contrib-sqlalchemy``
package, so that DRYTorch's core does not depend on SQLAlchemy; this module
resolves them on first use. Without the package, ``from
drytorch.trackers.sqlalchemy import SQLConnection`` raises
``ContribPackageMissingError`` (an ``ImportError``) naming it. The built-in
``drytorch.trackers.sqlite.SQLiteTracker`` keeps metrics in SQLite with the
standard library alone.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from drytorch.trackers._contrib import forwarder

if TYPE_CHECKING:
    from drytorch_contrib_sqlalchemy import (
        Experiment,
        Log,
        Run,
        Source,
        SQLConnection,
        Tags,
    )

__all__ = ['Experiment', 'Log', 'Run', 'SQLConnection', 'Source', 'Tags']

DISTRIBUTION = 'drytorch-contrib-sqlalchemy'
_MODULES = {
    'SQLConnection': 'drytorch_contrib_sqlalchemy.tracker',
    **dict.fromkeys(
        ('Experiment', 'Run', 'Source', 'Log', 'Tags'),
        'drytorch_contrib_sqlalchemy.tables',
    ),
}


__getattr__ = forwarder(__name__, _MODULES, DISTRIBUTION)
