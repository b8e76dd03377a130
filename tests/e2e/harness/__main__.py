"""`python -m tests.e2e.harness` (what `make cluster` runs).

Starts a cluster in the foreground: etcd, kube-apiserver, kube-controller-manager,
kube-scheduler, real nodes (`--nodes`, default 1: each a kubelet on its own containerd + runc,
with bridge CNI and kube-proxy, pod traffic routed between the nodes), CoreDNS,
an S3 server pod, and the chart (the operator and its Redis) with the default output on that
S3 server. Prints `export KUBECONFIG=...`; Ctrl-C / SIGTERM stops everything and leaves the
machine as it found it. The admin kubeconfig is also copied to `.cluster/kubeconfig`
(self-contained), so other shells can use it while this runs.

`python -m tests.e2e.harness clean` removes what a killed run left behind, and the node's
image store (the containerd root kept between starts, see image_store.py) when no run uses it.
`python -m tests.e2e.harness install -n NS` installs the S3 server, the chart and the output
credentials of NS on the cluster of $KUBECONFIG (e.g. kind, with the images loaded), the same
way `make cluster` does.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

from tests.build_cache import control_plane_binaries

from .addons import BUCKET, STORAGE_NAMESPACE, SYSTEM_NAMESPACE, AddonError, Addons
from .cluster import ControlPlaneError, kubectl_path
from .image_store import remove_stores
from .images import ImagesMissing, image_archives
from .local_cluster import LocalCluster, clean_leftovers
from .network import NetworkError


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tests.e2e.harness", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("command", nargs="?", choices=["up", "clean", "install"], default="up")
    ap.add_argument(
        "-n",
        "--namespace",
        default="default",
        help="install: the namespace whose DatasetJobs get the output credentials",
    )
    ap.add_argument(
        "--kubeconfig-out",
        default=".cluster/kubeconfig",
        help="where to copy the admin kubeconfig (default: %(default)s)",
    )
    ap.add_argument(
        "--state-dir", default=None, help="keep certificates, logs and node state here instead of a temp dir"
    )
    ap.add_argument("--no-chart", action="store_true", help="do not install the chart")
    ap.add_argument("--nodes", type=int, default=1, help="how many nodes (default: %(default)s)")
    args = ap.parse_args(argv)

    if args.command == "clean":
        removed = clean_leftovers(min_age=0)
        stores, in_use = remove_stores()
        removed += [f"image store {s}" for s in stores]
        print(f"removed: {', '.join(removed) or 'nothing'}")
        if in_use:
            print(f"kept (a running node uses it): {', '.join(in_use)}")
        return 0
    if args.command == "install":
        return install(args.namespace)

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    state = Path(args.state_dir).resolve() if args.state_dir else None
    if args.nodes < 1:
        ap.error(f"--nodes must be 1 or more, not {args.nodes}")
    cluster = LocalCluster(state_dir=state, keep=state is not None, install_chart=not args.no_chart, nodes=args.nodes)
    try:
        print("starting the control plane, the node and the add-ons ...", flush=True)
        cluster.start()
        cp, node, nodes = cluster.control_plane, cluster.node, cluster.nodes
        out = Path(args.kubeconfig_out).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(cp.kubeconfig.read_text())
        out.chmod(0o600)
        print(
            f"cluster {cp.kubernetes_version} ready in {cluster.timings['total']:.1f}s "
            f"({json.dumps({k: round(v, 1) for k, v in cluster.timings.items()})})"
        )
        where = node.store.root if node.store else "a throw-away root (every kept one is in use)"
        print(
            f"node images: {len(node.imported)} of {len(node.images)} imported "
            f"({', '.join(node.imported) or 'no archive changed'}) into {where}"
        )
        if len(nodes) > 1:  # where each node's start went: copying the store, containerd, images, kubelet
            for n in nodes:
                imported = f"; imported {', '.join(n.imported)}" if n.imported else ""
                print(f"node {n.node_name}: {json.dumps({k: round(v, 1) for k, v in n.timings.items()})}{imported}")
        names = ", ".join(f"{n.node_name} ({n.addresses.node_ip})" for n in nodes)
        print(f"API server: {cp.server}   nodes: {names}")
        print(f"logs: {cp.log_dir} and {', '.join(str(n.log_dir) for n in nodes)}")
        if not args.no_chart:
            s3 = cluster.s3
            print(f"operator and Redis: namespace {SYSTEM_NAMESPACE}; default output: s3://{BUCKET}/<namespace>/<name>")
            print(
                f"S3 server: {s3.endpoint_url} in pods, {s3.host_endpoint_url} from this machine "
                f"(access key {s3.access_key}, secret in {STORAGE_NAMESPACE}/s3-root)"
            )
        print()
        print(f"export KUBECONFIG={out}")
        kubectl = kubectl_path()
        if kubectl and not kubectl.endswith("/kubectl"):
            print(f"alias kubectl={kubectl}   # a client within the supported version skew")
        print(f"alias helm={control_plane_binaries()['helm']}")
        print()
        print("Ctrl-C stops everything.", flush=True)
        while not stop.wait(1.0):
            dead = [c.name for c in cp.components.values() if not c.running()]
            dead += [n.node_name for n in nodes if not n.running()]
            if dead:
                logs = "\n".join(n.format_logs_tail(30) for n in nodes)
                print(f"exited: {', '.join(dead)}\n{cp.format_logs_tail(30)}\n{logs}", file=sys.stderr)
                return 1
        print("stopping ...", flush=True)
        return 0
    except (ControlPlaneError, ImagesMissing, NetworkError, AddonError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, ImagesMissing) else 1
    finally:
        cluster.stop()
        print("stopped; nothing of the cluster is left running.", flush=True)


def install(namespace: str) -> int:
    """The add-ons of `make cluster` except CoreDNS, on the current kubeconfig's cluster."""
    try:
        addons = Addons(dict(os.environ), image_archives())
        s3 = addons.install_s3()
        addons.wait_for_s3()
        addons.install_chart()
        addons.kubectl("create", "namespace", namespace, check=False)
        addons.add_credentials(namespace)
    except (ImagesMissing, AddonError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"installed: S3 server {s3.endpoint_url} (bucket {s3.bucket}), the chart in {SYSTEM_NAMESPACE}, "
        f"output credentials in {namespace}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
