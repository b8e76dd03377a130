"""Odd rows from a generator, through `dsj run`: one rule whatever the shard count, values
converted to the declared column types or their item failed (named), strict JSON lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.runs import dsj, published, sha256, write_doc

# Items say which value each column gets; tokens stand for what a spec cannot hold.
GENERATOR = """
def generate(item, ctx):
    tokens = {"=nan": float("nan"), "=inf": float("inf"), "=big": 2 ** 70}
    return {k: tokens.get(v, v) if isinstance(v, str) else v for k, v in item.items()}
"""


def odd_doc(items: list[dict], shards: int, fmt: str, **combine) -> dict:
    return {
        "apiVersion": "datagen.dev/v1alpha1",
        "kind": "DatasetJob",
        "metadata": {"name": "odd-rows"},
        "spec": {
            "items": {"values": items, "idTemplate": "{id}"},
            "shards": shards,
            "generator": {"function": "oddrows:generate"},
            "output": {"format": fmt},
            "combine": combine,
        },
    }


def run_odd(tmp_path: Path, name: str, doc: dict, *extra: str):
    (tmp_path / "oddrows.py").write_text(GENERATOR)
    spec = write_doc(doc, tmp_path / f"{name}.yaml")
    out = tmp_path / f"out-{name}"
    proc = dsj(
        "run",
        str(spec),
        "--output",
        f"file://{out}",
        "--workdir",
        str(tmp_path / f"work-{name}"),
        "--quiet",
        *extra,
        cwd=tmp_path,
        env={"DSJ_EMBEDDED_CACHE_DIR": str(tmp_path / "cache")},
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc, out


def failures(out: Path) -> list[dict]:
    return [
        json.loads(line) for f in sorted(out.glob("runs/*/failures/*.jsonl")) for line in f.read_text().splitlines()
    ]


def strict_json(line: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(line, parse_constant=refuse)


@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_column_drift_is_one_rule_whatever_the_shard_count(tmp_path, fmt):
    """Item e has a column the others lack: merged the same with 1 shard or 3 (e alone in one)."""
    items = [{"id": i, "n": k} for k, i in enumerate("abcdef")]
    items[4]["extra"] = "x"
    datasets = {}
    for shards in (1, 3):
        proc, out = run_odd(tmp_path, f"drift-{fmt}-{shards}", odd_doc(items, shards, fmt))
        assert proc.returncode == 0, proc.stderr
        datasets[shards], manifest = published(out)
        assert manifest["dataset"]["columns"] == ["id", "n", "extra"]
    if fmt == "parquet":
        import pyarrow.parquet as pq

        one, three = (pq.read_table(datasets[s]) for s in (1, 3))
        assert one.schema == three.schema and one.to_pylist() == three.to_pylist()
        assert [r["extra"] for r in one.to_pylist()] == [None] * 4 + ["x", None]
    else:
        assert sha256(datasets[1]) == sha256(datasets[3])


def test_parquet_int_and_string_drift_is_converted_to_the_declared_type(tmp_path):
    items = [{"id": "a", "n": 5}, {"id": "b", "n": "7"}, {"id": "c", "n": 9}, {"id": "d", "n": "11"}]
    proc, out = run_odd(tmp_path, "declared", odd_doc(items, 2, "parquet", columns={"id": "string", "n": "int64"}))
    assert proc.returncode == 0, proc.stderr
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(published(out)[0])
    assert table.schema.field("n").type == pa.int64()
    assert table.column("n").to_pylist() == [5, 7, 9, 11]


def test_a_value_that_is_not_the_declared_type_fails_its_item_and_the_refusal_names_it(tmp_path):
    items = [{"id": "a", "n": 5}, {"id": "b", "n": "seven"}, {"id": "c", "n": 9}]
    proc, out = run_odd(tmp_path, "refused", odd_doc(items, 2, "parquet", columns={"id": "string", "n": "int64"}))
    assert proc.returncode == 1
    assert "Not published (TooFewItems)" in proc.stderr and "item 'b'" in proc.stderr, proc.stderr
    assert "column 'n'" in proc.stderr, proc.stderr
    assert [(f["id"], "column 'n'" in f["error"]) for f in failures(out)] == [("b", True)]


def test_jsonl_output_never_holds_nan_or_infinity(tmp_path):
    items = [{"id": "a", "x": 1.5}, {"id": "b", "x": "=nan"}, {"id": "c", "x": "=inf"}, {"id": "d", "x": 2.5}]
    proc, out = run_odd(tmp_path, "jsonl", odd_doc(items, 2, "jsonl", minItemSuccessRatio=0.5))
    assert proc.returncode == 0, proc.stderr
    rows = [strict_json(line) for line in published(out)[0].read_text().splitlines()]
    assert rows == [{"id": "a", "x": 1.5}, {"id": "b", "x": None}, {"id": "d", "x": 2.5}]
    [failure] = failures(out)
    assert failure["id"] == "c" and "column 'x'" in failure["error"] and "Infinity" in failure["error"]


def test_nan_in_a_declared_int64_csv_column_fails_its_item_instead_of_becoming_empty(tmp_path):
    items = [{"id": "a", "n": 1}, {"id": "b", "n": "=nan"}, {"id": "c", "n": 3}]
    doc = odd_doc(items, 1, "csv", columns={"id": "string", "n": "int64"}, minItemSuccessRatio=0.5)
    proc, out = run_odd(tmp_path, "nan-int", doc)
    assert proc.returncode == 0, proc.stderr
    assert published(out)[0].read_text().splitlines() == ["id,n", "a,1", "c,3"]
    [failure] = failures(out)
    assert failure["id"] == "b" and "column 'n'" in failure["error"] and "int64" in failure["error"]


def test_a_2_to_the_70_value_fails_that_item_not_the_shard(tmp_path):
    items = [{"id": "a", "n": 1}, {"id": "b", "n": "=big"}, {"id": "c", "n": 3}]
    proc, out = run_odd(tmp_path, "big", odd_doc(items, 1, "parquet", minItemSuccessRatio=0.5))
    assert proc.returncode == 0, proc.stderr
    import pyarrow.parquet as pq

    assert pq.read_table(published(out)[0]).column("n").to_pylist() == [1, 3]
    [failure] = failures(out)
    assert failure["id"] == "b" and "column 'n'" in failure["error"] and "int64" in failure["error"]
    logs = "".join(p.read_text() for p in (tmp_path / "work-big").rglob("shard-*.log"))
    assert "--- attempt 2" not in logs  # the shard committed the first time


def test_parquet_type_drift_without_declared_types_fails_the_later_item_naming_the_column(tmp_path):
    items = [{"id": "a", "n": 1}, {"id": "b", "n": "two"}, {"id": "c", "n": 3}]
    proc, out = run_odd(tmp_path, "undeclared", odd_doc(items, 1, "parquet", minItemSuccessRatio=0.5))
    assert proc.returncode == 0, proc.stderr
    [failure] = failures(out)
    assert failure["id"] == "b" and "column 'n'" in failure["error"] and "spec.combine.columns" in failure["error"]


def test_parquet_type_drift_across_shards_without_declared_types_is_refused_naming_the_column(tmp_path):
    items = [{"id": "a", "n": 1}, {"id": "b", "n": "two"}]
    proc, out = run_odd(tmp_path, "undeclared-shards", odd_doc(items, 2, "parquet"))
    assert proc.returncode == 1
    assert "SchemaMismatch" in proc.stderr and "column 'n'" in proc.stderr and "shard-00001" in proc.stderr
