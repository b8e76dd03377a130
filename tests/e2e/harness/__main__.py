"""`python -m tests.e2e.harness` (what `make cluster` runs).

Starts etcd + kube-apiserver + kube-controller-manager and the process kubelet in the
foreground, prints `export KUBECONFIG=...`, and stops everything on Ctrl-C / SIGTERM.
The admin kubeconfig is also copied to `.cluster/kubeconfig` in the current directory
(self-contained: the CA is embedded), so other shells can use it while this runs.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

from .cluster import BinariesMissing, ControlPlane, ControlPlaneError, binary_paths, kubectl_path
from .kubelet import ProcessKubelet


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.e2e.harness", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kubeconfig-out", default=".cluster/kubeconfig",
                    help="where to copy the admin kubeconfig (default: %(default)s)")
    ap.add_argument("--state-dir", default=None,
                    help="keep etcd data, certificates and logs here instead of a temp dir")
    ap.add_argument("--no-kubelet", action="store_true", help="do not start the process kubelet")
    ap.add_argument("--image", action="append", default=[], metavar="PREFIX=CMD",
                    help='map an image prefix to an entrypoint, e.g. "acme/gen=python -m gen" (repeatable)')
    args = ap.parse_args(argv)

    images = {}
    for item in args.image:
        prefix, _, cmd = item.partition("=")
        images[prefix] = cmd.split()

    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())

    state = Path(args.state_dir).resolve() if args.state_dir else None
    cp = ControlPlane(root=state, keep=state is not None)
    kubelet = None
    t0 = time.monotonic()
    try:
        print("starting etcd, kube-apiserver, kube-controller-manager ...", flush=True)
        cp.start()
        if not args.no_kubelet:
            kubelet_root = (state / "kubelet") if state else None
            kubelet = ProcessKubelet(cp.kubeconfig, root=kubelet_root, image_commands=images).start()
        out = Path(args.kubeconfig_out).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(cp.kubeconfig.read_text())
        out.chmod(0o600)
        print(f"control plane {cp.kubernetes_version} ready in {time.monotonic() - t0:.1f}s "
              f"({json.dumps({k: round(v, 2) for k, v in cp.timings.items()})})")
        print(f"API server: {cp.server}   logs: {cp.log_dir}")
        if kubelet:
            print(f"process kubelet: node {kubelet.node_name}, pod logs under {kubelet.root / 'logs'}")
        print()
        print(f"export KUBECONFIG={out}")
        kubectl = kubectl_path()
        if kubectl and not kubectl.endswith("/kubectl"):
            print(f"alias kubectl={kubectl}   # a client within the supported version skew")
        print(f"alias helm={binary_paths()['helm']}")
        print()
        if kubelet:
            print(f"pod logs: `kubectl logs POD`, or the files under {kubelet.root / 'logs'}")
        print("Ctrl-C stops everything.", flush=True)
        while not stop.wait(1.0):
            dead = [c.name for c in cp.components.values() if not c.running()]
            if dead:
                print(f"component(s) exited: {', '.join(dead)}\n{cp.format_logs_tail(30)}", file=sys.stderr)
                return 1
        print("stopping ...", flush=True)
        return 0
    except BinariesMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ControlPlaneError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if kubelet is not None:
            kubelet.stop(delete_node=True)
        cp.stop()


if __name__ == "__main__":
    sys.exit(main())
