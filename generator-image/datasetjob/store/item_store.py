"""Reusable item rows in the output store, under items/<fingerprint>/ (layout.py).

Segments are immutable: each shard commit adds one with the items it generated, so concurrent
shards and later runs never write the same key. Reading takes every segment of the fingerprint;
which records apply is decided by reuse.select_reusable.
"""

from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from datasetjob.store import layout
from datasetjob.store.backends import Store
from datasetjob.store.reuse import ItemRecord, parse_segment, segment_body


class ItemStore:
    def __init__(self, store: Store, fingerprint: str, inputs: dict[str, Any]):
        self.store = store
        self.fingerprint = fingerprint
        self.inputs = inputs

    def load(self, ids: set[str] | None = None) -> list[ItemRecord]:
        """The stored records (of these item ids only, if given)."""
        prefix = layout.item_store_prefix(self.fingerprint) + "segments/"
        keys = [k for k in self.store.list(prefix) if k.endswith(".jsonl")]
        # Object stores answer one GET at a time slowly; a few at once keeps start-up short.
        with ThreadPoolExecutor(max_workers=8) as pool:
            texts = list(pool.map(self.store.get_text, keys))
        return [record for text in texts for record in parse_segment(text, ids)]

    def save(self, run_id: str, index: int, records: list[ItemRecord]) -> None:
        if not records:
            return
        token = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        self.store.put_bytes(layout.item_segment_key(self.fingerprint, run_id, index, token), segment_body(records))
        # What the fingerprint stands for, for people browsing the store (same bytes every time).
        self.store.put_bytes(
            layout.fingerprint_key(self.fingerprint), json.dumps(self.inputs, indent=1, sort_keys=True).encode("utf-8")
        )
