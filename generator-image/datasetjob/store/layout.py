"""Object keys under `output.uri`, the one place that spells them. Pure.

Each run writes under runs/<runId>/ (its spec, lease, shard data and manifests, failures,
checkpoints, then the combined dataset and its manifest); latest.json names the last published
run; items/<fingerprint>/ holds item rows any later run may reuse."""

from __future__ import annotations

from datasetjob.spec.sharding import shard_name

LATEST_KEY = "latest.json"


def run_prefix(run_id: str) -> str:
    return f"runs/{run_id}/"


def lease_key(run_id: str) -> str:
    return f"runs/{run_id}/lease.json"


def spec_key(run_id: str) -> str:
    return f"runs/{run_id}/spec.json"


def shard_data_key(run_id: str, index: int, fmt: str) -> str:
    return f"runs/{run_id}/shards/{shard_name(index)}.{fmt}"


def shard_manifest_key(run_id: str, index: int) -> str:
    return f"runs/{run_id}/shards/{shard_name(index)}.json"


def failures_key(run_id: str, index: int) -> str:
    return f"runs/{run_id}/failures/{shard_name(index)}.jsonl"


def checkpoint_prefix(run_id: str, index: int) -> str:
    return f"runs/{run_id}/checkpoints/{shard_name(index)}/"


# A run that reuses items first plans its work (store.work_plan): which items to generate, in
# which packets. Each plan has its own id, so a retry's packets never mix with an earlier one's.
def plan_key(run_id: str, plan_id: str) -> str:
    return f"runs/{run_id}/plans/{plan_id}.json"


def packet_prefix(run_id: str) -> str:
    return f"runs/{run_id}/packets/"


def packet_manifest_key(run_id: str, plan_id: str, index: int) -> str:
    return f"runs/{run_id}/packets/{plan_id}/{packet_name(index)}.json"


def packet_failures_key(run_id: str, plan_id: str, index: int) -> str:
    return f"runs/{run_id}/packets/{plan_id}/{packet_name(index)}.failures.jsonl"


def packet_checkpoint_prefix(run_id: str, plan_id: str, index: int) -> str:
    return f"runs/{run_id}/checkpoints/{plan_id}/{packet_name(index)}/"


def packet_name(index: int) -> str:
    return f"packet-{index:05d}"


def combined_key(run_id: str, fmt: str) -> str:
    return f"runs/{run_id}/combined-dataset.{fmt}"


def manifest_key(run_id: str) -> str:
    return f"runs/{run_id}/manifest.json"


# Reusable item rows live beside the runs, not inside one: any later run at this output may
# take them. Addressed by generator fingerprint; one immutable segment per shard commit.
ITEMS_PREFIX = "items/"


def item_store_prefix(fingerprint: str) -> str:
    return f"{ITEMS_PREFIX}{fingerprint}/"


def fingerprint_key(fingerprint: str) -> str:
    return f"{ITEMS_PREFIX}{fingerprint}/fingerprint.json"


def item_segment_key(fingerprint: str, run_id: str, name: str, token: str) -> str:
    """A unique key per commit (`name`: the shard's or the packet's), so a rerun of the same run
    never overwrites rows it reused."""
    return f"{ITEMS_PREFIX}{fingerprint}/segments/{run_id}/{name}-{token}.jsonl"
