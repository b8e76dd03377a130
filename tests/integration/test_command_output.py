"""What a command's output must account for: empty output, rows naming their items, non-object rows."""

from __future__ import annotations

import json

from tests.integration.runs import datasetjob, dsj, published, write_doc


def command_doc(script: str, fmt: str = "csv", **generator) -> dict:
    return datasetjob(
        "cmd",
        items={"values": ["a", "b", "c"]},
        shards=1,
        generator={"command": ["sh", "-c", script], "outputFile": f"out.{fmt}", **generator},
        output={"format": fmt},
        retries={"perShard": 0, "maxFailedShards": 0},
        combine={"minItemSuccessRatio": 0},
    )


def run(tmp_path, doc: dict):
    return dsj(
        "run",
        str(write_doc(doc, tmp_path / "job.yaml")),
        "--output",
        f"file://{tmp_path}/out",
        "--workdir",
        str(tmp_path / "w"),
        cwd=tmp_path,
    )


def shard_log(tmp_path) -> str:
    return next((tmp_path / "w" / "logs").glob("*/shard-00000.log")).read_text()


def test_an_empty_output_for_a_shard_with_items_fails_the_shard(tmp_path):
    proc = run(tmp_path, command_doc(": > out.csv"))
    assert proc.returncode == 1, proc.stderr
    assert not (tmp_path / "out" / "latest.json").exists()
    assert "wrote no rows for 3 item(s)" in shard_log(tmp_path)


def test_an_empty_output_is_accepted_when_the_spec_says_so(tmp_path):
    proc = run(tmp_path, command_doc(": > out.csv", allowEmptyOutput=True))
    assert proc.returncode == 0, proc.stderr
    assert published(tmp_path / "out")[1]["dataset"]["rows"] == 0


def test_rows_naming_their_items_count_the_rest_as_failed(tmp_path):
    script = "printf 'id,v\\na,1\\nc,3\\n' > out.csv"
    proc = run(tmp_path, command_doc(script, idColumn="id"))
    assert proc.returncode == 0, proc.stderr
    _, manifest = published(tmp_path / "out")
    assert (manifest["items"]["done"], manifest["items"]["failed"], manifest["dataset"]["rows"]) == (2, 1, 2)
    failures = [
        json.loads(line)
        for line in next((tmp_path / "out" / "runs").glob("*/failures/shard-00000.jsonl")).read_text().splitlines()
    ]
    assert [f["id"] for f in failures] == ["b"]
    assert "wrote no row for this item" in failures[0]["error"]


def test_a_row_naming_an_item_of_no_shard_fails_the_shard(tmp_path):
    proc = run(tmp_path, command_doc("printf 'id,v\\na,1\\nzzz,3\\n' > out.csv", idColumn="id"))
    assert proc.returncode == 1, proc.stderr
    assert "names 1 item(s) not in this shard, e.g. 'zzz'" in shard_log(tmp_path)


def test_json_lines_that_are_not_objects_fail_the_shard_with_a_message(tmp_path):
    proc = run(tmp_path, command_doc("printf '[1, 2]\\n' > out.jsonl", fmt="jsonl"))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "row 1 is not an object (a list)" in shard_log(tmp_path)


def test_a_failed_shard_is_reported_with_its_last_error_not_only_exit_codes(tmp_path):
    proc = run(tmp_path, command_doc("echo 'upstream said no' >&2; exit 3"))
    assert proc.returncode == 1, proc.stderr
    assert "shard-00000 failed (exit codes [1]): RuntimeError: generator command exited with code 3" in proc.stderr
