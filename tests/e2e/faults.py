"""Faults a cluster meets, injected while a DatasetJob runs, and the figures of such a run.

A fault run is the sample DatasetJob (120 items over 6 shards, 0.5 s per item) whose generator
appends every item it generates to a list in a tally Redis of the test's own namespace: not the
chart's Redis and not the S3 server, which are among the things that fail. From it and the
result come the figures: items lost (goal 0), items generated twice (goal: no more than were
in flight at the fault), the Jobs made, the published sha256, and how long the run took.

Faults (each one function; tests/e2e/test_faults.py runs one per test, chaos.py all in turn):
  RealNode.kill   the kubelet, containerd and every container of a node die (SIGKILL)
  cut_pods        a workload's pods unreachable: every packet to or from them is rejected in
                  their node's network namespace (the pods keep running and keep their data)
  delete_pods     a workload's pods deleted (an emptyDir's data goes with them)
  restart_apiserver, kill_operator, upgrade_operator
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field

import redis as redis_lib

from tests.e2e.harness.addons import CHART, RELEASE, STORAGE_NAMESPACE, SYSTEM_NAMESPACE, image_ref
from tests.e2e.harness.e2e import condition_true
from tests.e2e.harness.network import in_netns
from tests.e2e.test_operator import GROUP, PLURAL, VERSION, apply, get, s3_sha, sample

NAME = "faulty"
ITEMS = (10, 12)  # symbols x dates
SHARDS = 6
LATENCY_MS = 500
CONCURRENCY = 1
CHECKPOINT_SECONDS = 1.0  # how often a worker flushes finished items (store/checkpoint.py)
ITEM_LOG_KEY = "items"
REDIS_SELECTOR = "app.kubernetes.io/component=redis"
S3_SELECTOR = "app=s3"


def items_in_flight(pods: int) -> int:
    """What a generate pod that dies may have done and not yet checkpointed: the items it
    was generating, and those finished since its last flush (one flush period of items, and
    the one that triggers the next)."""
    per_flush = math.ceil(CHECKPOINT_SECONDS * 1000 / LATENCY_MS) + 1
    return pods * (CONCURRENCY + per_flush)


@dataclass
class Figures:
    fault: str
    total: int = ITEMS[0] * ITEMS[1]  # items in the run
    phase: str = ""
    rows: int = 0
    sha256: str = ""
    jobs: list[str] = field(default_factory=list)
    generated: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    notes: str = ""

    @property
    def items_lost(self) -> int:
        return self.total - self.rows

    @property
    def items_twice(self) -> int:
        return sum(n - 1 for n in self.generated.values() if n > 1)


def job_roles(jobs: list[str]) -> list[str]:
    """Jobs by role (gen, combine, plan), without the run id: runs of different outputs compare."""
    return sorted(name.rsplit("-", 1)[-1] for name in jobs)


class FaultRun:
    """The fault run's DatasetJob and tally in `namespace` (which holds the S3 credentials)."""

    def __init__(
        self, cluster, namespace: str, s3, bucket: str, items: tuple[int, int] = ITEMS, latency_ms: int = LATENCY_MS
    ):
        self.cluster = cluster
        self.namespace = namespace
        self.s3 = s3
        self.bucket = bucket
        self.items = items
        self.latency_ms = latency_ms
        self.started = 0.0

    # -- the tally ---------------------------------------------------------------------------
    def install_tally(self) -> None:
        image = image_ref(self.cluster.local.addons.images, "redis")
        docs = [
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "tally"},
                "spec": {
                    "selector": {"matchLabels": {"app": "tally"}},
                    "template": {
                        "metadata": {"labels": {"app": "tally"}},
                        "spec": {
                            # On the first node, which no fault takes away: the tally outlives them.
                            "nodeSelector": {"kubernetes.io/hostname": self.cluster.local.nodes[0].node_name},
                            "containers": [
                                {
                                    "name": "redis",
                                    "image": image,
                                    "imagePullPolicy": "IfNotPresent",
                                    "command": ["redis-server"],
                                    "args": ["--save", "", "--appendonly", "no", "--protected-mode", "no"],
                                    "ports": [{"containerPort": 6379}],
                                }
                            ],
                        },
                    },
                },
            },
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "tally"},
                "spec": {"selector": {"app": "tally"}, "ports": [{"port": 6379}]},
            },
        ]
        for doc in docs:
            self.cluster.kubectl("apply", "-n", self.namespace, "-f", "-", input=json.dumps(doc))
        self.cluster.wait_for(
            lambda: self._tally().ping(), timeout=120, what="the tally Redis", namespace=self.namespace
        )

    def _tally(self) -> redis_lib.Redis:
        ip = self.cluster.core.read_namespaced_service("tally", self.namespace).spec.cluster_ip
        return redis_lib.Redis(host=ip, port=6379, socket_timeout=5)

    def generated(self) -> Counter:
        return Counter(x.decode() for x in self._tally().lrange(ITEM_LOG_KEY, 0, -1))

    # -- the run -----------------------------------------------------------------------------
    def doc(self) -> dict:
        symbols, dates = self.items
        doc = sample(self.bucket, self.s3, name=NAME, symbols=symbols, dates=dates, shards=SHARDS)
        spec = doc["spec"]
        spec["generator"]["concurrency"] = CONCURRENCY
        spec["generator"]["env"] = [
            {"name": "SMF_LATENCY_MS", "value": str(self.latency_ms)},
            {"name": "SMF_SHARED_REDIS_URL", "value": f"redis://tally.{self.namespace}.svc:6379/0"},
            {"name": "SMF_ITEM_LOG_KEY", "value": ITEM_LOG_KEY},
        ]
        # A lost node's pods are failed by Kubernetes, not by the generator: the retries below
        # are for the faults that end a worker (an outage longer than its retry window).
        spec["retries"] = {"perShard": 3, "maxFailedShards": 0}
        return doc

    def start(self) -> FaultRun:
        self.install_tally()
        self.started = time.monotonic()
        apply(self.cluster, self.namespace, self.doc())
        return self

    def status(self, timeout: float | None = None) -> dict:
        """The DatasetJob's status; with a timeout, a read the API server does not answer (it
        may be the fault) raises instead of waiting for ever."""
        if timeout is None:
            return get(self.cluster, self.namespace, NAME).get("status") or {}
        obj = self.cluster.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, NAME, _request_timeout=timeout
        )
        return obj.get("status") or {}

    def wait_generating(self, at_least: int = 6) -> dict:
        """Until shards are generating and some items are done, not all."""
        total = self.items[0] * self.items[1]

        def live():
            st = self.status()
            done = (st.get("items") or {}).get("done", 0)
            return st.get("phase") == "Generating" and at_least <= done < total and st

        return self.cluster.wait_for(live, timeout=300, interval=0.2, what="item progress", namespace=self.namespace)

    def generate_pods(self, running: bool = True) -> list:
        pods = self.cluster.core.list_namespaced_pod(
            self.namespace, label_selector=f"datagen.dev/datasetjob={NAME},datagen.dev/role=generate"
        ).items
        return [p for p in pods if not running or (p.status.phase == "Running" and not p.metadata.deletion_timestamp)]

    def finish(self, fault: str, timeout: float = 600) -> Figures:
        def done():
            st = self.status()
            return st.get("phase") in ("Succeeded", "Failed") and st

        st = self.cluster.wait_for(
            done, timeout=timeout, interval=0.5, what=f"{NAME} finished after: {fault}", namespace=self.namespace
        )
        seconds = time.monotonic() - self.started
        jobs = sorted(
            j.metadata.name
            for j in self.cluster.batch.list_namespaced_job(
                self.namespace, label_selector=f"datagen.dev/datasetjob={NAME}"
            ).items
        )
        output = st.get("output") or {}
        sha = s3_sha(self.s3, output["uri"]) if st.get("phase") == "Succeeded" and output.get("uri") else ""
        return Figures(
            fault=fault,
            total=self.items[0] * self.items[1],
            phase=st.get("phase", ""),
            rows=int(output.get("rows") or 0),
            sha256=sha,
            jobs=jobs,
            generated=self.generated(),
            seconds=seconds,
        )


# -- faults ------------------------------------------------------------------------------------


def node_of(cluster, pod):
    """The RealNode a pod runs on."""
    return next(n for n in cluster.local.nodes if n.node_name == pod.spec.node_name)


def busiest_other_node(cluster, pods) -> tuple:
    """(node, how many of `pods` it runs): the node running the most of `pods`, of those that
    hold neither the tally (the first node) nor the S3 server, whose data is an emptyDir (losing
    it loses every object stored: not a fault a run can survive)."""
    spared = {cluster.local.nodes[0].node_name}
    s3_pods = cluster.core.list_namespaced_pod(STORAGE_NAMESPACE, label_selector=S3_SELECTOR).items
    spared |= {p.spec.node_name for p in s3_pods}
    counts = Counter(p.spec.node_name for p in pods if p.spec.node_name not in spared)
    if not counts:
        raise AssertionError(f"every one of {len(pods)} pods runs on {sorted(spared)}, which hold the tally or S3")
    name, count = counts.most_common(1)[0]
    return next(n for n in cluster.local.nodes if n.node_name == name), count


def wait_node_not_ready(cluster, node_name: str, timeout: float = 180) -> float:
    """Until the node-lifecycle controller marks the node NotReady; returns the seconds waited."""
    t = time.monotonic()

    cluster.wait_for(
        lambda: not condition_true(cluster.core.read_node(node_name), "Ready"),
        timeout=timeout,
        interval=0.5,
        what=f"{node_name} NotReady",
    )
    return time.monotonic() - t


OUT_OF_SERVICE = "node.kubernetes.io/out-of-service"


def taint_out_of_service(cluster, node_name: str, on: bool = True) -> None:
    """What an administrator (or a cloud's node controller, by deleting the Node) does for a node
    that is gone: Kubernetes then fails its pods and the Job controller replaces them."""
    taint = f"{OUT_OF_SERVICE}=nodeshutdown:NoExecute" + ("" if on else "-")
    cluster.kubectl("taint", "nodes", node_name, taint, check=on)


def bring_back(cluster, node) -> None:
    """A new kubelet and containerd on the lost node's name and network, and the taint lifted."""
    fresh = cluster.local.replace_node(node)
    cluster.nodes = cluster.local.nodes
    for built, name in EXTRA_TAGS:
        fresh.tag_image(built, name)
    taint_out_of_service(cluster, fresh.node_name, on=False)


def _pod_ips(cluster, namespace: str, selector: str) -> list[tuple[str, str]]:
    """(network namespace of its node, pod IP) of every running pod the selector matches."""
    out = []
    for pod in cluster.core.list_namespaced_pod(namespace, label_selector=selector).items:
        if pod.status.pod_ip and pod.status.phase == "Running":
            out.append((node_of(cluster, pod).addresses.netns, pod.status.pod_ip))
    if not out:
        raise AssertionError(f"no running pod matches {selector} in {namespace}")
    return out


@contextlib.contextmanager
def cut_pods(cluster, namespace: str, selector: str):
    """The pods keep running but nothing reaches them, nor leaves them: every packet to or from
    them through their node is rejected (TCP with a reset, so open connections break at once,
    as when a server's host goes away and comes back). The rules go when the block ends."""
    rules = []
    try:
        for netns, pod_ip in _pod_ips(cluster, namespace, selector):
            for direction in ("-d", "-s"):
                for proto, reject in (("tcp", "tcp-reset"), ("all", "icmp-port-unreachable")):
                    rule = ["FORWARD", direction, pod_ip, "-p", proto, "-j", "REJECT", "--reject-with", reject]
                    in_netns(netns, "iptables", "-I", *rule)
                    rules.append((netns, rule))
        yield
    finally:
        for netns, rule in rules:
            in_netns(netns, "iptables", "-D", *rule, check=False)


def delete_pods(cluster, namespace: str, selector: str) -> None:
    cluster.kubectl("delete", "pods", "-n", namespace, "-l", selector, "--wait=false")


def redis_cut(cluster):
    return cut_pods(cluster, SYSTEM_NAMESPACE, REDIS_SELECTOR)


def s3_cut(cluster):
    return cut_pods(cluster, STORAGE_NAMESPACE, S3_SELECTOR)


def restart_apiserver(cluster, down_seconds: float = 5.0) -> float:
    return cluster.control_plane.restart_apiserver(down_seconds)


# Image names given on the nodes (built, new): a node brought back gets them too.
EXTRA_TAGS: list[tuple[str, str]] = []


def upgrade_operator(cluster, tag: str | None = None) -> str:
    """`helm upgrade` of the chart to another operator image (the same build under a new tag on
    every node, since no registry serves one): the Deployment rolls both replicas. Returns the
    new image reference. tag="" goes back to the chart's own (its appVersion)."""
    current = image_ref(cluster.local.addons.images, "operator")
    repository, _ = current.rsplit(":", 1)
    if tag is None:
        tag = f"upgrade-{uuid.uuid4().hex[:6]}"
        EXTRA_TAGS.append((current, f"{repository}:{tag}"))
        for node in cluster.local.nodes:
            node.tag_image(current, f"{repository}:{tag}")
    cluster.local.addons.helm(
        "upgrade",
        RELEASE,
        str(CHART),
        "--namespace",
        SYSTEM_NAMESPACE,
        "--reuse-values",
        "--set",
        f"operator.image.tag={tag}",
    )
    return f"{repository}:{tag}" if tag else current


def wait_rolled_out(cluster, timeout: float = 300) -> None:
    cluster.kubectl("rollout", "status", "-n", SYSTEM_NAMESPACE, f"deployment/{RELEASE}", f"--timeout={int(timeout)}s")
