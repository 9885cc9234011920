"""One run on several processes: the process group and the core's collectives.

A script launched by ``torchrun`` runs once per process. DRYTorch makes those
processes one run: global rank 0 owns the run's record, trackers and
checkpoints, the other ranks run a replica of it. Everything the ranks must
agree on goes through the few collectives here, always called by every rank
in the same order:

* ``broadcast``: rank 0's answer (the run's id, a checkpoint) to every rank;
* ``gather``: one small object from every rank (hosts and pids, random
  states), to write them in rank 0's record or checkpoint;
* ``all_reduce_sum``: the running sums of the metrics, once per epoch.

``join`` initialises the process group from torchrun's environment when the
user has not (NCCL on CUDA, gloo otherwise) and destroys it when the process
exits; a group the user initialised is used as it is and never destroyed
here.
``torch.distributed`` is imported on first use only.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import gc
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

from drytorch.core.exceptions import DistributedError, TerminatedError

if TYPE_CHECKING:
    import torch

__all__ = [
    'SINGLE',
    'World',
    'all_reduce_sum',
    'broadcast',
    'current',
    'gather',
    'join',
    'launched',
    'leave',
    'local_device_index',
    'raise_on_sigterm',
]

_LAUNCH_VARIABLES = ('RANK', 'WORLD_SIZE', 'MASTER_ADDR', 'MASTER_PORT')


class World(NamedTuple):
    """The place of a process in the run.

    Attributes:
        rank: the global rank (0: the process that owns the run's record).
        size: the number of processes (1: not distributed).
    """

    rank: int
    size: int


SINGLE = World(0, 1)
"""The world of a process that is not part of a process group."""


def _dist() -> Any:
    import torch.distributed as dist

    return dist if dist.is_available() else None


def current() -> World:
    """Return this process's rank and the world size; ``SINGLE`` without a group."""
    if not _group_exists():
        return SINGLE
    dist = _dist()
    return World(int(dist.get_rank()), int(dist.get_world_size()))


def _group_exists() -> bool:
    # Cheap when torch.distributed was never imported: nothing to ask then.
    if 'torch.distributed' not in sys.modules:
        return False
    dist = _dist()
    return dist is not None and bool(dist.is_initialized())


def launched() -> bool:
    """Whether torchrun (or an equivalent launcher) started this process.

    True when the launcher's variables (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``, ``MASTER_PORT``) are set and the world has 2 or more
    processes.
    """
    if any(name not in os.environ for name in _LAUNCH_VARIABLES):
        return False
    try:
        return int(os.environ['WORLD_SIZE']) > 1
    except ValueError:
        return False


def local_device_index() -> int:
    """Return this process's accelerator index on its node (``LOCAL_RANK``)."""
    try:
        return int(os.environ.get('LOCAL_RANK', '0'))
    except ValueError:
        return 0


def join(timeout: float | None = None) -> bool:
    """Initialise the process group from the launcher's environment, if needed.

    The backend follows the device: NCCL when CUDA is available, each rank on
    its ``LOCAL_RANK`` device, else gloo. A group that exists already is left
    as it is.

    Args:
        timeout: seconds a collective may wait for the other ranks before it
            fails; ``None`` keeps torch's default.

    The group lives until the process exits: ``leave`` runs then (at
    ``atexit``, once the script's objects, its ``DistributedDataParallel``
    wrappers included, are gone), so that several runs of one script share
    it and gloo's threads stop while the interpreter is still alive.

    Returns:
        Whether this call initialised the group.
    """
    if not launched() or _group_exists():
        return False
    dist = _dist()
    if dist is None:
        return False
    import torch

    options: dict[str, Any] = {}
    if timeout is not None:
        options['timeout'] = datetime.timedelta(seconds=timeout)
    if torch.cuda.is_available():
        index = local_device_index()
        torch.cuda.set_device(index)
        dist.init_process_group(
            'nccl', device_id=torch.device('cuda', index), **options
        )
    else:
        dist.init_process_group('gloo', **options)
    atexit.register(leave)
    return True


def leave() -> None:
    """Destroy the process group (``join`` calls it at exit)."""
    if _group_exists():
        gc.collect()  # wrappers in reference cycles hold the group's threads
        _dist().destroy_process_group()


def broadcast(value: Any, step: str = '') -> Any:
    """Return rank 0's ``value`` on every rank (any picklable object).

    Raises:
        DistributedError: ``step`` (say, ``'create_run()'``) names a call every
            process must make, and the collective failed: some process did not
            make it, or died.
    """
    box = [value]
    with _agreeing(step):
        _dist().broadcast_object_list(box, src=0)
    return box[0]


def gather(value: Any, step: str = '') -> list[Any]:
    """Return every rank's ``value``, in rank order, on every rank.

    Raises:
        DistributedError: as for ``broadcast``.
    """
    dist = _dist()
    found: list[Any] = [None] * dist.get_world_size()
    with _agreeing(step):
        dist.all_gather_object(found, value)
    return found


@contextlib.contextmanager
def _agreeing(step: str) -> Iterator[None]:
    """Explain a failed collective of ``step``, which every process must reach."""
    try:
        yield
    except RuntimeError as err:
        if not step:
            raise
        raise DistributedError(
            f'The processes of the run did not all reach {step}: {err}. Every '
            f'process must call {step}, in the same order; do not guard it with '
            '"if rank == 0" (DRYTorch writes on rank 0 only by itself).'
        ) from err


def all_reduce_sum(tensor: torch.Tensor) -> None:
    """Sum ``tensor`` over the ranks, in place."""
    _dist().all_reduce(tensor)


def _terminated(signal_number: int, frame: object) -> None:
    raise TerminatedError(signal_number)


def raise_on_sigterm() -> Callable[[], None] | None:
    """Make SIGTERM raise ``TerminatedError`` in the main thread, until restored.

    Only when SIGTERM has its default action (the user installed no handler)
    and this is the main thread. Returns the function that restores the
    default, or ``None`` when nothing was changed.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        return None
    signal.signal(signal.SIGTERM, _terminated)

    def restore() -> None:
        if signal.getsignal(signal.SIGTERM) is _terminated:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return restore
