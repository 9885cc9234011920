"""Random-number-generator states as checkpoint-safe data.

A checkpoint that continues training exactly must restore every generator
the code may draw from: Python's ``random``, NumPy's global generator (when
NumPy is installed), torch's CPU generator and every CUDA device's. The states
are stored as tensors, numbers and lists only, so ``torch.load`` can read them
with ``weights_only=True``.
"""

from __future__ import annotations

import random
from typing import Any

import torch

__all__ = ['get_states', 'set_states']


def get_states() -> dict[str, Any]:
    """Return the state of every random generator in use."""
    version, internal, gauss = random.getstate()
    states: dict[str, Any] = {
        'python': {'version': version, 'state': list(internal), 'gauss': gauss},
        'torch': torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        states['cuda'] = torch.cuda.get_rng_state_all()
    numpy = _numpy()
    if numpy is not None:
        name, keys, pos, has_gauss, cached = numpy.random.get_state()
        states['numpy'] = {
            'name': str(name),
            'keys': torch.from_numpy(keys.astype(numpy.int64)),
            'pos': int(pos),
            'has_gauss': int(has_gauss),
            'cached_gaussian': float(cached),
        }
    return states


def set_states(states: dict[str, Any]) -> None:
    """Restore generators from ``get_states()`` output; absent ones are left alone."""
    python = states.get('python')
    if python is not None:
        random.setstate((python['version'], tuple(python['state']), python['gauss']))
    if 'torch' in states:
        torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])
    numpy = _numpy()
    saved = states.get('numpy')
    if numpy is not None and saved is not None:
        keys = saved['keys'].numpy().astype(numpy.uint32)
        numpy.random.set_state(
            (
                saved['name'],
                keys,
                saved['pos'],
                saved['has_gauss'],
                saved['cached_gaussian'],
            )
        )


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        return None
    return numpy
