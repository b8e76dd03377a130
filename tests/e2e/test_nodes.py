"""The cluster's nodes: every one Ready and schedulable, and pod traffic crossing nodes: from a
pod on each node, the cluster DNS, Services whose endpoints run on another node, the API server
and another node's pod by its IP."""

from __future__ import annotations

import json

from tests.e2e.harness.addons import STORAGE_NAMESPACE, image_ref
from tests.e2e.harness.e2e import condition, condition_true

PROBE = """
import json, socket
def reach(host, port):
    try:
        socket.create_connection((host, port), timeout=5).close()
        return "ok"
    except OSError as exc:
        return repr(exc)
print(json.dumps({
    "dns": socket.gethostbyname("s3.datasetjob-storage.svc.cluster.local"),
    "s3": reach("s3.datasetjob-storage.svc", 7070),
    "redis": reach("datasetjob-redis.datasetjob-system.svc", 6379),
    "api": reach("kubernetes.default.svc", 443),
    "pod": reach(PEER_IP, 7070),
}))
"""


def test_every_node_is_ready(cluster):
    nodes = cluster.core.list_node().items
    assert sorted(n.metadata.name for n in nodes) == sorted(n.node_name for n in cluster.nodes)
    for node in nodes:
        assert condition_true(node, "Ready"), (node.metadata.name, condition(node, "Ready"))
        assert not [t for t in node.spec.taints or [] if t.effect in ("NoSchedule", "NoExecute")], node.spec.taints


def test_pods_on_every_node_reach_services_dns_and_pods_on_other_nodes(cluster, namespace):
    (s3_pod,) = cluster.core.list_namespaced_pod(STORAGE_NAMESPACE, label_selector="app=s3").items
    s3_ip = cluster.core.read_namespaced_service("s3", STORAGE_NAMESPACE).spec.cluster_ip
    image = image_ref(cluster.local.addons.images, "worker")
    for node in cluster.nodes:
        name = f"probe-{node.node_name}"
        cluster.rest.post(
            f"/api/v1/namespaces/{namespace}/pods",
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": name},
                "spec": {
                    "nodeName": node.node_name,  # straight onto that node, past the scheduler
                    "restartPolicy": "Never",
                    "containers": [
                        {
                            "name": "probe",
                            "image": image,
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["python", "-c", PROBE.replace("PEER_IP", repr(s3_pod.status.pod_ip))],
                        }
                    ],
                },
            },
        )
    for node in cluster.nodes:
        name = f"probe-{node.node_name}"
        done = cluster.wait_for_object(
            f"/api/v1/namespaces/{namespace}/pods/{name}",
            lambda p: p["status"].get("phase") in ("Succeeded", "Failed"),
            timeout=120,
        )
        log = cluster.pod_log(namespace, name)
        assert done["status"]["phase"] == "Succeeded", log
        report = json.loads(log.strip().splitlines()[-1])
        assert report == {"dns": s3_ip, "s3": "ok", "redis": "ok", "api": "ok", "pod": "ok"}, (node.node_name, report)
