"""User errors end with a message naming the field and exit 2, never a traceback or exit 1."""

from __future__ import annotations

import copy

import pytest
import yaml

from datasetjob.cli import main

GOOD = {
    "apiVersion": "datagen.dev/v1alpha1",
    "kind": "DatasetJob",
    "metadata": {"name": "cli-errors"},
    "spec": {
        "items": {"values": ["a", "b", "c"]},
        "shards": 2,
        "generator": {"function": "json:dumps"},
        "combine": {"columns": {"symbol": "string", "flow": "float64"}},
    },
}


def write(tmp_path, doc) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def run(tmp_path, capsys, *args) -> tuple[int, str]:
    code = main(list(args))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err


def nothing_written(tmp_path) -> bool:
    return not (tmp_path / "out").exists() and not (tmp_path / "datasets").exists()


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def test_binary_spec_file_exits_2(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_bytes(bytes(range(256)) * 4)
    code, err = run(tmp_path, capsys, "validate", str(path))
    assert code == 2 and "UTF-8" in err


def test_non_utf8_spec_file_exits_2_naming_the_offset(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_bytes(yaml.safe_dump(GOOD).encode().replace(b"cli-errors", b"cli-\xe9rrors"))
    for command in (["validate", str(path)], ["run", str(path), "--output", f"file://{tmp_path}/out", "--quiet"]):
        code, err = run(tmp_path, capsys, *command)
        assert code == 2 and "not UTF-8" in err and "byte" in err, err
    assert nothing_written(tmp_path)


def test_duplicate_yaml_keys_are_refused_naming_the_key(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text(
        "apiVersion: datagen.dev/v1alpha1\nkind: DatasetJob\nmetadata: {name: dup}\nspec:\n"
        "  items: {values: [a, b]}\n  shards: 2\n  generator: {function: 'json:dumps'}\n"
        "  shards: 1\n"
    )
    code, err = run(tmp_path, capsys, "validate", str(path))
    assert code == 2 and "spec.shards: duplicate key" in err and "line 8" in err, err


def test_duplicate_keys_in_json_are_refused_too(tmp_path, capsys):
    path = tmp_path / "job.json"
    path.write_text(
        '{"apiVersion": "datagen.dev/v1alpha1", "kind": "DatasetJob", "metadata": {"name": "d"},'
        ' "spec": {"items": {"values": ["a"]}, "generator": {"function": "json:dumps"},'
        ' "shards": 1, "shards": 2}}'
    )
    code, err = run(tmp_path, capsys, "validate", str(path))
    assert code == 2 and "duplicate key" in err and "shards" in err, err


@pytest.mark.parametrize("field", ["sortBy", "dedupeBy"])
def test_sort_and_dedupe_columns_must_be_declared_columns(tmp_path, capsys, field):
    doc = copy.deepcopy(GOOD)
    doc["spec"]["combine"][field] = ["symbol", "date"]
    path = write(tmp_path, doc)
    for command in (["validate", path], ["run", path, "--output", f"file://{tmp_path}/out", "--quiet"]):
        code, err = run(tmp_path, capsys, *command)
        assert code == 2 and f"spec.combine.{field}" in err and "'date'" in err, err
    assert nothing_written(tmp_path)


def test_s3_output_without_a_bucket_is_refused_by_validate_and_run(tmp_path, capsys):
    doc = copy.deepcopy(GOOD)
    doc["spec"]["output"] = {"uri": "s3:///prefix"}
    path = write(tmp_path, doc)
    code, err = run(tmp_path, capsys, "validate", path)
    assert code == 2 and "spec.output.uri" in err, err
    code, err = run(tmp_path, capsys, "run", path, "--quiet")
    assert code == 2 and "spec.output.uri" in err, err


def test_s3_output_option_without_a_bucket_exits_2(tmp_path, capsys):
    path = write(tmp_path, GOOD)
    code, err = run(tmp_path, capsys, "run", path, "--output", "s3:///prefix", "--quiet")
    assert code == 2 and "--output" in err and "bucket" in err, err


def test_unwritable_output_under_proc_exits_2(tmp_path, capsys):
    path = write(tmp_path, GOOD)
    code, err = run(tmp_path, capsys, "run", path, "--output", "file:///proc/x", "--quiet")
    assert code == 2 and "--output" in err and "/proc/x" in err, err


def test_redis_url_option_with_another_scheme_exits_2_before_anything_starts(tmp_path, capsys):
    path = write(tmp_path, GOOD)
    code, err = run(
        tmp_path, capsys, "run", path, "--output", f"file://{tmp_path}/out", "--quiet", "--redis-url", "http://foo"
    )
    assert code == 2 and "--redis-url" in err and "redis://" in err, err
    assert nothing_written(tmp_path)


def test_quiet_still_prints_why_a_spec_is_refused(tmp_path, capsys):
    doc = copy.deepcopy(GOOD)
    doc["spec"]["shards"] = 0
    code, err = run(tmp_path, capsys, "run", write(tmp_path, doc), "--quiet")
    assert code == 2 and "spec.shards" in err
