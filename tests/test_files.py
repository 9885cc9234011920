"""Files replaced whole: the old content or the new, never a part."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys

import pytest

from drytorch.core import files


def _leftovers(folder: pathlib.Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith('.tmp-'))


def test_a_file_is_created_then_replaced_whole(tmp_path: pathlib.Path) -> None:
    target = tmp_path / 'record.toml'
    files.replace_file(target, b'first')
    files.replace_file(target, b'second', sync=False)
    assert target.read_bytes() == b'second'
    assert _leftovers(tmp_path) == []


def test_text_mode_passes_its_arguments_to_open(tmp_path: pathlib.Path) -> None:
    target = tmp_path / 'rows.csv'
    with files.replacing(target, mode='w', newline='', encoding='utf-8') as handle:
        handle.write('épée\r\n')
    assert target.read_bytes() == 'épée\r\n'.encode()


def test_an_error_in_the_block_keeps_the_old_file(tmp_path: pathlib.Path) -> None:
    target = tmp_path / 'model.pt'
    target.write_bytes(b'old')
    with pytest.raises(RuntimeError), files.replacing(target, suffix='.pt') as file:
        file.write(b'half')
        raise RuntimeError
    assert target.read_bytes() == b'old'
    assert _leftovers(tmp_path) == []


def test_a_killed_writer_leaves_the_old_file_and_a_named_leftover(
    tmp_path: pathlib.Path,
) -> None:
    target = tmp_path / 'model.pt'
    target.write_bytes(b'old')
    code = (
        'import os, pathlib, signal, sys\n'
        'from drytorch.core import files\n'
        'with files.replacing(pathlib.Path(sys.argv[1]), suffix=".pt") as file:\n'
        '    file.write(b"half")\n'
        '    file.flush()\n'
        '    os.kill(os.getpid(), signal.SIGKILL)\n'
    )
    child = subprocess.run(
        [sys.executable, '-c', code, str(target)], timeout=60, check=False
    )
    assert child.returncode == -signal.SIGKILL
    assert target.read_bytes() == b'old'
    (leftover,) = _leftovers(tmp_path)
    pid = int(leftover.split('-')[1])
    assert pid != os.getpid() and leftover.endswith('.pt')
    assert (tmp_path / leftover).read_bytes() == b'half'


def test_a_synced_temporary_file_can_be_linked_into_place(
    tmp_path: pathlib.Path,
) -> None:
    temp = files.write_temp(tmp_path, b'content')
    try:
        os.link(temp, tmp_path / 'new')
        with pytest.raises(FileExistsError):
            os.link(temp, tmp_path / 'new')  # never replaces what exists
    finally:
        temp.unlink()
    assert (tmp_path / 'new').read_bytes() == b'content'
