"""The framework's own cost, measured side by side in one run (not a test: nothing asserts a time).

  (a) per item: `dsj run` of a trivial generator against a multiprocessing.Pool with the same
      worker count writing the same Parquet file, at 10^5, 10^6 and 10^7 items;
  (b) per pod: the peak RSS of one worker doing a 2,000-item shard of universes of 10^4, 10^6
      and 10^8 items (a flat line: a worker holds its shard, not the universe);
  (c) items generated again after a worker is SIGKILLed mid-shard (checkpoints are flushed
      about once a second, so about a second of items);
  (d) the combine's peak RSS with sortBy and dedupeBy (tests/bench/bench_combine_memory.py).

Peak RSS is the largest single process of the command's tree (the kernel's ru_maxrss of its
waited-for descendants), in MB.
Usage: python tests/bench/bench_scale.py [--sizes 100000,1000000,10000000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent

TRIVIAL = "smart_money.synthetic:square"  # {"i": item, "sq": item * item}, nothing else
# Appends each item it starts to $BENCH_CALLS, so the items made twice can be counted.
COUNTED = """
import os, time
_calls = open(os.environ["BENCH_CALLS"], "a", buffering=1)

def slow(item, ctx):
    _calls.write(f"{item}\\n")
    time.sleep(0.001)
    return {"i": item}
"""

POOL = """
import sys, multiprocessing as mp
import pyarrow as pa, pyarrow.parquet as pq

def square(item):
    return {"i": item, "sq": item * item}

if __name__ == "__main__":
    n, workers, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    with mp.Pool(workers) as pool:
        rows = pool.map(square, range(n), chunksize=10_000)
    pq.write_table(pa.Table.from_pylist(rows), path)
"""

# Runs argv and prints the largest RSS among it and its descendants.
PEAK = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(code)\n"
)


def measured(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one command."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", PEAK, *argv], cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return seconds, int(done.stdout.split()[-1]) / 1024


def spec_doc(name: str, items: dict, shards: int, function: str, output: str) -> dict:
    return {
        "apiVersion": "datagen.dev/v1alpha1",
        "kind": "DatasetJob",
        "metadata": {"name": name},
        "spec": {
            "items": items,
            "shards": shards,
            "generator": {"image": "bench", "function": function},
            "output": {"format": "parquet", "uri": output},
        },
    }


def write_spec(tmp: Path, name: str, doc: dict) -> Path:
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def per_item(tmp: Path, sizes: list[int], workers: int) -> None:
    print(f"(a) per item: trivial generator, {workers} workers, Parquet", flush=True)
    print(f"    {'items':>10} {'shards':>6} {'dsj run':>9} {'Pool':>8} {'ratio':>6} {'RSS dsj':>8} {'RSS Pool':>8}")
    (tmp / "pool.py").write_text(POOL)
    for n in sizes:
        shards = max(8, n // 250_000)  # a shard holds its rows until it commits: 250,000 at most
        spec = write_spec(
            tmp,
            f"scale-{n}",
            spec_doc(f"scale-{n}", {"range": {"stop": n}}, shards, TRIVIAL, f"file://{tmp}/out-{n}"),
        )
        run = [
            sys.executable,
            "-m",
            "datasetjob",
            "run",
            str(spec),
            "--workers",
            str(workers),
            "--workdir",
            str(tmp / f"w-{n}"),
            "--quiet",
        ]
        dsj_s, dsj_mb = measured(run, tmp)
        pool_s, pool_mb = measured(
            [sys.executable, str(tmp / "pool.py"), str(n), str(workers), str(tmp / f"pool-{n}.parquet")], tmp
        )
        print(
            f"    {n:>10,} {shards:>6} {dsj_s:>8.2f}s {pool_s:>7.2f}s {dsj_s / pool_s:>5.1f}x "
            f"{dsj_mb:>6.0f}MB {pool_mb:>6.0f}MB",
            flush=True,
        )


def per_pod(tmp: Path, universes: list[int], shard_items: int = 2000) -> None:
    print(f"(b) per pod: one worker doing a {shard_items:,}-item shard (shard 7)", flush=True)
    for n in universes:
        doc = spec_doc(f"pod-{n}", {"range": {"stop": n}}, n // shard_items, TRIVIAL, f"file://{tmp}/pod-{n}")
        spec = tmp / f"pod-{n}.json"
        spec.write_text(json.dumps(doc))
        seconds, mb = measured(
            [
                sys.executable,
                "-m",
                "datasetjob",
                "worker",
                "--spec",
                str(spec),
                "--index",
                str(min(7, n // shard_items - 1)),
                "--run-id",
                f"pod{n}",
            ],
            tmp,
        )
        print(f"    universe {n:>11,} items: {mb:6.0f} MB peak RSS, {seconds:5.2f}s", flush=True)


def after_sigkill(tmp: Path, n: int = 20_000) -> None:
    print(f"(c) a worker SIGKILLed mid-shard ({n:,} items of 1 ms, one shard), then run again", flush=True)
    (tmp / "counted.py").write_text(COUNTED)
    doc = spec_doc("killed", {"range": {"stop": n}}, 1, "counted:slow", f"file://{tmp}/killed")
    spec = tmp / "killed.json"
    spec.write_text(json.dumps(doc))
    calls = tmp / "calls.txt"
    env = dict(os.environ, BENCH_CALLS=str(calls), DSJ_GENERATOR_PATH=str(tmp))
    argv = [sys.executable, "-m", "datasetjob", "worker", "--spec", str(spec), "--index", "0", "--run-id", "killed"]
    worker = subprocess.Popen(argv, cwd=tmp, env=env, stderr=subprocess.DEVNULL)
    time.sleep(6)
    os.kill(worker.pid, signal.SIGKILL)
    worker.wait()
    before = len(calls.read_text().split())
    subprocess.run(argv, cwd=tmp, env=env, stderr=subprocess.DEVNULL, check=True)
    made = calls.read_text().split()
    again = len(made) - len(set(made))
    print(
        f"    {before:,} items started before the kill; {again} generated again on the rerun "
        f"({len(set(made)):,} in all)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000,10000000")
    parser.add_argument("--universes", default="10000,1000000,100000000")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--combine-rows", type=int, default=10_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp_name:
        tmp = Path(tmp_name)
        per_item(tmp, [int(s) for s in args.sizes.split(",")], args.workers)
        per_pod(tmp, [int(s) for s in args.universes.split(",")])
        after_sigkill(tmp)
        print(f"(d) the combine: {args.combine_rows:,} rows with sortBy and dedupeBy", flush=True)
        subprocess.run(
            [sys.executable, str(BENCH / "bench_combine_memory.py"), str(args.combine_rows), "--format", "parquet"],
            check=True,
        )


if __name__ == "__main__":
    main()
