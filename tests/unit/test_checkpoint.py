"""Checkpoints are written by time and size, one part per flush, never one per item."""

from __future__ import annotations

from datasetjob.store import layout
from datasetjob.store.backends import FileStore
from datasetjob.store.checkpoint import Checkpoint
from datasetjob.worker.generator import encode_rows


def parts(store: FileStore) -> list[str]:
    return store.list(layout.checkpoint_prefix("r1", 0))


def test_items_are_flushed_together_not_one_part_each(tmp_path):
    store = FileStore(tmp_path)
    checkpoint = Checkpoint(store, "r1", 0, flush_every_seconds=3600)
    for position in range(5000):
        checkpoint.record(position, str(position), encode_rows([{"i": position}]))
    assert parts(store) == []  # within the interval nothing is written
    checkpoint.flush()
    assert len(parts(store)) == 1
    assert Checkpoint(store, "r1", 0).load() == {p: [{"i": p}] for p in range(5000)}


def test_a_large_pending_checkpoint_is_flushed_before_its_time(tmp_path):
    store = FileStore(tmp_path)
    checkpoint = Checkpoint(store, "r1", 0, flush_every_seconds=3600, flush_every_bytes=10_000)
    for position in range(100):
        checkpoint.record(position, str(position), encode_rows([{"text": "x" * 500}]))
    written = parts(store)
    assert 4 <= len(written) <= 6  # ~55,000 bytes in parts of at most ~10,000
    assert all(len(store.get_bytes(key)) < 10_000 + 600 for key in written)


def test_commit_removes_every_part_at_once(tmp_path):
    store = FileStore(tmp_path)
    checkpoint = Checkpoint(store, "r1", 0, flush_every_seconds=0)
    for position in range(10):
        checkpoint.record(position, str(position), encode_rows([]))
    assert len(parts(store)) == 10
    checkpoint.discard()
    assert parts(store) == [] and not store.path(layout.checkpoint_prefix("r1", 0)).exists()
