"""The reconcile tick on a large universe: twice a second per active DatasetJob, so it must
not grow with the item count. Prints the time per tick (goal < 5 ms for a range of 10^6
items); asserts only the counts, never the time."""

import statistics
import time

from datasetjob_operator import naming
from datasetjob_operator.reconcile import Observed, decide
from datasetjob_operator.settings import Settings
from datasetjob_operator.status import DatasetJobStatus

ITEMS = 1_000_000
SPEC = {
    "items": {"range": {"start": 0, "stop": ITEMS}},
    "shards": 100,
    "generator": {"image": "acme/gen:1", "function": "gen.module:fn"},
    "output": {"uri": "s3://bucket/big"},
}


def observed(status: dict, jobs=()) -> Observed:
    return Observed(
        name="big",
        namespace="ml",
        uid="uid-1",
        generation=1,
        spec=SPEC,
        annotations={},
        status=DatasetJobStatus.from_dict(status),
        jobs={j["metadata"]["name"]: j for j in jobs},
        pods=[],
        now="2026-01-01T00:00:00Z",
        live_progress={i: {"items": {"done": 10, "failed": 0}} for i in range(100)},
    )


def test_a_tick_on_a_million_item_range_does_not_expand_it(capsys):
    settings = Settings()
    t = time.perf_counter()
    start = decide(observed({}), settings)
    start_ms = (time.perf_counter() - t) * 1000
    assert start.status.to_dict()["items"]["total"] == ITEMS
    gen = {
        "metadata": {"name": naming.generate_job_name("big", start.status.to_dict()["runId"], "0")},
        "spec": {"suspend": False},
        "status": {"active": 100},
    }
    samples = []
    for _ in range(50):
        t = time.perf_counter()
        tick = decide(observed(start.status.to_dict(), [gen]), settings)
        samples.append((time.perf_counter() - t) * 1000)
    assert tick.status.to_dict()["items"]["total"] == ITEMS and tick.status.to_dict()["items"]["done"] == 1000
    with capsys.disabled():
        print(
            f"\n[bench] reconcile tick, range of {ITEMS:,} items, 100 shards: median "
            f"{statistics.median(samples):.2f} ms, max {max(samples):.2f} ms over {len(samples)} ticks "
            "(goal < 5 ms); the first tick of the run (it also compiles the schema and its CEL rules): "
            f"{start_ms:.0f} ms"
        )
