"""`dsj run` failures a user can cause or meet: a reason on stderr (even with --quiet), the
documented exit code, no traceback, and nothing half-written.

Read-only and full disks are real: small tmpfs mounts made and removed by the tests (root only).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.integration.runs import dsj, write_doc

GENERATOR = """
def generate(item, ctx):
    if item == "bad":
        raise ValueError("upstream said no")
    return {"id": item, "pad": "x" * 50_000}
"""


def doc(values: list[str], shards: int, **combine) -> dict:
    return {
        "apiVersion": "datagen.dev/v1alpha1",
        "kind": "DatasetJob",
        "metadata": {"name": "run-errors"},
        "spec": {
            "items": {"values": values},
            "shards": shards,
            "generator": {"function": "padded:generate"},
            "combine": combine,
            # Rows stored for reuse would take as much room again: the sizes below leave them out.
            "reuse": {"enabled": False},
        },
    }


def run(tmp_path: Path, spec: dict, output: str, *extra: str, env: dict | None = None):
    (tmp_path / "padded.py").write_text(GENERATOR)
    path = write_doc(spec, tmp_path / "job.yaml")
    proc = dsj(
        "run",
        str(path),
        "--output",
        output,
        "--workdir",
        str(tmp_path / "work"),
        *extra,
        cwd=tmp_path,
        env={"DSJ_EMBEDDED_CACHE_DIR": str(tmp_path / "cache"), **(env or {})},
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.fixture
def tmpfs(tmp_path):
    """mount(options) -> a fresh tmpfs directory, unmounted at teardown."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mounted = []

    def mount(options: str) -> Path:
        target = tmp_path / f"mnt{len(mounted)}"
        target.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], check=True)
        mounted.append(target)
        return target

    yield mount
    for target in reversed(mounted):
        subprocess.run(["umount", str(target)], check=True)


def test_read_only_output_exits_2_before_anything_starts(tmp_path, tmpfs):
    read_only = tmpfs("ro,size=1m")
    proc = run(tmp_path, doc(["a", "b"], 1), f"file://{read_only}/out", "--quiet")
    assert proc.returncode == 2, proc.stderr
    assert "--output" in proc.stderr and "Read-only file system" in proc.stderr, proc.stderr
    assert not (tmp_path / "work").exists()


def test_disk_full_during_combine_fails_cleanly_and_leaves_no_part_files(tmp_path, tmpfs):
    """Four shards of ~250 KB fit in 1600 KB; the combined dataset (~1 MB more) does not."""
    small = tmpfs("size=1600k")
    values = [f"item-{i:02d}" for i in range(20)]
    proc = run(tmp_path, doc(values, 4), f"file://{small}/out", "--workers", "1", "--quiet")
    assert proc.returncode == 1, proc.stderr
    assert "No space left on device" in proc.stderr, proc.stderr
    assert len(list(small.rglob("shard-*.csv"))) == 4  # generation itself succeeded
    assert not list(small.rglob("*.part")), list(small.rglob("*"))
    assert not list(small.rglob("combined-dataset.*")) and not (small / "out" / "latest.json").exists()


def test_disk_full_in_the_combine_scratch_space_fails_cleanly(tmp_path, tmpfs):
    scratch = tmpfs("size=600k")
    values = [f"item-{i:02d}" for i in range(20)]
    proc = run(
        tmp_path, doc(values, 4), f"file://{tmp_path}/out", "--workers", "1", "--quiet", env={"TMPDIR": str(scratch)}
    )
    assert proc.returncode == 1, proc.stderr
    assert "No space left on device" in proc.stderr, proc.stderr
    assert not list(scratch.rglob("*")), list(scratch.rglob("*"))
    assert not list((tmp_path / "out").rglob("*.part"))


def test_quiet_does_not_hide_why_a_run_was_not_published(tmp_path):
    proc = run(tmp_path, doc(["a", "bad", "c"], 1), f"file://{tmp_path}/out", "--quiet")
    assert proc.returncode == 1
    assert "Not published (TooFewItems)" in proc.stderr and "upstream said no" in proc.stderr, proc.stderr
