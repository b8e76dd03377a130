"""The child Job handler: a generate Job that finishes reconciles its DatasetJob at once (the
combine Job is created on the Job's own event, not on a later timer tick), once per Job."""

import kopf

from datasetjob_operator import handlers
from datasetjob_operator.naming import LABEL_DATASETJOB

SPEC = {
    "items": {"range": {"stop": 4}},
    "shards": 2,
    "generator": {"image": "acme/gen:1", "function": "gen.module:fn"},
    "output": {"uri": "s3://bucket/out"},
}


class FakeKube:
    """The API server as far as a reconcile needs it: every write lands; one DatasetJob."""

    def __init__(self):
        self.calls = []
        self.status = {}

    def create(self, obj):
        self.calls.append(("create", obj["kind"], obj["metadata"]["name"]))
        return True

    def delete_job(self, namespace, name):
        self.calls.append(("delete_job", name))

    def patch_job(self, namespace, name, patch):
        self.calls.append(("patch_job", name))

    def patch_status(self, namespace, name, resource_version, status_patch):
        self.calls.append(("patch_status", status_patch.get("phase")))
        self.status = {**self.status, **status_patch}
        return True

    def event(self, namespace, name, uid, type_, reason, message):
        self.calls.append(("event", reason))

    def secret_exists(self, namespace, name):
        return True

    def datasetjob(self, namespace, name):
        self.calls.append(("get", name))
        meta = {"name": name, "uid": "dsj-uid", "generation": 1, "resourceVersion": "2", "annotations": {}}
        return {"metadata": meta, "spec": SPEC, "status": self.status}


def operator_memo(monkeypatch) -> kopf.Memo:
    monkeypatch.setattr(handlers, "api_client", lambda: None)
    monkeypatch.setattr(handlers, "Kube", lambda api: FakeKube())
    monkeypatch.setattr(handlers.metrics, "serve", lambda port: None)
    monkeypatch.setattr(handlers, "_FINISHED_JOBS", handlers._Once())
    memo = kopf.Memo()
    handlers.configure(settings=kopf.OperatorSettings(), memo=memo)
    return memo


def finished_generate_job(memo) -> dict:
    name = memo.kube.status["jobs"]["generate"]
    status = {
        "completedIndexes": "0-1",
        "succeeded": 2,
        "active": 0,
        "conditions": [{"type": "Complete", "status": "True"}],
    }
    return {"metadata": {"name": name, "labels": {LABEL_DATASETJOB: "smf"}}, "spec": {}, "status": status}


def test_a_finished_generate_job_creates_the_combine_job_on_its_own_event(monkeypatch):
    memo = operator_memo(monkeypatch)
    handlers.reconcile(
        meta={"generation": 1, "resourceVersion": "1", "annotations": {}},
        spec=SPEC,
        status={},
        uid="dsj-uid",
        name="smf",
        namespace="ml",
        memo=memo,
        jobs_by_owner={},
        pods_by_owner={},
    )
    assert memo.kube.status["phase"] == "Generating"
    job = finished_generate_job(memo)
    for _ in range(2):  # a finished Job's later changes do not reconcile its owner again
        handlers.child_job_finished(
            uid="job-uid",
            namespace="ml",
            labels=job["metadata"]["labels"],
            status=job["status"],
            memo=memo,
            jobs_by_owner={("ml", "smf"): [job]},
            pods_by_owner={},
        )
    assert [c for c in memo.kube.calls if c[0] == "get"] == [("get", "smf")]
    created = [c[2] for c in memo.kube.calls if c[:2] == ("create", "Job")]
    assert created[-1].endswith("-combine")
    assert memo.kube.status["phase"] == "Combining"


def ending(*types):
    return {"conditions": [{"type": t, "status": "True"} for t in types]}


def test_only_a_change_that_ends_a_job_triggers_its_owner():
    for status in (ending("SuccessCriteriaMet"), ending("Complete"), ending("FailureTarget"), ending("Failed")):
        assert handlers._just_finished(type="MODIFIED", status=status)
    assert not handlers._just_finished(type="MODIFIED", status={"active": 2})
    not_yet = {"conditions": [{"type": "Complete", "status": "False"}]}
    assert not handlers._just_finished(type="MODIFIED", status=not_yet)
    # The listing at startup: the resume handler reconciles every DatasetJob anyway.
    assert not handlers._just_finished(type=None, status=ending("Complete"))


def test_each_ending_condition_triggers_once(monkeypatch):
    memo = operator_memo(monkeypatch)
    job = {"metadata": {"name": "smf-gen", "labels": {LABEL_DATASETJOB: "smf"}}, "spec": {}, "status": {}}
    for status in (
        ending("SuccessCriteriaMet"),
        ending("SuccessCriteriaMet", "Complete"),
        ending("SuccessCriteriaMet", "Complete"),
    ):
        handlers.child_job_finished(
            uid="job-uid",
            namespace="ml",
            labels=job["metadata"]["labels"],
            status=status,
            memo=memo,
            jobs_by_owner={},
            pods_by_owner={},
        )
    assert [c for c in memo.kube.calls if c[0] == "get"] == [("get", "smf")] * 2
