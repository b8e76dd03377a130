"""The operator on the real node, measured side by side in one run (not a test).

(1) apply -> Succeeded for a 10-shard DatasetJob whose items cost nothing, against the same
    pods created by a script: the operator's own generate and combine Job templates, copied
    and created one after the other as soon as the first completes; median of --rounds,
    ratio operator / by hand (goal <= 1.1). Both sides create through the API; the copies write
    to their own output location; rounds alternate which side goes first.
(2) pod start latency on this node: created -> Running, for every generate pod.
(3) the full sample (3,600 items, 10 shards, 20 ms per upstream call) in the cluster against
    `dsj run` of the same spec on this machine.
(4) status size and tally + decide time at 10,000 shards (pure, no cluster).
--timeline prints when each step of each run was seen (watch arrival) and the CPU time of the
control plane, the operator and the node during it.
Usage: .venv/bin/python tests/bench/bench_operator.py [--rounds 3] [--skip-sample] [--timeline]
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
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


class Timeline:
    """When each step of a run was first seen, by watches opened before it starts: Jobs, pods
    and DatasetJobs of one namespace, stamped on arrival (API timestamps have 1 s resolution)."""

    WATCHED = (("batch", "v1", "jobs"), ("", "v1", "pods"), (GROUP, VERSION, PLURAL))

    def __init__(self, cluster: E2ECluster, ns: str):
        self.cluster, self.ns = cluster, ns
        self.t0 = time.monotonic()
        self.seen: dict[tuple[str, str], float] = {}  # (step, object name) -> first seen
        self.events: dict[str, int] = {}  # watch events per resource, while the run lasts
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._watch, args=w, daemon=True) for w in self.WATCHED]
        self._ready = threading.Barrier(len(self._threads) + 1)

    def __enter__(self) -> Timeline:
        for t in self._threads:
            t.start()
        self._ready.wait()
        self.cpu0 = cpu_seconds(self.cluster)
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *_: object) -> None:
        self.cpu = {k: v - self.cpu0.get(k, 0.0) for k, v in cpu_seconds(self.cluster).items()}
        self._stop.set()

    def _mark(self, key: str, name: str, t: float) -> None:
        if not self._stop.is_set():  # the next run's objects are not this run's
            self.seen.setdefault((key, name), t)

    def _watch(self, group: str, version: str, plural: str) -> None:
        from kubernetes import client, config, watch

        api = config.new_client_from_config(config_file=str(self.cluster.kubeconfig))
        prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
        rv = self.cluster.rest.get(f"{prefix}/namespaces/{self.ns}/{plural}")["metadata"]["resourceVersion"]
        self._ready.wait()
        w = watch.Watch()
        if group == GROUP:
            lister, args = client.CustomObjectsApi(api).list_namespaced_custom_object, (group, version, self.ns, plural)
        elif plural == "jobs":
            lister, args = client.BatchV1Api(api).list_namespaced_job, (self.ns,)
        else:
            lister, args = client.CoreV1Api(api).list_namespaced_pod, (self.ns,)
        while not self._stop.is_set():
            stream = w.stream(lister, *args, resource_version=rv, timeout_seconds=5)
            for ev in stream:
                now = time.monotonic()
                obj = ev["object"] if isinstance(ev["object"], dict) else api.sanitize_for_serialization(ev["object"])
                rv = obj["metadata"]["resourceVersion"]
                if not self._stop.is_set():
                    self.events[plural] = self.events.get(plural, 0) + 1
                for key in self._milestones(plural, ev["type"], obj):
                    self._mark(key, obj["metadata"]["name"], now)
                if self._stop.is_set():
                    break

    @staticmethod
    def _milestones(plural: str, type_: str, obj: dict) -> list[str]:
        meta, status = obj["metadata"], obj.get("status") or {}
        if plural == PLURAL:
            out = ["dsj seen"]
            if status.get("phase"):
                out.append(f"dsj {status['phase']}")
            return out
        role = (meta.get("labels") or {}).get("datagen.dev/role", "?")
        if plural == "jobs":
            out = [f"{role} job created"]
            for c in status.get("conditions") or []:
                if c.get("status") == "True":
                    out.append(f"{role} job {c['type']}")
            return out
        out = [f"{role} pod created"]
        if (obj.get("spec") or {}).get("nodeName"):
            out.append(f"{role} pod scheduled")
        for cs in status.get("containerStatuses") or []:
            state = cs.get("state") or {}
            if "running" in state:
                out.append(f"{role} container running")
            if "terminated" in state:
                out.append(f"{role} container terminated")
        if status.get("phase") in ("Succeeded", "Failed"):
            out.append(f"{role} pod {status['phase']}")
        return out

    def first(self, step: str) -> float:
        """Seconds from the start to when `step` was first seen (inf: never)."""
        return min((t - self.t0 for (key, _), t in self.seen.items() if key == step), default=float("inf"))

    def orchestration(self, end: float) -> float:
        """The run's time outside its Jobs: to the generate Job's creation, from the generate
        Job's end to the combine Job's creation, from the combine Job's end to the finish.
        What an orchestrator adds; pod run times (noisy on a shared machine) are left out."""
        ended = {
            role: min(self.first(f"{role} job SuccessCriteriaMet"), self.first(f"{role} job Complete"))
            for role in ("generate", "combine")
        }
        return (
            self.first("generate job created")
            + max(0.0, self.first("combine job created") - ended["generate"])
            + max(0.0, end - self.t0 - ended["combine"])
        )

    def report(self, title: str, end: float) -> str:
        lines = [f"  {title}: {end - self.t0:.2f}s"]
        steps: dict[str, list[float]] = {}
        for (key, _), t in self.seen.items():
            steps.setdefault(key, []).append(t - self.t0)
        for key, times in sorted(steps.items(), key=lambda kv: min(kv[1])):
            span = f" .. {max(times):6.2f} ({len(times)})" if len(times) > 1 else ""
            lines.append(f"    {min(times):6.2f}{span}  {key}")
        lines.append("    watch events: " + ", ".join(f"{k} {v}" for k, v in sorted(self.events.items())))
        lines.append("    CPU seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in self.cpu.items()))
        return "\n".join(lines)


def cpu_seconds(cluster: E2ECluster) -> dict[str, float]:
    """CPU time so far of the control plane's processes, the operator's pod and the whole node."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for name, comp in cluster.control_plane.components.items():
        try:
            fields = Path(f"/proc/{comp.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, AttributeError):
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / tick
    root = Path("/sys/fs/cgroup/cpuacct") / cluster.node.cgroup_root.strip("/")
    pods = cluster.core.list_namespaced_pod("datasetjob-system", label_selector="app.kubernetes.io/component=operator")
    for pod in pods.items:
        for usage in root.glob(f"**/pod{pod.metadata.uid}/cpuacct.usage"):
            out["operator"] = int(usage.read_text()) / 1e9
    if (root / "cpuacct.usage").exists():
        out["node (pods, kubelet)"] = int((root / "cpuacct.usage").read_text()) / 1e9
    return out


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
    """Created through the API, as the by-hand side creates its Jobs: a kubectl process would
    add its own start-up (0.1-0.3 s here) to the operator's side alone."""
    doc = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "DatasetJob", **doc}
    start = time.monotonic()
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, doc)
    name = doc["metadata"]["name"]
    wait(lambda: phase(cluster, ns, name) in ("Succeeded", "Failed"))
    elapsed = time.monotonic() - start
    assert phase(cluster, ns, name) == "Succeeded", f"{name} failed"
    return elapsed


ROLES = ("plan", "generate", "combine")  # the order a run's Jobs run in


def by_hand_templates(cluster: E2ECluster, ns: str, name: str) -> tuple[list[dict], list[dict]]:
    """The ConfigMaps and Jobs the operator made for `name`, as creatable copies in run order.
    Their pods carry another owner label, so the operator never sees them."""
    selector = f"datagen.dev/datasetjob={name}"
    maps = {}
    for cm in cluster.rest.get(f"/api/v1/namespaces/{ns}/configmaps", labelSelector=selector)["items"]:
        maps[cm["metadata"]["name"]] = {"metadata": {"name": cm["metadata"]["name"] + "-byhand"}, "data": cm["data"]}
    jobs = cluster.rest.get(f"/apis/batch/v1/namespaces/{ns}/jobs", labelSelector=selector)["items"]
    out = []
    for job in sorted(jobs, key=lambda j: ROLES.index(j["metadata"]["labels"]["datagen.dev/role"])):
        spec = copy.deepcopy(job["spec"])
        spec.pop("selector", None)
        spec["suspend"] = False
        labels = spec["template"]["metadata"].get("labels") or {}
        for key in [k for k in labels if k.startswith(("batch.kubernetes.io/", "controller-uid", "job-name"))]:
            labels.pop(key)
        labels["datagen.dev/datasetjob"] = f"{name}-byhand"
        for volume in spec["template"]["spec"].get("volumes") or []:
            if (volume.get("configMap") or {}).get("name") in maps:
                volume["configMap"]["name"] += "-byhand"
        out.append({"metadata": {"name": job["metadata"]["name"].replace(name, f"{name}-byhand")}, "spec": spec})
    return list(maps.values()), out


def run_by_hand(cluster: E2ECluster, ns: str, templates: tuple[list[dict], list[dict]]) -> float:
    """The same pods, orchestrated by a script: its ConfigMap, the generate Job, then the combine Job."""
    config_maps, jobs = copy.deepcopy(templates)
    # Their own output location: at the operator's, every shard would find itself committed by
    # the operator's run and exit at once.
    for cm in config_maps:
        for key, text in cm["data"].items():
            if key.endswith(".json"):
                doc = json.loads(text)
                doc["spec"]["output"]["uri"] = doc["spec"]["output"]["uri"].rstrip("/") + f"-byhand-{ns}"
                cm["data"][key] = json.dumps(doc, indent=1)
    start = time.monotonic()
    for cm in config_maps:
        cluster.core.create_namespaced_config_map(ns, cm)
    for job in jobs:
        cluster.batch.create_namespaced_job(ns, job)
        jn = job["metadata"]["name"]
        done = wait(
            lambda: next(
                (
                    c.type
                    for c in (cluster.batch.read_namespaced_job_status(jn, ns).status.conditions or [])
                    if c.type in ("Complete", "Failed") and c.status == "True"
                ),
                None,
            )
        )
        assert done == "Complete", f"{jn} failed"
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


def sample_in_cluster_vs_local(cluster: E2ECluster, ns: str) -> tuple[float, float, Timeline]:
    doc = yaml.safe_load(SAMPLE.read_text())
    doc["spec"]["cache"] = {"namespace": f"bench-{int(time.time())}"}  # a cold cache, as locally
    with Timeline(cluster, ns) as line:
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
    return in_cluster, local, line


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
    parser.add_argument("--timeline", action="store_true", help="print when each step of each run was seen")
    parser.add_argument("--operator-log", type=Path, help="write the operator's log here at the end")
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
        op_gaps, hand_gaps = [], []
        templates = None
        for r in range(args.rounds):
            ns = f"bench-{r}"
            cluster.kubectl("create", "namespace", ns)
            local.addons.add_credentials(ns)
            doc = noop_doc("noop")
            # Alternate who goes first, so neither side always runs on a machine the other warmed.
            if r % 2 == 1 and templates is not None:
                with Timeline(cluster, ns) as hand_line:
                    hands.append(run_by_hand(cluster, ns, templates))
            with Timeline(cluster, ns) as op_line:
                ops.append(run_operator(cluster, ns, doc))
            latencies += pod_start_latencies(cluster, ns)
            if templates is None:
                templates = by_hand_templates(cluster, ns, "noop")
            if r % 2 == 0:
                with Timeline(cluster, ns) as hand_line:
                    hands.append(run_by_hand(cluster, ns, templates))
            op_gaps.append(op_line.orchestration(op_line.t0 + ops[-1]))
            hand_gaps.append(hand_line.orchestration(hand_line.t0 + hands[-1]))
            print(
                f"  round {r}: operator {ops[-1]:.2f}s, by hand {hands[-1]:.2f}s; "
                f"outside the Jobs {op_gaps[-1]:.2f}s and {hand_gaps[-1]:.2f}s",
                flush=True,
            )
            if args.timeline:
                print(op_line.report("operator", op_line.t0 + ops[-1]), flush=True)
                print(hand_line.report("by hand", hand_line.t0 + hands[-1]), flush=True)
        print(f"\napply -> Succeeded, 10 shards of no-op items on the real node ({args.rounds} rounds, median):")
        print(f"  operator                     {med(ops):6.2f} s   {[f'{x:.2f}' for x in ops]}")
        print(f"  hand-written Jobs            {med(hands):6.2f} s   {[f'{x:.2f}' for x in hands]}")
        print(f"  ratio operator / by hand     {med(ops) / med(hands):6.2f}    (goal <= 1.1)")
        print(
            f"  time outside the Jobs (creation, Job end -> next step): operator {med(op_gaps):.2f} s, "
            f"by hand {med(hand_gaps):.2f} s; the difference is the operator's own cost"
        )
        latencies.sort()
        print(
            f"pod start latency (created -> container started), {len(latencies)} pods: "
            f"median {med(latencies):.2f}s, max {latencies[-1]:.2f}s"
        )
        if not args.skip_sample:
            cluster.kubectl("create", "namespace", "bench-sample")
            local.addons.add_credentials("bench-sample")
            in_cluster, on_host, line = sample_in_cluster_vs_local(cluster, "bench-sample")
            print(
                f"full sample (3,600 items, 10 shards): cluster {in_cluster:.1f}s, `dsj run` {on_host:.1f}s, "
                f"ratio {in_cluster / on_host:.2f}"
            )
            if args.timeline:
                print(line.report("sample in cluster", line.t0 + in_cluster), flush=True)
    finally:
        if args.operator_log:
            logs = cluster.kubectl(
                "logs",
                "-n",
                "datasetjob-system",
                "-l",
                "app.kubernetes.io/component=operator",
                "--tail=-1",
                "--timestamps",
                check=False,
            )
            args.operator_log.write_text(logs.stdout + logs.stderr)
        cluster.close()
        local.stop()
    print(f"\n(measured {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC)")


if __name__ == "__main__":
    main()
