"""Runs that cannot go on by themselves show Stalled=True: pods that cannot start (a missing
Secret or ConfigMap, an image that cannot be pulled, no node that fits) after a grace period,
and a credentials Secret that is missing before the Job is created. Pure decisions, no cluster."""

from __future__ import annotations

import pytest

from datasetjob_operator import naming, planning
from datasetjob_operator.job_state import start_problem
from datasetjob_operator.object_memory import ObjectMemory
from datasetjob_operator.observe import observe, slim_child
from datasetjob_operator.reconcile import Observed, credentials_secret_to_check, decide
from datasetjob_operator.settings import Settings
from datasetjob_operator.status import DatasetJobStatus

SPEC = {
    "items": {"product": {"symbol": ["A", "B", "C"], "date": ["d1", "d2"]}, "idTemplate": "{symbol}:{date}"},
    "shards": 3,
    "generator": {"image": "acme/gen:1", "function": "smart_money.generate:example"},
    "output": {"uri": "s3://bucket/smf", "credentialsSecret": "s3-credentials"},
}
SETTINGS = Settings()
START = "2026-01-01T00:00:00Z"
SECRET_MISSING = ("CreateContainerConfigError", 'secret "s3-credentials" not found')


def observed(status=None, jobs=(), pods=(), now="2026-01-01T00:01:00Z", secret_found=None, spec=None) -> Observed:
    return Observed(
        name="smf",
        namespace="ml",
        uid="uid-1",
        generation=1,
        spec=spec or SPEC,
        annotations={},
        status=DatasetJobStatus.from_dict(status),
        jobs={j["metadata"]["name"]: j for j in jobs},
        pods=list(pods),
        now=now,
        credentials_secret_found=secret_found,
    )


def started() -> tuple[dict, str, str]:
    """The status right after the run started, and the names of its Jobs."""
    first = decide(observed(now=START, secret_found=True), SETTINGS)
    status = first.status.to_dict()
    run_id = status["runId"]
    return status, naming.generate_job_name("smf", run_id, "0"), naming.combine_job_name("smf", run_id, "0")


def job(name, suspend=False, labels=None, conditions=()):
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"suspend": suspend},
        "status": {"active": 3, "conditions": [{"type": c, "status": "True"} for c in conditions]},
    }


def pod(job_name, index, *, waiting=None, unschedulable=None, phase="Pending", scheduled_at=START, deleting=False):
    """A pod of `job_name`: waiting=(reason, message) for its container, unschedulable=message."""
    status: dict = {"phase": phase, "conditions": []}
    if unschedulable is not None:
        status["conditions"].append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": unschedulable,
                "lastTransitionTime": scheduled_at,
            }
        )
    else:
        status["conditions"].append({"type": "PodScheduled", "status": "True", "lastTransitionTime": scheduled_at})
        state = {"running": {"startedAt": scheduled_at}} if phase == "Running" else {}
        if waiting is not None:
            state = {"waiting": {"reason": waiting[0], "message": waiting[1]}}
        status["containerStatuses"] = [{"name": "worker", "state": state}]
    meta = {
        "name": f"{job_name}-{index}",
        "labels": {"batch.kubernetes.io/job-name": job_name},
        "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
        "creationTimestamp": START,
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:30Z"
    return {"metadata": meta, "status": status}


def conditions(decision) -> dict[str, tuple[str, str | None, str | None]]:
    return {c.type: (c.status, c.reason, c.message) for c in decision.status.conditions}


# --- pods that cannot start -------------------------------------------------------------


@pytest.mark.parametrize(
    "waiting, unschedulable, expected",
    [
        (SECRET_MISSING, None, 'CreateContainerConfigError: secret "s3-credentials" not found'),
        (
            ("CreateContainerConfigError", 'configmap "items" not found'),
            None,
            'CreateContainerConfigError: configmap "items" not found',
        ),
        (
            ("ErrImagePull", 'failed to pull image "acme/gen:1": not found'),
            None,
            'ErrImagePull: failed to pull image "acme/gen:1": not found',
        ),
        (
            ("ImagePullBackOff", 'Back-off pulling image "acme/gen:1"'),
            None,
            'ImagePullBackOff: Back-off pulling image "acme/gen:1"',
        ),
        (
            ("InvalidImageName", 'Failed to apply default image tag "Acme/Gen:1"'),
            None,
            'InvalidImageName: Failed to apply default image tag "Acme/Gen:1"',
        ),
        (
            None,
            "0/1 nodes are available: 1 Insufficient cpu.",
            "Unschedulable: 0/1 nodes are available: 1 Insufficient cpu.",
        ),
    ],
)
def test_pods_that_cannot_start_make_the_run_stalled_with_their_reason(waiting, unschedulable, expected):
    status, gen, _ = started()
    pods = [pod(gen, i, waiting=waiting, unschedulable=unschedulable) for i in range(3)]
    d = decide(observed(status, [job(gen)], pods), SETTINGS)
    message = f"3 of 3 pods cannot start: {expected}"
    assert conditions(d)["Stalled"] == ("True", "PodsCannotStart", message)
    assert conditions(d)["Progressing"][0] == "False" and conditions(d)["Ready"][0] == "False"
    # The run goes on (the pods start once the cause is fixed): the phase stays.
    assert d.status.phase == "Generating" and (d.status.reason, d.status.message) == ("PodsCannotStart", message)
    assert [(e.type, e.reason, e.message) for e in d.events] == [("Warning", "PodsCannotStart", message)]
    assert not d.create


def test_the_message_counts_the_pods_that_cannot_start_among_the_jobs_pods():
    status, gen, _ = started()
    pods = [pod(gen, i, waiting=SECRET_MISSING) for i in range(3)] + [
        pod(gen, i, phase="Running") for i in range(3, 10)
    ]
    d = decide(observed(status, [job(gen)], pods), SETTINGS)
    assert (
        conditions(d)["Stalled"][2]
        == '3 of 10 pods cannot start: CreateContainerConfigError: secret "s3-credentials" not found'
    )


@pytest.mark.parametrize(
    "now, stalled",
    [
        ("2026-01-01T00:00:10Z", False),
        ("2026-01-01T00:00:29Z", False),
        ("2026-01-01T00:00:30Z", True),
        ("2026-01-01T00:05:00Z", True),
    ],
)
def test_pods_get_30_seconds_before_the_run_is_stalled(now, stalled):
    status, gen, _ = started()
    pods = [pod(gen, i, waiting=("ImagePullBackOff", "Back-off pulling image")) for i in range(3)]
    d = decide(observed(status, [job(gen)], pods, now=now), SETTINGS)
    assert conditions(d)["Stalled"][0] == ("True" if stalled else "False")
    assert conditions(d)["Progressing"][0] == ("False" if stalled else "True")


def test_the_grace_counts_from_when_the_pod_was_scheduled():
    status, gen, _ = started()
    late = pod(gen, 0, waiting=SECRET_MISSING, scheduled_at="2026-01-01T00:00:50Z")
    d = decide(observed(status, [job(gen)], [late], now="2026-01-01T00:01:00Z"), SETTINGS)
    assert conditions(d)["Stalled"][0] == "False"


@pytest.mark.parametrize(
    "pods",
    [
        pytest.param(lambda gen: [pod(gen, 0, waiting=("ContainerCreating", ""))], id="container-creating"),
        pytest.param(lambda gen: [pod(gen, 0, waiting=("PodInitializing", ""))], id="pod-initializing"),
        pytest.param(lambda gen: [pod(gen, 0, phase="Running")], id="running"),
        pytest.param(lambda gen: [pod(gen, 0, waiting=SECRET_MISSING, deleting=True)], id="terminating"),
        pytest.param(lambda gen: [pod("someone-elses-job", 0, waiting=SECRET_MISSING)], id="another-jobs-pod"),
        pytest.param(lambda gen: [], id="no-pods"),
    ],
)
def test_pods_on_their_way_are_not_a_stall(pods):
    status, gen, _ = started()
    d = decide(observed(status, [job(gen)], pods(gen)), SETTINGS)
    assert conditions(d)["Stalled"][0] == "False" and conditions(d)["Progressing"][0] == "True"
    assert not d.events


def test_a_stall_is_announced_once_and_clears_when_the_pods_start():
    status, gen, _ = started()
    stuck = [pod(gen, i, waiting=SECRET_MISSING) for i in range(3)]
    first = decide(observed(status, [job(gen)], stuck), SETTINGS)
    again = decide(observed(first.status.to_dict(), [job(gen)], stuck, now="2026-01-01T00:01:30Z"), SETTINGS)
    assert conditions(again)["Stalled"][0] == "True" and not again.events
    # The transition time stays while the condition does.
    stalled_since = {c.type: c.last_transition_time for c in again.status.conditions}["Stalled"]
    assert stalled_since == "2026-01-01T00:01:00Z"

    running = [pod(gen, i, phase="Running") for i in range(3)]
    recovered = decide(observed(again.status.to_dict(), [job(gen)], running, now="2026-01-01T00:02:00Z"), SETTINGS)
    assert conditions(recovered)["Stalled"] == ("False", "NotApplicable", "")
    assert conditions(recovered)["Progressing"][0] == "True"
    assert (recovered.status.phase, recovered.status.reason) == ("Generating", "Generating")
    assert [(e.type, e.reason) for e in recovered.events] == [("Normal", "PodsStarted")]


def test_a_job_held_by_kueue_is_queued_not_stalled():
    status, gen, _ = started()
    held = job(gen, suspend=True, labels={planning.KUEUE_QUEUE_LABEL: "team-a"})
    # Pods of the suspended Job that have not gone yet still say why they did not start.
    pods = [pod(gen, i, unschedulable="0/1 nodes are available: 1 Insufficient cpu.") for i in range(3)]
    d = decide(observed(status, [held], pods), SETTINGS)
    assert d.status.phase == "Queued"
    assert conditions(d)["Stalled"][0] == "False" and conditions(d)["Queued"][0] == "True"


def test_pods_pending_on_kueues_scheduling_gate_are_not_stalled():
    status, gen, _ = started()
    gated = pod(gen, 0)
    gated["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated", "lastTransitionTime": START}
    ]
    del gated["status"]["containerStatuses"]
    d = decide(observed(status, [job(gen)], [gated]), SETTINGS)
    assert conditions(d)["Stalled"][0] == "False"


def test_a_combine_pod_that_cannot_start_stalls_the_combine():
    status, gen, comb = started()
    status = dict(status, phase="Combining", reason="CombineStarted", message="all shards finished; combining")
    status["jobs"] = {"generate": gen, "combine": comb}
    finished_gen = job(gen, conditions=("Complete",))
    finished_gen["status"]["completedIndexes"] = "0-2"
    pods = [pod(comb, 0, waiting=("ErrImagePull", "pull access denied"))]
    d = decide(observed(status, [finished_gen, job(comb)], pods), SETTINGS)
    assert d.status.phase == "Combining"
    assert conditions(d)["Stalled"] == (
        "True",
        "PodsCannotStart",
        "1 of 1 pods cannot start: ErrImagePull: pull access denied",
    )


@pytest.mark.parametrize(
    "body, expected",
    [
        (pod("j", 0, waiting=SECRET_MISSING), SECRET_MISSING),
        (pod("j", 0, unschedulable="no nodes"), ("Unschedulable", "no nodes")),
        (pod("j", 0, waiting=("ContainerCreating", "")), None),
        (pod("j", 0, phase="Running"), None),
        (pod("j", 0, waiting=SECRET_MISSING, deleting=True), None),
    ],
)
def test_start_problem_reads_the_pods_status(body, expected):
    problem = start_problem(body)
    assert (problem and (problem.reason, problem.message)) == expected or (problem is None and expected is None)


def test_the_pods_kept_in_the_index_keep_what_the_stall_check_reads():
    body = pod("j", 0, waiting=SECRET_MISSING, deleting=True)
    slim = slim_child(body, keep_spec=False)
    assert start_problem(slim) is None  # terminating: deletionTimestamp is kept
    del body["metadata"]["deletionTimestamp"]
    assert start_problem(slim_child(body, keep_spec=False)) == start_problem(body) is not None


# --- the credentials Secret, before the Job is created ----------------------------------


def test_a_missing_credentials_secret_stalls_the_run_before_its_job_exists():
    d = decide(observed(now=START, secret_found=False), SETTINGS)
    message = (
        'spec.output.credentialsSecret: Secret "s3-credentials" not found in namespace ml; '
        "the run starts once it exists"
    )
    assert not d.create and not d.run_started
    assert conditions(d)["Stalled"] == ("True", "CredentialsSecretNotFound", message)
    assert conditions(d)["Progressing"][0] == "False"
    assert [(e.type, e.reason, e.message) for e in d.events] == [("Warning", "CredentialsSecretNotFound", message)]

    # Every reconcile looks again, without a new event; once the Secret is there, the run starts.
    again = decide(observed(d.status.to_dict(), now="2026-01-01T00:00:10Z", secret_found=False), SETTINGS)
    assert not again.create and not again.events and conditions(again)["Stalled"][0] == "True"
    found = decide(observed(again.status.to_dict(), now="2026-01-01T00:00:20Z", secret_found=True), SETTINGS)
    assert found.run_started and {o["kind"] for o in found.create} == {"ConfigMap", "Job"}
    assert conditions(found)["Stalled"][0] == "False" and found.status.phase == "Generating"


def test_a_secret_the_operator_may_not_read_does_not_hold_the_run():
    d = decide(observed(now=START, secret_found=None), SETTINGS)
    assert d.run_started and conditions(d)["Stalled"][0] == "False"


def test_the_secret_is_checked_only_when_a_run_is_about_to_start():
    assert credentials_secret_to_check(observed(now=START), SETTINGS) == "s3-credentials"
    status, _, _ = started()
    assert credentials_secret_to_check(observed(status), SETTINGS) is None
    no_secret = dict(SPEC, output={"uri": "s3://bucket/smf"})
    assert credentials_secret_to_check(observed(now=START, spec=no_secret), SETTINGS) is None
    # The installation's default output brings its default Secret.
    defaults = Settings(default_output_prefix="s3://datasets", default_credentials_secret="team-s3")
    no_output = {k: v for k, v in SPEC.items() if k != "output"}
    assert credentials_secret_to_check(observed(now=START, spec=no_output), defaults) == "team-s3"


def test_a_spec_change_to_a_missing_secret_replaces_the_old_runs_job_and_waits():
    status, gen, _ = started()
    changed = dict(SPEC, shards=2)
    d = decide(observed(status, [job(gen)], spec=changed, secret_found=False), SETTINGS)
    assert not d.create and d.delete_jobs == [gen]
    assert conditions(d)["Stalled"][1] == "CredentialsSecretNotFound"


class FakeKube:
    def __init__(self, exists: bool | None) -> None:
        self.exists = exists
        self.reads: list[tuple[str, str]] = []

    def secret_exists(self, namespace: str, name: str) -> bool | None:
        self.reads.append((namespace, name))
        return self.exists


def _observe(kube, memory, status=None):
    return observe(
        meta={"generation": 1, "resourceVersion": "1"},
        spec=SPEC,
        status=status,
        uid="uid-1",
        name="smf",
        namespace="ml",
        jobs_by_owner={},
        pods_by_owner={},
        memory=memory,
        kube=kube,  # type: ignore[arg-type]
        settings=SETTINGS,
    ).observed


def test_observe_reads_the_secret_before_a_run_and_reuses_the_read_for_a_while():
    clock = [0.0]
    memory = ObjectMemory(config_map_ttl=10, admission_ttl=2, clock=lambda: clock[0], secret_ttl=2)
    kube = FakeKube(exists=False)
    with memory.lock("uid-1"):
        assert _observe(kube, memory).credentials_secret_found is False
        assert _observe(kube, memory).credentials_secret_found is False
    assert kube.reads == [("ml", "s3-credentials")]
    clock[0] = 3.0
    kube.exists = True
    assert _observe(kube, memory).credentials_secret_found is True and len(kube.reads) == 2
    # Once the run has started, nothing is read and nothing is kept.
    status, _, _ = started()
    assert _observe(kube, memory, status).credentials_secret_found is None and len(kube.reads) == 2
    memory.forget("uid-1")
    assert len(memory) == 0


# --- pods on a lost node ----------------------------------------------------------------


def on_node(p: dict, node: str, deleted_at: str | None = None, phase: str = "Running") -> dict:
    p = {**p, "spec": {"nodeName": node}, "status": {**p["status"], "phase": phase}}
    if deleted_at:
        p["metadata"] = {**p["metadata"], "deletionTimestamp": deleted_at}
    return p


def test_pods_a_lost_node_never_confirms_stopped_make_the_run_stalled_with_what_brings_it_back():
    status, gen, _ = started()
    pods = [
        on_node(pod(gen, 0), "node-b", deleted_at="2026-01-01T00:00:20Z"),  # 40 s overdue
        on_node(pod(gen, 1), "node-b", deleted_at="2026-01-01T00:00:25Z"),
        on_node(pod(gen, 2), "node-a"),
    ]
    d = decide(observed(status, [job(gen)], pods), SETTINGS)
    stalled, reason, message = conditions(d)["Stalled"]
    assert (stalled, reason) == ("True", "PodsOnLostNode")
    assert message.startswith("2 pods (2 on node-b) wait for their node to confirm them stopped")
    assert "node.kubernetes.io/out-of-service" in message
    assert d.status.phase == "Generating" and not d.create
    assert [(e.type, e.reason) for e in d.events] == [("Warning", "PodsOnLostNode")]


@pytest.mark.parametrize(
    "deleted_at, phase",
    [
        ("2026-01-01T00:00:50Z", "Running"),  # 10 s past its deadline: a kubelet may still be at it
        ("2026-01-01T00:00:20Z", "Failed"),  # gone in all but name: the Job controller replaces it
        (None, "Running"),
    ],
)
def test_pods_on_a_node_that_answers_are_not_a_stall(deleted_at, phase):
    status, gen, _ = started()
    pods = [on_node(pod(gen, 0), "node-b", deleted_at=deleted_at, phase=phase)]
    d = decide(observed(status, [job(gen)], pods), SETTINGS)
    assert conditions(d)["Stalled"][0] == "False"


def test_the_node_of_a_pod_survives_slimming():
    body = {"metadata": {"name": "p", "deletionTimestamp": START}, "spec": {"nodeName": "node-b"}, "status": {}}
    assert slim_child(body, keep_spec=False)["spec"] == {"nodeName": "node-b"}
    assert slim_child({"metadata": {}, "spec": {}}, keep_spec=False).get("spec") is None
