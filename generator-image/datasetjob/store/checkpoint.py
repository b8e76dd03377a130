"""Item checkpoints: results of finished items, so a rerun shard skips them.

Stored as immutable part files under runs/<runId>/checkpoints/shard-N/ (works the same on
disk and on S3, where objects cannot be appended to). A part is written atomically, so a
worker killed mid-write loses at most the items since its last flush, never a half part.

A worker that restarts itself (worker.item_timeout) also leaves its failed items there, in a
part of their own, so that the next process does not try them again.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from datasetjob.store import layout
from datasetjob.store.backends import Store
from datasetjob.store.reuse import json_string
from datasetjob.store.rowtypes import Row

log = logging.getLogger("datasetjob.store")


class Checkpoint:
    """Finished items of one shard, flushed by time (at most one part per `flush_every_seconds`)
    or when the pending text passes `flush_every_bytes`: the store is written about once a
    second whatever the item rate, and memory stays bounded whatever the row size."""

    def __init__(
        self,
        store: Store,
        run_id: str,
        index: int,
        flush_every_seconds: float = 1.0,
        flush_every_bytes: int = 8 << 20,
        prefix: str | None = None,  # a work packet's, instead of shard `index`'s
    ):
        self.store = store
        self.prefix = prefix or layout.checkpoint_prefix(run_id, index)
        self.flush_every_seconds = flush_every_seconds
        self.flush_every_bytes = flush_every_bytes
        self._pending: list[str] = []  # one JSON line per item: {"position", "id", "rows"}
        self._pending_bytes = 0
        self._last_flush = time.monotonic()
        # position → {"position", "id", "failed": failure record, "tag"}: filled by load()
        self.failed: dict[int, dict[str, Any]] = {}

    def load(self) -> dict[int, list[Row]]:
        """position → rows of every item a previous attempt finished (and, in `failed`, the
        items a previous attempt recorded as failed before restarting)."""
        done: dict[int, list[Row]] = {}
        for key in self.store.list(self.prefix):
            try:
                part, failed = {}, {}
                for line in self.store.get_text(key).split("\n"):
                    if line.strip():
                        entry = json.loads(line)
                        if "failed" in entry:
                            failed[int(entry["position"])] = dict(entry, failed=dict(entry["failed"]))
                        else:
                            part[int(entry["position"])] = list(entry["rows"])
            except (ValueError, TypeError, KeyError) as exc:  # a damaged part: its items are made again
                log.warning("checkpoint part %s is unreadable (%s): skipped", self.store.key_uri(key), exc)
                continue
            done.update(part)
            self.failed.update(failed)
        return done

    def positions(self) -> set[int]:
        """The positions of the items a previous attempt finished (nothing read when there is no part)."""
        return set(self.load())

    def record(self, position: int, item_id: str, rows_json: str) -> None:
        """One finished item; `rows_json` is its rows as JSON text (encoded once, by the caller)."""
        line = f'{{"position": {position}, "id": {json_string(item_id)}, "rows": {rows_json}}}\n'
        self._pending.append(line)
        self._pending_bytes += len(line)
        if (
            self._pending_bytes >= self.flush_every_bytes
            or time.monotonic() - self._last_flush >= self.flush_every_seconds
        ):
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        body = "".join(self._pending).encode("utf-8")
        self._pending, self._pending_bytes = [], 0
        self.store.put_bytes(f"{self.prefix}part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.jsonl", body)

    def save_failures(self, failures: list[dict[str, Any]], tag: str) -> None:
        """Failed items (records with "id" and "position"), as one part; `tag` tells which
        attempts they count for (see worker.item_timeout.attempt_tag)."""
        if not failures:
            return
        body = "".join(
            json.dumps({"position": f["position"], "id": f["id"], "failed": f, "tag": tag}, ensure_ascii=False) + "\n"
            for f in failures
        ).encode("utf-8")
        self.store.put_bytes(f"{self.prefix}part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}-failed.jsonl", body)

    def discard(self) -> None:
        """Every part at once: one directory removal on disk, one batched delete per 1,000 on S3."""
        self.store.delete_prefix(self.prefix)
