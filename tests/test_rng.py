"""Random-generator states: exact round trips, the seeded shortcut, earlier formats."""

from __future__ import annotations

import base64
import io
import random
import struct
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch

from drytorch.lib import rng


def _through_a_file(states: dict[str, Any]) -> dict[str, Any]:
    buffer = io.BytesIO()
    torch.save(states, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)  # type: ignore[no-any-return]


def _draws() -> tuple[Any, ...]:
    return (
        random.random(),
        random.gauss(0, 1),
        np.random.rand(3).tolist(),
        np.random.standard_normal(3).tolist(),
        torch.rand(3),
    )


def _same(first: tuple[Any, ...], second: tuple[Any, ...]) -> bool:
    return first[:4] == second[:4] and torch.equal(first[4], second[4])


def _leaves(value: Any) -> Iterator[Any]:
    if isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


def _text(data: bytes) -> str:
    return base64.b64encode(data).decode('ascii')


_GENERATORS: dict[str, Callable[[], Any]] = {
    'python': lambda: [random.random(), random.gauss(0, 1), random.getrandbits(70)],
    'numpy': lambda: [*np.random.rand(3).tolist(), np.random.standard_normal()],
    'torch': lambda: [*torch.rand(3).tolist(), *torch.randn(3).tolist()],
}


@pytest.mark.parametrize('generator', sorted(_GENERATORS))
@pytest.mark.parametrize('seed', [None, 13])
def test_each_generator_draws_the_same_numbers_after_a_restore(
    generator: str, seed: int | None
) -> None:
    draw = _GENERATORS[generator]
    random.seed(13)
    np.random.seed(13)
    torch.manual_seed(13)
    draw()  # draw some numbers first (and leave a cached Gaussian)
    states = _through_a_file(rng.get_states(seed=seed))
    expected = [draw() for _ in range(3)]
    rng.set_states(states)
    assert [draw() for _ in range(3)] == expected


@pytest.mark.parametrize('seed', [None, 11])
def test_every_generator_continues_exactly_after_a_round_trip(
    seed: int | None,
) -> None:
    random.seed(4)
    random.gauss(0, 1)  # leave a cached Gaussian in Python and in NumPy
    np.random.standard_normal()
    torch.rand(2)
    states = _through_a_file(rng.get_states(seed=seed))
    expected = _draws()
    rng.set_states(states)
    assert _same(_draws(), expected)


def test_the_state_is_plain_data() -> None:
    states = rng.get_states()
    assert states['format'] == rng.FORMAT
    kinds = {type(leaf) for leaf in _leaves(states)}
    assert kinds <= {str, int, float, type(None)}  # no tensor, no bytes


def test_only_public_apis_are_used() -> None:
    assert not {'ctypes', '_random'} & set(vars(rng))


def test_generators_as_the_seed_left_them_are_stored_as_the_seed() -> None:
    random.seed(21)
    np.random.seed(21)
    states = rng.get_states(seed=21)
    assert states['python'] == {'seeded': 21}
    assert states['numpy'] == {'seeded': 21}
    assert rng.get_states(seed=22)['python'] != {'seeded': 22}
    assert 'seeded' not in rng.get_states()['numpy']  # no seed known
    assert 'seeded' not in rng.get_states(seed=2**40)['numpy']  # not NumPy's
    expected = _draws()
    rng.set_states(_through_a_file(states))
    assert _same(_draws(), expected)
    moved = rng.get_states(seed=21)  # _draws() moved both
    assert 'words' in moved['python'] and 'keys' in moved['numpy']


def test_a_cached_gaussian_is_not_a_seeded_state() -> None:
    version, words, _ = random.Random(8).getstate()
    random.setstate((version, words, 0.25))  # the seed's words, and a cache
    name, keys, pos, _, _ = np.random.RandomState(8).get_state()
    np.random.set_state((name, keys, pos, 1, 0.5))
    states = rng.get_states(seed=8)
    assert states['python']['gauss'] == 0.25
    assert states['numpy']['has_gauss'] == 1
    rng.set_states(_through_a_file(states))
    assert random.gauss(0, 1) == 0.25
    assert np.random.standard_normal() == 0.5


def test_a_changed_python_gaussian_alone_is_noticed() -> None:
    random.seed(5)
    random.random()
    version, words, _ = random.getstate()
    assert rng.get_states()['python']['gauss'] is None
    random.setstate((version, words, 0.5))  # the same words, another cache
    assert rng.get_states()['python']['gauss'] == 0.5


def test_a_consumed_numpy_gaussian_is_noticed() -> None:
    np.random.seed(3)
    np.random.standard_normal()  # draws two, caches one
    with_cache = rng.get_states()
    assert with_cache['numpy']['has_gauss'] == 1
    np.random.standard_normal()  # uses the cache: the words stay the same
    without = rng.get_states()
    assert without['numpy']['has_gauss'] == 0
    assert without['numpy']['keys'] == with_cache['numpy']['keys']
    expected = np.random.standard_normal(2).tolist()
    rng.set_states(without)
    assert np.random.standard_normal(2).tolist() == expected


@pytest.mark.parametrize('high', [0, 1])
def test_torch_words_are_halved_only_when_their_high_halves_are_zero(
    high: int,
) -> None:
    raw = bytearray(torch.get_rng_state().numpy().tobytes())
    assert len(raw) == 5056 and raw[28:32] == bytes(4)
    raw[28] = high  # the high half of the first of the 624 words
    answer = rng._torch_state(bytes(raw))
    assert ('halved' in answer) == (high == 0)
    assert len(answer['words']) == (3416 if high == 0 else 6744)  # base64
    assert rng._torch_words(_through_a_file(answer)) == bytes(raw)


@pytest.mark.parametrize('generator', ['PCG64', 'Philox', 'SFC64'])
def test_another_global_numpy_generator_is_saved_and_restored(
    generator: str,
) -> None:
    original = np.random.get_bit_generator()
    np.random.set_bit_generator(getattr(np.random, generator)(7))
    try:
        np.random.standard_normal()
        states = _through_a_file(rng.get_states(seed=7))
        assert states['numpy']['other']['bit_generator'] == generator
        expected = np.random.standard_normal(3).tolist()
        rng.set_states(states)
        assert np.random.standard_normal(3).tolist() == expected
    finally:
        np.random.set_bit_generator(original)


def test_states_without_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rng, '_numpy', lambda: None)
    torch.rand(1)
    states = rng.get_states()
    assert set(states) == {'format', 'python', 'torch'}
    expected = random.random(), torch.rand(2)
    rng.set_states(states)
    assert random.random() == expected[0]
    assert torch.equal(torch.rand(2), expected[1])


def test_tensor_bytes_without_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    state = torch.get_rng_state()
    with_numpy = rng._tensor_bytes(state)
    monkeypatch.setattr(rng, '_numpy', lambda: None)
    assert rng._tensor_bytes(state) == with_numpy == state.numpy().tobytes()


def _third_format(seed: int | None) -> dict[str, Any]:
    """The current generators' states as the previous version wrote them.

    That version read Python's and NumPy's words from memory, but stored
    format 3 as this one does: built here independently of ``rng``.
    """
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    raw = torch.get_rng_state().numpy().tobytes()
    low = b''.join(raw[k : 24 + 8 * 624 : 8] for k in range(24, 28))
    states: dict[str, Any] = {
        'format': 3,
        'python': {
            'version': version,
            'words': _text(struct.pack('<625I', *internal)),
            'gauss': gauss,
        },
        'torch': {
            'words': _text(raw[:24] + low + raw[24 + 8 * 624 :]),
            'halved': [24, 24 + 8 * 624],
        },
        'numpy': {
            'name': name,
            'keys': _text(keys.astype('<u4').tobytes()),
            'pos': int(pos),
            'has_gauss': int(has_gauss),
            'cached_gaussian': float(cached),
        },
    }
    if seed is not None:
        states['python'] = states['numpy'] = {'seeded': seed}
    return states


@pytest.mark.parametrize('seed', [None, 17])
def test_states_of_the_third_format_written_before_are_restored(
    seed: int | None,
) -> None:
    if seed is None:
        random.gauss(0, 1)
        np.random.standard_normal()
    else:
        random.seed(seed)
        np.random.seed(seed)
    torch.rand(2)
    old = _through_a_file(_third_format(seed))
    assert rng.get_states(seed=seed) == old  # still written the same way
    expected = _draws()
    rng.set_states(old)
    assert _same(_draws(), expected)


def test_states_of_the_first_format_are_restored() -> None:
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    old = {
        'python': {'version': version, 'state': list(internal), 'gauss': gauss},
        'torch': torch.get_rng_state(),
        'numpy': {
            'name': name,
            'keys': torch.from_numpy(keys.astype(np.int64)),
            'pos': pos,
            'has_gauss': has_gauss,
            'cached_gaussian': cached,
        },
    }
    expected = _draws()
    rng.set_states(_through_a_file(old))
    assert _same(_draws(), expected)


def test_states_of_the_second_format_are_restored() -> None:
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    python = struct.pack(f'<{len(internal)}I', *internal)
    numpy_keys = keys.astype('<u4').tobytes()
    torch_state = torch.get_rng_state()
    old = {  # format 2 packed every word into one uint8 tensor
        'python': {'version': version, 'gauss': gauss},
        'numpy': {
            'name': name,
            'pos': pos,
            'has_gauss': has_gauss,
            'cached_gaussian': cached,
        },
        'words': torch.cat(
            (
                torch.frombuffer(bytearray(python + numpy_keys), dtype=torch.uint8),
                torch_state,
            )
        ),
        'sizes': [len(python), len(numpy_keys), torch_state.numel()],
    }
    expected = _draws()
    rng.set_states(_through_a_file(old))
    assert _same(_draws(), expected)
