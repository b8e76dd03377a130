"""spec.budget on one machine: a run stops at its budget with finished items kept, and after
the budget is raised `--resume` finishes it with each item generated exactly once. Usage is
what the generator reports (ctx.usage); its calls are counted in a log file."""

from __future__ import annotations

import json
from collections import Counter

from tests.integration.runs import datasetjob, dsj, published, write_doc

GENERATOR = """
import os

def generate(item, ctx):
    with open(os.environ["CALLS"], "a") as f:
        f.write(f"{item}\\n")
    ctx.usage(tokens=100, cost=0.01)
    return {"n": item}
"""


def test_a_run_stops_at_its_budget_and_a_raised_budget_finishes_it_without_generating_twice(tmp_path):
    (tmp_path / "spendy.py").write_text(GENERATOR)
    calls = tmp_path / "calls.log"
    env = {"CALLS": str(calls), "DSJ_EMBEDDED_CACHE_DIR": str(tmp_path / "cache")}
    doc = datasetjob(
        "spendy",
        items={"range": {"stop": 40}},
        shards=2,
        generator={"function": "spendy:generate", "concurrency": 2},
        output={"format": "jsonl"},
        budget={"maxTokens": 1000},
    )
    stopped = dsj("run", str(write_doc(doc, tmp_path / "job.yaml")), cwd=tmp_path, env=env)
    assert stopped.returncode == 77, stopped.stdout + stopped.stderr
    said = " ".join(stopped.stderr.split())
    assert "spec.budget.maxTokens 1000 reached" in said and "dsj run" in said and "--resume" in said
    first = Counter(calls.read_text().split())
    # Overshoot is bounded by the items in flight: 2 workers x concurrency 2.
    assert 10 <= sum(first.values()) <= 10 + 2 * 2 and max(first.values()) == 1
    assert not (tmp_path / "datasets" / "spendy" / "latest.json").exists()

    doc["spec"]["budget"] = {"maxTokens": 10_000}  # operational: the same run goes on
    resumed = dsj("run", str(write_doc(doc, tmp_path / "job.yaml")), "--resume", cwd=tmp_path, env=env)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert Counter(calls.read_text().split()) == Counter(str(i) for i in range(40))  # each exactly once
    _, manifest = published(tmp_path / "datasets" / "spendy")
    assert manifest["items"]["done"] == 40
    assert manifest["usage"]["tokens"] == 4000 and round(manifest["usage"]["cost"], 6) == 0.4
    assert "4000 tokens" in " ".join(resumed.stderr.split())


def test_a_fresh_run_of_the_same_spec_starts_with_nothing_spent(tmp_path):
    (tmp_path / "spendy.py").write_text(GENERATOR)
    env = {"CALLS": str(tmp_path / "calls.log"), "DSJ_EMBEDDED_CACHE_DIR": str(tmp_path / "cache")}
    doc = datasetjob(
        "spendy",
        items={"range": {"stop": 6}},
        shards=1,
        generator={"function": "spendy:generate"},
        output={"format": "jsonl"},
        budget={"maxTokens": 600},
        reuse={"enabled": False},
    )
    path = write_doc(doc, tmp_path / "job.yaml")
    for _ in range(2):  # without --resume a run starts over, its spend too
        proc = dsj("run", str(path), cwd=tmp_path, env=env)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    latest = json.loads((tmp_path / "datasets" / "spendy" / "latest.json").read_text())
    assert latest["runId"]
