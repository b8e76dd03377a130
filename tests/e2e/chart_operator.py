"""The operator as the chart installed it: a Deployment in datasetjob-system, running the
operator image under the chart's ServiceAccount and RBAC (a missing permission fails the
tests that need it). Its replicas peer (Kopf peering): `pod_name`, `kill`, the log and the
metrics are those of the active replica."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from tests.e2e.harness.addons import RELEASE, SYSTEM_NAMESPACE

SELECTOR = "app.kubernetes.io/component=operator"


def live_peers(peering: dict, now: datetime | None = None) -> dict[str, int]:
    """Pod name -> priority of each replica whose keep-alive has not expired (the identity
    the operator gives Kopf is "<pod name>/<pid>")."""
    now = now or datetime.now(UTC)
    peers = {}
    for identity, info in ((peering or {}).get("status") or {}).items():
        if not isinstance(info, dict) or "lastseen" not in info:
            continue
        seen = datetime.fromisoformat(info["lastseen"].replace("Z", "+00:00"))
        if seen.tzinfo is None:
            seen = seen.replace(tzinfo=UTC)
        if seen + timedelta(seconds=int(info.get("lifetime", 60))) > now:
            peers[identity.split("/", 1)[0]] = int(info.get("priority", 0))
    return peers


class ChartOperator:
    def __init__(self, cluster):
        self.cluster = cluster
        self._killed: set[str] = set()

    def pods(self) -> list:
        return self.cluster.core.list_namespaced_pod(SYSTEM_NAMESPACE, label_selector=SELECTOR).items

    def ready_pods(self) -> list[str]:
        names = []
        for p in self.pods():
            if p.metadata.name in self._killed or p.metadata.deletion_timestamp:
                continue
            conds = {c.type: c.status for c in (p.status.conditions or [])}
            if p.status.phase == "Running" and conds.get("Ready") == "True":
                names.append(p.metadata.name)
        return names

    def peering(self) -> dict:
        return self.cluster.custom.get_cluster_custom_object("kopf.dev", "v1", "clusterkopfpeerings", RELEASE)

    def active(self) -> str | None:
        """The ready replica that acts: the live peer of the highest priority (Kopf pauses the
        others). None while there is none, e.g. before the dead one's record expires."""
        ready = set(self.ready_pods())
        peers = live_peers(self.peering())
        if not peers:
            return None
        top = max(peers, key=lambda name: peers[name])
        return top if top in ready else None

    def pod_name(self) -> str:
        """The active operator pod (waits for it)."""
        return self.cluster.wait_for(
            self.active, timeout=120, what="an active operator pod", namespace=SYSTEM_NAMESPACE
        )

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
        """The active replica's metrics (the counters are its own; a standby's stay at zero)."""
        svc = self.cluster.core.read_namespaced_service(f"{RELEASE}-metrics", SYSTEM_NAMESPACE)
        ip = self.cluster.core.read_namespaced_pod(self.pod_name(), SYSTEM_NAMESPACE).status.pod_ip
        return f"http://{ip}:{svc.spec.ports[0].port}/metrics"
