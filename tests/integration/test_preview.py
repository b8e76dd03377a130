"""`dsj run --sample N`: the generator on N items spread across the universe, printed, with
nothing written under the output and no lease taken; a failing item is shown with its error."""

from __future__ import annotations

import shutil

from tests.integration.runs import REPO, dsj, sample_doc, write_doc

SCRIPT = REPO / "generator-image" / "examples" / "smart_money_js" / "generate-dataset.js"


def preview(tmp_path, doc, n="5", env=None):
    proc = dsj(
        "run",
        str(write_doc(doc, tmp_path / "job.yaml")),
        "--sample",
        n,
        cwd=tmp_path,
        env={"DSJ_EMBEDDED_CACHE_DIR": str(tmp_path / "cache"), "COLUMNS": "200", **(env or {})},
    )
    assert not (tmp_path / "datasets").exists(), "a preview writes nothing under the output"
    return proc


def test_a_sample_prints_rows_from_across_the_universe_and_writes_nothing(tmp_path):
    doc = sample_doc(symbols=10, dates=6, shards=3)
    proc = preview(tmp_path, doc)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "5 rows from a sample of 5 items" in out
    for first_and_last in ("AAA", "AJL"):  # the first and the last symbol: spread, not the head
        assert first_and_last in out
    assert "float64" in out and "warning" not in out


def test_a_failing_item_is_shown_with_its_error_and_a_disagreeing_column_is_warned(tmp_path):
    doc = sample_doc(symbols=10, dates=6, shards=3)
    doc["spec"]["combine"]["columns"]["label"] = "string"
    doc["spec"]["combine"]["columns"]["extra"] = "int64"
    proc = preview(tmp_path, doc, env={"SMF_FAIL_ITEMS": "AAA:2023-01-31"})
    assert proc.returncode == 1
    said = " ".join(proc.stdout.split())
    assert "item AAA:2023-01-31 failed" in said and "Error" in said
    assert "column 'extra' is declared in spec.combine.columns but no sampled row has it" in said
    assert "4 rows from a sample of 5 items" in said


def test_a_command_generator_is_previewed_too(tmp_path):
    assert shutil.which("node"), "Node.js is needed for the command-mode sample"
    doc = sample_doc(symbols=10, dates=6, shards=3)
    doc["spec"]["generator"] = {
        "command": ["node", str(SCRIPT), "--items", "{items}", "--name", "{shard}"],
        "outputFile": "data/training/smart-money-flow/{shard}.csv",
    }
    proc = preview(tmp_path, doc, n="3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "3 rows from a sample of 3 items" in proc.stdout
