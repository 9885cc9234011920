"""Random-number-generator states as checkpoint-safe data.

A checkpoint that continues training exactly must restore every generator
the code may draw from: Python's ``random``, NumPy's global generator (when
NumPy is installed), torch's CPU generator and every CUDA device's. Each is
read and restored through its public API only: ``random.getstate()`` /
``setstate()``, ``numpy.random.get_state()`` / ``set_state()``,
``torch.get_rng_state()`` / ``set_rng_state()`` and
``torch.cuda.get_rng_state_all()`` / ``set_rng_state_all()``.

The states are numbers and ASCII text (base64 words), so ``torch.load`` reads
them with ``weights_only=True``, and, but for CUDA's, they add no tensor record
to the file. Three things keep them small and quick to write, all computed
from the public states at every save:

* base64 text rather than ``bytes``, which torch pickles as Latin-1 text
  re-encoded in UTF-8, three times slower to write than ASCII; and rather
  than a tensor, which is a file record of its own;
* a Python or NumPy global generator still exactly as the run's seed left it
  (most code never draws from them) is stored as ``{'seeded': seed}``;
* torch keeps its 624 Mersenne Twister words as 64-bit integers whose high
  halves are zero: those halves are left out (checked at every save).

Format 3 (this one) is what the previous version wrote too, so its
checkpoints restore unchanged; formats 1 and 2 restore as well.
"""

from __future__ import annotations

import base64
import functools
import random
import struct
from typing import Any

import torch

__all__ = ['FORMAT', 'get_states', 'set_states']

FORMAT = 3
"""Version of ``get_states()`` output; formats 1 and 2 restore too."""

_WORDS = 624  # Mersenne Twister words, in Python, NumPy and torch
# Torch's CPU generator state keeps its 624 Mersenne Twister words as
# 64-bit integers, at bytes [24, 5016) of 5056: their high halves are zero,
# and left out of the checkpoint when they are (checked at every save).
_TORCH_SIZE = 5056
_TORCH_WIDE = (24, 24 + 8 * _WORDS)
_TORCH_ZEROS = bytes(_WORDS)


def get_states(seed: int | None = None) -> dict[str, Any]:
    """Return the state of every random generator in use.

    Args:
        seed: the seed the generators were last seeded with, if known (the
            run's seed): a global Python or NumPy generator still exactly in
            that seeded state is stored as ``{'seeded': seed}``.
    """
    states: dict[str, Any] = {
        'format': FORMAT,
        'python': _python_state(seed),
        'torch': _torch_state(_tensor_bytes(torch.get_rng_state())),
    }
    numpy = _numpy()
    if numpy is not None:
        states['numpy'] = _numpy_state(numpy, seed)
    if torch.cuda.is_initialized():  # type: ignore[no-untyped-call]  # none otherwise
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_states(states: dict[str, Any]) -> None:
    """Restore generators from ``get_states()`` output; absent ones are left alone.

    States saved by earlier versions (formats 1 and 2) are read too.
    """
    if states.get('format') != FORMAT:
        _set_earlier_states(states)
        return
    python = states.get('python')
    if python is not None:
        if 'seeded' in python:
            random.seed(int(python['seeded']))
        else:
            words = struct.unpack(f'<{_WORDS + 1}I', _bytes(python['words']))
            random.setstate((python['version'], words, python['gauss']))
    if 'torch' in states:
        torch.set_rng_state(_uint8(_torch_words(states['torch'])))
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])
    numpy = _numpy()
    saved = states.get('numpy')
    if numpy is None or saved is None:
        return
    if 'seeded' in saved:
        numpy.random.seed(int(saved['seeded']))
    elif 'other' in saved:  # a bit generator other than MT19937
        numpy.random.set_state(saved['other'])
    else:
        keys = numpy.frombuffer(_bytes(saved['keys']), dtype='<u4')
        numpy.random.set_state(
            (
                saved['name'],
                keys.astype(numpy.uint32),
                saved['pos'],
                saved['has_gauss'],
                saved['cached_gaussian'],
            )
        )


def _python_state(seed: int | None) -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    if seed is not None and gauss is None and internal == _seeded_python(seed):
        return {'seeded': seed}
    packed = struct.pack(f'<{len(internal)}I', *internal)
    return {'version': version, 'words': _text(packed), 'gauss': gauss}


def _numpy_state(numpy: Any, seed: int | None) -> dict[str, Any]:
    try:
        generator = numpy.random.get_bit_generator()  # NumPy >= 1.25
    except AttributeError:
        generator = None
    if generator is not None and type(generator).__name__ != 'MT19937':
        # numpy.random.set_bit_generator() installed another generator: its
        # state is a dict of ints and arrays, stored as ints and lists.
        return {'other': _plain(numpy.random.get_state(legacy=False))}
    name, key_array, pos, has_gauss, cached = numpy.random.get_state()
    keys = key_array.astype('<u4').tobytes()
    if (
        seed is not None
        and not has_gauss
        and keys + struct.pack('<i', int(pos)) == _seeded_numpy(seed)
    ):
        return {'seeded': seed}
    return {
        'name': str(name),
        'keys': _text(keys),
        'pos': int(pos),
        'has_gauss': int(has_gauss),
        'cached_gaussian': float(cached),
    }


def _torch_state(raw: bytes) -> dict[str, Any]:
    """Return torch's CPU generator state ``raw`` as ``get_states()`` stores it."""
    start, stop = _TORCH_WIDE
    if len(raw) == _TORCH_SIZE and all(
        raw[k:stop:8] == _TORCH_ZEROS for k in range(start + 4, start + 8)
    ):
        low = b''.join(raw[k:stop:8] for k in range(start, start + 4))
        return {
            'words': _text(raw[:start] + low + raw[stop:]),
            'halved': [start, stop],
        }
    return {'words': _text(raw)}


def _torch_words(saved: dict[str, Any]) -> bytes:
    """Return torch's state bytes from ``_torch_state()`` output."""
    data = _bytes(saved['words'])
    if 'halved' not in saved:
        return data
    start, stop = (int(n) for n in saved['halved'])
    count = (stop - start) // 8
    raw = bytearray(len(data) + 4 * count)
    raw[:start] = data[:start]
    for k in range(4):  # the low bytes of each word; the high ones stay zero
        raw[start + k : stop : 8] = data[start + k * count : start + (k + 1) * count]
    raw[stop:] = data[start + 4 * count :]
    return bytes(raw)


@functools.lru_cache(maxsize=4)
def _seeded_python(seed: int) -> tuple[int, ...]:
    """Return the words of Python's generator seeded with ``seed``."""
    return random.Random(seed).getstate()[1]  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=4)
def _seeded_numpy(seed: int) -> bytes | None:
    """Return the words and position of NumPy's generator seeded with ``seed``."""
    import numpy

    if not 0 <= seed < 2**32:
        return None  # NumPy refuses it: never its seed
    state: Any = numpy.random.RandomState(seed).get_state()
    _, keys, pos, _, _ = state
    return bytes(keys.astype('<u4').tobytes() + struct.pack('<i', int(pos)))


def _set_earlier_states(states: dict[str, Any]) -> None:
    """Restore the states of formats 1 (lists) and 2 (one uint8 tensor of words)."""
    python_words: Any = None
    numpy_keys: Any = None
    torch_state: Any = states.get('torch')  # format 1: a tensor
    if 'words' in states:  # format 2
        words = _tensor_bytes(states['words'])
        python_size, numpy_size, torch_size = (int(n) for n in states['sizes'])
        python_words = struct.unpack(f'<{python_size // 4}I', words[:python_size])
        numpy_keys = words[python_size : python_size + numpy_size]
        torch_state = _uint8(words[python_size + numpy_size :])
        assert torch_state.numel() == torch_size
    python = states.get('python')
    if python is not None:
        if python_words is None:
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
        else:
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


def _text(words: bytes) -> str:
    return base64.b64encode(words).decode('ascii')


def _bytes(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    """Return a uint8 tensor's bytes, through NumPy when it is installed."""
    tensor = tensor.detach().cpu().contiguous()
    if _numpy() is not None:
        try:
            return bytes(tensor.numpy().tobytes())
        except RuntimeError:  # torch built without NumPy support
            pass
    return bytes(tensor.tolist())


def _uint8(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def _plain(state: Any) -> Any:
    """Return ``state`` with its arrays and NumPy integers as Python ones."""
    if isinstance(state, dict):
        return {key: _plain(value) for key, value in state.items()}
    if hasattr(state, 'tolist'):  # an array or a NumPy scalar
        return state.tolist()
    return state


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        return None
    return numpy
