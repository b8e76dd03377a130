"""Item sources read from a real S3-compatible server: streamed, within the byte limits."""

from __future__ import annotations

from datasetjob.spec import limits
from tests.integration.runs import dsj, sample_doc, write_doc


def validate_from(tmp_path, s3_server, uri: str):
    doc = sample_doc(shards=2)
    doc["spec"]["items"] = {"fromUri": uri}
    doc["spec"]["output"] = {"endpointUrl": s3_server.endpoint_url}
    return dsj("validate", str(write_doc(doc, tmp_path / "job.yaml")), cwd=tmp_path, env=s3_server.env())


def test_an_s3_item_line_over_the_line_limit_is_refused_naming_it(tmp_path, s3_server, s3_bucket):
    s3_server.client().put_object(
        Bucket=s3_bucket, Key="endless.txt", Body=b"A\nB\n" + b"x" * (limits.MAX_ITEM_LINE_BYTES + 10)
    )
    proc = validate_from(tmp_path, s3_server, f"s3://{s3_bucket}/endless.txt")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "spec.items.fromUri" in proc.stderr and "line 3 is longer than 1 MiB" in proc.stderr, proc.stderr


def test_an_s3_item_file_is_read_as_lines(tmp_path, s3_server, s3_bucket):
    body = "".join(f'{{"symbol": "S{i}", "date": "d"}}\n' for i in range(5000)).encode()
    s3_server.client().put_object(Bucket=s3_bucket, Key="universe.jsonl", Body=body)
    proc = validate_from(tmp_path, s3_server, f"s3://{s3_bucket}/universe.jsonl")
    assert proc.returncode == 0, proc.stderr
    assert "5000 items" in proc.stdout
