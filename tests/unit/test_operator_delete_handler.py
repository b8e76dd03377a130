"""The delete handler: a deleted DatasetJob leaves nothing behind in the operator's memory,
and the handler adds no finalizer of its own."""

import kopf

from datasetjob_operator import handlers

SPEC = {
    "items": {"fromConfigMap": {"name": "symbols", "key": "list"}},
    "shards": 2,
    "queueName": "team-a",
    "generator": {"image": "acme/gen:1", "function": "gen.module:fn"},
    "output": {"uri": "s3://bucket/out"},
}


class FakeKube:
    """The API server as far as one reconcile needs it: every write lands."""

    def __init__(self):
        self.calls = []

    def create(self, obj):
        self.calls.append(("create", obj["kind"]))
        return True

    def delete_job(self, namespace, name):
        self.calls.append(("delete_job", name))

    def patch_job(self, namespace, name, patch):
        self.calls.append(("patch_job", name))

    def patch_status(self, namespace, name, resource_version, status_patch):
        self.calls.append(("patch_status", status_patch.get("phase")))
        return True

    def event(self, namespace, name, uid, type_, reason, message):
        self.calls.append(("event", reason))

    def config_map_key(self, namespace, name, key):
        return "AAPL\nMSFT\nNVDA"

    def workloads(self, namespace):
        return []


def operator_memo(monkeypatch) -> kopf.Memo:
    """The memo as the operator's startup handler fills it, talking to FakeKube."""
    monkeypatch.setattr(handlers, "api_client", lambda: None)
    monkeypatch.setattr(handlers, "Kube", lambda api: FakeKube())
    monkeypatch.setattr(handlers.metrics, "serve", lambda port: None)
    memo = kopf.Memo()
    handlers.configure(settings=kopf.OperatorSettings(), memo=memo)
    return memo


def reconcile(memo, uid, name):
    # A suspended Job of a queued DatasetJob makes the reconcile read Kueue's reasons too.
    queued_job = {"metadata": {"name": f"{name}-old"}, "spec": {"suspend": True}, "status": {}}
    handlers.reconcile(
        meta={"generation": 1, "resourceVersion": "1", "annotations": {}},
        spec=SPEC,
        status={},
        uid=uid,
        name=name,
        namespace="ml",
        memo=memo,
        jobs_by_owner={("ml", name): [queued_job]},
        pods_by_owner={},
    )


def test_a_reconciled_datasetjob_is_forgotten_when_deleted(monkeypatch):
    memo = operator_memo(monkeypatch)
    reconcile(memo, "uid-1", "smf")
    assert ("patch_status", "Generating") in memo.kube.calls  # the reconcile did run and land
    assert len(memo.memory) > 0
    handlers.forget(uid="uid-1", name="smf", namespace="ml", memo=memo)
    assert len(memo.memory) == 0


def test_memory_follows_the_datasetjobs_that_exist(monkeypatch):
    memo = operator_memo(monkeypatch)
    reconcile(memo, "uid-0", "kept")
    one_object = len(memo.memory)
    for i in range(1, 50):
        reconcile(memo, f"uid-{i}", f"smf-{i}")
        handlers.forget(uid=f"uid-{i}", name=f"smf-{i}", namespace="ml", memo=memo)
    assert len(memo.memory) == one_object


def test_the_delete_handler_is_registered_and_needs_no_finalizer():
    datasetjobs = kopf.Resource(group=handlers.API_GROUP, version=handlers.API_VERSION, plural=handlers.PLURAL)
    changing = kopf.get_default_registry()._changing.get_resource_handlers(datasetjobs)
    deleting = [h for h in changing if h.fn is handlers.forget]
    assert len(deleting) == 1 and deleting[0].reason == "delete"
    # Optional: deletion never waits for it, and the finalizer stays the timers' business alone.
    assert not any(h.requires_finalizer for h in changing)
