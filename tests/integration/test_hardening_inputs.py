"""Hostile inputs to `dsj`: each is refused with a one-line message naming it, quickly and
within bounded memory, and no secret of the spec is written anywhere."""

from __future__ import annotations

import json
import os
import resource
from pathlib import Path

import pytest

from tests.integration.probe import probe_doc, write_probe
from tests.integration.runs import dsj, sample_doc, write_doc

QUERY_SECRET = "q-s3cr3t-9e1f"
ENV_SECRET = "sk-live-env-7c2d"


def _memory_cap(limit: int = 1 << 30):
    """preexec_fn: the child may map at most `limit` bytes, so a memory bomb fails instead."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return cap


def assert_refused(proc, *said: str) -> None:
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    for text in said:
        assert text in proc.stderr, proc.stderr


def test_a_format_spec_in_the_id_template_is_refused_by_validate_and_run(tmp_path):
    doc = sample_doc(shards=1)
    doc["spec"]["items"] = {"product": {"k": ["a", "b"]}, "idTemplate": "{k:>999999999}"}
    path = write_doc(doc, tmp_path / "bomb.yaml")
    for cmd in (("validate", str(path)), ("run", str(path), "--quiet")):
        proc = dsj(*cmd, cwd=tmp_path, timeout=60, preexec_fn=_memory_cap())
        assert_refused(proc, "spec.items.idTemplate: ")
    assert not (tmp_path / "datasets").exists()


def test_an_id_over_the_length_cap_is_refused_naming_the_limit(tmp_path):
    doc = sample_doc(shards=1)
    doc["spec"]["items"] = {"product": {"k": ["a" * 600, "b"]}, "idTemplate": "{k}"}
    proc = dsj("validate", str(write_doc(doc, tmp_path / "long.yaml")), cwd=tmp_path, timeout=60)
    assert_refused(proc, "spec.items.idTemplate: ", "512")


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def test_a_fifo_as_the_spec_file_is_refused_not_waited_on(tmp_path):
    fifo = _fifo(tmp_path / "spec.yaml")
    proc = dsj("validate", str(fifo), cwd=tmp_path, timeout=30)
    assert_refused(proc, f"{fifo}: ", "not a regular file")


def test_a_fifo_as_the_item_source_is_refused_not_waited_on(tmp_path):
    fifo = _fifo(tmp_path / "items.jsonl")
    doc = sample_doc(shards=1)
    doc["spec"]["items"] = {"fromUri": f"file://{fifo}"}
    proc = dsj("validate", str(write_doc(doc, tmp_path / "fifo.yaml")), cwd=tmp_path, timeout=30)
    assert_refused(proc, "spec.items.fromUri: ", str(fifo), "not a regular file")


def test_a_directory_as_the_item_source_is_refused(tmp_path):
    doc = sample_doc(shards=1)
    doc["spec"]["items"] = {"fromUri": f"file://{tmp_path}"}
    proc = dsj("validate", str(write_doc(doc, tmp_path / "dir.yaml")), cwd=tmp_path, timeout=30)
    assert_refused(proc, "spec.items.fromUri: ", str(tmp_path))


@pytest.mark.parametrize("url", ["redis://localhost:99999/0", "redis://localhost:abc/0", "redis://localhost/x"])
def test_a_redis_url_that_does_not_parse_is_refused_before_any_worker_starts(tmp_path, url):
    doc = sample_doc(shards=1)
    doc["spec"]["cache"] = {"redisUrl": url}
    proc = dsj("validate", str(write_doc(doc, tmp_path / "redis.yaml")), cwd=tmp_path, timeout=60)
    assert_refused(proc, "spec.cache.redisUrl: ")
    ok = write_doc(sample_doc(shards=1), tmp_path / "ok.yaml")
    proc = dsj("run", str(ok), "--redis-url", url, "--quiet", cwd=tmp_path, timeout=60)
    assert_refused(proc, "--redis-url: ")
    assert not (tmp_path / "datasets").exists()


def test_an_item_id_with_a_nul_byte_is_refused_naming_the_item(tmp_path):
    items = tmp_path / "items.jsonl"
    items.write_text('"ok"\n"bad\\u0000id"\n')
    doc = sample_doc(shards=1)
    doc["spec"]["items"] = {"fromUri": f"file://{items}"}
    doc["spec"]["generator"] = {"command": ["echo", "{items}"], "outputFile": "out-{shard}.csv"}
    path = write_doc(doc, tmp_path / "nul.yaml")
    for cmd in (("validate", str(path)), ("run", str(path), "--quiet")):
        proc = dsj(*cmd, cwd=tmp_path, timeout=60)
        assert_refused(proc, "spec.items: item 2 ", "NUL")


def test_a_garbage_shard_manifest_on_resume_is_a_message_not_a_traceback(tmp_path):
    doc = probe_doc([f"i{n}" for n in range(4)], shards=2)
    spec = write_probe(doc, tmp_path)
    out = tmp_path / "out"
    args = ("run", str(spec), "--output", f"file://{out}", "--workdir", str(tmp_path / "w"), "--quiet")
    env = {"DSJ_EMBEDDED_CACHE_DIR": str(tmp_path / "cache")}
    assert dsj(*args, cwd=tmp_path, env=env).returncode == 0
    manifests = list(out.rglob("shard-00000*.json"))
    assert manifests
    for manifest in manifests:
        manifest.write_text("{not json")
    proc = dsj(*args, "--resume", cwd=tmp_path, env=env, timeout=120)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "shard-00000" in proc.stderr


def _grep(root: Path, needle: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle.encode() in p.read_bytes()]


def test_a_query_string_password_and_env_literals_are_used_but_never_written(tmp_path, redis_server_factory):
    server = redis_server_factory(password=QUERY_SECRET)
    url = f"redis://{server.host}:{server.port}/0?password={QUERY_SECRET}"
    doc = probe_doc([f"i{n}" for n in range(8)], shards=2, cache={"redisUrl": url})
    doc["spec"]["generator"]["env"] = [{"name": "API_KEY", "value": ENV_SECRET}]
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    spec = write_probe(doc, run_dir)
    out, work = tmp_path / "out", tmp_path / "w"
    args = ("run", str(spec), "--output", f"file://{out}", "--workdir", str(work))
    env = {"DSJ_EMBEDDED_CACHE_DIR": str(tmp_path / "cache"), "DSJ_LOG_LEVEL": "DEBUG"}
    procs = [dsj(*args, cwd=run_dir, env=env), dsj(*args, "--resume", cwd=run_dir, env=env)]
    for proc in procs:
        assert proc.returncode == 0, proc.stderr
        for secret in (QUERY_SECRET, ENV_SECRET):
            assert secret not in proc.stdout and secret not in proc.stderr

    import redis

    assert redis.Redis.from_url(url).keys("dsj:*")  # the workers reached the protected Redis
    for name in ("spec.json", "manifest.json", "datasetjob.json", "shard-00000.log"):
        assert list(tmp_path.rglob(name)), f"expected a {name} to check"
    assert list(out.rglob("fingerprint*.json")) or list(out.rglob("*fingerprint*")), "expected a fingerprint file"
    for secret in (QUERY_SECRET, ENV_SECRET):
        assert [p for p in _grep(tmp_path, secret) if p.name != "probe.yaml"] == []
    manifest = json.loads(next(out.rglob("manifest.json")).read_text())
    assert manifest["spec"]["generator"]["env"][0]["value"].startswith("sha256:")
    assert "password=***" in manifest["spec"]["cache"]["redisUrl"]


def test_run_with_a_fifo_item_source_is_refused_not_waited_on(tmp_path):
    """Opening a FIFO for reading without O_NONBLOCK would wait for a writer for ever."""
    fifo = _fifo(tmp_path / "items.jsonl")
    doc = sample_doc(shards=1)
    doc["spec"]["items"] = {"fromUri": f"file://{fifo}"}
    proc = dsj("run", str(write_doc(doc, tmp_path / "f.yaml")), "--quiet", cwd=tmp_path, timeout=30)
    assert_refused(proc, "spec.items.fromUri: ", "not a regular file")
