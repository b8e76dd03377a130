"""spec.budget's overshoot: how far past its budget a run spends before it stops, at 4 and 16
workers. Each item reports 100 tokens after a 20 ms call; the budget is 100 items' worth. The
bound is the items in flight when the limit is reached: workers x concurrency.

Usage: python tests/bench/bench_budget.py
Not a test: nothing here asserts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

GENERATOR = """
import os, time

def generate(item, ctx):
    time.sleep(0.02)
    with open(os.environ["CALLS"], "a") as f:
        f.write(f"{item}\\n")
    ctx.usage(tokens=100)
    return {"n": item}
"""
BUDGET_ITEMS = 100


def run(workers: int, concurrency: int, tmp: Path) -> int:
    """Generator calls made by a run stopped at its budget."""
    work = tmp / f"w{workers}x{concurrency}"
    work.mkdir()
    (work / "spendy.py").write_text(GENERATOR)
    doc = {
        "apiVersion": "datagen.dev/v1alpha1",
        "kind": "DatasetJob",
        "metadata": {"name": "spendy"},
        "spec": {
            "items": {"range": {"stop": 20 * BUDGET_ITEMS}},
            "shards": workers,
            "generator": {"function": "spendy:generate", "concurrency": concurrency},
            "output": {"format": "jsonl"},
            "budget": {"maxTokens": 100 * BUDGET_ITEMS},
            "reuse": {"enabled": False},
        },
    }
    (work / "job.yaml").write_text(yaml.safe_dump(doc))
    env = dict(os.environ, CALLS=str(work / "calls.log"), DSJ_EMBEDDED_CACHE_DIR=str(work / "cache"))
    cmd = [sys.executable, "-m", "datasetjob", "run", "job.yaml", "--workers", str(workers), "--quiet"]
    proc = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
    if proc.returncode != 77:
        raise SystemExit(f"expected exit 77 (budget), got {proc.returncode}: {proc.stderr[-500:]}")
    return len((work / "calls.log").read_text().split())


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="dsj-bench-budget-"))
    try:
        print(
            f"\nbudget: {BUDGET_ITEMS} items' tokens; each item 100 tokens after a 20 ms call; {os.cpu_count()} CPUs\n"
        )
        print(f"  {'workers x concurrency':<24} {'calls':>6} {'overshoot':>10} {'bound':>6}")
        for workers, concurrency in ((4, 1), (4, 4), (16, 1), (16, 4)):
            calls = run(workers, concurrency, tmp)
            print(
                f"  {f'{workers} x {concurrency}':<24} {calls:6d} {calls - BUDGET_ITEMS:10d} {workers * concurrency:6d}"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
