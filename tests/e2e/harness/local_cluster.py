"""The whole local cluster: network, control plane, real nodes, CoreDNS, S3 and the chart.

`LocalCluster().start()` is what `make cluster` and the e2e tier run. The add-ons are applied
while the node starts, CoreDNS + S3 and the chart side by side; `timings` has each phase from
its own start ("node", "dns and s3" and "chart" overlap) and the total. `stop()` undoes it in
reverse and leaves the machine as it was: no processes, mounts, network namespaces, links,
routes or cgroups of ours.

`LocalCluster(nodes=3)` starts several nodes, each in its own namespaces with its own
containerd, joined to the one control plane by a mesh of links (network.link_nodes); the
first imports the images, the others start on a copy of its store (node.py).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import signal
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from pathlib import Path

from .addons import STORAGE_NAMESPACE, SYSTEM_NAMESPACE, AddonError, Addons, S3Access, workload_ready
from .cluster import ControlPlane
from .images import image_archives
from .network import (
    NETNS_PREFIX,
    NodeNetwork,
    forget_owner,
    ip,
    leftover_namespaces,
    link_nodes,
    namespace_owner_alive,
)
from .node import NodeError, RealNode, missing_prerequisites, node_name, owner_alive, remove_cgroups, running_node


def clean_leftovers(min_age: float = 60.0) -> list[str]:
    """Removes what a killed run left: node namespaces whose owner process is gone (their
    processes, the namespace, its cgroups and state directory). A namespace with no node
    yet is taken only when older than min_age seconds: it may be one being set up right now."""
    removed = []
    for netns in leftover_namespaces():
        node = running_node(netns)
        if node is not None:
            pid, root = node
            if owner_alive(root):
                continue
            os.kill(pid, signal.SIGKILL)  # the node's PID 1 goes, and the kernel kills the rest
        else:
            if namespace_owner_alive(netns):
                continue  # a node its cluster killed (to test a node's loss) and will bring back
            try:
                age = time.time() - (Path("/run/netns") / netns).stat().st_mtime
            except FileNotFoundError:
                continue
            if age < min_age:
                continue
            root = None
        deadline = time.monotonic() + 10
        while ip("netns", "pids", netns, check=False).stdout.strip() and time.monotonic() < deadline:
            time.sleep(0.1)
        ip("netns", "delete", netns, check=False)
        forget_owner(netns)
        index = netns.removeprefix(NETNS_PREFIX)
        ip("link", "delete", f"dsjh{index}", check=False)
        remove_cgroups(f"/dsj-node-{index}", timeout=5)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
        removed.append(netns)
    return removed


class LocalCluster:
    """A cluster of `nodes` real nodes with the project's images, the chart and an in-cluster
    S3 server. `node` is the first node; `nodes` all of them."""

    def __init__(
        self,
        state_dir: Path | None = None,
        keep: bool = False,
        install_chart: bool = True,
        chart_values: dict | None = None,
        nodes: int = 1,
    ):
        if nodes < 1:
            raise ValueError(f"a cluster needs at least one node, not {nodes}")
        self.state_dir = Path(state_dir) if state_dir else None
        self.keep = keep
        self.install_chart = install_chart
        self.chart_values = chart_values or {}
        self.networks = [NodeNetwork() for _ in range(nodes)]
        self.control_plane: ControlPlane | None = None
        self.nodes: list[RealNode] = []
        self.addons: Addons | None = None
        self.s3: S3Access | None = None
        self.timings: dict[str, float] = {}
        self._failed = threading.Event()

    def start(self) -> LocalCluster:
        missing = missing_prerequisites()
        if missing:
            raise NodeError("this machine cannot run the node:\n  " + "\n  ".join(missing))
        images = image_archives()
        clean_leftovers()
        atexit.register(self.stop)
        try:
            self._start(images)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def node(self) -> RealNode | None:
        return self.nodes[0] if self.nodes else None

    def _start(self, images) -> None:
        t0 = t = time.monotonic()
        addresses = self.networks[0].create()
        peers = [network.create(cluster=addresses) for network in self.networks[1:]]
        every = [addresses, *peers]
        for i, a in enumerate(every):
            for b in every[i + 1 :]:
                link_nodes(a, b)
        cp_root = (self.state_dir / "control-plane") if self.state_dir else None
        self.control_plane = ControlPlane(root=cp_root, keep=self.keep, addresses=addresses).start()
        self.timings["control plane"] = time.monotonic() - t
        t = time.monotonic()
        for number, a in enumerate(every, start=1):
            self.nodes.append(self.make_node(number, a, images))
        for node in self.nodes:
            node.launch()
        # The add-ons go in while the node starts: their objects wait in the API for it, and
        # the chart needs the S3 server's address and credentials, not the server.
        self.addons = Addons(self.control_plane.env(), images, addresses.cluster_dns_ip)
        self.s3 = self.addons.s3_access()
        steps = {"dns and s3": self._dns_and_s3}
        if self.install_chart:
            steps["chart"] = self._chart
        # Threads only now: the node was launched with a preexec_fn, not safe beside threads.
        pool = ThreadPoolExecutor(len(steps), thread_name_prefix="addons")
        futures = [pool.submit(self._timed, name, step) for name, step in steps.items()]
        try:
            for node in self.nodes:  # the first imports; the others then copy its store
                node.wait_images()
            for node in self.nodes:
                node.wait_ready()
            self.timings["node"] = time.monotonic() - t
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            errors = [f.exception() for f in done if f.exception() is not None]
            if errors:
                raise errors[0]
        finally:
            self._failed.set()  # ends the waits still running after an error; no-op otherwise
            pool.shutdown(wait=True)
        self.timings["total"] = time.monotonic() - t0
        order = ("control plane", "node", "dns and s3", "chart", "total")  # as printed before the overlap
        self.timings = {k: self.timings[k] for k in order if k in self.timings}

    def make_node(self, number: int, addresses, images=None, copy_images: bool = True) -> RealNode:
        """Node `number` (1-based) in the namespace of `addresses`, not yet launched. A node but
        the first starts on a copy of the first's image store (copy_images), else on a kept
        store of its own."""
        root = (self.state_dir / f"node-{number}") if self.state_dir else None
        first = self.nodes[0] if self.nodes else None
        return RealNode(
            self.control_plane,
            addresses,
            images if images is not None else first.images,
            root=root,
            keep=self.keep,
            name=node_name(number),
            cluster=first.addresses if first else addresses,
            images_from=first if number > 1 and copy_images else None,
        )

    def replace_node(self, node: RealNode) -> RealNode:
        """Brings back a node that was killed: a new kubelet and containerd under the same name
        and addresses (the network was kept); it registers with the same Node object. Returns it
        once Ready. Its images come from a kept store of its own: the first node's containerd
        runs now and writes its databases at any moment, so it is not copied."""
        number = self.nodes.index(node) + 1
        if node.running():
            raise NodeError(f"{node.node_name} still runs")
        fresh = self.make_node(number, node.addresses, copy_images=False)
        self.nodes[number - 1] = fresh
        return fresh.launch().wait_ready()

    def _timed(self, name: str, step) -> None:
        t = time.monotonic()
        step()
        self.timings[name] = time.monotonic() - t

    def _dns_and_s3(self) -> None:
        self.addons.install_coredns()
        self.addons.install_s3()
        self._wait_ready("kube-system", "deployments/coredns", workload_ready)
        self._wait_ready(STORAGE_NAMESPACE, "deployments/s3", workload_ready)
        self._create_bucket()

    def _create_bucket(self, timeout: float = 60.0) -> None:
        """From this host, through the Service's ClusterIP (routed to the node): a second or
        two, where a Job in the cluster spends several starting Python in a pod."""
        from botocore.exceptions import BotoCoreError, ClientError

        client = self.s3.client(attempts=1)  # retried here, more often than botocore's backoff
        deadline = time.monotonic() + timeout
        while True:
            try:
                client.create_bucket(Bucket=self.s3.bucket)
                return
            except client.exceptions.BucketAlreadyOwnedByYou:
                return
            except (BotoCoreError, ClientError) as exc:
                # Until kube-proxy has the Service's endpoint: refused or reset connections.
                if self._failed.is_set() or time.monotonic() > deadline:
                    where = self.s3.host_endpoint_url
                    raise AddonError(f"bucket {self.s3.bucket} not created on {where}: {exc}") from exc
            time.sleep(0.2)

    def _chart(self) -> None:
        self.addons.install_chart(self.chart_values, wait=False)
        self.addons.add_credentials("default")
        for kind in ("deployments", "statefulsets"):
            status, body = self.control_plane.api_get(f"/apis/apps/v1/namespaces/{SYSTEM_NAMESPACE}/{kind}")
            if status != 200:
                raise AddonError(f"listing the chart's {kind} failed: HTTP {status} {body[:200]}")
            for item in json.loads(body)["items"]:
                self._wait_ready(SYSTEM_NAMESPACE, f"{kind}/{item['metadata']['name']}", workload_ready)

    def _wait_ready(self, namespace: str, name: str, ready, timeout: float = 300.0) -> None:
        """Polls the apps/v1 object `name` ("deployments/x") until ready(obj): more often than
        `helm --wait` (every 2 s), and it gives up as soon as another step failed."""
        path = f"/apis/apps/v1/namespaces/{namespace}/{name}"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._failed.is_set():
                raise AddonError(f"{namespace}/{name}: stopped waiting (another step failed)")
            if not all(node.running() for node in self.nodes):
                raise AddonError(f"{namespace}/{name}: a node exited")
            status, body = self.control_plane.api_get(path)
            if status == 200 and ready(json.loads(body)):
                return
            time.sleep(0.2)
        pods = self.addons.kubectl("get", "pods", "-n", namespace, "-o", "wide", check=False).stdout
        events = self.addons.kubectl("get", "events", "-n", namespace, "--sort-by=.lastTimestamp", check=False).stdout
        raise AddonError(f"{namespace}/{name} not ready after {timeout:.0f}s\n{pods}\n{events[-3000:]}")

    def stop(self) -> None:
        errors = []
        for node in reversed(self.nodes):
            try:
                node.stop()
            except Exception as exc:  # noqa: BLE001 - keep tearing down
                errors.append(exc)
        self.nodes = []
        if self.control_plane is not None:
            self.control_plane.stop()
            self.control_plane = None
        for network in reversed(self.networks):
            network.destroy()
        try:
            atexit.unregister(self.stop)
        except Exception:  # noqa: BLE001
            pass
        if errors:
            raise errors[0]

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig
