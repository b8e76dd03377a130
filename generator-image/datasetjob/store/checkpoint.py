"""Item checkpoints: results of finished items, so a rerun shard skips them.

Stored as immutable part files under runs/<runId>/checkpoints/shard-N/ (works the same on
disk and on S3, where objects cannot be appended to). A part is written atomically, so a
worker killed mid-write loses at most the items since its last flush, never a half part.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from typing import Any

from datasetjob.store import layout
from datasetjob.store.backends import Store
from datasetjob.store.rowtypes import Row

log = logging.getLogger("datasetjob.store")


class Checkpoint:
    def __init__(
        self, store: Store, run_id: str, index: int, flush_every_items: int = 25, flush_every_seconds: float = 5.0
    ):
        self.store = store
        self.prefix = layout.checkpoint_prefix(run_id, index)
        self.flush_every_items = flush_every_items
        self.flush_every_seconds = flush_every_seconds
        self._pending: list[dict[str, Any]] = []  # {"position", "id", "rows"} entries
        self._last_flush = time.monotonic()

    def load(self) -> dict[int, list[Row]]:
        """position → rows of every item a previous attempt finished."""
        done: dict[int, list[Row]] = {}
        for key in self.store.list(self.prefix):
            try:
                part = {}
                for line in self.store.get_text(key).split("\n"):
                    if line.strip():
                        entry = json.loads(line)
                        part[int(entry["position"])] = list(entry["rows"])
            except (ValueError, TypeError, KeyError) as exc:  # a damaged part: its items are made again
                log.warning("checkpoint part %s is unreadable (%s): skipped", self.store.key_uri(key), exc)
                continue
            done.update(part)
        return done

    def record(self, position: int, item_id: str, rows: list[Row]) -> None:
        self._pending.append({"position": position, "id": item_id, "rows": rows})
        if (
            len(self._pending) >= self.flush_every_items
            or time.monotonic() - self._last_flush >= self.flush_every_seconds
        ):
            self.flush()

    def flush(self) -> None:
        self._last_flush = time.monotonic()
        if not self._pending:
            return
        body = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in self._pending)
        self._pending = []
        self.store.put_bytes(
            f"{self.prefix}part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.jsonl", body.encode("utf-8")
        )

    def discard(self) -> None:
        self.store.delete_prefix(self.prefix)
