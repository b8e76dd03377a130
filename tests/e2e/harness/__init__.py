"""A real local Kubernetes control plane for the e2e tests and `make cluster`.

- `cluster.ControlPlane`: etcd + kube-apiserver + kube-controller-manager as local processes
  (binaries built by `scripts/build-control-plane.sh`, versions in `scripts/versions.env`).
- `kubelet.ProcessKubelet`: a stand-in kubelet that runs pod containers as local processes.
- `e2e.E2ECluster`: both of the above for tests: clients, kubectl/helm, waiting with
  timeouts and failure reports (objects, events, pod logs, component logs).
- `rest.KubeRest`: a small stdlib JSON client for the API (what the kubelet uses).

Test code only; nothing here is imported by the product packages.
"""

from .cluster import (
    BinariesMissing,
    ControlPlane,
    ControlPlaneError,
    binary_paths,
    cache_dir,
    read_versions,
)
from .e2e import E2ECluster, WaitTimeout, condition, condition_true
from .kubelet import ProcessKubelet
from .rest import ApiError, KubeRest

__all__ = [
    "ApiError",
    "BinariesMissing",
    "E2ECluster",
    "KubeRest",
    "WaitTimeout",
    "condition",
    "condition_true",
    "ControlPlane",
    "ControlPlaneError",
    "ProcessKubelet",
    "binary_paths",
    "cache_dir",
    "read_versions",
]
