"""The operator on the real node, measured side by side in one run (not a test).

(1) apply -> Succeeded for a 10-shard DatasetJob whose items cost nothing, against the same
    pods created by a script: the operator's own generate and combine Job templates, copied
    and created one after the other as soon as the first completes; median of --rounds,
    ratio operator / by hand (goal <= 1.2).
(2) pod start latency on this node: created -> Running, for every generate pod.
(3) the full sample (3,600 items, 10 shards, 20 ms per upstream call) in the cluster against
    `dsj run` of the same spec on this machine.
(4) status size and tally + decide time at 10,000 shards (pure, no cluster).
Usage: .venv/bin/python tests/bench/bench_operator.py [--rounds 3] [--skip-sample]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.e2e.harness.e2e import E2ECluster  # noqa: E402
from tests.e2e.harness.local_cluster import LocalCluster  # noqa: E402

SAMPLE = REPO / "manifests" / "samples" / "smart-money-flow.yaml"
GROUP, VERSION, PLURAL = "datagen.dev", "v1alpha1", "datasetjobs"


def noop_doc(name: str) -> dict:
    """The sample generator on 100 items with no upstream latency and no cache: pods do nothing."""
    doc = yaml.safe_load(SAMPLE.read_text())
    doc["metadata"] = {"name": name}
    spec = doc["spec"]
    spec["items"]["product"]["symbol"] = spec["items"]["product"]["symbol"][:10]
    spec["items"]["product"]["date"] = spec["items"]["product"]["date"][:10]
    spec["generator"]["env"] = [{"name": "SMF_LATENCY_MS", "value": "0"}]
    spec["cache"] = {"redisUrl": ""}
    spec["retries"] = {"perShard": 0, "maxFailedShards": 0}
    spec["combine"]["minItemSuccessRatio"] = 1.0
    return doc


def wait(predicate, timeout=600, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("gave up waiting")


def phase(cluster: E2ECluster, ns: str, name: str) -> str | None:
    obj = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    return (obj.get("status") or {}).get("phase")


def run_operator(cluster: E2ECluster, ns: str, doc: dict) -> float:
    start = time.monotonic()
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc))
    name = doc["metadata"]["name"]
    wait(lambda: phase(cluster, ns, name) in ("Succeeded", "Failed"))
    elapsed = time.monotonic() - start
    assert phase(cluster, ns, name) == "Succeeded", f"{name} failed"
    return elapsed


def job_templates(cluster: E2ECluster, ns: str, name: str) -> list[dict]:
    """The operator's generate and combine Jobs of `name`, as creatable copies (generate first)."""
    jobs = cluster.rest.get(f"/apis/batch/v1/namespaces/{ns}/jobs", labelSelector=f"datagen.dev/datasetjob={name}")[
        "items"
    ]
    out = []
    for job in sorted(jobs, key=lambda j: j["metadata"]["name"].endswith("-combine")):
        spec = copy.deepcopy(job["spec"])
        spec.pop("selector", None)
        spec["suspend"] = False
        labels = spec["template"]["metadata"].get("labels") or {}
        for key in [k for k in labels if k.startswith(("batch.kubernetes.io/", "controller-uid", "job-name"))]:
            labels.pop(key)
        out.append({"metadata": {"name": job["metadata"]["name"].replace(name, f"{name}-byhand")}, "spec": spec})
    return out


def run_by_hand(cluster: E2ECluster, ns: str, templates: list[dict]) -> float:
    """The same pods, orchestrated by a script: the generate Job, then the combine Job."""
    start = time.monotonic()
    for job in templates:
        cluster.batch.create_namespaced_job(ns, job)
        jn = job["metadata"]["name"]
        wait(
            lambda: any(
                c.type in ("Complete", "Failed") and c.status == "True"
                for c in (cluster.batch.read_namespaced_job_status(jn, ns).status.conditions or [])
            )
        )
    return time.monotonic() - start


def pod_start_latencies(cluster: E2ECluster, ns: str) -> list[float]:
    """created -> Running (the container's startedAt) of every generate pod in `ns`."""
    out = []
    for p in cluster.core.list_namespaced_pod(ns, label_selector="datagen.dev/role=generate").items:
        for cs in p.status.container_statuses or []:
            started = cs.state.terminated or cs.state.running
            if started is not None and started.started_at:
                out.append((started.started_at - p.metadata.creation_timestamp).total_seconds())
    return out


def sample_in_cluster_vs_local(cluster: E2ECluster, ns: str) -> tuple[float, float]:
    doc = yaml.safe_load(SAMPLE.read_text())
    doc["spec"]["cache"] = {"namespace": f"bench-{int(time.time())}"}  # a cold cache, as locally
    in_cluster = run_operator(cluster, ns, doc)
    with tempfile.TemporaryDirectory(prefix="dsj-bench-local-") as tmp:
        start = time.monotonic()
        proc = subprocess.run(
            [
                str(REPO / ".venv" / "bin" / "dsj"),
                "run",
                str(SAMPLE),
                "--workers",
                "10",
                "--output",
                f"file://{tmp}/out",
                "--workdir",
                tmp,
                "--quiet",
            ],
            cwd=tmp,
            capture_output=True,
            text=True,
            env={"DSJ_EMBEDDED_CACHE_DIR": f"{tmp}/cache", "PATH": "/usr/bin:/bin"},
        )
        local = time.monotonic() - start
        assert proc.returncode == 0, proc.stderr
    return in_cluster, local


def pure_scale(shards: int = 10_000) -> tuple[int, float]:
    from datasetjob.spec.model import run_id, spec_from_dict
    from datasetjob.spec.sharding import compress_indexes
    from datasetjob_operator import naming
    from datasetjob_operator.reconcile import Observed, decide
    from datasetjob_operator.settings import Settings
    from datasetjob_operator.status import DatasetJobStatus

    spec = {
        "items": {"range": {"stop": shards * 10}},
        "shards": shards,
        "parallelism": 500,
        "generator": {"function": "m:f"},
        "output": {"uri": "s3://b/p"},
        "retries": {"maxFailedShards": 100},
    }
    rid = run_id(spec_from_dict("big", spec).raw_spec)
    gen = naming.generate_job_name("big", rid, "0")
    failed = set(range(7, shards, 997))
    done = [i for i in range(shards) if i not in failed]
    job = {
        "metadata": {"name": gen},
        "spec": {"suspend": False},
        "status": {
            "completedIndexes": compress_indexes(done),
            "failedIndexes": compress_indexes(sorted(failed)),
            "active": 0,
            "conditions": [{"type": "Failed", "status": "True"}],
        },
    }
    message = json.dumps({"items": {"total": 10, "done": 9, "failed": 1}, "cache": {"hits": 5, "misses": 3}})
    pods = [
        {
            "metadata": {
                "name": f"p{i}",
                "labels": {"batch.kubernetes.io/job-name": gen},
                "annotations": {"batch.kubernetes.io/job-completion-index": str(i)},
            },
            "status": {
                "phase": "Failed" if i in failed else "Succeeded",
                "containerStatuses": [
                    {"state": {"terminated": {"exitCode": 1 if i in failed else 0, "message": message}}}
                ],
            },
        }
        for i in range(shards)
    ]

    def obs(status: dict) -> Observed:
        return Observed(
            name="big",
            namespace="ns",
            uid="u",
            generation=1,
            spec=spec,
            annotations={},
            status=DatasetJobStatus.from_dict(status),
            jobs={gen: job},
            pods=pods,
            now="2026-01-01T00:00:00Z",
        )

    start = decide(obs({}), Settings()).status.to_dict()
    times = []
    for _ in range(5):
        t = time.perf_counter()
        decision = decide(obs(start), Settings())
        times.append(time.perf_counter() - t)
    return len(json.dumps(decision.status.to_dict())), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-sample", action="store_true", help="skip the full-sample comparison")
    args = parser.parse_args()
    size, tally = pure_scale()
    print(f"\n10,000 shards (pure): status {size:,} bytes, tally + decide {tally * 1000:.0f} ms\n", flush=True)

    t = time.monotonic()
    local = LocalCluster().start()
    print(
        f"local cluster up in {time.monotonic() - t:.1f}s "
        f"{json.dumps({k: round(v, 1) for k, v in local.timings.items()})}",
        flush=True,
    )
    cluster = E2ECluster(local)
    med = statistics.median
    try:
        ops, hands, latencies = [], [], []
        for r in range(args.rounds):
            ns = f"bench-{r}"
            cluster.kubectl("create", "namespace", ns)
            local.addons.add_credentials(ns)
            doc = noop_doc("noop")
            ops.append(run_operator(cluster, ns, doc))
            latencies += pod_start_latencies(cluster, ns)
            hands.append(run_by_hand(cluster, ns, job_templates(cluster, ns, "noop")))
            print(f"  round {r}: operator {ops[-1]:.2f}s, by hand {hands[-1]:.2f}s", flush=True)
        print(f"\napply -> Succeeded, 10 shards of no-op items on the real node ({args.rounds} rounds, median):")
        print(f"  operator                     {med(ops):6.2f} s   {[f'{x:.2f}' for x in ops]}")
        print(f"  hand-written Jobs            {med(hands):6.2f} s   {[f'{x:.2f}' for x in hands]}")
        print(f"  ratio operator / by hand     {med(ops) / med(hands):6.2f}    (goal <= 1.2)")
        latencies.sort()
        print(
            f"pod start latency (created -> container started), {len(latencies)} pods: "
            f"median {med(latencies):.2f}s, max {latencies[-1]:.2f}s"
        )
        if not args.skip_sample:
            cluster.kubectl("create", "namespace", "bench-sample")
            local.addons.add_credentials("bench-sample")
            in_cluster, on_host = sample_in_cluster_vs_local(cluster, "bench-sample")
            print(
                f"full sample (3,600 items, 10 shards): cluster {in_cluster:.1f}s, `dsj run` {on_host:.1f}s, "
                f"ratio {in_cluster / on_host:.2f}"
            )
    finally:
        cluster.close()
        local.stop()
    print(f"\n(measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)")


if __name__ == "__main__":
    main()
