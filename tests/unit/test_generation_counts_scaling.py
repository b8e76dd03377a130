"""count_generation runs on every reconcile tick, twice a second per active DatasetJob: its
work must grow linearly with the shards. The failed indexes are looked at through a set built
once; a set rebuilt per shard makes a tick quadratic. Counted, never timed."""

from collections.abc import Iterator, Sequence

import pytest

from datasetjob.spec.sharding import compress_indexes, expand_indexes
from datasetjob_operator import generation_counts
from datasetjob_operator.job_state import INDEX_ANNOTATION


class CountingIndexes(Sequence[int]):
    """Shard indexes that count each pass over them (`in` on a Sequence is a pass too)."""

    def __init__(self, values: list[int]):
        self._values = values
        self.passes = 0

    def __iter__(self) -> Iterator[int]:
        self.passes += 1
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getitem__(self, i):
        return self._values[i]


def failed_pod(index: int) -> dict:
    return {
        "metadata": {"name": f"gen-{index}", "annotations": {INDEX_ANNOTATION: str(index)}},
        "status": {
            "phase": "Failed",
            "containerStatuses": [
                {"state": {"terminated": {"exitCode": 1, "message": "boom", "finishedAt": "2026-01-01T00:00:00Z"}}}
            ],
        },
    }


def passes_over_failed(monkeypatch, shards: int) -> int:
    """A generate Job with its odd shards failed and its even shards running (live progress
    for every shard, as Redis may still hold a failed shard's last snapshot)."""
    failed = list(range(1, shards, 2))
    job = {"status": {"active": shards - len(failed), "failedIndexes": compress_indexes(failed)}}
    made: dict[str | None, CountingIndexes] = {}

    def counting_expand(text):
        made[text] = CountingIndexes(expand_indexes(text))
        return made[text]

    monkeypatch.setattr(generation_counts, "expand_indexes", counting_expand)
    live = {i: {"items": {"done": 1, "total": 2}} for i in range(shards)}
    counts = generation_counts.count_generation(job, [failed_pod(i) for i in failed], live, shards)

    assert counts.items_done == shards - len(failed)  # the failed shards' snapshots are not counted
    assert [f.shard for f in counts.failures] == failed[:10]
    return made[job["status"]["failedIndexes"]].passes


@pytest.mark.parametrize("shards", [10, 1000])
def test_failed_indexes_are_read_a_fixed_number_of_times_whatever_the_shard_count(monkeypatch, shards):
    assert passes_over_failed(monkeypatch, shards) <= 2


def test_passes_over_the_failed_indexes_do_not_grow_with_the_shards(monkeypatch):
    assert passes_over_failed(monkeypatch, 10) == passes_over_failed(monkeypatch, 1000)
