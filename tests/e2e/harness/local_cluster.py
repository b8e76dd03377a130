"""The whole local cluster: network, control plane, the real node, CoreDNS, S3 and the chart.

`LocalCluster().start()` is what `make cluster` and the e2e tier run. `stop()` undoes it in
reverse and leaves the machine as it was: no processes, mounts, network namespaces, links,
routes or cgroups of ours.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import time
from pathlib import Path

from .addons import Addons, S3Access
from .cluster import ControlPlane
from .images import image_archives
from .network import NETNS_PREFIX, NodeNetwork, ip, leftover_namespaces
from .node import NodeError, RealNode, missing_prerequisites, owner_alive, remove_cgroups, running_node


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
        index = netns.removeprefix(NETNS_PREFIX)
        ip("link", "delete", f"dsjh{index}", check=False)
        remove_cgroups(f"/dsj-node-{index}", timeout=5)
        if root is not None:
            shutil.rmtree(root, ignore_errors=True)
        removed.append(netns)
    return removed


class LocalCluster:
    """A one-node cluster with the project's images, the chart and an in-cluster S3 server."""

    def __init__(
        self,
        state_dir: Path | None = None,
        keep: bool = False,
        install_chart: bool = True,
        chart_values: dict | None = None,
    ):
        self.state_dir = Path(state_dir) if state_dir else None
        self.keep = keep
        self.install_chart = install_chart
        self.chart_values = chart_values or {}
        self.network = NodeNetwork()
        self.control_plane: ControlPlane | None = None
        self.node: RealNode | None = None
        self.addons: Addons | None = None
        self.s3: S3Access | None = None
        self.timings: dict[str, float] = {}

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

    def _start(self, images) -> None:
        t0 = t = time.monotonic()
        addresses = self.network.create()
        cp_root = (self.state_dir / "control-plane") if self.state_dir else None
        self.control_plane = ControlPlane(root=cp_root, keep=self.keep, addresses=addresses).start()
        self.timings["control plane"] = time.monotonic() - t
        t = time.monotonic()
        node_root = (self.state_dir / "node") if self.state_dir else None
        self.node = RealNode(self.control_plane, addresses, images, root=node_root, keep=self.keep).start()
        self.timings["node"] = time.monotonic() - t
        t = time.monotonic()
        self.addons = Addons(self.control_plane.env(), images, addresses.cluster_dns_ip)
        self.addons.install_coredns()
        self.s3 = self.addons.install_s3()
        self.addons.wait_for_dns_and_s3()
        self.timings["dns and s3"] = time.monotonic() - t
        if self.install_chart:
            t = time.monotonic()
            self.addons.install_chart(self.chart_values)
            self.addons.add_credentials("default")
            self.timings["chart"] = time.monotonic() - t
        self.timings["total"] = time.monotonic() - t0

    def stop(self) -> None:
        errors = []
        if self.node is not None:
            try:
                self.node.stop()
            except Exception as exc:  # noqa: BLE001 - keep tearing down
                errors.append(exc)
            self.node = None
        if self.control_plane is not None:
            self.control_plane.stop()
            self.control_plane = None
        self.network.destroy()
        try:
            atexit.unregister(self.stop)
        except Exception:  # noqa: BLE001
            pass
        if errors:
            raise errors[0]

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.kubeconfig
