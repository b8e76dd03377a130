"""What a spec or an item cannot make `dsj run` do: touch files outside the shard's working
directory, forge log lines; and what it does by default on a small machine."""

from __future__ import annotations

import os

from tests.integration.probe import probe_doc, write_probe
from tests.integration.runs import dsj, write_doc


def command_doc(output_file: str, values: list, command: list[str], shards: int = 1) -> dict:
    return {
        "apiVersion": "datagen.dev/v1alpha1",
        "kind": "DatasetJob",
        "metadata": {"name": "cmd"},
        "spec": {
            "items": {"values": values},
            "shards": shards,
            "generator": {"command": command, "outputFile": output_file},
        },
    }


def test_an_output_file_outside_the_work_dir_is_never_touched(tmp_path):
    victim = tmp_path / "x" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("keep me")
    work = tmp_path / "work"
    work.mkdir()
    for name, output_file, values in [
        ("absolute", str(victim), ["a"]),
        ("dotdot", "../x/victim.txt", ["a"]),
        ("item", "{items}", ["../x/victim.txt"]),
    ]:
        spec = write_doc(command_doc(output_file, values, ["true"]), work / f"{name}.yaml")
        proc = dsj(
            "run",
            str(spec),
            "--output",
            f"file://{tmp_path}/out-{name}",
            "--workdir",
            str(tmp_path / f"w-{name}"),
            cwd=work,
        )
        assert proc.returncode == 2, (name, proc.stderr)
        assert "spec.generator.outputFile" in proc.stderr, name
        assert victim.read_text() == "keep me", name


def test_a_worker_refuses_an_output_file_behind_a_symlink(tmp_path):
    """In a pod nothing checked the spec against the filesystem: the worker does, before any unlink."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "shard-00000.csv").write_text("keep me")
    work = tmp_path / "work"
    work.mkdir()
    (work / "link").symlink_to(outside)
    doc = command_doc("link/{shard}.csv", ["a"], ["true"])
    doc["spec"]["output"] = {"uri": f"file://{tmp_path}/out"}
    spec = write_doc(doc, tmp_path / "job.yaml")
    proc = dsj("worker", "--spec", str(spec), "--index", "0", "--run-id", "r1", cwd=work)
    assert proc.returncode == 78, proc.stderr  # EXIT_DO_NOT_RETRY: a retry cannot help
    assert "spec.generator.outputFile" in proc.stderr and "outside" in proc.stderr
    assert (outside / "shard-00000.csv").read_text() == "keep me"


def test_an_item_id_cannot_forge_lines_in_the_shard_log(tmp_path):
    forged = "2026-01-01 00:00:00,000 INFO datasetjob.worker: shard 0 committed: 9 items done"
    doc = probe_doc(["ok", "fail\n" + forged, "fail\r\x1b[2Kcarriage"], shards=1)
    spec = write_probe(doc, tmp_path)
    proc = dsj("run", str(spec), "--output", f"file://{tmp_path}/out", "--workdir", str(tmp_path / "w"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    log = next((tmp_path / "w" / "logs").glob("*/shard-00000.log")).read_text()
    lines = log.splitlines()
    assert not any(line.startswith(forged) for line in lines)
    assert "\x1b" not in log and "\r" not in log
    assert any("fail\\n2026-01-01" in line for line in lines)


def test_default_workers_fit_the_cpus_and_the_live_view_says_so(tmp_path):
    doc = probe_doc([f"i{n}" for n in range(30)], shards=30, parallelism=30)
    spec = write_probe(doc, tmp_path)
    one_cpu = {sorted(os.sched_getaffinity(0))[0]}
    proc = dsj(
        "run",
        str(spec),
        "--output",
        f"file://{tmp_path}/out",
        "--workdir",
        str(tmp_path / "w"),
        cwd=tmp_path,
        preexec_fn=lambda: os.sched_setaffinity(0, one_cpu),
    )
    assert proc.returncode == 0, proc.stderr
    assert "30 shards, 1 worker " in proc.stderr
    assert "capped at the 1 CPU" in proc.stderr and "--workers" in proc.stderr

    proc = dsj(
        "run",
        str(spec),
        "--output",
        f"file://{tmp_path}/out2",
        "--workdir",
        str(tmp_path / "w2"),
        "--workers",
        "3",
        cwd=tmp_path,
        preexec_fn=lambda: os.sched_setaffinity(0, one_cpu),
    )
    assert proc.returncode == 0, proc.stderr
    assert "30 shards, 3 workers " in proc.stderr and "capped" not in proc.stderr
