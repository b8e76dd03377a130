"""Reuse as the operator sees it: counts from the workers' termination messages into
status.items, the CRD's fields and columns, and the regenerate token in the pods' env."""

from datasetjob.contract import REGENERATE_TOKEN_ENV
from datasetjob_operator import naming
from datasetjob_operator.crd import build_crd
from datasetjob_operator.generation_counts import count_generation
from datasetjob_operator.reconcile import decide
from tests.unit.test_operator_planning import COMB, GEN, SETTINGS, job, observed, pod


def worker_message(done, reused, failed=0, total=None):
    """A worker's termination message, as worker.ShardSummary.to_message writes it."""
    return {
        "runId": "r",
        "state": "committed",
        "rows": done,
        "cache": {"hits": 0, "misses": 0},
        "items": {
            "total": total if total is not None else done + failed,
            "done": done,
            "failed": failed,
            "skipped": 0,
            "reused": reused,
        },
    }


def test_generated_and_reused_are_tallied_from_termination_messages_and_live_progress():
    pods = [
        pod(GEN, 0, "Succeeded", worker_message(done=2, reused=2)),
        pod(GEN, 1, "Succeeded", worker_message(done=2, reused=1, failed=0)),
    ]
    counts = count_generation(
        job(GEN, completed="0-1", active=1), pods, {2: worker_message(done=1, reused=0, total=2)}, shards=3
    )
    assert (counts.items_done, counts.items_reused) == (5, 3)

    start = decide(observed(), SETTINGS).status.to_dict()
    assert start["items"] == {"total": 6, "done": 0, "failed": 0, "generated": 0, "reused": 0, "progress": "0/6"}
    obs = observed(status=start, jobs=[job(GEN, completed="0-1", active=1)], pods=pods)
    obs.live_progress = {2: worker_message(done=1, reused=0, total=2)}
    items = decide(obs, SETTINGS).status.to_dict()["items"]
    assert items == {"total": 6, "done": 5, "failed": 0, "generated": 2, "reused": 3, "progress": "5/6"}


def test_messages_of_workers_without_reuse_count_as_generated():
    old = {"items": {"total": 2, "done": 2, "failed": 0}, "cache": {"hits": 0, "misses": 0}}
    counts = count_generation(job(GEN, completed="0"), [pod(GEN, 0, "Succeeded", old)], None, shards=1)
    assert counts.item_counts(2).generated == 2


def test_published_run_takes_its_counts_from_the_combine_result():
    start = decide(observed(), SETTINGS).status.to_dict()
    combined = {
        "state": "published",
        "uri": "s3://bucket/smf/runs/x/combined-dataset.csv",
        "rows": 6,
        "sha256": "f" * 64,
        "items": {"total": 6, "done": 6, "failed": 0, "missing": 0, "generated": 2, "reused": 4},
    }
    obs = observed(
        status=dict(start, phase="Combining"),
        jobs=[job(GEN, completed="0-2", conditions=["Complete"]), job(COMB, conditions=["Complete"])],
        pods=[pod(COMB, 0, "Succeeded", combined)],
    )
    d = decide(obs, SETTINGS)
    assert d.status.to_dict()["phase"] == "Succeeded"
    assert d.status.to_dict()["items"] == {
        "total": 6,
        "done": 6,
        "failed": 0,
        "generated": 2,
        "reused": 4,
        "progress": "6/6",
    }


def test_crd_describes_the_counts_and_shows_them_in_wide_output():
    version = build_crd()["spec"]["versions"][0]
    items = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["items"]["properties"]
    assert items["generated"]["type"] == items["reused"]["type"] == "integer"
    assert "earlier run" in items["reused"]["description"] and items["generated"]["description"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert columns["Generated"]["jsonPath"] == ".status.items.generated" and columns["Generated"]["priority"] == 1
    assert columns["Reused"]["jsonPath"] == ".status.items.reused" and columns["Reused"]["priority"] == 1
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]
    assert spec["reuse"]["description"] and spec["reuse"]["properties"]["enabled"]["default"] is True
    assert spec["reuse"]["properties"]["maxAgeSeconds"]["description"]
    assert spec["generator"]["properties"]["version"]["description"]


def env_of(decision):
    gen = next(o for o in decision.create if o["kind"] == "Job")
    return {e["name"]: e.get("value") for e in gen["spec"]["template"]["spec"]["containers"][0]["env"]}


def test_a_regenerated_run_tells_its_workers_the_token():
    assert REGENERATE_TOKEN_ENV not in env_of(decide(observed(), SETTINGS))
    first = decide(observed(), SETTINGS)
    again = decide(
        observed(
            status=dict(first.status.to_dict(), phase="Succeeded"),
            annotations={naming.ANNOTATION_REGENERATE: "2026-02"},
        ),
        SETTINGS,
    )
    assert env_of(again)[REGENERATE_TOKEN_ENV] == "2026-02"
