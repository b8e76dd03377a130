"""The operator as the chart installed it: a Deployment in datasetjob-system, running the
operator image under the chart's ServiceAccount and RBAC (a missing permission fails the
tests that need it)."""

from __future__ import annotations

from tests.e2e.harness.addons import RELEASE, SYSTEM_NAMESPACE

SELECTOR = "app.kubernetes.io/component=operator"


class ChartOperator:
    def __init__(self, cluster):
        self.cluster = cluster
        self._killed: set[str] = set()

    def pods(self) -> list:
        return self.cluster.core.list_namespaced_pod(SYSTEM_NAMESPACE, label_selector=SELECTOR).items

    def pod_name(self) -> str:
        """The running, ready operator pod (waits for it)."""

        def ready():
            for p in self.pods():
                if p.metadata.name in self._killed or p.metadata.deletion_timestamp:
                    continue
                conds = {c.type: c.status for c in (p.status.conditions or [])}
                if p.status.phase == "Running" and conds.get("Ready") == "True":
                    return p.metadata.name
            return None

        return self.cluster.wait_for(ready, timeout=120, what="a ready operator pod", namespace=SYSTEM_NAMESPACE)

    def kill(self) -> None:
        """Deletes the operator pod with no grace period: no chance to clean up, like a node
        failure. The Deployment starts a new one."""
        name = self.pod_name()
        self._killed.add(name)
        self.cluster.kubectl(
            "delete", "pod", name, "-n", SYSTEM_NAMESPACE, "--grace-period=0", "--force", "--wait=false"
        )

    def start(self) -> ChartOperator:
        """Waits until a (new) operator pod is ready."""
        self.pod_name()
        return self

    def log_tail(self, lines: int = 60) -> str:
        try:
            return self.cluster.pod_log(SYSTEM_NAMESPACE, self.pod_name(), tail=lines)
        except Exception as exc:  # noqa: BLE001 - diagnostics never fail a report
            return f"(no operator log: {exc})"

    @property
    def metrics_url(self) -> str:
        svc = self.cluster.core.read_namespaced_service(f"{RELEASE}-metrics", SYSTEM_NAMESPACE)
        return f"http://{svc.spec.cluster_ip}:{svc.spec.ports[0].port}/metrics"
