"""Random-generator states: exact round trips, shortcuts, earlier formats."""

from __future__ import annotations

import io
import random
import struct
from collections.abc import Iterator
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


def _spy(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    calls: list[int] = []
    original = getattr(owner, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return calls


@pytest.fixture(autouse=True)
def fresh_readings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Start each test with nothing remembered and the raw reads unchecked."""
    for memo in (rng._python_memo, rng._numpy_memo, rng._torch_memo):
        monkeypatch.setattr(memo, 'entry', None)
    for raw in (rng._PYTHON_RAW, rng._NUMPY_RAW):
        monkeypatch.setattr(raw, 'view', None)
        if raw.trusted is not False:  # False for Python's outside CPython
            monkeypatch.setattr(raw, 'trusted', None)


@pytest.fixture
def python_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the full reads of Python's state (``random.getstate``)."""
    return _spy(monkeypatch, random, 'getstate')


@pytest.fixture
def numpy_reads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the full reads of NumPy's state (``numpy.random.get_state``)."""
    return _spy(monkeypatch, np.random, 'get_state')


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
    states = rng.get_states(seed=8)
    assert states['python']['gauss'] == 0.25
    rng.set_states(states)
    assert random.gauss(0, 1) == 0.25


def test_unchanged_states_are_not_read_again(
    python_reads: list[int], numpy_reads: list[int]
) -> None:
    random.seed(2)
    random.random()
    np.random.seed(2)  # no cached Gaussian
    np.random.rand()
    first = rng.get_states()
    assert (len(python_reads), len(numpy_reads)) == (1, 1)
    torch.rand(2)  # torch's generator moves; the others do not
    second = rng.get_states()
    if rng._PYTHON_RAW.trusted:  # CPython
        assert len(python_reads) == 1
    assert len(numpy_reads) == 1
    assert second['python'] == first['python']
    assert second['numpy'] == first['numpy']
    assert second['numpy'] is not first['numpy']  # callers may change theirs
    random.random()
    np.random.rand()
    third = rng.get_states()
    assert (len(python_reads), len(numpy_reads)) == (2, 2)
    assert third['numpy']['pos'] == second['numpy']['pos'] + 2  # a double: 2 words
    assert third['python']['words'] != second['python']['words']
    expected = _draws()
    rng.set_states(third)
    assert _same(_draws(), expected)


def test_unchanged_states_are_not_encoded_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    encoded = _spy(monkeypatch, rng, '_text')
    random.random()
    np.random.seed(1)
    np.random.rand()
    first = rng.get_states()
    assert len(encoded) == 3  # Python's, NumPy's and torch's words
    encoded.clear()
    assert rng.get_states() == first
    assert not encoded
    torch.rand(1)
    moved = rng.get_states()
    assert len(encoded) == 1
    assert moved['torch'] != first['torch']
    assert moved['python'] == first['python']


class _FixedGenerator:
    """A stand-in for torch's default generator, with a crafted state."""

    def __init__(self, state: torch.Tensor) -> None:
        self.state = state

    def get_state(self) -> torch.Tensor:
        return self.state.clone()


@pytest.mark.parametrize('high', [0, 1])
def test_torch_words_are_halved_only_when_their_high_halves_are_zero(
    high: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = bytearray(torch.get_rng_state().numpy().tobytes())
    assert len(raw) == 5056 and raw[28:32] == bytes(4)
    raw[28] = high  # the high half of the first of the 624 words
    crafted = torch.frombuffer(raw, dtype=torch.uint8)
    monkeypatch.setattr(torch, 'default_generator', _FixedGenerator(crafted))
    answer = rng._torch_state()
    assert ('halved' in answer) == (high == 0)
    assert len(answer['words']) == (3416 if high == 0 else 6744)  # base64
    assert rng._torch_words(_through_a_file(answer)) == bytes(raw)


def test_a_changed_python_gaussian_alone_is_noticed() -> None:
    random.seed(5)
    random.random()
    version, words, _ = random.getstate()
    assert rng.get_states()['python']['gauss'] is None
    random.setstate((version, words, 0.5))  # the same words, another cache
    assert rng.get_states()['python']['gauss'] == 0.5


def test_a_consumed_numpy_gaussian_is_noticed(numpy_reads: list[int]) -> None:
    np.random.seed(3)
    np.random.standard_normal()  # draws two, caches one
    with_cache = rng.get_states()
    assert with_cache['numpy']['has_gauss'] == 1
    np.random.standard_normal()  # uses the cache: the raw words stay the same
    without = rng.get_states()
    assert len(numpy_reads) == 2  # read in full: a flag alone may have changed
    assert without['numpy']['has_gauss'] == 0
    expected = np.random.standard_normal(2).tolist()
    rng.set_states(without)
    assert np.random.standard_normal(2).tolist() == expected


def test_raw_words_in_an_unknown_layout_are_never_trusted(
    python_reads: list[int],
    numpy_reads: list[int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for raw in (rng._PYTHON_RAW, rng._NUMPY_RAW):  # as if the layout had moved
        monkeypatch.setattr(raw, 'offset', raw.offset - 4)
    random.seed(6)
    np.random.seed(6)
    for _ in range(2):
        states = rng.get_states(seed=6)
        assert 'seeded' not in states['numpy'] and 'seeded' not in states['python']
    assert (len(python_reads), len(numpy_reads)) == (2, 2)
    assert rng._NUMPY_RAW.trusted is False
    assert rng._PYTHON_RAW.trusted is False


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
    states = rng.get_states()
    assert set(states) == {'format', 'python', 'torch'}
    expected = random.random(), torch.rand(2)
    rng.set_states(states)
    assert random.random() == expected[0]
    assert torch.equal(torch.rand(2), expected[1])


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
