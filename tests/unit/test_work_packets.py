"""A run's plan: work packets cut from the items to generate, and the operator's way through a
planned run (plan Job, then a generate Job over the packets, or straight to the combine)."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st

from datasetjob.contract import WORK_PLAN_ENV
from datasetjob.spec.work_packets import WorkPlan, pack
from datasetjob_operator import naming
from datasetjob_operator.reconcile import decide
from tests.unit.test_operator_planning import COMB, GEN, SETTINGS, SPEC, job, observed, pod

PLAN = naming.plan_job_name("smf", GEN.split("-")[1], "0")


@given(st.lists(st.integers(0, 10_000), unique=True), st.integers(1, 50), st.integers(1, 12))
def test_packets_cover_the_positions_in_order_balanced_and_bounded(positions, per_packet, max_packets):
    positions = sorted(positions)
    packets = pack(positions, per_packet, max_packets)
    assert [p for packet in packets for p in packet] == positions
    assert len(packets) <= max_packets and all(packets)
    sizes = [len(p) for p in packets]
    assert not sizes or max(sizes) - min(sizes) <= 1
    assert len(packets) <= 1 or min(sizes) >= per_packet  # a packet is worth its process


def test_a_plan_survives_its_json_and_says_itself_in_a_few_numbers():
    plan = WorkPlan("p1", 10, [[3, 4, 5, 40], [77]], [0, 1, 7], [0, 1, 7, 8], 5, 1_000)
    assert WorkPlan.from_json(plan.to_json()) == plan
    assert plan.summary() == {
        "planId": "p1",
        "packets": 2,
        "shards": 10,
        "shardsWithWork": 3,
        "shardsReused": 1,
        "shardsCommitted": 6,
        "toGenerate": 5,
        "reused": 1_000,
    }


def reusing_spec():
    spec = copy.deepcopy(SPEC)
    spec.pop("reuse", None)  # on by default
    return spec


def earlier_run():
    """The status a published earlier run left: a changed spec now starts a new run."""
    return {"phase": "Succeeded", "runId": "0ld0ld00", "attempt": "0"}


def planned(packets, reused, to_generate=100):
    return {
        "state": "planned",
        "packets": packets,
        "shards": 3,
        "shardsWithWork": min(3, packets),
        "shardsReused": 3 - min(3, packets),
        "toGenerate": to_generate,
        "reused": reused,
        "planKey": "runs/x/plans/p1.json",
    }


def env_of(job_manifest):
    return {e["name"]: e.get("value") for e in job_manifest["spec"]["template"]["spec"]["containers"][0]["env"]}


def start_planned_run():
    d = decide(observed(spec=reusing_spec(), status=earlier_run()), SETTINGS)
    jobs = [o for o in d.create if o["kind"] == "Job"]
    assert [j["metadata"]["name"] for j in jobs] == [PLAN]
    assert jobs[0]["spec"]["template"]["spec"]["containers"][0]["args"] == ["plan"]
    return d.status.to_dict()


def test_a_first_run_has_nothing_to_reuse_and_starts_its_shards_at_once():
    d = decide(observed(spec=reusing_spec()), SETTINGS)
    assert [o["metadata"]["name"] for o in d.create if o["kind"] == "Job"] == [GEN]


def test_a_later_run_plans_first_then_generates_only_its_packets():
    status = start_planned_run()
    assert status["jobs"] == {"plan": PLAN} and status["phase"] == "Generating"

    waiting = decide(observed(spec=reusing_spec(), status=status, jobs=[job(PLAN, active=1)]), SETTINGS)
    assert waiting.create == [] and waiting.status.reason == "Planning"

    plan_done = [job(PLAN, conditions=["Complete"])]
    d = decide(
        observed(spec=reusing_spec(), status=status, jobs=plan_done, pods=[pod(PLAN, 0, "Succeeded", planned(2, 500))]),
        SETTINGS,
    )
    (gen,) = d.create
    assert gen["metadata"]["name"] == GEN and gen["spec"]["completions"] == 2
    assert env_of(gen)[WORK_PLAN_ENV] == "runs/x/plans/p1.json"
    status = d.status.to_dict()
    assert status["plan"]["packets"] == 2 and status["jobs"] == {"plan": PLAN, "generate": GEN}

    # Packets done: the combine assembles the shards from the plan's item store.
    gen_done = job(GEN, completed="0-1", conditions=["Complete"])
    msg = {"items": {"total": 50, "done": 50, "failed": 0, "reused": 0}, "cache": {"hits": 0, "misses": 0}}
    d = decide(
        observed(
            spec=reusing_spec(),
            status=status,
            jobs=[*plan_done, gen_done],
            pods=[pod(GEN, 0, "Succeeded", msg), pod(GEN, 1, "Succeeded", msg)],
        ),
        SETTINGS,
    )
    (comb,) = d.create
    assert comb["metadata"]["name"] == COMB and env_of(comb)[WORK_PLAN_ENV] == "runs/x/plans/p1.json"
    out = d.status.to_dict()
    assert out["items"]["done"] == 600 and out["items"]["reused"] == 500 and out["items"]["generated"] == 100
    assert out["shards"]["progress"].startswith("2/2 packets; 2 of 3 shards with work, 1 reused")


def after_the_plan(message):
    """The decision once the plan pod of a started planned run has succeeded with `message`."""
    status = start_planned_run()
    plan_done = [job(PLAN, conditions=["Complete"])]
    return decide(
        observed(spec=reusing_spec(), status=status, jobs=plan_done, pods=[pod(PLAN, 0, "Succeeded", message)]),
        SETTINGS,
    )


def test_nothing_to_generate_goes_straight_to_the_combine():
    d = after_the_plan(planned(0, 6, to_generate=0))
    (comb,) = d.create
    assert comb["metadata"]["name"] == COMB and env_of(comb)[WORK_PLAN_ENV]
    assert d.status.phase.value == "Combining" and "no generate Job" in d.status.message


def test_nothing_stored_to_reuse_generates_every_shard_as_without_a_plan():
    (gen,) = after_the_plan(planned(3, 0, to_generate=6)).create
    assert gen["spec"]["completions"] == 3 and WORK_PLAN_ENV not in env_of(gen)


def test_a_failed_plan_fails_the_run_with_its_message():
    status = start_planned_run()
    failed = {"state": "failed", "reason": "PlanFailed", "message": "AccessDenied: no reading the bucket"}
    d = decide(
        observed(
            spec=reusing_spec(),
            status=status,
            jobs=[job(PLAN, conditions=["Failed"])],
            pods=[pod(PLAN, 0, "Failed", failed, exit_code=1)],
        ),
        SETTINGS,
    )
    assert d.status.phase.value == "Failed" and d.status.reason == "PlanFailed"
    assert "AccessDenied" in d.status.message


# -- the plan as made from a store (files on disk) ---------------------------------------------


def demo_spec(shards=2):
    from datasetjob.spec.model import spec_from_dict

    raw = {
        "items": {"range": {"start": 0, "stop": 40}},
        "shards": shards,
        "generator": {"function": "gen:example"},
        "output": {"uri": "file:///unused", "format": "jsonl"},
    }
    return spec_from_dict("demo", raw)


def stored(spec, store, positions, run="old"):
    """Rows of these items in the item store, as an earlier run's commit leaves them."""
    from datasetjob.store.fingerprint import item_digest
    from datasetjob.store.item_store import ItemStore
    from datasetjob.store.reuse import segment_line

    items = ItemStore(store, "fp", {})
    items.save(run, "shard-00000", [segment_line(str(p), item_digest(p), '[{"v": 1}]', run, 1e9) for p in positions])
    return items


def test_a_plan_generates_only_what_is_not_stored(tmp_path):
    from datasetjob.store.backends import FileStore
    from datasetjob.store.work_plan import make_plan

    spec, store = demo_spec(), FileStore(tmp_path)
    items = stored(spec, store, range(0, 37))  # all of shard 0, most of shard 1
    plan = make_plan(spec, "r1", store, items)
    assert plan.packets == [[37, 38, 39]] and (plan.to_generate, plan.reused) == (3, 37)
    assert (plan.shards_with_work, plan.shards_to_assemble) == ([1], [0, 1])


def test_items_an_interrupted_packet_checkpointed_are_not_generated_again(tmp_path):
    from datasetjob.store import layout
    from datasetjob.store.backends import FileStore
    from datasetjob.store.checkpoint import Checkpoint
    from datasetjob.store.work_plan import make_plan

    spec, store = demo_spec(), FileStore(tmp_path)
    items = stored(spec, store, range(0, 20))
    first = make_plan(spec, "r1", store, items)
    assert first.packets == [list(range(20, 30)), list(range(30, 40))]
    # Packet 1 finished 4 items, then was killed: its checkpoint is all that is left of it.
    checkpoint = Checkpoint(store, "r1", 1, prefix=layout.packet_checkpoint_prefix("r1", first.plan_id, 1))
    for p in (30, 31, 32, 33):
        checkpoint.record(p, str(p), '[{"v": 2}]')
    checkpoint.flush()

    resumed = make_plan(spec, "r1", store, items)
    todo = [*range(20, 30), *range(34, 40)]
    assert resumed.packets == [todo[:8], todo[8:]] and resumed.reused == 24
    assert store.list(layout.run_prefix("r1") + "checkpoints/") == []
