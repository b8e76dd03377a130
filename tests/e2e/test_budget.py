"""spec.budget in the cluster: the run stops at its budget (BudgetExhausted, the spend in the
status), and raising the budget (what `kubectl edit` does) continues the same run with each
item generated exactly once. The sample generator reports 100 tokens an example and counts its
calls in the chart's Redis (pods share no files)."""

from __future__ import annotations

import json
from collections import Counter

from tests.e2e.test_operator import GROUP, PLURAL, apply, sample, shared_state, wait_phase
from tests.e2e.test_reuse import generated, ids


def test_a_budget_stops_the_run_and_raising_it_continues_the_same_run(cluster, operator, s3_ns, s3, bucket, redis):
    calls = f"items-{s3_ns}"
    doc = shared_state(redis, sample(bucket, s3, symbols=6, dates=6, shards=3), SMF_ITEM_LOG_KEY=calls)
    doc["spec"]["generator"]["env"].append({"name": "SMF_TOKENS_PER_ITEM", "value": "100"})
    doc["spec"]["budget"] = {"maxTokens": 1000}
    apply(cluster, s3_ns, doc)
    stopped = wait_phase(cluster, operator, s3_ns, "smf", "Failed")["status"]
    assert stopped["reason"] == "BudgetExhausted", stopped
    assert "maxTokens 1000 reached" in stopped["message"] and "raise spec.budget" in stopped["message"]
    assert stopped["usage"]["tokens"] >= 1000
    first = generated(redis, calls)
    # The overshoot is bounded by the items in flight: 3 pods x concurrency 4.
    assert 10 <= sum(first.values()) <= 10 + 3 * 4 and max(first.values()) == 1

    patch = json.dumps({"spec": {"budget": {"maxTokens": 100_000}}})  # what `kubectl edit` saves
    out = cluster.kubectl("patch", f"{PLURAL}.{GROUP}", "smf", "-n", s3_ns, "--type", "merge", "-p", patch)
    assert out.returncode == 0, out.stderr
    done = wait_phase(cluster, operator, s3_ns, "smf", "Succeeded", timeout=300)["status"]
    assert done["runId"] == stopped["runId"] and done["attempt"] != stopped["attempt"]
    assert generated(redis, calls) == Counter(ids(doc))  # each example exactly once, over both attempts
    assert done["items"]["done"] == 36 and done["usage"]["tokens"] == 3600
