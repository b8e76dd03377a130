"""A run's plan: which items it must generate, and the work packets that generate them. Pure.

A run that reuses items (spec.reuse, a function generator, a source the spec holds) first looks
at the item store once: an item whose rows an earlier run (or an earlier attempt of this one)
stored needs no generating. The rest are cut into work packets, each about a shard's worth of
items, at most `spec.shards` of them: a packet is what one process or one pod generates. The
output's shards stay as the spec cuts them: once the packets are done, every shard is assembled
from the item store (worker.assembly), so the published bytes are the same as a full run's.

The plan is made by store.work_plan.make_plan, which reads the item store; what it decides
with (`pack`, `plans_work`) and what it gives (`WorkPlan`) are here, for the operator too.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from datasetjob.spec.item_source import count_items
from datasetjob.spec.model import DatasetJobSpec
from datasetjob.spec.sharding import compress_indexes, expand_indexes, shard_bounds

# A packet is worth a process (a pod) from this share of a shard up.
MIN_PACKET_SHARE = 10


@dataclass(frozen=True)
class WorkPlan:
    plan_id: str
    shards: int  # the spec's shards, as the output is cut
    packets: list[list[int]]  # universe positions each packet generates, sorted
    shards_with_work: list[int]  # shards with at least one item to generate
    shards_to_assemble: list[int]  # shards not committed yet: with work, or every item reused
    to_generate: int
    reused: int  # items of the shards to assemble whose rows are stored already
    fingerprint: str = ""  # the item store the plan read: the assembly reads the same one

    def to_json(self) -> dict[str, Any]:
        return {
            "planId": self.plan_id,
            "shards": self.shards,
            "packets": [compress_indexes(p) for p in self.packets],
            "shardsWithWork": compress_indexes(self.shards_with_work),
            "shardsToAssemble": compress_indexes(self.shards_to_assemble),
            "toGenerate": self.to_generate,
            "reused": self.reused,
            "fingerprint": self.fingerprint,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> WorkPlan:
        return cls(
            plan_id=doc["planId"],
            shards=int(doc["shards"]),
            packets=[expand_indexes(p) for p in doc["packets"]],
            shards_with_work=expand_indexes(doc["shardsWithWork"]),
            shards_to_assemble=expand_indexes(doc["shardsToAssemble"]),
            to_generate=int(doc["toGenerate"]),
            reused=int(doc["reused"]),
            fingerprint=str(doc.get("fingerprint", "")),
        )

    def summary(self) -> dict[str, Any]:
        """The plan in a few numbers (a termination message, a status): never the positions."""
        return {
            "planId": self.plan_id,
            "packets": len(self.packets),
            "shards": self.shards,
            "shardsWithWork": len(self.shards_with_work),
            "shardsReused": len(self.shards_to_assemble) - len(self.shards_with_work),
            "shardsCommitted": self.shards - len(self.shards_to_assemble),
            "toGenerate": self.to_generate,
            "reused": self.reused,
        }


def plans_work(spec: DatasetJobSpec) -> bool:
    """Whether a run of this spec plans its work: it reuses item rows (a function generator with
    spec.reuse on) and its items can be found by position (range, product, values). A command
    writes one file per shard, and a streamed source would be read once per packet."""
    return spec.reuse.enabled and not spec.generator.command and count_items(spec.items) is not None


def pack(positions: Sequence[int], per_packet: int, max_packets: int) -> list[list[int]]:
    """`positions` (sorted) cut into packets of at least `per_packet` (as many as that allows, at
    most `max_packets`), sizes differing by one at most."""
    if not positions:
        return []
    count = min(max_packets, max(1, len(positions) // max(1, per_packet)))
    return [list(positions[a:b]) for a, b in (shard_bounds(len(positions), count, k) for k in range(count))]


def new_plan_id() -> str:
    return f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}"
