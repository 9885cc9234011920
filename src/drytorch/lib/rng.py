"""Random-number-generator states as checkpoint-safe data.

A checkpoint that continues training exactly must restore every generator
the code may draw from: Python's ``random``, NumPy's global generator (when
NumPy is installed), torch's CPU generator and every CUDA device's. The states
are numbers and ASCII text (base64 words), so ``torch.load`` reads them with
``weights_only=True``, and they add no tensor record to the file.

Checkpoints are saved often, and these 10 KB of words were most of what exact
resuming added to a small model's save (``bench/checkpoint_cost.py`` holds it
under 5 %). What keeps them cheap:

* base64 text rather than ``bytes``, which torch pickles as Latin-1 text
  re-encoded in UTF-8, three times slower to write than ASCII; and rather
  than a tensor, which is a file record of its own;
* a Python or NumPy global generator still exactly as the run's seed left it
  (most code never draws from them) is stored as ``{'seeded': seed}``;
* torch keeps its 624 Mersenne Twister words as 64-bit integers whose high
  halves are zero: those halves are left out (checked at every save);
* each generator's words are compared with those of its previous reading,
  and unchanged words reuse that answer, encoding included. Python's and
  NumPy's words are read raw, in under a microsecond, where the public calls
  take 10 to 25 us (``random.getstate`` builds 625 ints, NumPy's ``get_state``
  copies its key word by word). The raw reads use CPython's object layout and
  NumPy's public ``ctypes`` interface, and are trusted only after they
  matched what the public calls return; otherwise every reading is a full one.

Reusing an answer is exact: with the words unchanged no number was drawn.
Python's cached Gaussian is compared too; NumPy's cannot be read raw, so an
answer read with it set is never reused, and the one case left out is user
code calling ``numpy.random.set_state`` with the very words already there and
another cached Gaussian.
"""

from __future__ import annotations

import _random
import base64
import ctypes
import dataclasses
import functools
import random
import struct
import sys
from collections.abc import Callable
from typing import Any

import torch

__all__ = ['FORMAT', 'get_states', 'set_states']

FORMAT = 3
"""Version of ``get_states()`` output; formats 1 and 2 restore too."""

_WORDS = 624  # Mersenne Twister words, in Python and in NumPy


@dataclasses.dataclass(slots=True)
class _RawWords:
    """Raw reads of a generator's words and position, trusted once confirmed.

    The memory is viewed once per generator object, which is kept alive by
    the view's owner reference; a read is then a copy of ``size`` bytes.
    """

    offset: int  # from the address of the object read
    size: int
    trusted: bool | None = None  # None: not compared with the public API yet
    owner: Any = None
    view: memoryview | None = None

    def read(self, owner: Any, address: Callable[[Any], int]) -> bytes | None:
        if self.trusted is False:
            return None
        if owner is not self.owner or self.view is None:
            start = address(owner) + self.offset
            buffer = (ctypes.c_char * self.size).from_address(start)
            self.owner, self.view = owner, memoryview(buffer).cast('B')
        return self.view.tobytes()

    def confirm(self, raw: bytes | None, expected: bytes) -> bytes | None:
        """Compare a raw read with the public answer; distrust for good if unequal."""
        if raw is None:
            return None
        self.trusted = raw == expected
        return raw if self.trusted else None


class _Memo:
    """A generator's raw words at its last full reading, and the answer then.

    The three travel in one tuple, replaced in one assignment, so a thread
    never sees the words of one reading with the answer of another.
    """

    __slots__ = ('entry',)

    def __init__(self) -> None:
        self.entry: tuple[Any, bytes, dict[str, Any]] | None = None

    def recall(self, source: Any, raw: bytes) -> dict[str, Any] | None:
        entry = self.entry
        if entry is None or entry[0] is not source or entry[1] != raw:
            return None
        return dict(entry[2])  # a copy: callers may change theirs

    def keep(self, source: Any, raw: bytes | None, answer: dict[str, Any]) -> None:
        self.entry = None if raw is None else (source, raw, dict(answer))

    def forget(self) -> None:
        self.entry = None


# CPython's random object: the object header, then ``int index`` and the
# 624 words. Read only when the type is at least that large.
_PYTHON_RAW = _RawWords(object.__basicsize__, 4 + 4 * _WORDS)
if (
    sys.implementation.name != 'cpython'
    or _random.Random.__basicsize__ < _PYTHON_RAW.offset + _PYTHON_RAW.size
):
    _PYTHON_RAW.trusted = False
# Torch's CPU generator state keeps its 624 Mersenne Twister words as
# 64-bit integers, at bytes [24, 5016) of 5056: their high halves are zero,
# and left out of the checkpoint when they are (checked at every save).
_TORCH_SIZE = 5056
_TORCH_WIDE = (24, 24 + 8 * _WORDS)
_TORCH_ZEROS = bytes(_WORDS)
# NumPy's MT19937 state struct: the 624 words, then ``int pos``.
_NUMPY_RAW = _RawWords(0, 4 * _WORDS + 4)
_python_memo = _Memo()
_numpy_memo = _Memo()
_torch_memo = _Memo()


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
        'torch': _torch_state(),
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
    for memo in (_python_memo, _numpy_memo, _torch_memo):
        memo.forget()
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
    instance: Any = random._inst  # the generator behind random.random()
    gauss = instance.gauss_next
    raw = _PYTHON_RAW.read(instance, id)
    seeded = seed is not None and gauss is None
    if raw is not None and _PYTHON_RAW.trusted:
        if seeded and raw == _seeded_python(seed):
            return {'seeded': seed}
        remembered = _python_memo.recall(instance, raw)
        if remembered is not None and remembered['gauss'] == gauss:
            return remembered
    version, internal, gauss = random.getstate()
    packed = struct.pack(f'<{len(internal)}I', *internal)
    answer = {'version': version, 'words': _text(packed), 'gauss': gauss}
    # Raw order: the position (Python's last word), then the 624 words.
    raw = _PYTHON_RAW.confirm(raw, _raw_python(packed))
    _python_memo.keep(instance, raw, answer)
    if raw is not None and seeded and raw == _seeded_python(seed):
        return {'seeded': seed}
    return answer


def _numpy_state(numpy: Any, seed: int | None) -> dict[str, Any]:
    try:
        generator = numpy.random.get_bit_generator()  # NumPy >= 1.25
    except AttributeError:
        generator = None
    if generator is not None and type(generator).__name__ != 'MT19937':
        # numpy.random.set_bit_generator() installed another generator: its
        # state is a dict of ints and arrays, stored as ints and lists.
        return {'other': _plain(numpy.random.get_state(legacy=False))}
    raw = None
    if generator is not None:
        raw = _NUMPY_RAW.read(generator, _numpy_address)
    if raw is not None and _NUMPY_RAW.trusted:
        if seed is not None and raw == _seeded_numpy(seed):
            return {'seeded': seed}
        remembered = _numpy_memo.recall(generator, raw)
        if remembered is not None:
            return remembered
    name, key_array, pos, has_gauss, cached = numpy.random.get_state()
    keys = key_array.astype('<u4').tobytes()
    answer = {
        'name': str(name),
        'keys': _text(keys),
        'pos': int(pos),
        'has_gauss': int(has_gauss),
        'cached_gaussian': float(cached),
    }
    raw = _NUMPY_RAW.confirm(raw, keys + struct.pack('<i', int(pos)))
    _numpy_memo.keep(generator, None if has_gauss else raw, answer)
    if (
        raw is not None
        and not has_gauss
        and seed is not None
        and (raw == _seeded_numpy(seed))
    ):
        return {'seeded': seed}
    return answer


def _torch_state() -> dict[str, Any]:
    generator = torch.default_generator
    raw = _tensor_bytes(generator.get_state())
    remembered = _torch_memo.recall(generator, raw)
    if remembered is not None:
        return remembered
    start, stop = _TORCH_WIDE
    if len(raw) == _TORCH_SIZE and all(
        raw[k:stop:8] == _TORCH_ZEROS for k in range(start + 4, start + 8)
    ):
        low = b''.join(raw[k:stop:8] for k in range(start, start + 4))
        answer = {
            'words': _text(raw[:start] + low + raw[stop:]),
            'halved': [start, stop],
        }
    else:
        answer = {'words': _text(raw)}
    _torch_memo.keep(generator, raw, answer)
    return answer


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


def _numpy_address(generator: Any) -> int:
    return int(generator.ctypes.state_address)


@functools.lru_cache(maxsize=4)
def _seeded_python(seed: int) -> bytes:
    """Return the raw words of Python's generator seeded with ``seed``."""
    internal = random.Random(seed).getstate()[1]
    return _raw_python(struct.pack(f'<{len(internal)}I', *internal))


@functools.lru_cache(maxsize=4)
def _seeded_numpy(seed: int) -> bytes | None:
    """Return the raw words of NumPy's legacy generator seeded with ``seed``."""
    import numpy

    if not 0 <= seed < 2**32:
        return None  # NumPy refuses it: never its seed
    state: Any = numpy.random.RandomState(seed).get_state()
    _, keys, pos, _, _ = state
    return bytes(keys.astype('<u4').tobytes() + struct.pack('<i', int(pos)))


def _raw_python(packed: bytes) -> bytes:
    return packed[-4:] + packed[:-4]


def _set_earlier_states(states: dict[str, Any]) -> None:
    """Restore the states of formats 1 (lists) and 2 (one uint8 tensor of words)."""
    python_words: Any = None
    numpy_keys: Any = None
    torch_state: Any = states.get('torch')  # format 1: a tensor
    if 'words' in states:  # format 2
        words = _tensor_bytes(states['words'].cpu())
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


def _text(words: Any) -> str:
    return base64.b64encode(words).decode('ascii')


def _bytes(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _tensor_bytes(tensor: torch.Tensor) -> bytes:
    """Return a CPU uint8 tensor's bytes (without NumPy, which is optional)."""
    tensor = tensor.contiguous()
    return ctypes.string_at(tensor.data_ptr(), tensor.numel())


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
