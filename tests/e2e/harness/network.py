"""The node's network: a network namespace of its own, linked to the host by one veth pair.

Everything the node does to networking (the CNI bridge, pod veths, kube-proxy's and the
bridge plugin's iptables chains, sysctls) happens inside that namespace, so deleting the
namespace removes all of it and the host's own tables are never touched. The host side
gets one address on the veth (the API server listens there, so pods reach it through the
`kubernetes` Service) and two routes, to the pod and Service ranges, so test code on the
host can talk to in-cluster Services directly. Both go away with the veth.

Several nodes can exist at once (e.g. `make cluster` beside a test run): each claims the
first free index, which picks its namespace name and its address ranges. The nodes of one
cluster are joined by a full mesh of veth pairs, one per pair of nodes (link_nodes): each node
routes the other nodes' pod ranges over the pair, so pod traffic crosses nodes without the
host forwarding anything, and the pairs vanish with either namespace.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.prerequisites import missing_lines

NETNS_PREFIX = "dsj-node-"
MAX_NODES = 32
# Who owns each node namespace (the pid of the process that made it): a namespace outlives its
# node when a test kills the node and brings it back, and must not look like a leftover then.
OWNERS = Path("/run/datasetjob-netns")


class NetworkError(RuntimeError):
    """The node's network could not be set up."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    res = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {res.stderr.strip() or res.stdout.strip()}")
    return res


def in_netns(netns: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
    """Runs argv inside the named network namespace (nsenter keeps the host's mounts)."""
    res = subprocess.run(["nsenter", f"--net=/run/netns/{netns}", *argv], capture_output=True, text=True)
    if check and res.returncode != 0:
        raise NetworkError(f"in {netns}: {' '.join(argv)}: {res.stderr.strip() or res.stdout.strip()}")
    return res


@dataclass(frozen=True)
class NodeAddresses:
    """The address plan of node number `index` (all ranges private to this machine)."""

    index: int

    @property
    def netns(self) -> str:
        return f"{NETNS_PREFIX}{self.index}"

    @property
    def host_link(self) -> str:
        return f"dsjh{self.index}"

    @property
    def node_link(self) -> str:
        return f"dsjn{self.index}"

    @property
    def host_ip(self) -> str:
        """The host's end of the link: the API server listens here."""
        return f"10.213.{self.index}.1"

    @property
    def node_ip(self) -> str:
        """The node's InternalIP: the kubelet serves logs and port-forwards here."""
        return f"10.213.{self.index}.2"

    def mesh_link(self, peer: NodeAddresses) -> str:
        """This node's end of the veth pair to `peer` (15 characters at most)."""
        return f"dsjm{self.index}-{peer.index}"

    @property
    def pod_cidr(self) -> str:
        return f"10.244.{self.index}.0/24"

    @property
    def service_cidr(self) -> str:
        return f"10.96.{self.index}.0/24"

    @property
    def kubernetes_service_ip(self) -> str:
        return f"10.96.{self.index}.1"

    @property
    def cluster_dns_ip(self) -> str:
        return f"10.96.{self.index}.10"


class NodeNetwork:
    """Creates and removes the namespace, the veth pair, the addresses and the host routes."""

    def __init__(self) -> None:
        self.addresses: NodeAddresses | None = None

    def create(self, cluster: NodeAddresses | None = None) -> NodeAddresses:
        """The node's namespace and link. `cluster`: the first node of the cluster this one
        joins (its Service range and API server address serve every node); None: this node
        is the first."""
        missing = missing_lines({"node"})
        if missing:
            raise NetworkError("this machine cannot make the node's network:\n  " + "\n  ".join(missing))
        self.addresses = self._claim()
        a = self.addresses
        try:
            ip("link", "add", a.host_link, "type", "veth", "peer", "name", a.node_link, "netns", a.netns)
            ip("addr", "add", f"{a.host_ip}/30", "dev", a.host_link)
            ip("link", "set", a.host_link, "up")
            in_netns(a.netns, "ip", "link", "set", "lo", "up")
            in_netns(a.netns, "ip", "addr", "add", f"{a.node_ip}/30", "dev", a.node_link)
            in_netns(a.netns, "ip", "link", "set", a.node_link, "up")
            # No default route: pods reach each other, Services and the host's end of the link
            # (the API server), and nothing else; no packet of the node leaves this machine.
            # Pods are routed through the node; Services need bridged traffic to pass iptables.
            # Both settings are per network namespace: the host's stay as they were.
            in_netns(a.netns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            if Path("/proc/sys/net/bridge").exists():
                in_netns(a.netns, "sysctl", "-q", "-w", "net.bridge.bridge-nf-call-iptables=1")
            ip("route", "add", a.pod_cidr, "via", a.node_ip, "dev", a.host_link)
            if cluster is None:
                ip("route", "add", a.service_cidr, "via", a.node_ip, "dev", a.host_link)
            else:
                # The API server listens on the first node's link; the host delivers locally.
                in_netns(a.netns, "ip", "route", "add", f"{cluster.host_ip}/32", "via", a.host_ip)
        except BaseException:
            self.destroy()
            raise
        return a

    def _claim(self) -> NodeAddresses:
        """The first index whose namespace name and link are free (`ip netns add` is atomic)."""
        links = ip("-o", "link", "show").stdout
        for index in range(MAX_NODES):
            a = NodeAddresses(index)
            if f" {a.host_link}@" in links or f" {a.host_link}:" in links:
                continue
            if ip("netns", "add", a.netns, check=False).returncode == 0:
                OWNERS.mkdir(mode=0o700, exist_ok=True)
                (OWNERS / a.netns).write_text(str(os.getpid()))
                return a
        raise NetworkError(
            f"no free node index: {MAX_NODES} namespaces named {NETNS_PREFIX}* exist "
            "(`ip netns list`; a killed run may have left them: `make cluster-clean`)"
        )

    def destroy(self) -> None:
        a = self.addresses
        if a is None:
            return
        # The veth pair, its routes, the bridge, pod veths and every iptables rule of the
        # namespace disappear with it once no process uses it any more.
        ip("netns", "delete", a.netns, check=False)
        ip("link", "delete", a.host_link, check=False)
        forget_owner(a.netns)
        self.addresses = None


def link_nodes(a: NodeAddresses, b: NodeAddresses) -> None:
    """One veth pair between two nodes' namespaces, and each node's routes to the other's
    node address and pod range over it. The ends carry no address of their own: the kernel
    answers ARP for the node address held on the host link, and picks it as the source."""
    ends = (a.mesh_link(b), "netns", a.netns, "type", "veth", "peer", "name", b.mesh_link(a), "netns", b.netns)
    ip("link", "add", *ends)
    for here, there in ((a, b), (b, a)):
        link = here.mesh_link(there)
        in_netns(here.netns, "ip", "link", "set", link, "up")
        in_netns(here.netns, "ip", "route", "add", f"{there.node_ip}/32", "dev", link)
        in_netns(here.netns, "ip", "route", "add", there.pod_cidr, "via", there.node_ip, "dev", link)


def namespace_owner_alive(netns: str) -> bool:
    """Whether the process that made the namespace still runs."""
    try:
        os.kill(int((OWNERS / netns).read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def forget_owner(netns: str) -> None:
    (OWNERS / netns).unlink(missing_ok=True)
    try:
        OWNERS.rmdir()  # the last one: nothing of ours stays in /run
    except OSError:
        pass


def leftover_namespaces() -> list[str]:
    """Node namespaces present on this machine (for cleanup of a run that was killed)."""
    out = ip("netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(NETNS_PREFIX)]
