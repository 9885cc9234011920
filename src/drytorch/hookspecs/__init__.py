"""The DRYTorch plugin contract: every hook a plugin may implement.

Hooks come in three kinds, and the kind decides what happens when an
implementation raises:

* **tracking** hooks (``on_*``) observe a run. They receive one immutable event
  object from ``drytorch.log_events`` and the run, a read-only
  ``drytorch.RunView``; an implementation declares either or both arguments.
  They return nothing. An implementation that raises is reported once (a
  ``TrackerFailureWarning`` naming the plugin and the hook) and
  unsubscribed; the run and the other implementations go on. In a
  distributed run they fire on rank 0 only, unless the plugin has an
  ``all_ranks`` attribute set to ``True``; ``run.rank`` and
  ``run.world_size`` say where they fire.
* **validation** hooks (``validate_*``) may refuse an operation by raising; the
  error stops the operation and reaches the user unchanged.
* **query** hooks answer a question (``get_config``, ``default_trackers``,
  ``tracker_types``, ``run_outputs``, ``load_metrics``, and the storage hooks
  ``save_checkpoint``, ``load_checkpoint``, ``list_checkpoints``,
  ``delete_checkpoint``, ``checkpoint_digest``); their errors propagate,
  except those of ``run_outputs`` and ``load_metrics``, which are reported and
  skipped.

Every hook is documented, with an example, in ``docs/hooks.md``.

Implement a hook with the marker exported by the package root::

    from drytorch import hookimpl

    @hookimpl
    def on_run_start(event, run):
        print('started', run.id, 'resumed' if run.resumed else 'new')

and expose the module (or object) through the ``drytorch`` entry-point group.
This package imports neither torch nor the rest of DRYTorch at runtime.
"""

from __future__ import annotations

from drytorch.hookspecs import (
    model,
    outputs,
    run,
    storage,
    trackers,
    training,
    validation,
)
from drytorch.hookspecs._markers import PROJECT_NAME

SPEC_MODULES = (run, model, training, validation, storage, trackers, outputs)

__all__ = ['PROJECT_NAME', 'SPEC_MODULES']
