"""A real node: containerd + runc, the kubelet and kube-proxy, with bridge CNI.

The node runs in namespaces of its own (see node-init.sh): its network namespace (made by
network.NodeNetwork), and a mount and PID namespace that `unshare` creates for node-init.sh.
So stopping it is one signal: the namespace's PID 1 exits, the kernel kills containerd, its
shims and every container, the mounts go with the mount namespace, and the network namespace
takes the bridge, veths and iptables rules with it. What remains on the host is removed here:
the cgroups under this node's own cgroup root, the Node object and the state directory.

Images come from `make images` (archives imported into containerd before the kubelet starts),
so pods run the project's own images with `imagePullPolicy: IfNotPresent`; nothing is pulled.
containerd's root is kept between starts (image_store.py): a first containerd, without the CRI
plugin, drops what an earlier run left in it and imports only the archives that changed; then
the node's own containerd starts on it with a fresh state directory, and the kubelet.

The other nodes of a cluster import nothing: each starts on a copy of the first node's root,
made once its images are in, with every blob and unpacked layer hard-linked (they are never
written in place) and only containerd's two databases copied: a second or two for all images.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from tests.prerequisites import missing_lines

from . import image_store
from .cluster import ControlPlane, ControlPlaneError, _die_with_parent, issue_client_cert, kubeconfig_yaml, tail_file
from .image_store import ImageStore
from .images import ImageArchive
from .network import NodeAddresses

INIT_SCRIPT = Path(__file__).with_name("node-init.sh")
CNI_BIN_DIR = Path("/usr/lib/cni")  # containernetworking-plugins (scripts/prerequisites.txt)
CGROUP_V1 = Path("/sys/fs/cgroup")
NODE_NAME = "dsj-node"  # the first node's; the others are dsj-node-2, dsj-node-3, ...


class NodeError(ControlPlaneError):
    """The node could not start, or this machine cannot run containers."""


def missing_prerequisites() -> list[str]:
    """What this machine lacks to run the node, each with how to get it (empty: nothing).

    The tools come from the `node` and `cluster` entries of scripts/prerequisites.txt, the list
    that scripts/install-prerequisites.sh installs.
    """
    missing = missing_lines({"node", "cluster"})
    if not (CGROUP_V1 / "memory").is_dir() and not (CGROUP_V1 / "cgroup.controllers").exists():
        missing.append(f"cgroups: nothing mounted at {CGROUP_V1}")
    return missing


def cgroup_dirs(cgroup_root: str) -> list[Path]:
    """This node's cgroup root in every hierarchy mounted under /sys/fs/cgroup."""
    if (CGROUP_V1 / "cgroup.controllers").exists():  # unified (v2) only
        return [CGROUP_V1 / cgroup_root.strip("/")]
    return [h / cgroup_root.strip("/") for h in sorted(CGROUP_V1.iterdir()) if h.is_dir() and not h.is_symlink()]


def remove_cgroups(cgroup_root: str, timeout: float = 30.0) -> list[Path]:
    """rmdir the cgroup tree depth-first (retrying while the kernel reaps); returns what stayed."""
    deadline = time.monotonic() + timeout
    while True:
        left = []
        for top in cgroup_dirs(cgroup_root):
            if not top.exists():
                continue
            # Bottom-up; the kernel may remove directories while we walk (errors ignored).
            for d in [Path(dirpath) for dirpath, _, _ in os.walk(top, topdown=False)]:
                try:
                    d.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:
                    left.append(d)
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


def running_node(netns: str) -> tuple[int, Path] | None:
    """(pid, state directory) of the node started in that namespace, if one runs there."""
    res = subprocess.run(["ip", "netns", "pids", netns], capture_output=True, text=True)
    for pid in res.stdout.split():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        # Any checkout's node-init.sh: several checkouts may run nodes side by side.
        if argv[0] == b"unshare" and any(a.endswith(b"/" + INIT_SCRIPT.name.encode()) for a in argv):
            return int(pid), Path(argv[-2].decode())
    return None


def owner_alive(root: Path) -> bool:
    """Whether the process that started the node with this state directory still runs."""
    try:
        os.kill(int((root / "owner.pid").read_text()), 0)
        return True
    except (OSError, ValueError):
        return False


def node_name(number: int) -> str:
    """The name of the cluster's node `number` (1-based)."""
    return NODE_NAME if number == 1 else f"{NODE_NAME}-{number}"


class RealNode:
    """One node of `control_plane`, in the network namespace of `addresses`.

    `cluster`: the first node's addresses, whose Service range and DNS address serve every
    node (default: this node's own). `images_from`: the first node, whose containerd root this
    one starts on a copy of instead of importing the archives (see the module's docstring);
    launch both before waiting for the first's images, which it copies then.
    """

    def __init__(
        self,
        control_plane: ControlPlane,
        addresses: NodeAddresses,
        images: list[ImageArchive],
        root: Path | None = None,
        keep: bool = False,
        start_timeout: float = 180.0,
        name: str = NODE_NAME,
        cluster: NodeAddresses | None = None,
        images_from: RealNode | None = None,
    ):
        self.control_plane = control_plane
        self.addresses = addresses
        self.cluster = cluster or addresses
        self.images_from = images_from
        self.copies: list[RealNode] = []  # nodes that start on a copy of this one's store
        if images_from is not None:
            images_from.copies.append(self)
        self.images = images
        self.keep = keep
        self._own_root = root is None
        self.root = Path(root) if root else None
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.cgroup_root = f"/dsj-node-{addresses.index}"
        self.node_name = name
        self.timings: dict[str, float] = {}
        self._t0 = 0.0
        self.store: ImageStore | None = None
        self.imported: list[str] = []  # the refs this start imported (the others were kept)

    # -- paths --------------------------------------------------------------------------------
    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def containerd_socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def prep_socket(self) -> Path:
        """The containerd without the CRI plugin that prepares the root (see node-init.sh)."""
        return self.root / "prep.sock"

    @property
    def containerd_root(self) -> Path:
        return self.store.root if self.store is not None else self.root / "containerd" / "root"

    @property
    def pod_log_dir(self) -> Path:
        """The node's /var/log/pods, seen from the host."""
        return self.root / "var-log" / "pods"

    # -- lifecycle ----------------------------------------------------------------------------
    def start(self) -> RealNode:
        return self.launch().wait_ready()

    def launch(self) -> RealNode:
        """Starts the node's processes; wait_ready() then waits for its images and for Ready.
        Call both from the same thread: the node dies with the thread that launched it."""
        missing = missing_prerequisites()
        if missing:
            raise NodeError("this machine cannot run the node:\n  " + "\n  ".join(missing))
        if self.root is None:
            # Short: the containerd socket path must stay under the 108-byte limit.
            self.root = Path(tempfile.mkdtemp(prefix="dsjn-"))
        self._t0 = time.monotonic()
        try:
            # A copy of the first node's store (filled by _copy_root), or a kept slot of its own.
            self.store = image_store.acquire() if self.images_from is None else ImageStore(self.root / "store", -1)
            self._launch()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> RealNode:
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _launch(self) -> None:
        for d in (
            "logs",
            "var-log",
            "kubelet",
            "containerd/state",
            "containerd/prep-state",
            "containerd/opt",
            "cni/net.d",
            "cni/ipam",
        ):
            (self.root / d).mkdir(parents=True, exist_ok=True)
        self.containerd_root.mkdir(parents=True, exist_ok=True)
        remove_cgroups(self.cgroup_root, timeout=0)  # a killed run may have left it empty
        (self.root / "owner.pid").write_text(str(os.getpid()))
        self._make_cgroup_root()
        self._write_configs()
        self.process = subprocess.Popen(
            [
                "nsenter",
                f"--net=/run/netns/{self.addresses.netns}",
                "unshare",
                "--mount",
                "--pid",
                "--fork",
                "--kill-child=SIGKILL",
                "--mount-proc",
                "bash",
                str(INIT_SCRIPT),
                str(self.root),
            ],
            stdin=subprocess.DEVNULL,
            stdout=open(self.log_dir / "node-init.log", "ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            # The store's lock goes with the node: held until its last process is gone.
            pass_fds=(self.store.lock_fd,) if self.store is not None and self.store.lock_fd >= 0 else (),
        )

    def wait_images(self) -> RealNode:
        """Waits until the node's images are in (its kubelet then starts); wait_ready() does
        this first, so a cluster can let one node's images in before starting the others'."""
        try:
            if "images" not in self.timings:
                self._wait_images()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_images(self) -> None:
        # A node that copies another's store waits for the copy; it starts on an empty store
        # (and imports) if the copy never came, e.g. when it was launched too late for it.
        if self.images_from is None or "copy" in self.timings or self.images_from.process is None:
            (self.root / "root.ready").touch()
        self._wait("containerd", lambda: (self.root / "containerd.ready").exists())
        self.timings["containerd"] = time.monotonic() - self._t0
        t = time.monotonic()
        self._prepare_images()
        # Now, while the preparing containerd idles and before the node's own starts on the
        # root (it writes to its databases at once): the copies of the others.
        for node in self.copies:
            if node.root is not None and node.running() and "copy" not in node.timings:
                c = time.monotonic()
                node._copy_root(self)
                node.timings["copy"] = time.monotonic() - c
                (node.root / "root.ready").touch()
        (self.root / "images.ready").touch()
        self.timings["images"] = time.monotonic() - t

    def _wait_ready(self) -> None:
        if "images" not in self.timings:
            self._wait_images()
        t = time.monotonic()
        self._wait("node Ready", self._node_ready)
        self.timings["kubelet"] = time.monotonic() - t

    def _copy_root(self, source: RealNode) -> None:
        """This node's store: a copy of `source`'s root and record, taken while its preparing
        containerd is idle (its images are in, its own containerd not started). Blobs and layers
        are hard links; the databases (written in place) real copies. Without a record to copy,
        or across filesystems, the node imports the archives itself (_prepare_images)."""
        store = self.store
        if source.store is None or store is None:
            return
        shutil.rmtree(store.root)  # made empty at launch; cp would copy into it
        res = subprocess.run(["cp", "-al", str(source.store.root), str(store.root)], capture_output=True, text=True)
        # The source's garbage collector may be removing what the preparation dropped (an earlier
        # run's containers and their snapshots) while we copy: what vanished is not needed.
        vanished = all("No such file or directory" in line for line in res.stderr.splitlines())
        if res.returncode != 0 and not vanished:
            shutil.rmtree(store.root, ignore_errors=True)
            store.root.mkdir(parents=True)
            return
        for db in store.root.rglob("*.db"):
            tmp = db.with_name(db.name + ".copy")
            shutil.copy2(db, tmp)
            tmp.replace(db)  # a file of its own, no longer a link to the source's
        shutil.copy2(source.store.path / image_store.RECORD, store.path / image_store.RECORD)

    def _make_cgroup_root(self) -> None:
        for d in cgroup_dirs(self.cgroup_root):
            d.mkdir(exist_ok=True)
            if d.parent.name == "cpuset":
                # A v1 cpuset child starts with no CPUs or memory nodes; copy the parent's.
                for f in ("cpuset.cpus", "cpuset.mems"):
                    (d / f).write_text((d.parent / f).read_text())

    def _write_configs(self) -> None:
        a, r, cp = self.addresses, self.root, self.control_plane
        pki = cp.root / "pki"
        ca_pem = cp.ca_file.read_bytes()
        name = self.node_name
        kubelet_cert = issue_client_cert(pki, f"kubelet-{name}", f"system:node:{name}", "system:nodes")
        proxy_cert = issue_client_cert(pki, "kube-proxy", "system:kube-proxy")
        (r / "kubelet.kubeconfig").write_text(
            kubeconfig_yaml(cp.server, ca_pem, f"system:node:{name}", cert=kubelet_cert[0], key=kubelet_cert[1])
        )
        (r / "kube-proxy.kubeconfig").write_text(
            kubeconfig_yaml(cp.server, ca_pem, "system:kube-proxy", cert=proxy_cert[0], key=proxy_cert[1])
        )
        # Pods resolve through the cluster DNS only; nothing is forwarded off this machine.
        (r / "resolv.conf").write_text("options ndots:5\n")
        pause = next((i.ref for i in self.images if "/pause:" in i.ref), None)
        if pause is None:
            raise NodeError("no pause image among the image archives (`make images` builds one)")
        (r / "containerd.toml").write_text(
            CONTAINERD_CONFIG.format(
                root=r,
                containerd_root=self.containerd_root,
                state=r / "containerd" / "state",
                socket=self.containerd_socket,
                disabled="",
            )
            + CRI_CONFIG.format(root=r, pause=pause, cni_bin=CNI_BIN_DIR)
        )
        (r / "containerd-prep.toml").write_text(
            CONTAINERD_CONFIG.format(
                root=r,
                containerd_root=self.containerd_root,
                state=r / "containerd" / "prep-state",
                socket=self.prep_socket,
                disabled=', "io.containerd.grpc.v1.cri"',
            )
        )
        (r / "cni" / "net.d" / "10-dsj.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "0.4.0",
                    "name": "dsj",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": "cni0",
                            "isGateway": True,
                            "ipMasq": True,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": a.pod_cidr}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(r / "cni" / "ipam"),
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                },
                indent=2,
            )
        )
        (r / "kubelet.yaml").write_text(
            json.dumps(
                {
                    "apiVersion": "kubelet.config.k8s.io/v1beta1",
                    "kind": "KubeletConfiguration",
                    "address": a.node_ip,
                    "port": 10250,
                    "readOnlyPort": 0,
                    "healthzBindAddress": "127.0.0.1",
                    "healthzPort": 10248,
                    "authentication": {
                        "anonymous": {"enabled": False},
                        "webhook": {"enabled": True},
                        "x509": {"clientCAFile": str(cp.ca_file)},
                    },
                    "authorization": {"mode": "Webhook"},
                    "containerRuntimeEndpoint": f"unix://{self.containerd_socket}",
                    # What a node on a shared host needs: cgroup v1 through cgroupfs, no swap
                    # check, and no eviction or allocatable enforcement on a shared machine.
                    "cgroupDriver": "cgroupfs",
                    "cgroupRoot": self.cgroup_root,
                    "failCgroupV1": False,
                    "failSwapOn": False,
                    "enforceNodeAllocatable": [],
                    "evictionHard": {},
                    "localStorageCapacityIsolation": False,
                    # Preloaded images must never be collected: nothing could pull them back.
                    "imageGCHighThresholdPercent": 100,
                    "imageGCLowThresholdPercent": 99,
                    "serializeImagePulls": False,
                    # A pod not yet ready is probed again at each of its syncs, not only each
                    # probe period (the operator's is 10 s): it turns ready about 1 s after it
                    # serves. Also how soon ConfigMap and Secret volumes see changes.
                    "syncFrequency": "1s",
                    "clusterDNS": [self.cluster.cluster_dns_ip],
                    "clusterDomain": "cluster.local",
                    "resolvConf": str(r / "resolv.conf"),
                    "registerNode": True,
                    "maxPods": 110,
                },
                indent=2,
            )
        )
        (r / "kube-proxy.yaml").write_text(
            json.dumps(
                {
                    "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                    "kind": "KubeProxyConfiguration",
                    "mode": "iptables",
                    "clientConnection": {"kubeconfig": str(r / "kube-proxy.kubeconfig")},
                    "hostnameOverride": name,
                    # Every node's pod range (10.244.<index>.0/24): traffic to a Service from
                    # outside it (this host) is masqueraded, so replies return the way it came.
                    "clusterCIDR": "10.244.0.0/16",
                    "healthzBindAddress": "127.0.0.1:10256",
                    "metricsBindAddress": "127.0.0.1:10249",
                    # Leave the conntrack sysctls alone: they are not per-namespace.
                    "conntrack": {
                        "maxPerCore": 0,
                        "min": 0,
                        "tcpEstablishedTimeout": "0s",
                        "tcpCloseWaitTimeout": "0s",
                    },
                    "iptables": {"localhostNodePorts": False},
                    "nodePortAddresses": ["primary"],
                },
                indent=2,
            )
        )
        bins = self.control_plane_binaries()
        env = {
            "CONTAINERD": shutil.which("containerd"),
            "CONTAINERD_CONFIG": r / "containerd.toml",
            "CONTAINERD_SOCKET": self.containerd_socket,
            "CONTAINERD_PREP_CONFIG": r / "containerd-prep.toml",
            "CONTAINERD_PREP_SOCKET": self.prep_socket,
            "KUBELET": bins["kubelet"],
            "KUBELET_CONFIG": r / "kubelet.yaml",
            "KUBELET_KUBECONFIG": r / "kubelet.kubeconfig",
            "KUBELET_ROOT": r / "kubelet",
            "KUBE_PROXY": bins["kube-proxy"],
            "KUBE_PROXY_CONFIG": r / "kube-proxy.yaml",
            "LOG_DIR": self.log_dir,
            "NODE_NAME": name,
            "NODE_IP": a.node_ip,
        }
        (r / "node.env").write_text("".join(f"{k}='{v}'\n" for k, v in env.items()))

    @staticmethod
    def control_plane_binaries() -> dict[str, Path]:
        from .cluster import require_binaries

        return require_binaries()

    def _ctr(self, *args: str, live: bool = False) -> str:
        """ctr against the preparing containerd (live: the node's own, once it runs)."""
        socket = self.containerd_socket if live else self.prep_socket
        argv = ["ctr", "--address", str(socket), "-n", "k8s.io", *args]
        res = subprocess.run(argv, capture_output=True, text=True)
        if res.returncode != 0:
            hint = (
                f" (the node's image store {self.store.path} may be damaged: `make cluster-clean` removes it)"
                if self.store is not None and not live
                else ""
            )
            raise NodeError(f"{' '.join(argv[3:])} on {self.node_name} failed: {res.stderr.strip()}{hint}")
        return res.stdout

    def _prepare_images(self) -> None:
        """Through the containerd without CRI: drops the containers an earlier run left in the
        kept root (their tasks died with that run; the CRI plugin must not load them), then
        imports the archives that changed and removes the images no archive names."""
        ids = self._ctr("containers", "ls", "-q").split()
        if ids:
            self._ctr("containers", "rm", *ids)  # with their snapshots
        # Their files: the CRI plugin's, the tasks' work directories, temporary mount points.
        for sub in STALE_IN_ROOT:
            d = self.containerd_root / sub
            if d.is_dir():
                for entry in d.iterdir():
                    shutil.rmtree(entry, ignore_errors=True)
        keys = {i.ref: image_store.archive_key(i.archive) for i in self.images}
        recorded = self.store.recorded() if self.store is not None else {}
        load, remove = image_store.plan(self.images, keys, recorded, self._ctr("images", "ls", "-q").split())
        if remove:
            self._ctr("images", "rm", *remove)
        record = {ref: key for ref, key in recorded.items() if ref in keys}
        for image in load:
            if record.pop(image.ref, None) is not None and self.store is not None:
                self.store.write_record(record)  # a killed import leaves no stale entry behind
            self._ctr("images", "import", str(image.archive))
            record[image.ref] = keys[image.ref]
        if self.store is not None:
            self.store.write_record(record)
        self.imported = [i.ref for i in load]

    def tag_image(self, ref: str, new_ref: str) -> None:
        """Another name for an image the node holds (through its running containerd): how a
        test gives pods a "new" image where no registry serves one."""
        stored = [n for n in self._ctr("images", "ls", "-q", live=True).split() if image_store.holds(n, ref)]
        if not stored:
            raise NodeError(f"{self.node_name} holds no image {ref}")
        target = stored[0][: len(stored[0]) - len(ref)] + new_ref  # qualified the same way
        self._ctr("images", "tag", "--force", stored[0], target, live=True)

    def _node_ready(self) -> bool:
        status, body = self.control_plane.api_get(f"/api/v1/nodes/{self.node_name}")
        if status != 200:
            return False
        conditions = json.loads(body).get("status", {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _wait(self, what: str, ready) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NodeError(
                    f"the node exited with {self.process.returncode} while waiting for {what}\n"
                    + self.format_logs_tail(30)
                )
            try:
                if ready():
                    return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            time.sleep(0.2)
        raise NodeError(f"{what}: not ready after {self.start_timeout:.0f}s\n" + self.format_logs_tail(30))

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """Loses the node, as a power cut does: SIGKILL to its PID 1 (the kernel kills the
        kubelet, containerd and every container), with nothing told to the API server: the
        Node object stays until the control plane notices. Then removes what stayed on the
        host (cgroups, state directory); its network namespace stays for a node to come back."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None
        self._release()

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                os.killpg(self.process.pid, signal.SIGTERM)
                try:
                    self.process.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(self.process.pid, signal.SIGKILL)
                    self.process.wait(10)
            self.process = None
        try:
            if self.control_plane.started:
                self.control_plane.api_delete(f"/api/v1/nodes/{self.node_name}")
        finally:
            self._release()

    def _release(self) -> None:
        """Once the node's processes are gone: its cgroups, image store lock and state directory."""
        try:
            left = remove_cgroups(self.cgroup_root)
        finally:
            if self.store is not None:
                self.store.release()
                self.store = None
            if self.root is not None and self._own_root and not self.keep:
                shutil.rmtree(self.root, ignore_errors=True)
        if left:
            raise NodeError(f"cgroups still in use after the node stopped: {', '.join(map(str, left[:5]))}")

    # -- diagnostics --------------------------------------------------------------------------
    def logs_tail(self, lines: int = 40) -> dict[str, str]:
        if self.root is None:
            return {}
        return {p.stem: tail_file(p, lines) for p in sorted(self.log_dir.glob("*.log"))}

    def format_logs_tail(self, lines: int = 40) -> str:
        return "\n".join(
            f"----- {name} (last {lines} lines) -----\n{text or '(empty)'}"
            for name, text in self.logs_tail(lines).items()
        )


# Under containerd's root, what belongs to containers and tasks of a run that is over.
STALE_IN_ROOT = (
    "io.containerd.grpc.v1.cri/containers",
    "io.containerd.grpc.v1.cri/sandboxes",
    "io.containerd.runtime.v2.task",
    "tmpmounts",
)

CONTAINERD_CONFIG = """\
version = 2
root = "{containerd_root}"
state = "{state}"
disabled_plugins = ["io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
                    "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
                    "io.containerd.tracing.processor.v1.otlp"{disabled}]

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/containerd/opt"
"""

CRI_CONFIG = """
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  # The kubelet asks for oom_score_adj -998 for sandboxes; this machine refuses lowering it.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{root}/cni/net.d"
"""
