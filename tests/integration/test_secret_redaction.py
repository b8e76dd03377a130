"""A password in a URL of the spec is used, and never written or printed."""

from __future__ import annotations

from pathlib import Path

import redis

from tests.integration.probe import probe_doc, write_probe
from tests.integration.runs import dsj, write_doc

SECRET = "s3cr3t-Pa55word-4b1d"


def files_containing(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_a_redis_password_is_used_but_never_written_or_printed(tmp_path, redis_server_factory):
    server = redis_server_factory(password=SECRET)
    url = f"redis://:{SECRET}@{server.host}:{server.port}/0"
    doc = probe_doc([f"i{n}" for n in range(8)], shards=2, cache={"redisUrl": url})
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    spec = write_probe(doc, run_dir)
    outputs = []
    proc = dsj(
        "run",
        str(spec),
        "--output",
        f"file://{tmp_path}/out",
        "--workdir",
        str(tmp_path / "w"),
        cwd=run_dir,
        env={"DSJ_EMBEDDED_CACHE_DIR": str(tmp_path / "cache")},
    )
    outputs.append(proc)
    assert proc.returncode == 0, proc.stderr
    # the workers did reach the password-protected Redis (its per-run stats are there)
    assert redis.Redis.from_url(url).keys("dsj:*")

    # a bad spec that echoes the URL in its error message
    doc["spec"]["cache"]["redisUrl"] = f"http://user:{SECRET}@{server.host}:{server.port}/0"
    bad = dsj("validate", str(write_doc(doc, tmp_path / "bad.yaml")), cwd=run_dir)
    outputs.append(bad)
    assert bad.returncode == 2 and "spec.cache.redisUrl" in bad.stderr

    for written in ("spec.json", "manifest.json", "datasetjob.json", "shard-00000.log"):
        assert list(tmp_path.rglob(written)), f"expected a {written} to check"
    leaks = [p for p in files_containing(tmp_path, SECRET) if p.name not in ("probe.yaml", "bad.yaml")]
    assert leaks == []
    for proc in outputs:
        assert SECRET not in proc.stdout and SECRET not in proc.stderr
