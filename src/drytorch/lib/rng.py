"""Random-number-generator states as checkpoint-safe data.

A checkpoint that continues training exactly must restore every generator
the code may draw from: Python's ``random``, NumPy's global generator (when
NumPy is installed), torch's CPU generator and every CUDA device's. The states
are stored as numbers and tensors only, so ``torch.load`` can read them with
``weights_only=True``.

The three CPU generators' words travel in one ``uint8`` tensor, ``words``:
Python's 625 words, then NumPy's 624 keys (32-bit little-endian each), then
torch's state, with their byte counts in ``sizes``. One tensor rather than a
list of 625 ints (slow to pickle) or three tensors (a file record each):
checkpoints are saved often, and this state is most of what exact resuming
adds to a small model's checkpoint (see ``bench/checkpoint_cost.py``).
"""

from __future__ import annotations

import random
import struct
from typing import Any

import torch

__all__ = ['get_states', 'set_states']


def get_states() -> dict[str, Any]:
    """Return the state of every random generator in use."""
    version, internal, gauss = random.getstate()
    packed = struct.pack(f'<{len(internal)}I', *internal)
    states: dict[str, Any] = {'python': {'version': version, 'gauss': gauss}}
    keys = b''
    numpy = _numpy()
    if numpy is not None:
        name, key_array, pos, has_gauss, cached = numpy.random.get_state()
        keys = key_array.astype('<u4').tobytes()
        states['numpy'] = {
            'name': str(name),
            'pos': int(pos),
            'has_gauss': int(has_gauss),
            'cached_gaussian': float(cached),
        }
    torch_state = torch.get_rng_state()
    states['words'] = torch.cat(
        (torch.frombuffer(bytearray(packed + keys), dtype=torch.uint8), torch_state)
    )
    states['sizes'] = [len(packed), len(keys), torch_state.numel()]
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_states(states: dict[str, Any]) -> None:
    """Restore generators from ``get_states()`` output; absent ones are left alone.

    States saved by earlier versions (lists and separate tensors) are read too.
    """
    python_words: Any = None
    numpy_keys: Any = None
    torch_state: Any = states.get('torch')
    if 'words' in states:
        words = states['words'].cpu()
        python_size, numpy_size, torch_size = (int(n) for n in states['sizes'])
        raw = words.numpy().tobytes() if _numpy() is not None else bytes(words.tolist())
        python_words = struct.unpack(f'<{python_size // 4}I', raw[:python_size])
        numpy_keys = raw[python_size : python_size + numpy_size]
        torch_state = words[python_size + numpy_size :].clone()
        assert torch_state.numel() == torch_size
    python = states.get('python')
    if python is not None:
        if python_words is None:  # checkpoints of format 1: a list of ints
            python_words = tuple(int(word) for word in python['state'])
        random.setstate((python['version'], python_words, python['gauss']))
    if torch_state is not None:
        torch.set_rng_state(torch_state)
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])
    numpy = _numpy()
    saved = states.get('numpy')
    if numpy is not None and saved is not None:
        if numpy_keys is not None:
            keys = numpy.frombuffer(numpy_keys, dtype='<u4').astype(numpy.uint32)
        else:  # checkpoints of format 1: an int64 tensor
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
