"""Bad data through `dsj run`: a value no format can hold fails its item (the shard commits the
rest), a shard file that no longer matches its manifest is never published, and a corrupt reuse
segment or cache file is set aside while the run goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.runs import datasetjob, dsj, published, sha256, write_doc

# Items say which value their row gets; tokens stand for what a spec file cannot hold.
GENERATOR = """
def generate(item, ctx):
    tokens = {
        "=surrogate": "bad \\ud800",
        "=surrogate-key": {"ok": ["bad \\ud800"]},
        "=mixed": [1, "a"],
        "=list": [1, 2],
    }
    value = item["v"]
    value = tokens.get(value, value)
    cached = ctx.cached("seen:" + ctx.item_id, lambda: len(ctx.item_id))
    return {"id": ctx.item_id, "v": value, "n": cached}
"""


def doc(items: list[dict], fmt: str = "csv", shards: int = 2, **combine) -> dict:
    return datasetjob(
        "hardening",
        items={"values": items, "idTemplate": "{id}"},
        shards=shards,
        generator={"function": "hardgen:generate", "concurrency": 2},
        output={"format": fmt},
        combine=combine,
    )


class Run:
    def __init__(self, tmp_path: Path, name: str, document: dict):
        (tmp_path / "hardgen.py").write_text(GENERATOR)
        self.tmp = tmp_path
        self.spec = write_doc(document, tmp_path / f"{name}.yaml")
        self.out = tmp_path / f"out-{name}"
        self.work = tmp_path / f"work-{name}"
        self.cache = tmp_path / f"cache-{name}"

    def __call__(self, *extra: str):
        proc = dsj(
            "run",
            str(self.spec),
            "--output",
            f"file://{self.out}",
            "--workdir",
            str(self.work),
            "--cache-dir",
            str(self.cache),
            "--quiet",
            *extra,
            cwd=self.tmp,
        )
        assert "Traceback" not in proc.stderr, proc.stderr
        return proc

    def failures(self) -> list[dict]:
        files = sorted(self.out.glob("runs/*/failures/*.jsonl"))
        return [json.loads(line) for f in files for line in f.read_text().splitlines() if line.strip()]

    def shard_logs(self) -> str:
        """The logs of every shard and work packet process."""
        logs = [*self.work.glob("logs/*/shard-*.log"), *self.work.glob("logs/*/packet-*.log")]
        return "".join(p.read_text() for p in sorted(logs))


def rows(path: Path, fmt: str) -> list[dict]:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if fmt == "jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    import csv

    return list(csv.DictReader(path.open(newline="")))


CASES = [
    ("csv", "=surrogate", "ok"),
    ("jsonl", "=surrogate", "ok"),
    ("parquet", "=surrogate", "ok"),
    ("csv", "=surrogate-key", "ok"),
    ("parquet", "=mixed", "=list"),
]


@pytest.mark.parametrize("fmt,bad,good", CASES)
def test_a_value_no_format_can_hold_fails_its_item_not_the_shard(tmp_path, fmt, bad, good):
    items = [{"id": i, "v": good} for i in "abcdef"]
    items[2]["v"] = bad  # "c", in the first shard
    run = Run(tmp_path, f"bad-{fmt}", doc(items, fmt, minItemSuccessRatio=0))
    proc = run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dataset, manifest = published(run.out)
    assert [r["id"] for r in rows(dataset, fmt)] == ["a", "b", "d", "e", "f"]
    assert manifest["items"]["failed"] == 1 and manifest["items"]["done"] == 5
    (failure,) = run.failures()
    assert failure["id"] == "c"
    assert "'v'" in failure["error"], failure


def test_a_truncated_shard_is_never_published_and_resume_makes_it_again(tmp_path):
    items = [{"id": f"i{k}", "v": "ok"} for k in range(9)]
    run = Run(tmp_path, "truncated", doc(items, "csv", shards=3))
    assert run().returncode == 0
    dataset, manifest = published(run.out)
    good, good_rows = sha256(dataset), manifest["dataset"]["rows"]
    shard = next(run.out.glob("runs/*/shards/shard-*1.csv"))
    shard.write_bytes(shard.read_bytes()[:-20])

    refused = run("--resume")
    assert refused.returncode != 0
    said = refused.stdout + refused.stderr
    assert "ShardCorrupt" in said and shard.stem in said and "--resume" in said, said
    dataset, manifest = published(run.out)
    assert sha256(dataset) == good and manifest["dataset"]["rows"] == good_rows  # nothing short published

    again = run("--resume")
    assert again.returncode == 0, again.stdout + again.stderr
    dataset, manifest = published(run.out)
    assert sha256(dataset) == good and manifest["dataset"]["rows"] == good_rows


def test_a_corrupt_segment_and_cache_file_are_set_aside_and_the_run_goes_on(tmp_path):
    items = [{"id": f"i{k}", "v": "ok"} for k in range(8)]
    run = Run(tmp_path, "corrupt", doc(items, "jsonl", shards=2))
    assert run().returncode == 0
    dataset, _ = published(run.out)
    good = sha256(dataset)
    segments = sorted(run.out.glob("items/*/segments/**/*.jsonl"))
    assert len(segments) == 2
    segments[0].write_bytes(b"\x00garbage, not a segment\n")
    (run.cache / "cache.sqlite").write_bytes(b"not a database either" * 200)
    for extra in (run.cache / "cache.sqlite-wal", run.cache / "cache.sqlite-shm"):
        extra.unlink(missing_ok=True)

    proc = run()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dataset, manifest = published(run.out)
    assert sha256(dataset) == good
    assert manifest["lineage"]["reusedFrom"], "the intact segment was reused"
    assert not segments[0].exists()
    assert list(segments[0].parent.glob(segments[0].name + ".corrupt-*"))
    assert list(run.cache.glob("cache.sqlite.corrupt-*"))
    logs = run.shard_logs()
    # Named where it was found: a shard process's log, or dsj run's own output when a shard with
    # every item reused was committed by the runner itself.
    assert str(segments[0].relative_to(run.out)) in logs + proc.stderr, logs + proc.stderr
    assert logs.count("cache.sqlite") >= 1 and "corrupt" in logs, logs
