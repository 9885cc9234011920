"""``TrialCallback``: report a metric to an Optuna trial each epoch, and prune.

Register it after each epoch::

    trainer.post_epoch_hooks.register(TrialCallback(trial))

At the end of each epoch it reports the monitored metric (the validation's
when the trainer has one, else the trainer's; the loss unless ``metric``
says otherwise) with ``trial.report(value, epoch)``. When the study's pruner
then says ``trial.should_prune()``, it:

1. stops training (``trainer.terminate_training``: trackers log the reason);
2. marks the run: the tag ``pruned`` and, in the run's record,
   ``[plugins.optuna]`` with the study, the trial, the epoch and the value;
3. stops the run cleanly: its record says ``completed`` (the run did what it
   was asked; it was cut short on purpose), with the reason as the session's
   ``stop_reason``;
4. raises ``optuna.TrialPruned``, which leaves ``trainer.train()`` and the
   ``with run:`` block (already stopped, so nothing is recorded as failed)
   and reaches ``study.optimize``, which records the trial as pruned.

Steps 2 and 3 need the run object: pass it (``TrialCallback(trial, run=run)``)
or let the callback find the active run through ``Experiment.get_current()``
where DRYTorch offers it. Without either, the trial is still pruned, but the
run's record says ``failed`` with the error ``TrialPruned``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from drytorch import Experiment
from drytorch.exceptions import DryTorchError

from drytorch_contrib_optuna.errors import OptunaError
from drytorch_contrib_optuna.values import last

__all__ = ['PRUNED_TAG', 'STATE_NAME', 'TrialCallback']

PRUNED_TAG = 'pruned'
"""The tag of a run whose trial was pruned."""

STATE_NAME = 'optuna'
"""The run record's ``[plugins.optuna]`` table: the study and trial of the run."""


class TrialCallback:
    """A post-epoch hook that reports a metric to an Optuna trial and prunes it.

    Args:
        trial: the ``optuna.Trial`` of the objective being evaluated.
        filter_fn: reduces the metric's history (one value per epoch) to the
            value reported (default: the last value).
        metric: the metric's name, or a ``Loss`` / ``Metric`` (its name);
            default: the first the monitored runner computes (the loss).
        monitor: the runner to read (the trainer, its validation, a
            ``Diagnostic``); default: the validation if any, else the trainer.
        min_delta: accepted for the original's signature: the study's pruner
            alone decides, so it changes nothing.
        best_is: ``'auto'`` (from the objective's ``higher_is_better``),
            ``'higher'`` or ``'lower'``: checked against the study's direction,
            since reporting a loss to a study that maximises prunes the
            wrong trials.
        run: the run being trained (``with exp.create_run() as run``), to
            record the pruning and stop it cleanly; default: the active run,
            where DRYTorch can tell it.

    Raises:
        OptunaError: ``best_is`` or ``metric`` is not valid.
    """

    def __init__(
        self,
        trial: Any,
        filter_fn: Callable[[Sequence[float]], float] = last,
        metric: Any = None,
        monitor: Any = None,
        min_delta: float = 1e-8,
        best_is: Literal['auto', 'higher', 'lower'] = 'auto',
        *,
        run: Any = None,
    ) -> None:
        if best_is not in ('auto', 'higher', 'lower'):
            raise OptunaError(
                f"best_is must be 'auto', 'higher' or 'lower', got {best_is!r}."
            )
        if not callable(getattr(trial, 'report', None)) or not callable(
            getattr(trial, 'should_prune', None)
        ):
            raise OptunaError(f'TrialCallback needs an optuna Trial, got {trial!r}.')
        if monitor is not None and not hasattr(monitor, 'computed_metrics'):
            raise OptunaError(
                'monitor must be the runner to read (the trainer, its '
                f'validation, a Diagnostic), got {monitor!r}.'
            )
        self.trial = trial
        self.filter_fn = filter_fn
        self.metric = _metric_name(metric)
        self.monitor = monitor
        self.min_delta = min_delta
        self.best_is = best_is
        self.run = run
        self.history: list[float] = []
        self.reported: dict[int, float] = {}  # epoch: value
        self._checked_direction = False
        self._linked = False

    # --- the hook protocol ------------------------------------------------------

    def check(self, trainer: Any) -> None:
        """Refuse, before training, a metric the monitored runner does not name.

        Raises:
            OptunaError: the runner's objective names other metrics.
        """
        runner = self._runner(trainer)
        names = list(
            getattr(getattr(runner, 'objective', None), 'higher_is_better', {})
        )
        if self.metric is not None and names and self.metric not in names:
            raise OptunaError(
                f'{getattr(runner, "name", runner)} computes no metric '
                f'{self.metric!r}; it computes {", ".join(names)}.'
            )

    def __call__(self, trainer: Any) -> None:
        """Report this epoch's value; prune the trial when the pruner says so.

        Raises:
            optuna.TrialPruned: the trial is pruned (the run is stopped first).
            OptunaError: the runner has no such metric, or its direction is
                the opposite of the study's.
        """
        runner = self._runner(trainer)
        epoch = int(trainer.model.epoch)
        validation = getattr(trainer, 'validation', None)
        if runner is validation and getattr(runner, 'computed_epoch', epoch) != epoch:
            return  # not validated at this epoch: nothing new to report
        metrics: Mapping[str, float] = runner.computed_metrics
        if not metrics:
            raise OptunaError(
                f'{getattr(runner, "name", runner)} has no metrics yet: run it '
                'before this hook, or monitor the trainer.'
            )
        name = self.metric or next(iter(metrics))
        if name not in metrics:
            raise OptunaError(
                f'{getattr(runner, "name", runner)} computes no metric {name!r}; '
                f'it computes {", ".join(metrics)}.'
            )
        self._check_direction(runner, name)
        self.history.append(float(metrics[name]))
        value = float(self.filter_fn(self.history))
        self.trial.report(value, epoch)
        self.reported[epoch] = value
        run = self._active_run()
        if run is not None and not self._linked:
            self._linked = True
            self._link(run)
        if self.trial.should_prune():
            self._prune(trainer, run, name, epoch, value)

    def state_dict(self) -> dict[str, Any]:
        """Return the history (saved in the trainer's checkpoints)."""
        return {'history': list(self.history)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore the history saved by ``state_dict``."""
        self.history = [float(value) for value in state['history']]

    def __repr__(self) -> str:
        return (
            f'TrialCallback(trial={getattr(self.trial, "number", self.trial)!r}, '
            f'metric={self.metric!r})'
        )

    # --- pruning ----------------------------------------------------------------

    def _prune(
        self, trainer: Any, run: Any, name: str, epoch: int, value: float
    ) -> None:
        import optuna

        number = getattr(self.trial, 'number', '?')
        reason = f'Optuna pruned trial {number} at epoch {epoch} ({name} = {value:.4g})'
        trainer.terminate_training(reason)
        if run is not None:
            self._save_state(run, pruned_at=epoch, value=value)
            add_tags = getattr(run, 'add_tags', None)
            if callable(add_tags):
                add_tags(PRUNED_TAG)
            else:
                run.experiment.tag_run(run.id, PRUNED_TAG)
            run.stop(reason=reason)
        raise optuna.TrialPruned(reason)

    def _link(self, run: Any) -> None:
        """Tie the run and the trial together, in the record and in the study."""
        self._save_state(run)
        set_user_attr = getattr(self.trial, 'set_user_attr', None)
        if callable(set_user_attr):
            set_user_attr('drytorch_run', f'{run.experiment.name}/{run.id}')

    def _save_state(self, run: Any, **more: Any) -> None:
        study = getattr(self.trial, 'study', None)
        state: dict[str, Any] = {'format': 1, 'trial': int(self.trial.number)}
        study_name = getattr(study, 'study_name', None)
        if isinstance(study_name, str):
            state['study'] = study_name
        state.update(more)
        run.save_plugin_state(STATE_NAME, state)

    # --- what to read -----------------------------------------------------------

    def _runner(self, trainer: Any) -> Any:
        return self.monitor or getattr(trainer, 'validation', None) or trainer

    def _active_run(self) -> Any:
        """Return the run to mark: the one given, else the active one if known."""
        if self.run is not None:
            return self.run if bool(self.run.is_active) else None
        get_current = getattr(Experiment, 'get_current', None)
        if get_current is None:
            return None
        try:
            run = getattr(get_current(), 'run', None)
        except DryTorchError:  # no active run
            return None
        return run if run is not None and bool(run.is_active) else None

    def _check_direction(self, runner: Any, name: str) -> None:
        """Refuse a metric whose direction is the opposite of the study's."""
        if self._checked_direction:
            return
        self._checked_direction = True
        if self.best_is == 'auto':
            directions = getattr(
                getattr(runner, 'objective', None), 'higher_is_better', {}
            )
            if name not in directions:
                return
            higher = bool(directions[name])
        else:
            higher = self.best_is == 'higher'
        study = getattr(self.trial, 'study', None)
        try:
            direction = str(study.direction.name).lower() if study is not None else ''
        except (RuntimeError, AttributeError):  # a study of several objectives
            return
        if direction not in ('maximize', 'minimize'):
            return
        if higher != (direction == 'maximize'):
            better = 'higher' if higher else 'lower'
            raise OptunaError(
                f'{name} is better {better}, but the study is set to {direction}: '
                f'create it with direction={"maximize" if higher else "minimize"!r} '
                "(or pass best_is= if the metric's direction is not what DRYTorch "
                'says).'
            )


def _metric_name(metric: Any) -> str | None:
    """Return the metric's name, given by name or as a ``Loss`` / ``Metric``."""
    if metric is None or (isinstance(metric, str) and metric):
        return metric
    name = getattr(metric, 'name', None)
    if isinstance(name, str) and name:
        return name
    names = list(getattr(metric, 'higher_is_better', {}))
    if len(names) == 1:
        return str(names[0])
    raise OptunaError(
        f'metric must be the name of a metric, or a Loss or Metric; got {metric!r}.'
    )
