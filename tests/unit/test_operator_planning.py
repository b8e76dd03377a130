"""Pure planning and reconcile decisions of the operator (no cluster)."""

import json

from datasetjob.spec.model import run_id, spec_from_dict
from datasetjob_operator import naming, planning
from datasetjob_operator.reconcile import Observed, decide
from datasetjob_operator.settings import Settings
from datasetjob_operator.status import DatasetJobStatus

SPEC = {
    "items": {"product": {"symbol": ["A", "B", "C"], "date": ["d1", "d2"]}, "idTemplate": "{symbol}:{date}"},
    "shards": 3,
    "generator": {"image": "acme/gen:1", "function": "smart_money.generate:example", "concurrency": 4},
    "output": {"uri": "s3://bucket/smf", "credentialsSecret": "s3-credentials", "endpointUrl": "http://s3:9000"},
    "retries": {"perShard": 2, "maxFailedShards": 1},
}
SETTINGS = Settings(default_redis_url="redis://datasetjob-redis:6379/0", default_redis_password="s3cret-pw")


def observed(spec=None, status=None, jobs=(), pods=(), annotations=None, generation=1):
    return Observed(
        name="smf",
        namespace="ml",
        uid="uid-1",
        generation=generation,
        spec=spec or SPEC,
        annotations=annotations or {},
        status=DatasetJobStatus.from_dict(status),
        jobs={j["metadata"]["name"]: j for j in jobs},
        pods=list(pods),
        now="2026-01-01T00:00:00Z",
    )


def job(name, completed="", failed="", active=0, conditions=(), suspend=False):
    return {
        "metadata": {"name": name},
        "spec": {"suspend": suspend},
        "status": {
            "completedIndexes": completed,
            "failedIndexes": failed,
            "active": active,
            "conditions": [{"type": c, "status": "True"} for c in conditions],
        },
    }


def pod(job_name, index, phase, message=None, exit_code=0):
    term = {"exitCode": exit_code, "finishedAt": "2026-01-01T00:00:01Z"}
    if message is not None:
        term["message"] = json.dumps(message)
    return {
        "metadata": {
            "name": f"{job_name}-{index}",
            "labels": {"batch.kubernetes.io/job-name": job_name},
            "annotations": {"batch.kubernetes.io/job-completion-index": str(index)},
            "creationTimestamp": "2026-01-01T00:00:00Z",
        },
        "status": {"phase": phase, "containerStatuses": [{"state": {"terminated": term}}]},
    }


def summary(done, failed=0, hits=0, misses=0, total=None):
    return {
        "items": {"total": total if total is not None else done + failed, "done": done, "failed": failed},
        "cache": {"hits": hits, "misses": misses},
        "rows": done,
    }


RID = run_id(spec_from_dict("smf", SPEC).raw_spec)
GEN = naming.generate_job_name("smf", RID, "0")
COMB = naming.combine_job_name("smf", RID, "0")


def test_generate_job_is_an_indexed_job_with_the_contract_fields():
    run = planning.Run("smf", "ml", "uid-1", RID, "0", spec_from_dict("smf", SPEC, "ml"))
    j = planning.generate_job(run, SETTINGS)
    s = j["spec"]
    assert (s["completionMode"], s["completions"], s["parallelism"]) == ("Indexed", 3, 3)
    assert (s["backoffLimitPerIndex"], s["maxFailedIndexes"]) == (2, 1)
    assert s["podFailurePolicy"]["rules"][0] == {
        "action": "FailIndex",
        "onExitCodes": {"containerName": "generator", "operator": "In", "values": [77, 78]},
    }
    assert j["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    pod_spec = s["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Never" and pod_spec["securityContext"]["runAsNonRoot"] is True
    container = pod_spec["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["args"] == ["worker"] and container["image"] == "acme/gen:1"
    assert container["envFrom"] == [{"secretRef": {"name": "s3-credentials"}}]
    env = {e["name"]: e for e in container["env"]}
    assert env["DSJ_RUN_ID"]["value"] == RID
    assert env["DSJ_REDIS_URL"]["value"] == "redis://:$(DSJ_REDIS_PASSWORD)@datasetjob-redis:6379/0"
    assert env["DSJ_REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == naming.redis_secret_name("smf", RID, "0")


def test_no_secret_value_reaches_a_job_or_configmap():
    decision = decide(observed(), SETTINGS)
    for obj in decision.create:
        if obj["kind"] != "Secret":
            assert "s3cret-pw" not in json.dumps(obj)
    assert "s3cret-pw" not in json.dumps(decision.status.to_dict())
    assert all("s3cret-pw" not in m for _, _, m in decision.events)


def test_a_new_datasetjob_creates_spec_configmap_and_generate_job():
    d = decide(observed(), SETTINGS)
    kinds = [o["kind"] for o in d.create]
    assert kinds == ["Secret", "ConfigMap", "Job"]
    assert d.status.to_dict()["phase"] == "Generating" and d.status.to_dict()["runId"] == RID
    assert d.status.to_dict()["items"]["total"] == 6 and d.status.to_dict()["shards"]["progress"] == "0/3"
    assert d.events[0][1] == "RunStarted"
    spec_doc = json.loads(d.create[1]["data"]["datasetjob.json"])
    assert spec_doc["metadata"] == {"name": "smf", "namespace": "ml"}


def test_unchanged_spec_while_generating_creates_nothing():
    first = decide(observed(), SETTINGS)
    again = decide(observed(status=first.status.to_dict(), jobs=[job(GEN, active=3)]), SETTINGS)
    assert again.create == [] and again.delete_jobs == [] and again.events == []


def test_spec_change_starts_a_new_run_and_replaces_the_unfinished_job():
    first = decide(observed(), SETTINGS)
    changed = dict(SPEC, shards=2, retries={"perShard": 2, "maxFailedShards": 0})
    d = decide(observed(spec=changed, status=first.status.to_dict(), jobs=[job(GEN, active=3)], generation=2), SETTINGS)
    assert d.status.to_dict()["runId"] != RID and d.delete_jobs == [GEN]
    assert [o["kind"] for o in d.create] == ["Secret", "ConfigMap", "Job"]


def test_regenerate_annotation_forces_a_new_run():
    first = decide(observed(), SETTINGS)
    d = decide(
        observed(
            status=dict(first.status.to_dict(), phase="Succeeded"), annotations={naming.ANNOTATION_REGENERATE: "x"}
        ),
        SETTINGS,
    )
    assert d.status.to_dict()["runId"] == run_id(spec_from_dict("smf", SPEC).raw_spec, "x") != RID


def test_live_progress_and_final_messages_are_tallied():
    start = decide(observed(), SETTINGS).status.to_dict()
    pods = [pod(GEN, 0, "Succeeded", summary(2, hits=3, misses=1))]
    obs = observed(status=start, jobs=[job(GEN, completed="0", active=2)], pods=pods)
    obs.live_progress = {1: summary(1, misses=2), 0: summary(99)}  # final beats live for shard 0
    d = decide(obs, SETTINGS)
    assert d.status.to_dict()["items"] == {
        "total": 6,
        "done": 3,
        "failed": 0,
        "generated": 3,
        "reused": 0,
        "progress": "3/6",
    }
    assert d.status.to_dict()["cache"] == {"hits": 3, "misses": 3}
    assert d.status.to_dict()["shards"]["succeededIndexes"] == "0" and d.status.to_dict()["shards"]["active"] == 2


def test_finished_generation_within_budget_launches_combine():
    start = decide(observed(), SETTINGS).status.to_dict()
    pods = [
        pod(GEN, 0, "Succeeded", summary(2)),
        pod(GEN, 1, "Succeeded", summary(2)),
        pod(GEN, 2, "Failed", {"error": "boom in generator"}, exit_code=1),
    ]
    d = decide(
        observed(status=start, jobs=[job(GEN, completed="0-1", failed="2", conditions=["Failed"])], pods=pods), SETTINGS
    )
    assert [o["metadata"]["name"] for o in d.create] == [COMB]
    assert d.status.to_dict()["phase"] == "Combining" and d.status.to_dict()["shards"]["failedIndexes"] == "2"
    assert d.status.to_dict()["failures"] == [{"shard": 2, "exitCode": 1, "message": "boom in generator"}]


def test_failures_over_budget_end_failed_with_the_reason():
    spec = dict(SPEC, retries={"perShard": 0, "maxFailedShards": 0})
    start = decide(observed(spec=spec), SETTINGS).status.to_dict()
    gen = naming.generate_job_name("smf", start["runId"], "0")
    pods = [pod(gen, 1, "Failed", {"error": "GeneratorConfigError: cannot import"}, exit_code=78)]
    d = decide(
        observed(
            spec=spec, status=start, jobs=[job(gen, completed="0,2", failed="1", conditions=["Failed"])], pods=pods
        ),
        SETTINGS,
    )
    assert d.create == [] and d.status.to_dict()["phase"] == "Failed" and d.status.to_dict()["reason"] == "ShardsFailed"
    assert (
        "1 of 3 shards failed (indexes 1)" in d.status.to_dict()["message"]
        and "cannot import" in d.status.to_dict()["message"]
    )
    assert d.events[0][0] == "Warning"


def test_combine_result_becomes_status_output():
    start = decide(observed(), SETTINGS).status.to_dict()
    comb_pod = pod(
        COMB,
        0,
        "Succeeded",
        {
            "state": "published",
            "uri": "s3://bucket/smf/runs/x/combined-dataset.csv",
            "rows": 6,
            "bytes": 100,
            "sha256": "ab" * 32,
            "manifestUri": "m",
            "items": {"total": 6, "done": 6, "failed": 0},
            "cache": {"hits": 1, "misses": 2},
        },
    )
    comb_pod["metadata"]["annotations"] = {}
    d = decide(
        observed(
            status=dict(start, phase="Combining"),
            jobs=[job(GEN, completed="0-2", conditions=["Complete"]), job(COMB, conditions=["Complete"])],
            pods=[comb_pod],
        ),
        SETTINGS,
    )
    assert d.status.to_dict()["phase"] == "Succeeded" and d.status.to_dict()["output"]["rows"] == 6
    assert d.status.to_dict()["output"]["sha256"] == "ab" * 32
    assert {c["type"]: c["status"] for c in d.status.to_dict()["conditions"]} == {
        "Ready": "True",
        "Progressing": "False",
        "Stalled": "False",
        "Suspended": "False",
        "Queued": "False",
    }


def test_combine_refusal_is_the_failure_reason():
    start = decide(observed(), SETTINGS).status.to_dict()
    comb_pod = pod(COMB, 0, "Failed", {"state": "refused", "reason": "TooFewItems", "message": "only 5 of 6"}, 78)
    d = decide(
        observed(
            status=dict(start, phase="Combining"),
            jobs=[job(GEN, completed="0-2", conditions=["Complete"]), job(COMB, conditions=["Failed"])],
            pods=[comb_pod],
        ),
        SETTINGS,
    )
    assert (d.status.to_dict()["phase"], d.status.to_dict()["reason"], d.status.to_dict()["message"]) == (
        "Failed",
        "TooFewItems",
        "only 5 of 6",
    )


def test_retry_failed_starts_a_new_attempt_of_the_same_run_once():
    start = decide(observed(), SETTINGS).status.to_dict()
    failed = dict(start, phase="Failed")
    d = decide(observed(status=failed, annotations={naming.ANNOTATION_RETRY_FAILED: "t1"}), SETTINGS)
    assert d.status.to_dict()["runId"] == RID and d.status.to_dict()["attempt"] == naming.attempt_of("t1")
    # Reuse is on: the retry plans first, so only the failed items are generated again.
    assert d.create[-1]["metadata"]["name"] == naming.plan_job_name("smf", RID, naming.attempt_of("t1"))
    done = decide(
        observed(
            status=dict(d.status.to_dict(), phase="Succeeded"), annotations={naming.ANNOTATION_RETRY_FAILED: "t1"}
        ),
        SETTINGS,
    )
    assert done.create == []  # the same token is not acted on twice


def test_a_changed_spec_suspend_is_put_on_the_job_once():
    start = decide(observed(), SETTINGS).status.to_dict()
    assert start["appliedSuspend"] is False
    d = decide(observed(spec=dict(SPEC, suspend=True), status=start, jobs=[job(GEN, active=3)]), SETTINGS)
    assert d.patch_jobs == [(GEN, {"spec": {"suspend": True}})] and d.status.to_dict()["phase"] == "Suspended"
    assert d.status.to_dict()["appliedSuspend"] is True
    # The Job still shows the old value (the patch is in flight): it is not patched again.
    again = decide(
        observed(spec=dict(SPEC, suspend=True), status=d.status.to_dict(), jobs=[job(GEN, active=3)]), SETTINGS
    )
    assert again.patch_jobs == []
    resumed = decide(observed(status=again.status.to_dict(), jobs=[job(GEN, suspend=True)]), SETTINGS)
    assert (
        resumed.patch_jobs == [(GEN, {"spec": {"suspend": False}})]
        and resumed.status.to_dict()["appliedSuspend"] is False
    )


def test_a_job_suspended_by_someone_else_stays_suspended_and_shows_queued():
    start = decide(observed(), SETTINGS).status.to_dict()
    d = decide(observed(status=start, jobs=[job(GEN, suspend=True)]), SETTINGS)
    assert d.patch_jobs == []
    assert (d.status.to_dict()["phase"], d.status.to_dict()["reason"]) == ("Queued", "JobSuspended")
    queued = {c["type"]: c for c in d.status.to_dict()["conditions"]}["Queued"]
    assert queued["status"] == "True" and GEN in queued["message"]
    # ... and when it is let go, the run goes on without the operator touching the Job.
    running = decide(observed(status=d.status.to_dict(), jobs=[job(GEN, active=3)]), SETTINGS)
    assert running.patch_jobs == [] and running.status.to_dict()["phase"] == "Generating"


def test_a_job_held_by_kueue_says_which_queue():
    spec = dict(SPEC, queueName="team-a", workloadPriorityClassName="batch-low")
    created = decide(observed(spec=spec), SETTINGS)
    gen = next(o for o in created.create if o["kind"] == "Job")
    assert gen["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"
    assert gen["metadata"]["labels"]["kueue.x-k8s.io/priority-class"] == "batch-low"
    assert "kueue.x-k8s.io/queue-name" not in gen["spec"]["template"]["metadata"]["labels"]
    held = job(GEN, suspend=True)
    held["metadata"]["labels"] = dict(gen["metadata"]["labels"])
    d = decide(observed(spec=spec, status=created.status.to_dict(), jobs=[held]), SETTINGS)
    assert (d.status.to_dict()["phase"], d.status.to_dict()["reason"]) == (
        "Queued",
        "WaitingForAdmission",
    ) and d.patch_jobs == []
    assert "team-a" in d.status.to_dict()["message"]
    assert ("Normal", "WaitingForAdmission", d.status.to_dict()["message"]) in d.events
    comb = planning.combine_job(
        planning.Run("smf", "ml", "uid-1", RID, "0", spec_from_dict("smf", spec, "ml")), SETTINGS
    )
    assert comb["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "team-a"


def test_queue_and_pod_settings_do_not_change_the_run():
    pod_settings = {
        "priorityClassName": "batch-low",
        "runtimeClassName": "gvisor",
        "imagePullSecrets": [{"name": "regcred"}],
        "podLabels": {"team": "research"},
        "podAnnotations": {"note": "x"},
        "resources": {"requests": {"cpu": "1"}},
        "affinity": {"nodeAffinity": {}},
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}
        ],
    }
    spec = dict(
        SPEC,
        queueName="team-a",
        generator=dict(SPEC["generator"], **pod_settings),
        combine={"resources": {"requests": {"memory": "2Gi"}}},
    )
    assert run_id(spec_from_dict("smf", spec).raw_spec) == RID


def test_pod_settings_land_on_the_pod_templates():
    affinity = {
        "podAntiAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {
                    "weight": 1,
                    "podAffinityTerm": {
                        "topologyKey": "kubernetes.io/hostname",
                        "labelSelector": {"matchLabels": {"datagen.dev/datasetjob": "smf"}},
                    },
                }
            ]
        }
    }
    spread = [{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "ScheduleAnyway"}]
    gen_settings = {
        "priorityClassName": "batch-low",
        "runtimeClassName": "gvisor",
        "affinity": affinity,
        "topologySpreadConstraints": spread,
        "imagePullSecrets": [{"name": "regcred"}],
        "podLabels": {"team": "research", "datagen.dev/role": "mine"},
        "podAnnotations": {"example.com/note": "hi"},
        "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}},
    }
    spec = dict(
        SPEC, generator=dict(SPEC["generator"], **gen_settings), combine={"resources": {"requests": {"memory": "2Gi"}}}
    )
    run = planning.Run("smf", "ml", "uid-1", RID, "0", spec_from_dict("smf", spec, "ml"))
    for j, resources in (
        (planning.generate_job(run, SETTINGS), gen_settings["resources"]),
        (planning.combine_job(run, SETTINGS), {"requests": {"memory": "2Gi"}}),
    ):
        template = j["spec"]["template"]
        pod_spec = template["spec"]
        assert pod_spec["priorityClassName"] == "batch-low" and pod_spec["runtimeClassName"] == "gvisor"
        assert pod_spec["affinity"] == affinity and pod_spec["topologySpreadConstraints"] == spread
        assert pod_spec["imagePullSecrets"] == [{"name": "regcred"}]
        assert template["metadata"]["labels"]["team"] == "research"
        assert template["metadata"]["labels"]["datagen.dev/role"] != "mine"  # ours win
        assert template["metadata"]["annotations"] == {"example.com/note": "hi"}
        assert pod_spec["containers"][0]["resources"] == resources


def test_pods_without_resources_get_the_installation_defaults():
    run = planning.Run("smf", "ml", "uid-1", RID, "0", spec_from_dict("smf", SPEC, "ml"))
    settings = Settings.from_env({"DSJ_COMBINE_RESOURCES": '{"requests": {"cpu": "1", "memory": "4Gi"}}'})
    gen = planning.generate_job(run, settings)["spec"]["template"]["spec"]["containers"][0]
    comb = planning.combine_job(run, settings)["spec"]["template"]["spec"]["containers"][0]
    assert gen["resources"] == {"requests": {"cpu": "100m", "memory": "256Mi"}}
    assert comb["resources"] == {"requests": {"cpu": "1", "memory": "4Gi"}}


def test_live_progress_is_read_where_the_workers_write_it():
    from datasetjob.spec.model import cache_namespace

    spec = spec_from_dict("smf", SPEC, "ml")
    assert spec.cache.namespace == cache_namespace(SPEC.get("cache"), "smf", "ml") == "ml.smf"
    custom = spec_from_dict("smf", dict(SPEC, cache={"namespace": "shared"}), "ml")
    assert custom.cache.namespace == cache_namespace({"namespace": "shared"}, "smf", "ml") == "shared"


def test_duplicate_item_ids_fail_the_run_at_its_start():
    spec = dict(SPEC, items={"values": ["a", "b", "a"]})
    d = decide(observed(spec=spec), SETTINGS)
    assert (d.status.to_dict()["phase"], d.status.to_dict()["reason"]) == ("Failed", "InvalidSpec") and d.create == []


def test_a_spec_the_api_server_cannot_check_fails_with_the_field():
    bad = dict(SPEC, output={"format": "csv"})
    d = decide(observed(spec=bad), SETTINGS)
    assert d.status.to_dict()["phase"] == "Failed" and d.status.to_dict()["reason"] == "InvalidSpec"
    assert "spec.output.uri" in d.status.to_dict()["message"] and d.create == []


def test_suspend_while_combining_suspends_the_combine_job():
    start = decide(observed(), SETTINGS).status.to_dict()
    combining = dict(start, phase="Combining", jobs={"generate": GEN, "combine": COMB})
    jobs = [job(GEN, completed="0-2", conditions=["Complete"]), job(COMB, active=1)]
    d = decide(observed(spec=dict(SPEC, suspend=True), status=combining, jobs=jobs), SETTINGS)
    assert d.patch_jobs == [(COMB, {"spec": {"suspend": True}})] and d.status.to_dict()["phase"] == "Suspended"
    held = [job(GEN, completed="0-2", conditions=["Complete"]), job(COMB, suspend=True)]
    queued = decide(observed(status=combining, jobs=held), SETTINGS)
    assert queued.patch_jobs == [] and (queued.status.to_dict()["phase"], queued.status.to_dict()["reason"]) == (
        "Queued",
        "JobSuspended",
    )


def test_kueues_own_reason_is_the_queued_message():
    from datasetjob_operator.admission import pending_reasons

    why = "couldn't assign flavors to pod set main: insufficient unused quota for cpu in flavor rf, 150m more needed"
    workloads = [
        {
            "metadata": {"ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": GEN}]},
            "status": {"conditions": [{"type": "QuotaReserved", "status": "False", "message": why}]},
        },
        {
            "metadata": {"ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "other-gen"}]},
            "status": {
                "conditions": [
                    {"type": "QuotaReserved", "status": "True", "message": "reserved"},
                    {"type": "Admitted", "status": "True", "message": "admitted"},
                ]
            },
        },
    ]
    reasons = pending_reasons(workloads)
    assert reasons == {GEN: why}
    spec = dict(SPEC, queueName="team-a")
    start = decide(observed(spec=spec), SETTINGS).status.to_dict()
    held = job(GEN, suspend=True)
    held["metadata"]["labels"] = {"kueue.x-k8s.io/queue-name": "team-a"}
    o = observed(spec=spec, status=start, jobs=[held])
    o.admission = reasons
    d = decide(o, SETTINGS)
    assert d.status.to_dict()["message"] == f"Job {GEN} waits in Kueue queue team-a: {why}"


def test_the_combine_runs_the_installation_combine_image():
    gen = dict(SPEC["generator"], imagePullPolicy="Always", workingDir="/work")
    run = planning.Run("smf", "ml", "uid-1", RID, "0", spec_from_dict("smf", dict(SPEC, generator=gen), "ml"))
    generate = planning.generate_job(run, SETTINGS)["spec"]["template"]["spec"]["containers"][0]
    combine = planning.combine_job(run, SETTINGS)["spec"]["template"]["spec"]["containers"][0]
    assert (generate["image"], generate["imagePullPolicy"], generate["workingDir"]) == ("acme/gen:1", "Always", "/work")
    # the generator's pull policy and working directory are about its image, not this one
    assert combine["image"] == "datasetjob/worker-tables:0.1.0"
    assert "imagePullPolicy" not in combine and "workingDir" not in combine
    own = Settings.from_env({"DSJ_COMBINE_IMAGE": ""})
    combine = planning.combine_job(run, own)["spec"]["template"]["spec"]["containers"][0]
    assert (combine["image"], combine["imagePullPolicy"]) == ("acme/gen:1", "Always")
