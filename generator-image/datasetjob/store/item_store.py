"""Reusable item rows in the output store, under items/<fingerprint>/ (layout.py).

Segments are immutable: each shard commit adds one with the items it generated, so concurrent
shards and later runs never write the same key. Reading takes every segment of the fingerprint;
which records apply is decided by reuse.select_reusable. The store is a cache of rows: a segment
that is not one (cut short, overwritten) is set aside, named in the log, and its items are
generated again.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from datasetjob.errors import StorageError
from datasetjob.store import layout
from datasetjob.store.backends import FileStore, Store
from datasetjob.store.reuse import ItemRecord, parse_segment

log = logging.getLogger("datasetjob.store")


class ItemStore:
    def __init__(self, store: Store, fingerprint: str, inputs: dict[str, Any]):
        self.store = store
        self.fingerprint = fingerprint
        self.inputs = inputs
        self._held: list[ItemRecord] | None = None  # see hold()

    def hold(self) -> None:
        """Read every record (rows too) once, and answer later loads from memory: for one
        process that commits every shard of a run (the assembly), not for workers."""
        self._held = None
        self._held = self.load()

    def is_empty(self) -> bool:
        """No segment yet: nothing to reuse (listing the store once, reading nothing)."""
        prefix = layout.item_store_prefix(self.fingerprint) + "segments/"
        return not any(k.endswith(".jsonl") for k in self.store.list(prefix))

    def load(self, ids: set[str] | None = None, rows: bool = True) -> list[ItemRecord]:
        """The stored records (of these item ids only, if given; without their rows, if not
        `rows`: what a plan needs, in memory that does not grow with row size)."""
        if self._held is not None:
            return self._held if ids is None else [r for r in self._held if r.id in ids]
        prefix = layout.item_store_prefix(self.fingerprint) + "segments/"
        keys = [k for k in self.store.list(prefix) if k.endswith(".jsonl")]
        # Object stores answer one GET at a time slowly; a few at once keeps start-up short.
        with ThreadPoolExecutor(max_workers=8) as pool:
            segments = list(pool.map(lambda key: self._read(key, ids, rows), keys))
        return [record for records in segments for record in records]

    def _read(self, key: str, ids: set[str] | None, rows: bool) -> list[ItemRecord]:
        try:
            data = self.store.get_bytes(key)
        except StorageError:
            if not self.store.exists(key):
                return []  # set aside by another shard since the listing
            raise
        try:
            return parse_segment(data.decode("utf-8"), ids, rows)
        except ValueError as exc:
            self._set_aside(key, " ".join(str(exc).split())[:200])
            return []

    def _set_aside(self, key: str, why: str) -> None:
        """Moves a corrupt segment out of the way (on disk); on S3, where a rename is a copy,
        it is only skipped. Said once: a shard that finds it already moved says nothing."""
        uri = self.store.key_uri(key)
        if not isinstance(self.store, FileStore):
            log.warning("reuse segment %s is corrupt (%s): skipped; its items are generated again", uri, why)
            return
        aside = f"{key}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
        try:
            os.replace(self.store.path(key), self.store.path(aside))
        except FileNotFoundError:
            return
        log.warning(
            "reuse segment %s is corrupt (%s): moved aside to %s; its items are generated again",
            uri,
            why,
            self.store.key_uri(aside),
        )

    def save(self, run_id: str, name: str, lines: list[str]) -> None:
        """One new segment of these records (reuse.segment_line each), made by shard or packet `name`."""
        if not lines:
            return
        token = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        body = "".join(lines).encode("utf-8")
        self.store.put_bytes(layout.item_segment_key(self.fingerprint, run_id, name, token), body)
        # What the fingerprint stands for, for people browsing the store (same bytes every time).
        self.store.put_bytes(
            layout.fingerprint_key(self.fingerprint), json.dumps(self.inputs, indent=1, sort_keys=True).encode("utf-8")
        )
