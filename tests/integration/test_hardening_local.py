"""What a planted file or a misbehaving generator cannot make `dsj run` do: follow a symbolic link
out of its own directories, outlive SIGTERM (or its runner's death) with stuck or stray
processes, delete a file outside the run's directory, or answer a full or read-only disk with a
traceback.

Process checks find every process of a run by a unique token in its environment (inherited by
the workers, their generators and anything those start). Waits are failure guards, not timings.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.runs import datasetjob, dsj, write_doc
from tests.integration.test_run_errors import tmpfs  # noqa: F401  (a fixture)

GENERATOR = """
import os, sys, threading, time

def _mark(item):
    folder = os.environ.get("HARDEN_MARKS")
    if folder:
        open(os.path.join(folder, item), "w").close()

def generate(item, ctx):
    mode = os.environ.get("HARDEN_MODE", "")
    if mode == "stuck":
        _mark(item)
        while True:
            time.sleep(1)
    if mode == "stuck-fork":
        if os.fork() == 0:  # a child that leaves the worker's process group and session
            os.setsid()
            time.sleep(300)
            os._exit(0)
        _mark(item)
        while True:
            time.sleep(1)
    if mode == "thread":
        threading.Thread(target=time.sleep, args=(300,), daemon=False).start()
    if mode == "fork":
        if os.fork() == 0:
            time.sleep(300)
            os._exit(0)
    if mode == "loud":
        print("x" * 40_000)
    return {"id": item}
"""

GUARD = 90  # seconds; only ever a failure guard


def job(values: list[str], shards: int = 1, **generator) -> dict:
    return datasetjob(
        "harden",
        items={"values": values},
        shards=shards,
        generator=generator or {"function": "harden_gen:generate"},
        reuse={"enabled": False},
    )


def write_job(tmp_path: Path, spec: dict) -> Path:
    (tmp_path / "harden_gen.py").write_text(GENERATOR)
    return write_doc(spec, tmp_path / "job.yaml")


def run_args(spec: Path, tmp_path: Path, *extra: str) -> list[str]:
    return ["run", str(spec), "--output", f"file://{tmp_path}/out", "--workdir", str(tmp_path / "w"), *extra]


def token_pids(token: str) -> list[int]:
    """Live (not zombie) processes whose environment carries `token`."""
    needle = f"HARDEN_TOKEN={token}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if state != "Z" and needle in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def wait_until(condition, what: str, timeout: float = GUARD) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"still waiting after {timeout}s for {what}"
        time.sleep(0.1)


@pytest.fixture
def token():
    """A unique token in the run's environment; whatever still carries it at teardown is killed."""
    value = uuid.uuid4().hex
    yield value
    for pid in token_pids(value):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def start(spec: Path, tmp_path: Path, token: str, env: dict) -> subprocess.Popen:
    full_env = dict(os.environ, HARDEN_TOKEN=token, **env)
    # Its own session, so the test signals exactly the runner.
    return subprocess.Popen(
        [sys.executable, "-m", "datasetjob", *run_args(spec, tmp_path, "--quiet")],
        cwd=tmp_path,
        env=full_env,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(runner: subprocess.Popen, token: str, sigterm: bool = False) -> str:
    """Its stderr once `dsj run` ends (after a SIGTERM when asked); fails naming what still runs."""
    if sigterm:
        runner.send_signal(signal.SIGTERM)
    try:
        return runner.communicate(timeout=GUARD)[1]
    except subprocess.TimeoutExpired:
        runner.kill()
        raise AssertionError(f"dsj run did not end: {token_pids(token)} still run") from None


def no_process_left(token: str) -> None:
    wait_until(lambda: not token_pids(token), f"the processes of the run to end: {token_pids(token)}")


# -- 1. symbolic links planted in the run's directories ----------------------------------------


def first_run(tmp_path: Path) -> tuple[Path, str]:
    spec = write_job(tmp_path, job(["a", "b"]))
    proc = dsj(*run_args(spec, tmp_path, "--quiet"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    (run_id,) = [p.name for p in (tmp_path / "w" / "logs").iterdir()]
    return spec, run_id


def victim_dir(tmp_path: Path) -> Path:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    return victim


def plant(link: Path, target: Path) -> None:
    if link.is_dir() and not link.is_symlink():
        for child in link.iterdir():
            child.unlink()
        link.rmdir()
    elif link.exists() or link.is_symlink():
        link.unlink()
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


def assert_refused_naming(proc: subprocess.CompletedProcess, link: Path) -> None:
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    assert str(link) in proc.stderr, proc.stderr


def test_a_progress_link_to_a_directory_is_refused_and_its_files_kept(tmp_path):
    spec, run_id = first_run(tmp_path)
    victim = victim_dir(tmp_path)
    link = tmp_path / "w" / "logs" / run_id / ".progress"
    plant(link, victim)
    proc = dsj(*run_args(spec, tmp_path), cwd=tmp_path)
    assert (victim / "precious.txt").read_text() == "keep me"
    assert_refused_naming(proc, link)


@pytest.mark.parametrize("where", ["lease", "spec", "log"])
def test_a_file_link_in_the_run_directories_is_refused_and_its_target_kept(tmp_path, where):
    spec, run_id = first_run(tmp_path)
    victim = victim_dir(tmp_path) / "precious.txt"
    link = {
        "lease": tmp_path / "out" / "runs" / run_id / "lease.json",
        "spec": tmp_path / "w" / "logs" / run_id / "datasetjob.json",
        "log": tmp_path / "w" / "logs" / run_id / "shard-00000.log",
    }[where]
    plant(link, victim)
    proc = dsj(*run_args(spec, tmp_path), cwd=tmp_path)
    assert victim.read_text() == "keep me"
    assert_refused_naming(proc, link)


def test_a_link_as_the_run_directory_itself_is_refused(tmp_path):
    spec, run_id = first_run(tmp_path)
    victim = victim_dir(tmp_path)
    link = tmp_path / "w" / "logs" / run_id
    for child in link.rglob("*"):
        if child.is_file():
            child.unlink()
    plant(link / ".progress", victim)  # emptied, then the whole log directory replaced
    (link / ".progress").unlink()
    link.rmdir()
    link.symlink_to(victim)
    proc = dsj(*run_args(spec, tmp_path), cwd=tmp_path)
    assert sorted(p.name for p in victim.iterdir()) == ["precious.txt"]
    assert_refused_naming(proc, link)


# -- 2. stuck work and stray processes ----------------------------------------------------------


def start_stuck(tmp_path, token):
    """`dsj run` of two shards whose generators never return (each with a forked child that
    escapes its process group), once both are stuck."""
    marks = tmp_path / "marks"
    marks.mkdir()
    spec = write_job(tmp_path, job(["a", "b", "c", "d"], shards=2))
    runner = start(spec, tmp_path, token, {"HARDEN_MODE": "stuck-fork", "HARDEN_MARKS": str(marks)})
    wait_until(lambda: len(list(marks.iterdir())) >= 2 or runner.poll() is not None, "both shards to be stuck")
    assert runner.poll() is None, runner.communicate()
    return runner


def test_sigterm_stops_a_run_whose_generator_never_returns_and_its_escaped_children(tmp_path, token):
    runner = start_stuck(tmp_path, token)
    err = finish(runner, token, sigterm=True)
    assert runner.returncode == 130, err
    assert "Traceback" not in err, err
    no_process_left(token)


def test_workers_with_a_stuck_generator_go_when_the_runner_is_killed(tmp_path, token):
    runner = start_stuck(tmp_path, token)
    runner.kill()
    runner.communicate()
    no_process_left(token)


@pytest.mark.parametrize("mode", ["thread", "fork"])
def test_nothing_a_generator_left_running_outlives_its_committed_run(tmp_path, token, mode):
    spec = write_job(tmp_path, job(["a", "b", "c"], shards=2))
    runner = start(spec, tmp_path, token, {"HARDEN_MODE": mode})
    err = finish(runner, token)
    assert runner.returncode == 0, err
    no_process_left(token)


def test_a_background_process_of_a_command_does_not_outlive_the_run(tmp_path, token):
    spec = write_job(
        tmp_path,
        job(["a"], command=["sh", "-c", "sleep 300 & echo id > out.csv; echo a >> out.csv"], outputFile="out.csv"),
    )
    runner = start(spec, tmp_path, token, {})
    err = finish(runner, token)
    assert runner.returncode == 0, err
    no_process_left(token)


def test_sigterm_stops_a_command_that_ignores_it(tmp_path, token):
    marks = tmp_path / "marks"
    marks.mkdir()
    script = f"trap '' TERM; touch {marks}/started; sleep 300 & wait; sleep 300"
    spec = write_job(tmp_path, job(["a"], command=["sh", "-c", script], outputFile="out.csv"))
    runner = start(spec, tmp_path, token, {})
    wait_until(lambda: (marks / "started").exists() or runner.poll() is not None, "the command to start")
    assert runner.poll() is None, runner.communicate()
    err = finish(runner, token, sigterm=True)
    assert runner.returncode == 130, err
    no_process_left(token)


# -- 3. workingDir ------------------------------------------------------------------------------


def test_a_working_dir_outside_the_run_directory_cannot_cost_a_file(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "victim.txt"
    victim.write_text("keep me")
    project = tmp_path / "project"
    project.mkdir()
    spec = write_doc(
        job(["a"], command=["true"], outputFile="victim.txt", workingDir=str(elsewhere)), project / "job.yaml"
    )
    proc = dsj(*run_args(spec, tmp_path, "--quiet"), cwd=project)
    assert victim.read_text() == "keep me"
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    assert "spec.generator.workingDir" in proc.stderr, proc.stderr


def test_a_working_dir_inside_the_run_directory_still_works(tmp_path):
    sub = tmp_path / "gen"
    sub.mkdir()
    spec = write_doc(
        job(["a"], command=["sh", "-c", "printf 'id\\na\\n' > o.csv"], outputFile="o.csv", workingDir="gen"),
        tmp_path / "job.yaml",
    )
    proc = dsj(*run_args(spec, tmp_path, "--quiet"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


# -- 4. one-line messages -----------------------------------------------------------------------


def test_a_read_only_work_directory_is_a_message(tmp_path, tmpfs):  # noqa: F811
    read_only = tmpfs("ro,size=1m")
    spec = write_job(tmp_path, job(["a", "b"]))
    proc = dsj("run", str(spec), "--output", f"file://{tmp_path}/out", "--workdir", str(read_only), cwd=tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, proc.stderr
    assert "Read-only file system" in proc.stderr and str(read_only) in proc.stderr, proc.stderr


def test_a_full_log_disk_is_a_message(tmp_path, tmpfs, token):  # noqa: F811
    small = tmpfs("size=64k")
    spec = write_job(tmp_path, job(["a", "b", "c", "d"], shards=2))
    proc = dsj(
        "run",
        str(spec),
        "--output",
        f"file://{tmp_path}/out",
        "--workdir",
        str(small),
        "--quiet",
        cwd=tmp_path,
        env={"HARDEN_MODE": "loud", "HARDEN_TOKEN": token},
        timeout=GUARD,
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    assert "No space left on device" in proc.stderr, proc.stderr
    no_process_left(token)


def test_a_log_disk_full_before_the_first_shard_is_a_message_naming_the_file(tmp_path, tmpfs):  # noqa: F811
    small = tmpfs("size=64k")
    with open(small / "filler", "wb", buffering=0) as filler, contextlib.suppress(OSError):  # fills it
        while True:
            filler.write(b"\0" * 4096)
    spec = write_job(tmp_path, job(["a", "b"]))
    proc = dsj("run", str(spec), "--output", f"file://{tmp_path}/out", "--workdir", str(small), "--quiet", cwd=tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    assert "No space left on device" in proc.stderr and str(small) in proc.stderr, proc.stderr


def test_json_lines_that_are_not_objects_are_a_message(tmp_path):
    """The worker reads a command's output before it commits: a row that is not an object fails
    the shard with a message naming the row, never a traceback."""
    doc = job(
        ["a", "b"], command=["sh", "-c", "echo '[1, 2]' > out.jsonl; echo 5 >> out.jsonl"], outputFile="out.jsonl"
    )
    doc["spec"]["output"] = {"format": "jsonl"}
    spec = write_doc(doc, tmp_path / "job.yaml")
    proc = dsj(*run_args(spec, tmp_path, "--quiet"), cwd=tmp_path)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    assert "ShardsFailed" in proc.stderr, proc.stderr
    log = next((tmp_path / "w" / "logs").glob("*/shard-00000.log")).read_text()
    assert "row 1 is not an object (a list)" in log, log
