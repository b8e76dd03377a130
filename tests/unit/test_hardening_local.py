"""The local run's own files are never reached through a planted link, and a worker leaves no
process behind."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from datasetjob.errors import GeneratorConfigError, StorageError
from datasetjob.local.lease import LocalLock
from datasetjob.local.runner import foreign_links
from datasetjob.progress import FileProgress
from datasetjob.spec.model import GeneratorSpec
from datasetjob.worker.command import check_work_dir_within


def test_the_lease_file_is_never_opened_through_a_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    lease = tmp_path / "runs" / "r1" / "lease.json"
    lease.parent.mkdir(parents=True)
    lease.symlink_to(victim)
    with pytest.raises(StorageError, match=str(lease)):
        LocalLock(lease).try_acquire()
    assert victim.read_text() == "keep me"


def test_foreign_links_finds_links_inside_and_at_the_top(tmp_path):
    run = tmp_path / "logs" / "r1"
    (run / ".progress").mkdir(parents=True)
    (run / "shard-00000.log").write_text("")
    assert foreign_links([run, tmp_path / "absent"]) == []
    (run / ".progress" / "00000.json").symlink_to(tmp_path / "elsewhere")
    assert foreign_links([run]) == [run / ".progress" / "00000.json"]
    linked = tmp_path / "logs" / "r2"
    linked.symlink_to(run)
    assert foreign_links([linked]) == [linked]


def test_a_progress_file_is_never_written_through_a_link(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    progress = FileProgress(tmp_path / "progress", 0)
    (tmp_path / "progress" / f"00000.{os.getpid()}.tmp").symlink_to(victim)
    progress.publish({"state": "running"})  # best effort: a publish that cannot write is skipped
    assert victim.read_text() == "keep me"


def test_progress_on_a_full_disk_does_not_raise(tmp_path):
    progress = FileProgress(tmp_path / "progress", 0)
    (tmp_path / "progress").chmod(0o500)
    try:
        if os.access(tmp_path / "progress", os.W_OK):  # root ignores modes: a missing folder instead
            (tmp_path / "progress").chmod(0o700)
            (tmp_path / "progress").rename(tmp_path / "gone")
        progress.publish({"state": "running"})
    finally:
        if (tmp_path / "progress").exists():
            (tmp_path / "progress").chmod(0o700)


def test_a_working_dir_must_lie_within_the_run_directory(tmp_path):
    inside = tmp_path / "gen"
    inside.mkdir()
    check_work_dir_within(GeneratorSpec(command=["true"], output_file="o.csv", working_dir="gen"), tmp_path)
    check_work_dir_within(GeneratorSpec(command=["true"], output_file="o.csv"), tmp_path)
    (tmp_path / "out").symlink_to("/")
    for bad in ("/etc", "..", "out"):
        gen = GeneratorSpec(command=["true"], output_file="o.csv", working_dir=bad)
        with pytest.raises(GeneratorConfigError, match="spec.generator.workingDir"):
            check_work_dir_within(gen, tmp_path)


def test_leftover_processes_are_killed_even_when_they_left_the_session(tmp_path):
    """The worker adopts orphans of what it started (a child subreaper) and kills them at its end."""
    script = textwrap.dedent(
        f"""
        import os, subprocess, time
        from datasetjob.worker.lifetime import adopt_orphans, kill_leftovers
        adopt_orphans()
        subprocess.run(["sh", "-c", "sleep 300 & echo $! > {tmp_path}/pid"], start_new_session=True, check=True)
        pid = int(open("{tmp_path}/pid").read())
        assert os.getppid() != pid
        with open(f"/proc/{{pid}}/stat") as f:
            assert int(f.read().rsplit(")", 1)[1].split()[1]) == os.getpid()  # adopted
        kill_leftovers()
        print(pid)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    pid = int(proc.stdout)
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"


def test_deleting_a_run_prefix_never_follows_a_link(tmp_path):
    from datasetjob.store.backends import FileStore

    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    store = FileStore(tmp_path / "out")
    (tmp_path / "out" / "runs").mkdir(parents=True)
    (tmp_path / "out" / "runs" / "r1").symlink_to(victim)
    store.delete_prefix("runs/r1/", keep=frozenset({"runs/r1/lease.json"}))
    assert (victim / "precious.txt").read_text() == "keep me"
    assert not (tmp_path / "out" / "runs" / "r1").exists()
