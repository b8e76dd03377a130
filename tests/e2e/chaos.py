"""`python -m tests.e2e.chaos` (`make chaos`): every fault of faults.py, one after another,
against one long DatasetJob on a three-node cluster of its own, then a table:

    fault | survived | items lost | items generated twice | delay

"survived": the run went on generating after the fault; "items lost" and the dataset's
identity are known once the run is published: its sha256 is compared with that of the same
spec run by `dsj run` on this machine. "items generated twice": generator calls beyond the
first per item id while the fault lasted and until the next one. "delay": the longest time the
run's item count stood still from the fault until the next one (its normal pace moves it
every second or so).

The e2e tier runs each fault as its own test (test_faults.py); this is the long form.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.e2e import faults
from tests.e2e.chart_operator import ChartOperator
from tests.e2e.conftest import CHART_VALUES
from tests.e2e.faults import FaultRun
from tests.e2e.harness.addons import SYSTEM_NAMESPACE
from tests.e2e.harness.e2e import E2ECluster
from tests.e2e.harness.local_cluster import LocalCluster
from tests.integration.runs import local_dataset, sha256

OUTAGE_SECONDS = 60
ITEMS = (100, 36)  # the sample's whole universe: 3,600 items, 600 per shard
LATENCY_MS = 800  # eight minutes undisturbed: longer than the faults take one after another


@dataclass
class Row:
    fault: str
    survived: bool = False
    twice: int = 0
    delay: float = 0.0


class Progress:
    """Samples the run's items done every half second, in a thread of its own."""

    def __init__(self, run: FaultRun):
        self.run = run
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            try:
                done = (self.run.status(timeout=5).get("items") or {}).get("done", 0)
            except Exception:  # noqa: BLE001 - the API server may be the fault
                continue
            self.samples.append((time.monotonic(), int(done)))

    def start(self) -> Progress:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def done(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def longest_stand_still(self, start: float, end: float) -> float:
        """The longest stretch within [start, end] with no change in items done."""
        window = [(t, d) for t, d in self.samples if start <= t <= end]
        longest, since = 0.0, start
        for (_, before), (t, after) in zip(window, window[1:], strict=False):
            if after != before:
                longest, since = max(longest, t - since), t
        return max(longest, (window[-1][0] if window else end) - since)


def twice(counts: Counter) -> int:
    return sum(n - 1 for n in counts.values() if n > 1)


def reference_sha(run: FaultRun) -> str:
    """The dataset of the same spec from `dsj run` on this machine (no latency, no tally)."""
    doc = copy.deepcopy(run.doc())
    doc["spec"]["generator"]["env"] = [{"name": "SMF_LATENCY_MS", "value": "1"}]
    with tempfile.TemporaryDirectory(prefix="dsj-chaos-") as tmp:
        return sha256(local_dataset(doc, Path(tmp), timeout=900))


def fault_steps(cluster: E2ECluster, operator: ChartOperator, run: FaultRun):
    """(name, action) of every fault, in order; each action returns once the fault is over."""

    def redis_deleted():
        faults.delete_pods(cluster, SYSTEM_NAMESPACE, faults.REDIS_SELECTOR)

    def redis_cut():
        with faults.redis_cut(cluster):
            time.sleep(OUTAGE_SECONDS)

    def s3_cut():
        with faults.s3_cut(cluster):
            time.sleep(OUTAGE_SECONDS)

    def apiserver():
        faults.restart_apiserver(cluster, down_seconds=10)

    def operator_killed():
        operator.kill()
        cluster.wait_for(operator.active, timeout=120, what="a new active operator replica")

    def helm_upgrade():
        faults.upgrade_operator(cluster)
        faults.wait_rolled_out(cluster)

    def node_lost():
        victim, _ = faults.busiest_other_node(cluster, run.generate_pods())
        name = victim.node_name
        victim.kill()
        faults.wait_node_not_ready(cluster, name)
        faults.taint_out_of_service(cluster, name)
        cluster.wait_for(
            lambda: all(p.spec.node_name != name for p in run.generate_pods()),
            timeout=300,
            what=f"the pods of {name} replaced",
            namespace=run.namespace,
        )
        faults.bring_back(cluster, victim)

    return [
        ("Redis pod deleted", redis_deleted),
        (f"Redis unreachable {OUTAGE_SECONDS}s", redis_cut),
        (f"S3 unreachable {OUTAGE_SECONDS}s", s3_cut),
        ("kube-apiserver restarted", apiserver),
        ("active operator replica killed", operator_killed),
        ("helm upgrade of the operator", helm_upgrade),
        ("a node lost (killed)", node_lost),
    ]


@contextmanager
def started_cluster(nodes: int):
    local = LocalCluster(chart_values=CHART_VALUES, nodes=nodes)
    local.start()
    cluster = E2ECluster(local)
    try:
        yield cluster
    finally:
        cluster.close()
        local.stop()


def chaos(nodes: int) -> int:
    with started_cluster(nodes) as cluster:
        print(f"cluster of {nodes} nodes ready in {cluster.local.timings['total']:.1f}s", flush=True)
        operator = ChartOperator(cluster).start()
        namespace = cluster.create_namespace(f"chaos-{uuid.uuid4().hex[:5]}")
        bucket = f"dsj-chaos-{uuid.uuid4().hex[:8]}"
        cluster.s3.client().create_bucket(Bucket=bucket)
        run = FaultRun(cluster, namespace, cluster.s3, bucket, items=ITEMS, latency_ms=LATENCY_MS)
        expected = reference_sha(run)
        print(f"reference dataset (dsj run): sha256 {expected[:16]}...", flush=True)
        run.start()
        run.wait_generating(at_least=60)
        progress = Progress(run).start()
        rows: list[Row] = []
        total = ITEMS[0] * ITEMS[1]
        try:
            for name, action in fault_steps(cluster, operator, run):
                row = Row(name)
                before, start = run.generated(), time.monotonic()
                st = run.status()
                done_before = (st.get("items") or {}).get("done", 0)
                state = f"{st.get('phase')}: {st.get('message')}"
                print(f"fault: {name} (items done {done_before}/{total}; {state})", flush=True)
                action()
                # Over when the run moves again (or has nothing left to do).
                cluster.wait_for(
                    lambda before=done_before: progress.done() > before or progress.done() >= total,
                    timeout=600,
                    what=f"progress after: {name}",
                    namespace=namespace,
                    objects=[f"/apis/datagen.dev/v1alpha1/namespaces/{namespace}/datasetjobs/{faults.NAME}"],
                )
                time.sleep(5)
                row.survived = run.status().get("phase") not in ("Failed",)
                row.twice = twice(run.generated()) - twice(before)
                row.delay = progress.longest_stand_still(start, time.monotonic())
                rows.append(row)
            figures = run.finish("chaos", timeout=3600)
        finally:
            progress.stop()
        print()
        print(table(rows, figures, expected))
        return 0 if figures.phase == "Succeeded" and figures.sha256 == expected else 1


def table(rows: list[Row], figures, expected: str) -> str:
    lost = figures.items_lost
    lines = [
        "| fault | survived | items lost | items generated twice | delay |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        survived = "yes" if row.survived else "NO"
        lines.append(f"| {row.fault} | {survived} | {lost} (the run's) | {row.twice} | {row.delay:.0f} s |")
    same = "the same dataset as" if figures.sha256 == expected else "NOT the dataset of"
    lines.append("")
    lines.append(
        f"Run {figures.phase} in {figures.seconds:.0f}s: {figures.rows} rows, items lost {lost}, generated twice "
        f"{figures.items_twice} in all; {same} `dsj run` (sha256 {figures.sha256[:16]}...); jobs "
        f"{json.dumps(faults.job_roles(figures.jobs))}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.e2e.chaos", description=__doc__)
    ap.add_argument("--nodes", type=int, default=3, help="nodes of the cluster (default: %(default)s)")
    args = ap.parse_args(argv)
    if args.nodes < 2:
        ap.error("a node is lost on the way: at least 2 nodes")
    return chaos(args.nodes)


if __name__ == "__main__":
    sys.exit(main())
