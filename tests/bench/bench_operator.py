"""Operator overhead, measured side by side on one local control plane (not a test).

(1) apply -> Succeeded for a 10-shard DatasetJob whose generator does no work, against the
    same work as a hand-written Indexed Job + combine Job (created by this script as soon as
    the Indexed Job completes); ratio operator / hand-written (target <= 1.2).
(2) the time from the generate Job's completion to the combine Job's creation.
(3) status size and tally + decide time at 10,000 shards (pure, no cluster).
Usage: .venv/bin/python tests/bench/bench_operator.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tests.e2e.harness.cluster import ControlPlane  # noqa: E402
from tests.e2e.harness.e2e import E2ECluster  # noqa: E402
from tests.e2e.harness.kubelet import ProcessKubelet  # noqa: E402
from tests.e2e.operator_process import OperatorProcess, install_crd_and_rbac  # noqa: E402

BENCH_DIR = str(REPO / "tests" / "bench")


def doc(name: str, out: Path) -> dict:
    return {"apiVersion": "datagen.dev/v1alpha1", "kind": "DatasetJob", "metadata": {"name": name},
            "spec": {"items": {"range": {"stop": 100}}, "shards": 10,
                     "generator": {"function": "noop_generator:row",
                                   "env": [{"name": "DSJ_GENERATOR_PATH", "value": BENCH_DIR}]},
                     "cache": {"redisUrl": ""}, "retries": {"perShard": 0},
                     "output": {"uri": f"file://{out}", "format": "csv"}}}


def wait(predicate, timeout=300, interval=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError("gave up waiting")


def run_operator(cluster: E2ECluster, ns: str, name: str, out: Path) -> tuple[float, float]:
    start = time.monotonic()
    cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(doc(name, out)))
    get = lambda: cluster.custom.get_namespaced_custom_object("datagen.dev", "v1alpha1", ns, "datasetjobs", name)
    gen_created = wait(lambda: next((time.monotonic() for j in cluster.batch.list_namespaced_job(ns).items
                                     if j.metadata.name.endswith("-gen")
                                     and (j.metadata.labels or {}).get("datagen.dev/datasetjob") == name), None))
    gen_done = wait(lambda: next((time.monotonic() for j in cluster.batch.list_namespaced_job(ns).items
                                  if j.metadata.name.endswith("-gen") and (j.metadata.labels or {}).get("datagen.dev/datasetjob") == name
                                  and any(c.type in ("Complete", "Failed") and c.status == "True"
                                          for c in (j.status.conditions or []))), None))
    combine_seen = wait(lambda: next((time.monotonic() for j in cluster.batch.list_namespaced_job(ns).items
                                      if j.metadata.name.endswith("-combine")
                                      and (j.metadata.labels or {}).get("datagen.dev/datasetjob") == name), None))
    combine_done = wait(lambda: next((time.monotonic() for j in cluster.batch.list_namespaced_job(ns).items
                                      if j.metadata.name.endswith("-combine")
                                      and (j.metadata.labels or {}).get("datagen.dev/datasetjob") == name
                                      and any(c.type == "Complete" and c.status == "True"
                                              for c in (j.status.conditions or []))), None))
    wait(lambda: (get().get("status") or {}).get("phase") == "Succeeded")
    end = time.monotonic()
    print(f"  {name}: apply->gen Job {gen_created - start:.2f}s, gen {gen_done - gen_created:.2f}s, "
          f"->combine Job {combine_seen - gen_done:.2f}s, combine {combine_done - combine_seen:.2f}s, "
          f"->Succeeded {end - combine_done:.2f}s")
    return end - start, combine_seen - gen_done


def run_by_hand(cluster: E2ECluster, ns: str, name: str, out: Path) -> float:
    """The same pods, orchestrated by a script: ConfigMap, Indexed Job, then the combine Job."""
    d = doc(name, out)
    d["metadata"]["namespace"] = ns
    start = time.monotonic()
    cluster.core.create_namespaced_config_map(ns, {"metadata": {"name": name},
                                                   "data": {"datasetjob.json": json.dumps(d)}})

    def job(job_name, args, indexed):
        spec = {"template": {"spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "c", "image": "datasetjob/worker", "command": ["dsj", *args],
                            "env": [{"name": "DSJ_SPEC_FILE", "value": "/etc/spec/datasetjob.json"},
                                    {"name": "DSJ_RUN_ID", "value": "byhand01"},
                                    {"name": "DSJ_GENERATOR_PATH", "value": BENCH_DIR}],
                            "volumeMounts": [{"name": "spec", "mountPath": "/etc/spec"}]}],
            "volumes": [{"name": "spec", "configMap": {"name": name}}]}}}
        if indexed:
            spec.update(completionMode="Indexed", completions=10, parallelism=10, backoffLimitPerIndex=0)
        return {"metadata": {"name": job_name}, "spec": spec}

    cluster.batch.create_namespaced_job(ns, job(f"{name}-gen", ["worker"], True))
    complete = lambda jn: any(c.type == "Complete" and c.status == "True" for c in
                              (cluster.batch.read_namespaced_job_status(jn, ns).status.conditions or []))
    wait(lambda: complete(f"{name}-gen"))
    cluster.batch.create_namespaced_job(ns, job(f"{name}-combine", ["combine"], False))
    wait(lambda: complete(f"{name}-combine"))
    return time.monotonic() - start


def pure_scale(shards: int = 10_000) -> tuple[int, float]:
    from datasetjob_operator import naming
    from datasetjob_operator.reconcile import Observed, decide
    from datasetjob_operator.settings import Settings
    from datasetjob.spec import run_id, spec_from_dict

    spec = {"items": {"range": {"stop": shards * 10}}, "shards": shards, "parallelism": 500,
            "generator": {"function": "m:f"}, "output": {"uri": "s3://b/p"},
            "retries": {"maxFailedShards": 100}}
    rid = run_id(spec_from_dict("big", spec).raw_spec)
    gen = naming.generate_job_name("big", rid, "0")
    failed = list(range(7, shards, 997))
    done = [i for i in range(shards) if i not in set(failed)]
    from datasetjob.sharding import compress_indexes

    job = {"metadata": {"name": gen}, "spec": {"suspend": False},
           "status": {"completedIndexes": compress_indexes(done), "failedIndexes": compress_indexes(failed),
                      "active": 0, "conditions": [{"type": "Failed", "status": "True"}]}}
    message = json.dumps({"items": {"total": 10, "done": 9, "failed": 1}, "cache": {"hits": 5, "misses": 3}})
    pods = [{"metadata": {"name": f"p{i}", "labels": {"batch.kubernetes.io/job-name": gen},
                          "annotations": {"batch.kubernetes.io/job-completion-index": str(i)}},
             "status": {"phase": "Failed" if i in set(failed) else "Succeeded",
                        "containerStatuses": [{"state": {"terminated": {"exitCode": 1 if i in set(failed) else 0,
                                                                        "message": message}}}]}}
            for i in range(shards)]
    obs = lambda status: Observed(name="big", namespace="ns", uid="u", generation=1, spec=spec, annotations={},
                                  status=status, jobs={gen: job}, pods=pods, now="2026-01-01T00:00:00Z")
    start = decide(obs({}), Settings()).status
    times = []
    for _ in range(5):
        t = time.perf_counter()
        decision = decide(obs(start), Settings())
        times.append(time.perf_counter() - t)
    return len(json.dumps(decision.status)), statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    size, tally = pure_scale()
    print(f"\n10,000 shards (pure): status {size:,} bytes, tally + decide {tally * 1000:.0f} ms\n")

    tmp = Path(tempfile.mkdtemp(prefix="dsj-bench-op-"))
    with ControlPlane() as cp:
        kubelet = ProcessKubelet(cp.kubeconfig).start()
        cluster = E2ECluster(cp, kubelet)
        try:
            install_crd_and_rbac(cluster)
            op = OperatorProcess(cluster, tmp, {}).start()
            try:
                cluster.kubectl("create", "namespace", "bench")
                ops, hands, gaps = [], [], []
                for r in range(args.rounds):
                    total, gap = run_operator(cluster, "bench", f"op{r}", tmp / f"op{r}")
                    ops.append(total)
                    gaps.append(gap)
                    hands.append(run_by_hand(cluster, "bench", f"hand{r}", tmp / f"hand{r}"))
            finally:
                op.stop()
        finally:
            kubelet.stop()
    med = statistics.median
    print(f"apply -> Succeeded, 10 no-op shards ({args.rounds} rounds, median):")
    print(f"  operator                     {med(ops):6.2f} s   {['%.2f' % x for x in ops]}")
    print(f"  hand-written Jobs            {med(hands):6.2f} s   {['%.2f' % x for x in hands]}")
    print(f"  ratio operator / by hand     {med(ops) / med(hands):6.2f}    (target <= 1.2)")
    print(f"  generate Job done -> combine Job created: {med(gaps):.2f} s  {['%.2f' % x for x in gaps]}")


if __name__ == "__main__":
    main()
