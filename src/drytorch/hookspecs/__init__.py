"""The DRYTorch plugin contract: every hook a plugin may implement.

Hooks come in three kinds, and the kind decides what happens when an
implementation raises:

* **tracking** hooks (``on_*``) observe a run. They receive one immutable event
  object from ``drytorch.core.log_events`` and return nothing. An implementation
  that raises is reported once (a ``TrackerFailureWarning`` naming the plugin
  and the hook) and unsubscribed; the run and the other implementations go on.
* **validation** hooks (``validate_*``) may refuse an operation by raising; the
  error stops the operation and reaches the user unchanged.
* **query** hooks answer a question (``get_config``, ``default_trackers``,
  ``tracker_types``, and the storage hooks ``save_checkpoint``,
  ``load_checkpoint``, ``list_checkpoints``, ``delete_checkpoint``); errors
  propagate.

Implement a hook with the marker exported by the package root::

    from drytorch import hookimpl

    @hookimpl
    def on_run_start(event):
        print('started', event.run_id)

and expose the module (or object) through the ``drytorch`` entry-point group.
This package imports neither torch nor the rest of DRYTorch at runtime.
"""

from __future__ import annotations

from drytorch.hookspecs import model, run, storage, trackers, training, validation
from drytorch.hookspecs._markers import PROJECT_NAME

SPEC_MODULES = (run, model, training, validation, storage, trackers)

__all__ = ['PROJECT_NAME', 'SPEC_MODULES']
