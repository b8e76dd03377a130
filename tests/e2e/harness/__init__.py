"""A real local Kubernetes cluster for the e2e tests and `make cluster` (test code only).

Split by concern:
- `cluster`: binaries and versions, PKI, and the control plane (etcd, kube-apiserver,
  kube-controller-manager, kube-scheduler) as local processes;
- `network`: the node's own network namespace and its link to the host;
- `node` (+ node-init.sh): the real node, kubelet and kube-proxy on containerd + runc with
  bridge CNI, in namespaces of its own so stopping it leaves nothing behind;
- `images`: the project's image archives from `make images`, preloaded into the node;
- `image_store`: the node's containerd root, kept between starts so only changed archives
  are imported;
- `addons`: CoreDNS, the in-cluster S3 server and the chart, installed as a user would;
- `local_cluster.LocalCluster`: all of the above, started and stopped as one;
- `e2e.E2ECluster`: what tests hold: clients, kubectl/helm, waiting, failure reports;
- `kueue.Kueue`: Kueue's controller (scripts/build-kueue.sh) against a running cluster, its
  webhooks reached by URL on loopback, for the queueing scenario;
- `rest.KubeRest`: a small stdlib JSON client for the API.

Nothing here is imported by the product packages.
"""

from tests.build_cache import cache_dir, control_plane_binaries, read_versions

from .addons import S3Access
from .cluster import BinariesMissing, ControlPlane, ControlPlaneError
from .e2e import E2ECluster, WaitTimeout, condition, condition_true
from .local_cluster import LocalCluster
from .rest import ApiError, KubeRest

__all__ = [
    "ApiError",
    "BinariesMissing",
    "ControlPlane",
    "ControlPlaneError",
    "E2ECluster",
    "KubeRest",
    "LocalCluster",
    "S3Access",
    "WaitTimeout",
    "control_plane_binaries",
    "cache_dir",
    "condition",
    "condition_true",
    "read_versions",
]
