"""Making, storing and reading a run's plan (spec.work_packets): the item store is read once,
ids and digests only."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from typing import Any

from datasetjob.spec.item_slice import items_at, slice_known
from datasetjob.spec.item_source import count_items, item_ids
from datasetjob.spec.model import DatasetJobSpec
from datasetjob.spec.sharding import shard_bounds
from datasetjob.spec.work_packets import MIN_PACKET_SHARE, WorkPlan, new_plan_id, pack
from datasetjob.store import layout
from datasetjob.store.backends import Store
from datasetjob.store.checkpoint import Checkpoint
from datasetjob.store.fingerprint import item_digest
from datasetjob.store.item_store import ItemStore
from datasetjob.store.reuse import segment_line, select_reusable


def make_plan(
    spec: DatasetJobSpec,
    run_id: str,
    store: Store,
    item_store: ItemStore,
    retry_failed: bool = False,
    plan_id: str | None = None,
) -> WorkPlan:
    """The plan of this run now: reads the shard manifests it committed and the item store
    (ids and digests, not rows), once each, after storing what earlier packets checkpointed.
    Shards committed already are left alone, unless `retry_failed` and they recorded failed
    items."""
    total = count_items(spec.items)
    assert total is not None  # plans_work: a source the spec holds
    salvage_packet_checkpoints(spec, run_id, store, item_store)
    pending = [i for i in range(spec.shards) if not _committed(store, run_id, i, retry_failed)]
    records = item_store.load(rows=False) if pending and not item_store.is_empty() else []
    now = time.time()
    todo: list[int] = []
    with_work: list[int] = []
    reused = 0
    for index in pending:
        start, stop = shard_bounds(total, spec.shards, index)
        own = slice_known(spec.items, start, stop)
        assert own is not None
        ids = item_ids(own.items, spec.items.id_template) if own.items else []
        wanted = {start + k: (ids[k], item_digest(item)) for k, item in enumerate(own.items)}
        stored = select_reusable(records, wanted, now, spec.reuse.max_age_seconds) if records else {}
        # Items an earlier attempt's shard process finished (its checkpoint): the assembly takes them.
        finished = Checkpoint(store, run_id, index).positions()
        missing = [p for p in range(start, stop) if p not in stored and p not in finished]
        reused += len(stored)
        if missing:
            with_work.append(index)
            todo.extend(missing)
    # A packet is worth a process from a tenth of a shard up: the appended month's 100 items of
    # a 3,700-item, 10-shard sample go to 2 packets in parallel, not to one process.
    per_packet = max(1, math.ceil(total / spec.shards / MIN_PACKET_SHARE))
    return WorkPlan(
        plan_id=plan_id or new_plan_id(),
        shards=spec.shards,
        packets=pack(todo, per_packet, spec.shards),
        shards_with_work=with_work,
        shards_to_assemble=pending,
        to_generate=len(todo),
        reused=reused,
        fingerprint=item_store.fingerprint,
    )


def salvage_packet_checkpoints(spec: DatasetJobSpec, run_id: str, store: Store, item_store: ItemStore) -> int:
    """Items an earlier plan's packets finished but never committed (a packet stopped or
    killed before its end) go to the item store, so a resumed run does not generate them again.
    How many; the checkpoints are removed once their items are stored."""
    prefix = layout.run_prefix(run_id) + "checkpoints/"
    plans = sorted({key[len(prefix) :].split("/", 1)[0] for key in store.list(prefix)} - _shard_dirs(store, prefix))
    lines: list[str] = []
    now = time.time()
    for plan_id in plans:
        for key in store.list(f"{prefix}{plan_id}/"):
            try:
                entries = [json.loads(line) for line in store.get_text(key).split("\n") if line.strip()]
                found = [(int(e["position"]), str(e["id"]), json.dumps(e["rows"], ensure_ascii=False)) for e in entries]
            except (ValueError, TypeError, KeyError):  # a damaged part: its items are generated again
                continue
            items = items_at(spec.items, [p for p, _, _ in found]) or []
            lines += [
                segment_line(i, item_digest(item), rows, run_id, now)
                for (_, i, rows), item in zip(found, items, strict=True)
            ]
    if lines:
        item_store.save(run_id, "resumed", lines)
    for plan_id in plans:
        store.delete_prefix(f"{prefix}{plan_id}/")
    return len(lines)


def _shard_dirs(store: Store, prefix: str) -> set[str]:
    return {key[len(prefix) :].split("/", 1)[0] for key in store.list(prefix + "shard-")}


def _committed(store: Store, run_id: str, index: int, retry_failed: bool) -> bool:
    key = layout.shard_manifest_key(run_id, index)
    if not store.exists(key):
        return False
    if not retry_failed:
        return True
    try:
        return int(json.loads(store.get_text(key))["items"]["failed"]) == 0
    except (ValueError, KeyError, TypeError):  # not a manifest this run wrote: assemble it again
        return False


def save_plan(store: Store, run_id: str, plan: WorkPlan) -> str:
    """The plan where its packets' workers read it; its key."""
    key = layout.plan_key(run_id, plan.plan_id)
    store.put_bytes(key, json.dumps(plan.to_json()).encode("utf-8"))
    return key


def load_plan(store: Store, key: str) -> WorkPlan:
    return WorkPlan.from_json(json.loads(store.get_text(key)))


def packet_items(spec: DatasetJobSpec, positions: Sequence[int]) -> list[Any]:
    found = items_at(spec.items, positions)
    assert found is not None  # plans_work: a source the spec holds
    return found
