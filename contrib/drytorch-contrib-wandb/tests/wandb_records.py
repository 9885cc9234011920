"""Read what W&B wrote: the records of an offline run's ``run-<id>.wandb`` file.

W&B writes every session of a run as a transaction log of protobuf
``wandb.proto.wandb_internal_pb2.Record`` messages, framed like a LevelDB log:
a 7-byte file header (``:W&B``, magic ``0xBEE1``, version 0), then 32 KiB
blocks of chunks, each with a 7-byte header (CRC-32 of type and data, length,
type: full, first, middle or last part of a record). The SDK no longer ships a
Python reader of this file (``wandb.sdk.internal.datastore`` is gone from the
SDK's current releases), so the framing is read here, every chunk's checksum is
verified, and the records are decoded with W&B's own protobuf classes.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import struct
import zlib
from typing import Any

FILE_HEADER = struct.Struct('<4sHB')
CHUNK_HEADER = struct.Struct('<IHB')
BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def raw_records(path: pathlib.Path) -> list[bytes]:
    """The serialized records of a ``.wandb`` file, checksums verified."""
    data = path.read_bytes()
    ident, magic, version = FILE_HEADER.unpack_from(data)
    assert (ident, magic, version) == (b':W&B', 0xBEE1, 0), data[:7]
    records: list[bytes] = []
    pending: bytes | None = None
    offset = FILE_HEADER.size
    while offset + CHUNK_HEADER.size <= len(data):
        room = BLOCK - offset % BLOCK
        if room < CHUNK_HEADER.size:  # a block's tail too short for a header
            offset += room
            continue
        checksum, length, kind = CHUNK_HEADER.unpack_from(data, offset)
        start = offset + CHUNK_HEADER.size
        chunk = data[start : start + length]
        offset = start + length
        if kind == 0 and length == 0:  # zero padding
            continue
        assert len(chunk) == length, f'{path} is truncated'
        assert zlib.crc32(bytes([kind]) + chunk) == checksum, f'bad chunk in {path}'
        if kind == FULL:
            records.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind in (MIDDLE, LAST):
            assert pending is not None, f'a chunk of {path} has no first part'
            pending += chunk
            if kind == LAST:
                records.append(pending)
                pending = None
        else:
            raise AssertionError(f'unknown chunk type {kind} in {path}')
    return records


def records(path: pathlib.Path) -> list[Any]:
    """The records of a ``.wandb`` file, as W&B's protobuf messages."""
    from wandb.proto import wandb_internal_pb2

    decoded = []
    for raw in raw_records(path):
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        decoded.append(record)
    return decoded


def _key(item: Any) -> str:
    return item.key or '.'.join(item.nested_key)


@dataclasses.dataclass
class Session:
    """What one W&B session (one ``offline-run-*`` folder) wrote.

    Attributes:
        folder: the session's folder.
        run: the ``RunRecord`` (id, project, config, tags, resume flag...).
        config: the config, as W&B's config updates leave it.
        history: each history row, ``_step`` included.
        summary: the summary, as W&B's summary updates leave it.
        metrics: the ``define_metric`` records, by name or glob.
        artifacts: the ``ArtifactRecord``s of logged artifacts.
        exit_code: the exit code of ``finish``; ``None`` if never finished.
    """

    folder: pathlib.Path
    run: Any
    config: dict[str, Any]
    history: list[dict[str, Any]]
    summary: dict[str, Any]
    metrics: dict[str, Any]
    artifacts: list[Any]
    exit_code: int | None

    def rows(self, key: str) -> list[tuple[int, float]]:
        """``(epoch, value)`` of each row that holds ``key``."""
        return [(row['epoch'], row[key]) for row in self.history if key in row]

    def step_rows(self, key: str) -> list[tuple[int, float]]:
        """``(global_step, value)`` of each row that holds ``key``."""
        return [(row['global_step'], row[key]) for row in self.history if key in row]

    def keys(self) -> set[str]:
        """The history keys the tracker logged (W&B's own ``_*`` left out)."""
        return {key for row in self.history for key in row if not key.startswith('_')}


def read_session(folder: pathlib.Path) -> Session:
    """Read the ``.wandb`` file of a session folder."""
    [log] = folder.glob('run-*.wandb')
    run = None
    config: dict[str, Any] = {}
    history: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    metrics: dict[str, Any] = {}
    artifacts: list[Any] = []
    exit_code = None

    def update_config(items: Any) -> None:
        for item in items:
            config[_key(item)] = json.loads(item.value_json)

    for record in records(log):
        kind = record.WhichOneof('record_type')
        if kind == 'run':
            run = record.run
            update_config(record.run.config.update)
        elif kind == 'config':
            update_config(record.config.update)
            for item in record.config.remove:
                config.pop(_key(item), None)
        elif kind == 'history':
            history.append(
                {_key(i): json.loads(i.value_json) for i in record.history.item}
            )
        elif kind == 'summary':
            for item in record.summary.update:
                summary[_key(item)] = json.loads(item.value_json)
            for item in record.summary.remove:
                summary.pop(_key(item), None)
        elif kind == 'metric':
            metrics[record.metric.name or record.metric.glob_name] = record.metric
        elif kind == 'artifact':
            artifacts.append(record.artifact)
        elif kind == 'exit':
            exit_code = record.exit.exit_code
    assert run is not None, f'{log} has no run record'
    config.pop('_wandb', None)
    return Session(folder, run, config, history, summary, metrics, artifacts, exit_code)


def sessions(root: pathlib.Path, wandb_id: str | None = None) -> list[Session]:
    """The offline sessions under ``<root>/wandb`` (of one W&B run), oldest first.

    A session folder is ``offline-run-<start time>-<id>``, with ``-<n>`` added
    when another session of the run started in the same second.
    """
    found = [read_session(f) for f in sorted((root / 'wandb').glob('offline-run-*'))]
    return [s for s in found if wandb_id is None or s.run.run_id == wandb_id]
