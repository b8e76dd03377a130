"""Kueue's controller manager against the test cluster, as a local process (test code only).

The binary and Kueue's own manifests come from `scripts/build-kueue.sh` (the version pinned as
KUEUE_VERSION in scripts/versions.env): the binary in the binary cache, the CRDs and webhook
manifests from the same module in the Go module cache. What `start()` does:

- applies Kueue's CRDs (server-side: they are too large for the last-applied annotation);
- issues a serving certificate for 127.0.0.1 from the cluster's CA, so the API server, which
  runs on this host, reaches the webhooks by URL on loopback (no Service, no cert manager:
  Kueue's internal certificate management is off);
- runs the controller with a config of its own: webhooks on a free loopback port, metrics and
  probes on loopback, no leader election, batch/job as the only integration, and only Jobs in
  namespaces labelled `datagen.dev/kueue=true` managed;
- registers the webhooks of Kueue's own kinds and of batch/v1 Jobs (the other integrations'
  webhooks have no handler here), rewritten to that URL and, for Jobs, limited to the labelled
  namespaces, so the rest of the cluster never waits on Kueue.

`stop()` takes the webhooks away first (nothing may call a stopped webhook), stops the process
and removes the Kueue objects and CRDs, so later tests in the same cluster see no trace.
"""

from __future__ import annotations

import base64
import copy
import shutil
import socket
import ssl
import tempfile
import time
from pathlib import Path

import yaml

from tests.build_cache import kueue_paths

from .cluster import Component, free_port, issue_serving_cert, tail_file
from .rest import ApiError, KubeRest

NAMESPACE_LABEL = ("datagen.dev/kueue", "true")
GROUP = "kueue.x-k8s.io"
API = f"/apis/{GROUP}/v1beta2"
MUTATING = "dsj-e2e-kueue-mutating"
VALIDATING = "dsj-e2e-kueue-validating"
REPO_ROOT = Path(__file__).resolve().parents[3]


class KueueError(RuntimeError):
    """Kueue is not built, or its controller did not become ready."""


def _served_by_this_kueue(webhook: dict) -> bool:
    """Webhooks of Kueue's own kinds and of batch/v1 Jobs: the only ones this config serves."""
    for rule in webhook.get("rules") or []:
        groups, resources = rule.get("apiGroups") or [], rule.get("resources") or []
        if GROUP in groups or ("batch" in groups and "jobs" in resources):
            return True
    return False


def webhook_configurations(manifests: list[dict], url: str, ca_pem: bytes) -> list[dict]:
    """Kueue's webhook configurations, reached at `url` and limited as the module docstring says."""
    out = []
    for doc in manifests:
        if not doc or doc.get("kind") not in ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"):
            continue
        doc = copy.deepcopy(doc)
        doc["metadata"] = {
            "name": MUTATING if doc["kind"].startswith("Mutating") else VALIDATING,
            "labels": {"app.kubernetes.io/part-of": "dsj-e2e-kueue"},
        }
        webhooks = []
        for hook in doc.get("webhooks") or []:
            if not _served_by_this_kueue(hook):
                continue
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": url + path, "caBundle": base64.b64encode(ca_pem).decode()}
            if any("batch" in (r.get("apiGroups") or []) for r in hook["rules"]):
                hook["namespaceSelector"] = {"matchLabels": dict([NAMESPACE_LABEL])}
            hook["timeoutSeconds"] = 10
            webhooks.append(hook)
        doc["webhooks"] = webhooks
        out.append(doc)
    return out


def controller_config(webhook_port: int, metrics_port: int, health_port: int, cert_dir: Path) -> dict:
    key, value = NAMESPACE_LABEL
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": "kueue-system",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health_port}"},
        "metrics": {"bindAddress": f"127.0.0.1:{metrics_port}"},
        "webhook": {"port": webhook_port, "host": "127.0.0.1", "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "manageJobsWithoutQueueName": False,
        "managedJobsNamespaceSelector": {"matchLabels": {key: value}},
        "integrations": {"frameworks": ["batch/job"]},
    }


class Kueue:
    """Kueue running against an E2ECluster; `start()` and `stop()` as described above."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.binary, self.source = kueue_paths()
        self.root: Path | None = None
        self.component: Component | None = None
        self.rest: KubeRest = cluster.rest
        self.timings: dict[str, float] = {}

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> Kueue:
        crds = sorted((self.source / "config" / "components" / "crd" / "bases").glob("*.yaml"))
        if not self.binary.exists() or not crds:
            raise KueueError(f"Kueue is not built ({self.binary}); run scripts/build-kueue.sh")
        t0 = time.monotonic()
        self.root = Path(tempfile.mkdtemp(prefix="dsj-kueue-"))
        try:
            self._start(crds)
        except BaseException:
            self.stop()
            raise
        self.timings["total"] = time.monotonic() - t0
        return self

    def _start(self, crds: list[Path]) -> None:
        t = time.monotonic()
        for crd in crds:
            self.cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd))
        for crd in crds:
            name = yaml.safe_load(crd.read_text())["metadata"]["name"]
            self.cluster.wait_crd_established(name)
        self.timings["crds"] = time.monotonic() - t

        cp = self.cluster.control_plane
        cert_dir = self.root / "certs"
        cert_dir.mkdir()
        crt, key = issue_serving_cert(cp.root / "pki", "kueue-webhook", "kueue-webhook", ips=("127.0.0.1",))
        shutil.copy(crt, cert_dir / "tls.crt")
        shutil.copy(key, cert_dir / "tls.key")

        self.webhook_port, metrics_port, self.health_port = free_port(), free_port(), free_port()
        config = self.root / "config.yaml"
        config.write_text(
            yaml.safe_dump(controller_config(self.webhook_port, metrics_port, self.health_port, cert_dir))
        )
        t = time.monotonic()
        kueue = [
            str(self.binary),
            f"--config={config}",
            f"--kubeconfig={cp.kubeconfig}",
            # The on-demand visibility API server would bind a fixed port on every interface.
            "--feature-gates=VisibilityOnDemand=false",
            "--zap-log-level=2",
        ]
        self.component = Component("kueue", self._with_metrics_certs(kueue, cert_dir), self.root / "kueue.log")
        self.component.start()
        self._wait_ready()
        self.timings["controller ready"] = time.monotonic() - t

        manifests = list(
            yaml.safe_load_all((self.source / "config" / "components" / "webhook" / "manifests.yaml").read_text())
        )
        for doc in webhook_configurations(manifests, f"https://127.0.0.1:{self.webhook_port}", cp.ca_file.read_bytes()):
            plural = (
                "mutatingwebhookconfigurations"
                if doc["kind"].startswith("Mutating")
                else "validatingwebhookconfigurations"
            )
            self.rest.post(f"/apis/admissionregistration.k8s.io/v1/{plural}", doc)

    def _with_metrics_certs(self, argv: list[str], cert_dir: Path) -> list[str]:
        """Without its internal certificate management Kueue reads its metrics certificate from
        the fixed path /etc/kueue/metrics/certs. The machine's /etc is not ours to write: Kueue
        runs in a mount namespace of its own where /etc is an overlay (upper layer on a tmpfs),
        so the files exist only for Kueue and vanish with its process."""
        layer = self.root / "etc-overlay"
        layer.mkdir()
        script = (
            'set -e; mount -t tmpfs tmpfs "$1"; mkdir "$1/upper" "$1/work"; '
            'mount -t overlay overlay -o "lowerdir=/etc,upperdir=$1/upper,workdir=$1/work" /etc; '
            'mkdir -p /etc/kueue/metrics/certs; cp "$2/tls.crt" "$2/tls.key" /etc/kueue/metrics/certs/; '
            'shift 2; exec "$@"'
        )
        return [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "kueue-in-own-mounts",
            str(layer),
            str(cert_dir),
            *argv,
        ]

    def _wait_ready(self, timeout: float = 120) -> None:
        """The readiness probe answers and the webhook server speaks TLS with our certificate."""
        ctx = ssl.create_default_context(cafile=str(self.cluster.control_plane.ca_file))
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.component.running():
                raise KueueError(f"the Kueue controller exited:\n{self.log_tail(40)}")
            if self._probe_ok() and self._tls_ok(ctx):
                return
            time.sleep(0.5)
        raise KueueError(f"the Kueue controller was not ready after {timeout}s:\n{self.log_tail(40)}")

    def _probe_ok(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.health_port}/readyz", timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def _tls_ok(self, ctx: ssl.SSLContext) -> bool:
        try:
            with (
                socket.create_connection(("127.0.0.1", self.webhook_port), timeout=2) as sock,
                ctx.wrap_socket(sock, server_hostname="127.0.0.1"),
            ):
                return True
        except (OSError, ssl.SSLError):
            return False

    def stop(self) -> None:
        for plural, name in (
            ("mutatingwebhookconfigurations", MUTATING),
            ("validatingwebhookconfigurations", VALIDATING),
        ):
            self.rest.delete(f"/apis/admissionregistration.k8s.io/v1/{plural}/{name}", ok_statuses=(404,))
        running = self.component is not None and self.component.running()
        if running:  # Kueue lifts its own finalizers while it runs
            for plural in ("localqueues", "clusterqueues", "resourceflavors"):
                self._delete_all(plural)
            self._wait_no_objects(("localqueues", "clusterqueues", "resourceflavors"), timeout=10)
        if self.component is not None:
            self.component.stop()
        for plural in ("workloads", "localqueues", "clusterqueues", "resourceflavors"):
            self._drop_finalizers(plural)  # what a stopped Kueue can no longer release
        for crd in self._crd_names():
            self.cluster.kubectl("delete", f"crd/{crd}", "--ignore-not-found", "--wait=false", check=False)
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    # -- objects -------------------------------------------------------------------------
    def create(self, obj: dict) -> dict:
        """Creates a Kueue object (ResourceFlavor, ClusterQueue, LocalQueue) through the API."""
        kind = obj["kind"]
        plural = {"ResourceFlavor": "resourceflavors", "ClusterQueue": "clusterqueues", "LocalQueue": "localqueues"}[
            kind
        ]
        ns = obj["metadata"].get("namespace")
        path = f"{API}/namespaces/{ns}/{plural}" if ns else f"{API}/{plural}"
        obj = dict(obj, apiVersion=f"{GROUP}/v1beta2")
        return self.rest.post(path, obj)[1]

    def workloads(self, namespace: str) -> list[dict]:
        return self.rest.get(f"{API}/namespaces/{namespace}/workloads")["items"]

    def _list_all(self, plural: str) -> list[dict]:
        try:
            return self.rest.get(f"{API}/{plural}")["items"]
        except ApiError:
            return []  # the CRD is not there (yet, or any more)

    def _path(self, plural: str, obj: dict) -> str:
        meta = obj["metadata"]
        ns = meta.get("namespace")
        return f"{API}/namespaces/{ns}/{plural}/{meta['name']}" if ns else f"{API}/{plural}/{meta['name']}"

    def _delete_all(self, plural: str) -> None:
        for obj in self._list_all(plural):
            self.rest.delete(self._path(plural, obj), ok_statuses=(404,))

    def _wait_no_objects(self, plurals, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(self._list_all(p) for p in plurals):
            time.sleep(0.5)

    def _drop_finalizers(self, plural: str) -> None:
        for obj in self._list_all(plural):
            if obj["metadata"].get("finalizers"):
                try:
                    self.rest.patch(self._path(plural, obj), {"metadata": {"finalizers": None}}, kind="merge-patch")
                except ApiError:
                    pass

    def _crd_names(self) -> list[str]:
        names = []
        for crd in (self.source / "config" / "components" / "crd" / "bases").glob("*.yaml"):
            names.append(yaml.safe_load(crd.read_text())["metadata"]["name"])
        return names

    # -- diagnostics -------------------------------------------------------------------------
    def log_tail(self, lines: int = 60) -> str:
        if self.component is None:
            return "(Kueue was not started)"
        return tail_file(self.component.log_path, lines)
