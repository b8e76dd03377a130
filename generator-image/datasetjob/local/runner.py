"""`dsj run`: the whole DatasetJob on one machine — shards as local processes, then combine.

Same worker code, same storage layout, same exit semantics as in a cluster; the local runner
plays the Job controller (at most `workers` shards at once, per-shard retries, a failure
budget) and the operator (progress, combine, summary). What the terminal shows is
`run_view.RunView`'s business: the runner only reports to it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datasetjob.combine.run import combine_run
from datasetjob.contract import PARENT_PID_ENV, RETRY_FAILED_ITEMS_ENV
from datasetjob.errors import CombineRefused, ExitCode, LeaseHeld, LeaseLost, StorageError
from datasetjob.local.lease import Lease, acquire_lease
from datasetjob.local.shard_process import ShardProcess
from datasetjob.local.view import RunView, workers_text
from datasetjob.progress import read_file_progress
from datasetjob.redaction import CREDENTIALS_ENV, encode_secrets, split_credentials
from datasetjob.spec.model import DatasetJobSpec
from datasetjob.spec.model import run_id as compute_run_id
from datasetjob.spec.sharding import shard_name
from datasetjob.store import layout
from datasetjob.store.backends import open_store
from datasetjob.store.universe import resolve_items

if TYPE_CHECKING:
    from rich.console import Console


@dataclass
class LocalRunOptions:
    workers: int | None = None
    output: str | None = None
    resume: bool = False
    retry_failed: bool = False
    cache_dir: str | None = None
    redis_url: str | None = None
    workdir: str | None = None
    quiet: bool = False
    spec_path: str = "datasetjob.yaml"


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def default_workers(requested: int | None, parallelism: int, shards: int, cpus: int) -> tuple[int, bool]:
    """(worker processes, whether the CPU count capped them). `--workers` is taken as given: an
    I/O-bound generator may well want more processes than cores."""
    if requested:
        return max(1, min(requested, shards)), False
    wanted = max(1, min(parallelism, shards))
    return (cpus, True) if wanted > cpus else (wanted, False)


def lease_lock_dir() -> Path:
    """Host-local lock files of runs whose output is not on this disk (S3)."""
    return Path(os.environ.get("DSJ_LEASE_DIR") or Path.home() / ".cache" / "datasetjob" / "leases")


def default_output_uri(name: str) -> str:
    return f"file://{Path('datasets', name).resolve()}"


class LocalRunner:
    """The scheduler of a local run: starts shard processes (at most `workers` at once), reaps
    and retries them, stops them on Ctrl-C or a lost lease, then combines. Reports to `view`."""

    def __init__(self, spec: DatasetJobSpec, opts: LocalRunOptions, console: Console | None = None):
        output_uri = opts.output or spec.output.uri or default_output_uri(spec.name)
        if opts.output or not spec.output.uri:
            spec = spec.with_output_uri(output_uri)
        self.spec = spec
        self.opts = opts
        self.view = RunView(console, quiet=opts.quiet)
        self.run_id = compute_run_id(spec.raw_spec)
        self.store = open_store(output_uri, spec.output.endpoint_url, spec.output.region)
        base = Path(opts.workdir) if opts.workdir else Path("datasets", spec.name)
        self.local_dir = (base / "logs" / self.run_id).resolve()
        self.progress_dir = self.local_dir / ".progress"
        self.cpus = available_cpus()
        self.workers, self.workers_capped = default_workers(opts.workers, spec.parallelism, spec.shards, self.cpus)
        self.shards = [ShardProcess(i) for i in range(spec.shards)]
        self.interrupted = False
        self.lease: Lease | None = None
        self.worker_credentials: str | None = None

    # -- set-up -----------------------------------------------------------------------------
    def _prepare(self) -> tuple[list[Any], list[str]]:
        items, ids = resolve_items(self.spec)
        if not (self.opts.resume or self.opts.retry_failed):
            self.store.delete_prefix(layout.run_prefix(self.run_id), keep=frozenset({layout.lease_key(self.run_id)}))
        # Written documents carry no credentials; workers get them through their environment.
        doc, secrets = split_credentials(self.spec.to_document())
        self.worker_credentials = encode_secrets(secrets) if secrets else None
        self.store.put_bytes(layout.spec_key(self.run_id), json.dumps(doc, indent=1).encode())
        self.local_dir.mkdir(parents=True, exist_ok=True)
        if self.progress_dir.exists():
            for f in self.progress_dir.glob("*"):
                f.unlink()
        self.progress_dir.mkdir(exist_ok=True)
        self.spec_file = self.local_dir / "datasetjob.json"
        self.spec_file.write_text(json.dumps(doc, indent=1))
        if self.opts.resume or self.opts.retry_failed:
            for shard in self.shards:
                key = layout.shard_manifest_key(self.run_id, shard.index)
                if self.store.exists(key):
                    failed_items = json.loads(self.store.get_text(key))["items"]["failed"]
                    if not (self.opts.retry_failed and failed_items):
                        shard.state = "committed"
        return items, ids

    def _env(self, index: int, slot: int) -> dict[str, str]:
        env = dict(
            os.environ,
            JOB_COMPLETION_INDEX=str(index),
            DSJ_RUN_ID=self.run_id,
            DSJ_PROGRESS_DIR=str(self.progress_dir),
            DSJ_STAGGER_SLOT=str(slot),
            PYTHONUNBUFFERED="1",
        )
        env["DSJ_GENERATOR_PATH"] = os.pathsep.join(
            filter(None, [os.getcwd(), str(Path(self.opts.spec_path).resolve().parent), env.get("DSJ_GENERATOR_PATH")])
        )
        if self.opts.cache_dir:
            env["DSJ_EMBEDDED_CACHE_DIR"] = str(Path(self.opts.cache_dir).resolve())
        if self.opts.redis_url is not None:
            env["DSJ_REDIS_URL"] = self.opts.redis_url
        env.pop("DSJ_TERMINATION_LOG", None)
        env[PARENT_PID_ENV] = str(os.getpid())
        env.pop(CREDENTIALS_ENV, None)
        if self.worker_credentials:
            env[CREDENTIALS_ENV] = self.worker_credentials
        if self.opts.retry_failed:
            env[RETRY_FAILED_ITEMS_ENV] = "1"
        return env

    def _start(self, shard: ShardProcess, slot: int) -> None:
        assert self.lease is not None  # held from run() on
        shard.attempts += 1
        shard.log_path = self.local_dir / f"{shard_name(shard.index)}.log"
        log = open(shard.log_path, "a")
        log.write(f"--- attempt {shard.attempts} at {time.strftime('%H:%M:%S')} ---\n")
        log.flush()
        cmd = [
            sys.executable,
            "-m",
            "datasetjob",
            "worker",
            "--spec",
            str(self.spec_file),
            "--index",
            str(shard.index),
            "--run-id",
            self.run_id,
        ]
        # Its own session, so a Ctrl-C reaches only the runner, which stops workers in order; the
        # worker stops by itself when the runner dies (PARENT_PID_ENV), and holds the run's lease
        # descriptor, so no other run starts while it is still saving its checkpoint.
        shard.proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._env(shard.index, slot),
            start_new_session=True,
            pass_fds=(self.lease.inheritable_fd,),
        )
        log.close()
        shard.state = "running"

    # -- the loop ---------------------------------------------------------------------------
    def _reap(self) -> None:
        for shard in self.shards:
            if shard.state != "running":
                continue
            assert shard.proc is not None  # a running shard has its process
            if shard.proc.poll() is None:
                continue
            code = shard.proc.returncode
            shard.exit_codes.append(code)
            if code == 0:
                shard.state = "committed"
            elif code == ExitCode.DO_NOT_RETRY or shard.attempts > self.spec.per_shard_retries or self.interrupted:
                shard.state = "failed"
            else:
                shard.state = "pending"
                shard.retry_at = time.monotonic() + min(10.0, 0.5 * 2 ** (shard.attempts - 1))

    def _schedule(self, first_wave: list[int]) -> None:
        running = sum(s.state == "running" for s in self.shards)
        now = time.monotonic()
        for shard in self.shards:
            if running >= self.workers or self.interrupted:
                return
            if shard.state == "pending" and shard.retry_at <= now:
                slot = first_wave.pop(0) if first_wave and shard.attempts == 0 else 0
                self._start(shard, slot)
                running += 1

    def _stop_all(self) -> None:
        # A running shard always has its process.
        running = [shard.proc for shard in self.shards if shard.state == "running" and shard.proc is not None]
        for proc in running:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def run(self) -> int:
        try:
            self.lease = acquire_lease(self.store, self.run_id, lease_lock_dir())
        except LeaseHeld as exc:
            self.view.refused(str(exc))
            return ExitCode.RUN_BUSY
        except StorageError as exc:
            self.view.run_failed(str(exc))
            return ExitCode.FAILED
        try:
            return self._run()
        except StorageError as exc:  # the output store failed under us (disk full, permissions, ...)
            self.view.run_failed(str(exc))
            return ExitCode.FAILED
        finally:
            self.lease.release()

    def _run(self) -> int:
        lease = self.lease
        assert lease is not None  # held from run() on
        started = time.monotonic()
        # The combine's table libraries take a while to import; do it while shards run.
        threading.Thread(target=_prewarm_combine, daemon=True).start()
        items, _ = self._prepare()
        total = len(items)
        self.view.started(
            self.spec,
            self.run_id,
            total,
            workers_text(self.workers, self.workers_capped, self.cpus, self.spec.parallelism),
            self.local_dir,
        )
        first_wave = list(range(self.workers))
        previous = signal.signal(signal.SIGINT, self._on_interrupt)
        previous_term = signal.signal(signal.SIGTERM, self._on_interrupt)
        lease_lost: LeaseLost | None = None
        try:
            with self.view.live(total, self.spec.shards) as show:
                while True:
                    self._reap()
                    self._schedule(first_wave)
                    show(read_file_progress(self.progress_dir), self.shards, time.monotonic() - started)
                    if all(s.state in ("committed", "failed") for s in self.shards):
                        break
                    if lease.lost:
                        lease_lost, self.interrupted = lease.lost, True
                    if self.interrupted:
                        self._stop_all()
                        self._reap()
                        break
                    time.sleep(0.1)
        finally:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, previous_term)
        if lease_lost:
            self.view.stopped(str(lease_lost))
            return ExitCode.FAILED
        if self.interrupted:
            committed = sum(s.state == "committed" for s in self.shards)
            resume = f"dsj run {self.opts.spec_path} --resume"
            if self.opts.output:
                resume += f" --output {self.opts.output}"
            self.view.interrupted(committed, self.spec.shards, resume)
            return ExitCode.INTERRUPTED
        return self._finish(total, started)

    def _on_interrupt(self, *_: object) -> None:
        self.interrupted = True

    def _finish(self, total: int, started: float) -> int:
        failed = [s.index for s in self.shards if s.state == "failed"]
        for index in failed:
            self.view.shard_failed(self.shards[index])
        try:
            result = combine_run(self.spec, self.run_id, self.store, total)
        except CombineRefused as exc:
            self.view.not_published(exc.reason, str(exc))
            return ExitCode.FAILED
        except OSError as exc:  # the combine's scratch space (TMPDIR) failed, e.g. disk full
            self.view.combine_failed(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
            return ExitCode.FAILED
        self.view.summary(
            self.spec,
            result,
            failed,
            time.monotonic() - started,
            self.store.key_uri(f"{layout.run_prefix(self.run_id)}failures/"),
        )
        return ExitCode.OK


def _prewarm_combine() -> None:
    import importlib

    importlib.import_module("pandas")
