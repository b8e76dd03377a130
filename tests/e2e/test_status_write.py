"""The operator's write step against a real API server: a status write conditioned on the
resourceVersion the decision was read at, and events only after that write landed."""

from __future__ import annotations

from datasetjob_operator.apply import Target, apply
from datasetjob_operator.kube import Kube
from datasetjob_operator.reconcile import Decision, Event
from datasetjob_operator.status import DatasetJobStatus
from tests.e2e.test_operator import GROUP, PLURAL, VERSION, get, wait_phase

INVALID = {
    "apiVersion": f"{GROUP}/{VERSION}",
    "kind": "DatasetJob",
    "metadata": {"name": "stale"},
    # Valid for the API server, refused by the operator (duplicate item ids): it fails
    # once, creates nothing and stays quiet.
    "spec": {
        "items": {"product": {"symbol": ["A", "B"], "date": ["d1", "d2"]}, "idTemplate": "{symbol}"},
        "shards": 1,
        "generator": {"image": "datasetjob/worker:0.1.0", "function": "m:f"},
    },
}


def _events(cluster, namespace: str, reason: str) -> list[dict]:
    items = cluster.rest.get(f"/api/v1/namespaces/{namespace}/events")["items"]
    return [e for e in items if e.get("reason") == reason and e["involvedObject"]["name"] == "stale"]


def test_a_decision_made_from_a_stale_view_writes_nothing_and_posts_no_event(cluster, operator, namespace):
    cluster.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, INVALID)
    obj = wait_phase(cluster, operator, namespace, "stale", "Failed")
    kube = Kube(cluster.api_client)
    stored = obj["status"]
    current = obj["metadata"]["resourceVersion"]
    stale_rv = str(int(current) - 1)

    def decision(message: str, reason: str) -> Decision:
        status = DatasetJobStatus.from_dict(stored)
        status.message = message
        return Decision(status=status, events=[Event("Normal", reason, message)])

    stale = Target(namespace, "stale", obj["metadata"]["uid"], stale_rv, stored)
    assert apply(kube, stale, decision("from a stale view", "StaleDecision")) is False
    assert get(cluster, namespace, "stale")["status"]["message"] == stored["message"]
    assert _events(cluster, namespace, "StaleDecision") == []

    fresh = Target(namespace, "stale", obj["metadata"]["uid"], current, stored)
    assert apply(kube, fresh, decision("from the current view", "FreshDecision")) is True
    assert get(cluster, namespace, "stale")["status"]["message"] == "from the current view"
    assert [e["message"] for e in _events(cluster, namespace, "FreshDecision")] == ["from the current view"]
