"""Peak memory and wall time of the combine with spec.combine.sortBy and dedupeBy.

Writes a committed run of ROWS rows across --shards shard files (data files and manifests as
the worker commits them, under runs/<runId>/ of a local output), then combines it in a child
process and prints that process's peak RSS (os.wait4) and the combine's wall time:
  combine 10000000 rows sortBy+dedupeBy: 41.2 s, peak RSS 612 MB
With --old, the same run is combined again by a copy of the combine as it was before
combine.ordering (per-shard sorted runs merged with heapq, a Python set of the dedupe keys),
and the two published datasets are compared byte for byte.
Goal: 10^7 rows under 1 GB peak RSS, for every format.
Usage: python tests/bench/bench_combine_memory.py [ROWS] [--shards 100] [--format jsonl] [--old]
Not a test: nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "generator-image"))
sys.path.insert(0, str(REPO))  # tests.committed_shards

RUN_ID = "bench"
COMBINE = {"sortBy": ["score", "name"], "dedupeBy": ["key"]}
WORDS = ["alpha", "beta", "gamma", "delta", "zoë", "Ærø", "東京", "naïve", "", "42", "7.5"]


def spec(fmt: str, shards: int) -> Any:
    from datasetjob.spec.model import spec_from_dict

    raw = {
        "items": {"values": [{"id": str(i)} for i in range(shards)], "idTemplate": "{id}"},
        "shards": shards,
        "generator": {"function": "gen:f"},
        "output": {"format": fmt},
        "combine": COMBINE,
    }
    return spec_from_dict("bench", raw)


def shard_rows(index: int, count: int, total: int) -> list[dict[str, Any]]:
    """Deterministic rows: about a third of the dedupe keys repeat; scores tie often."""
    rng = random.Random(index)
    rows = []
    for n in range(count):
        i = index * count + n
        rows.append(
            {
                "id": i,
                "key": f"k{rng.randrange(max(1, total * 2 // 3))}",
                "score": round(rng.uniform(-1000, 1000), 1) if n % 17 else None,
                "name": f"{WORDS[rng.randrange(len(WORDS))]}-{rng.randrange(1000)}",
                "text": "lorem ipsum dolor sit amet " * (1 + n % 3),
            }
        )
    return rows


def write_run(root: Path, rows: int, shards: int, fmt: str) -> None:
    """A committed run: each shard's data file and manifest, as the worker writes them."""
    from datasetjob.spec.sharding import shard_bounds
    from datasetjob.store.backends import FileStore
    from tests.committed_shards import commit_shard

    root.mkdir(parents=True, exist_ok=True)
    store = FileStore(root)
    for index in range(shards):
        start, stop = shard_bounds(rows, shards, index)
        scratch = root / f"scratch.{fmt}"
        commit_shard(store, RUN_ID, index, shard_rows(index, stop - start, rows), fmt, scratch, 1).unlink()


# -- the combine before combine.ordering (a copy, for comparison) ----------------------------------------
def old_combine_run(spec: Any, run_id: str, store: Any, total_items: int) -> tuple[int, int]:
    """combine_run as it was: per-shard sorted runs spilled as jsonl, merged with heapq.merge,
    deduplicated with a set of every key. (rows, duplicates dropped); publishes the dataset only."""
    import heapq

    from datasetjob.combine import run
    from datasetjob.combine.rules import sort_key_part
    from datasetjob.store import layout
    from datasetjob.store.backends import local_tempdir
    from datasetjob.store.tables import RowWriter, iter_rows, write_rows

    fmt = spec.output.format
    verdict = run.judge_run(spec, run_id, store, total_items)
    tmpdir = local_tempdir("dsj-combine-")
    try:
        files = run.ShardFiles(store, run_id, fmt, tmpdir, verdict.manifests)
        with_rows = [i for i in sorted(verdict.manifests) if verdict.manifests[i]["rows"] > 0]
        declared = dict(spec.combine.columns)
        schema = run._arrow_schema(files, with_rows, verdict.columns, declared) if fmt == "parquet" else None
        out_path = os.path.join(tmpdir, f"combined-dataset.{fmt}")
        writer = RowWriter(out_path, fmt, verdict.columns, schema)
        sort_by, dedupe_by = spec.combine.sort_by, spec.combine.dedupe_by
        kinds = [declared.get(c) for c in sort_by]

        def key(row: dict[str, Any]) -> tuple[Any, ...]:
            return tuple(sort_key_part(row.get(c), k) for c, k in zip(sort_by, kinds, strict=True))

        runs = []
        for index in with_rows:
            rows = sorted(run._checked_rows(files, index, declared), key=key)
            run_path = os.path.join(tmpdir, f"sorted-{index}.jsonl")
            write_rows(rows, run_path, "jsonl", verdict.columns, strict_json=False)
            runs.append(iter_rows(run_path, "jsonl"))
        dropped = 0

        def deduplicated() -> Any:
            nonlocal dropped
            seen: set[tuple[str, ...]] = set()
            for row in heapq.merge(*runs, key=key):
                k = tuple(json.dumps(row.get(c), sort_keys=True) for c in dedupe_by)
                if k in seen:
                    dropped += 1
                    continue
                seen.add(k)
                yield row

        run._write_dataset(deduplicated(), writer)
        store.put_file(layout.combined_key(run_id, fmt), out_path)
        return writer.rows, dropped
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def child(mode: str, root: Path, fmt: str, shards: int) -> None:
    """One combine, in this process; prints its result as JSON."""
    from datasetjob.store import layout
    from datasetjob.store.backends import FileStore
    from datasetjob.store.tables import file_digest

    store = FileStore(root)
    the_spec = spec(fmt, shards)
    start = time.perf_counter()
    if mode == "new":
        from datasetjob.combine.run import combine_run

        result = combine_run(the_spec, RUN_ID, store, shards)
        rows, dropped = result.rows, result.duplicates_dropped
    else:
        rows, dropped = old_combine_run(the_spec, RUN_ID, store, shards)
    seconds = time.perf_counter() - start
    sha, _ = file_digest(str(store.path(layout.combined_key(RUN_ID, fmt))))
    print(json.dumps({"rows": rows, "dropped": dropped, "seconds": seconds, "sha256": sha}))


def measure(mode: str, root: Path, fmt: str, shards: int) -> dict[str, Any]:
    """Runs one combine in a child process: its result with its peak RSS in MB."""
    cmd = [sys.executable, __file__, "--child", mode, "--root", str(root), "--format", fmt, "--shards", str(shards)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, cwd=REPO)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"the {mode} combine failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    result["peak_mb"] = usage.ru_maxrss / 1024  # KiB on Linux
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("rows", nargs="?", type=int, default=10_000_000)
    parser.add_argument("--shards", type=int, default=100)
    parser.add_argument("--format", default="jsonl", choices=["csv", "jsonl", "parquet"])
    parser.add_argument("--old", action="store_true", help="also combine with the code before combine.ordering")
    parser.add_argument("--child", choices=["new", "old"], help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, Path(args.root), args.format, args.shards)
        return
    tmp = Path(tempfile.mkdtemp(prefix="bench-combine-"))
    try:
        start = time.perf_counter()
        write_run(tmp / "out", args.rows, args.shards, args.format)
        print(
            f"wrote {args.rows} rows in {args.shards} {args.format} shards: {time.perf_counter() - start:.1f} s",
            flush=True,
        )
        results = {}
        for mode in ["new", "old"] if args.old else ["new"]:
            r = results[mode] = measure(mode, tmp / "out", args.format, args.shards)
            label = "" if mode == "new" else " (before combine.ordering)"
            print(
                f"combine {args.rows} rows sortBy+dedupeBy{label}: {r['seconds']:.1f} s, "
                f"peak RSS {r['peak_mb']:.0f} MB "
                f"({r['rows']} published, {r['dropped']} duplicates dropped, {args.format})",
                flush=True,
            )
        if args.old:
            same = results["new"]["sha256"] == results["old"]["sha256"]
            print(f"published datasets byte-identical: {same} (sha256 {results['new']['sha256'][:16]}…)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
