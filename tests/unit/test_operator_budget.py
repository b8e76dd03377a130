"""spec.budget as the operator sees it: workers stopped at the budget fail the run with reason
BudgetExhausted (the spend in the status), and a raised budget continues the same run as a new
attempt, once."""

from __future__ import annotations

import copy

from datasetjob_operator import naming
from datasetjob_operator.reconcile import decide
from tests.unit.test_operator_planning import GEN, RID, SETTINGS, SPEC, job, observed, pod


def budget_spec(max_tokens):
    spec = copy.deepcopy(SPEC)
    spec["reuse"] = {"enabled": False}  # no plan Job: the generate Job comes first
    spec["budget"] = {"maxTokens": max_tokens}
    return spec


def stopped_message(spent_tokens):
    return {
        "runId": RID,
        "state": "budget-exhausted",
        "items": {"total": 2, "done": 1, "failed": 0},
        "cache": {"hits": 0, "misses": 0},
        "error": f"spec.budget.maxTokens 1000 reached ({spent_tokens} tokens spent)",
        "spent": {"requests": 0, "tokens": spent_tokens, "cost": 0.0},
    }


def test_a_budget_stop_fails_the_run_with_its_spend_and_a_raised_budget_continues_it():
    start = decide(observed(spec=budget_spec(1000)), SETTINGS).status.to_dict()
    gen_failed = job(GEN, completed="0", failed="1-2", conditions=["Failed"])
    pods = [
        pod(GEN, 1, "Failed", stopped_message(1000), exit_code=77),
        pod(GEN, 2, "Failed", stopped_message(1000), 77),
    ]
    d = decide(observed(spec=budget_spec(1000), status=start, jobs=[gen_failed], pods=pods), SETTINGS)
    status = d.status.to_dict()
    assert (status["phase"], status["reason"]) == ("Failed", "BudgetExhausted")
    assert "maxTokens 1000 reached" in status["message"] and "raise spec.budget" in status["message"]
    assert status["usage"]["tokens"] == 1000

    # Re-applied as it is: still stopped, nothing created.
    same = decide(observed(spec=budget_spec(1000), status=status, jobs=[gen_failed], pods=pods), SETTINGS)
    assert same.create == [] and same.status.to_dict()["reason"] == "BudgetExhausted"

    # Raised: the same run, a new attempt (its workers resume from their checkpoints).
    raised = decide(observed(spec=budget_spec(5000), status=status, jobs=[gen_failed], pods=pods), SETTINGS)
    out = raised.status.to_dict()
    assert out["runId"] == RID and out["attempt"] != "0" and out["phase"] == "Generating"
    (new_job,) = [o for o in raised.create if o["kind"] == "Job"]
    assert new_job["metadata"]["name"] == naming.generate_job_name("smf", RID, out["attempt"])
    # Once: the new attempt's own status does not start another.
    again = decide(observed(spec=budget_spec(5000), status=out, jobs=[gen_failed, new_job]), SETTINGS)
    assert [o for o in again.create if o["kind"] == "Job"] == []


def test_the_pace_and_the_time_left_leave_reused_items_out():
    from datasetjob_operator.reconcile import pace
    from datasetjob_operator.status import ItemCounts

    start = "2026-01-01T00:00:00+00:00"
    items = ItemCounts.of(total=3700, done=3650, failed=0, reused=3600)  # 50 generated in 10 s
    assert pace(items, start, "2026-01-01T00:00:10+00:00") == ("5/s", "10s")
    assert pace(ItemCounts.of(3700, 3700, 0, 3600), start, "2026-01-01T00:00:20+00:00") == ("5/s", None)
    assert pace(ItemCounts.of(0, 0, 0, 0), start, "2026-01-01T00:00:20+00:00") == ("0/s", None)
    assert pace(None, start, "2026-01-01T00:00:20+00:00") == (None, None)
    slow = ItemCounts.of(total=100_000, done=10, failed=0, reused=0)
    assert pace(slow, start, "2026-01-01T00:00:10+00:00") == ("1/s", "27h46m")
