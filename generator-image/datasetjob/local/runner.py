"""`dsj run`: the whole DatasetJob on one machine — shards as local processes, then combine.

Same worker code, same storage layout, same exit semantics as in a cluster; the local runner
plays the Job controller (at most `workers` shards at once, per-shard retries, a failure
budget) and the operator (progress, combine, summary). What the terminal shows is
`run_view.RunView`'s business: the runner only reports to it.

Stopping is bounded: within 10 s after SIGTERM or Ctrl-C, `dsj run` has exited and no process
of the run is left. Workers get SIGTERM at once and STOP_GRACE_SECONDS (5 s) to checkpoint;
then each kills everything it started and exits. A worker still there KILL_AFTER_SECONDS (8 s)
after the signal is killed (SIGKILL) with its process group and every process below it. A
worker's leftovers die with it in any case (worker.lifetime), and when `dsj run` itself is
killed its workers get SIGTERM from the kernel and follow the same rule.

The run never follows a symbolic link in its own directories (logs/<runId>/ and, on disk,
runs/<runId>/ of the output): a run that finds one is refused before anything is written,
naming it, and its own files are opened with O_NOFOLLOW.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from datasetjob.combine.run import combine_run
from datasetjob.contract import PARENT_PID_ENV, RETRY_FAILED_ITEMS_ENV, WORK_PLAN_ENV
from datasetjob.errors import (
    CombineRefused,
    ExitCode,
    GeneratorConfigError,
    LeaseHeld,
    LeaseLost,
    RedisUnavailable,
    StorageError,
)
from datasetjob.local.lease import Lease, acquire_lease
from datasetjob.local.shard_process import ShardProcess, last_error_line
from datasetjob.local.view import RunView, workers_text
from datasetjob.progress import read_file_progress
from datasetjob.redaction import CREDENTIALS_ENV, encode_secrets, split_credentials
from datasetjob.spec.budget import Spend, over_budget, spend_text
from datasetjob.spec.model import DatasetJobSpec
from datasetjob.spec.model import run_id as compute_run_id
from datasetjob.spec.sharding import shard_name
from datasetjob.spec.work_packets import WorkPlan, plans_work
from datasetjob.store import layout
from datasetjob.store.backends import FileStore, open_store
from datasetjob.store.universe import universe_size
from datasetjob.store.work_plan import make_plan, save_plan
from datasetjob.worker.assembly import assemble_shards
from datasetjob.worker.command import check_work_dir_within
from datasetjob.worker.entrypoints import item_store
from datasetjob.worker.lifetime import descendants
from datasetjob.worker.spend import SpendLedger, make_ledger

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


# After SIGTERM (or Ctrl-C), a worker still running this long is killed with all it started.
KILL_AFTER_SECONDS = 8.0


def foreign_links(trees: Iterable[Path]) -> list[Path]:
    """Symbolic links at or under each of `trees`, none followed. A run makes none in its own
    directories, so any there was planted, and following it would touch a file elsewhere."""
    found: list[Path] = []
    for top in trees:
        if top.is_symlink():
            found.append(top)
            continue
        if not top.is_dir():
            continue
        for folder, dirs, files in os.walk(top):  # does not descend into linked directories
            found.extend(path for path in (Path(folder, name) for name in dirs + files) if path.is_symlink())
    return sorted(found)


def _open_own(path: Path, flags: int) -> int:
    """A file of the run's own, never through a symbolic link (ELOOP instead)."""
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)


def _write_own(path: Path, data: bytes) -> None:
    """Write a file of the run's own; an OSError names the file."""
    try:
        fd = _open_own(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def _os_error_text(exc: OSError) -> str:
    reason = exc.strerror or str(exc)
    return f"{exc.filename}: {reason}" if exc.filename else reason


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


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
        # Not resolved below the base: a link planted at logs/<runId> must be seen, not followed.
        self.local_dir = base.resolve() / "logs" / self.run_id
        self.progress_dir = self.local_dir / ".progress"
        self.cpus = available_cpus()
        self.workers, self.workers_capped = default_workers(opts.workers, spec.parallelism, spec.shards, self.cpus)
        self.shards = [ShardProcess(i) for i in range(spec.shards)]
        self.interrupted = False
        self.lease: Lease | None = None
        self.lease_lost: LeaseLost | None = None
        self.worker_credentials: str | None = None
        self.plan: WorkPlan | None = None
        self.plan_key: str | None = None

    # -- set-up -----------------------------------------------------------------------------
    def _prepare(self) -> None:
        """The run's directory and spec ready for its shards."""
        if not (self.opts.resume or self.opts.retry_failed):
            self.store.delete_prefix(layout.run_prefix(self.run_id), keep=frozenset({layout.lease_key(self.run_id)}))
            ledger = self._ledger()
            if ledger is not None:  # a new run of this run id: nothing spent yet
                ledger.reset()
        # Written documents carry no credentials; workers get them through their environment.
        doc, secrets = split_credentials(self.spec.to_document())
        self.worker_credentials = encode_secrets(secrets) if secrets else None
        self.store.put_bytes(layout.spec_key(self.run_id), json.dumps(doc, indent=1).encode())
        with os.scandir(self.progress_dir) as entries:  # a link among them is removed, not followed
            for entry in entries:
                if not entry.is_dir(follow_symlinks=False):
                    os.unlink(entry.path)
        self.spec_file = self.local_dir / "datasetjob.json"
        _write_own(self.spec_file, json.dumps(doc, indent=1).encode())
        if self.opts.resume or self.opts.retry_failed:
            for shard in self.shards:
                key = layout.shard_manifest_key(self.run_id, shard.index)
                if self.store.exists(key):
                    try:
                        failed_items = json.loads(self.store.get_text(key))["items"]["failed"]
                    except (ValueError, KeyError, TypeError) as exc:  # not a manifest this run wrote
                        self.view.note(
                            f"{self.store.key_uri(key)}: not a shard manifest ({type(exc).__name__}: {exc}); "
                            f"{shard_name(shard.index)} runs again"
                        )
                        continue
                    if not (self.opts.retry_failed and failed_items):
                        shard.state = "committed"

    def _plan_work(self) -> None:
        """A run that reuses items plans first (store.work_plan): one process per work packet
        of items to generate, none when every item is stored already. Its shards are
        assembled from the item store when the packets are done."""
        reusable = item_store(self.spec, self.store)
        if reusable is None or not plans_work(self.spec):
            return
        plan = make_plan(self.spec, self.run_id, self.store, reusable, self.opts.retry_failed)
        if plan.reused == 0:
            return  # nothing stored to take: the shards generate their own items, as planned by the spec
        self.plan, self.plan_key = plan, save_plan(self.store, self.run_id, plan)
        self.shards = [
            ShardProcess(i, name=layout.packet_name(i), items=len(positions))
            for i, positions in enumerate(self.plan.packets)
        ]

    def _plan_text(self) -> str | None:
        plan = self.plan
        if plan is None:
            return None
        packets = len(plan.packets)
        return (
            f"{plan.to_generate} items to generate in {packets} work packet{'s' if packets != 1 else ''} "
            f"(a process each), {plan.reused} reused; "
            f"{len(plan.shards_with_work)} of {self.spec.shards} shards with work"
        )

    def _refusal(self) -> str | None:
        """Why this run must not start, before anything is written: a command's working directory
        outside the directory `dsj run` runs in, or a symbolic link in the run's own directories."""
        if self.spec.generator.command:
            try:
                check_work_dir_within(self.spec.generator, Path.cwd())
            except GeneratorConfigError as exc:
                return str(exc)
        trees = [self.local_dir]
        if isinstance(self.store, FileStore):
            trees.append(self.store.path(layout.run_prefix(self.run_id).rstrip("/")))
        links = foreign_links(trees)
        if not links:
            return None
        more = f" (and {len(links) - 1} more)" if len(links) > 1 else ""
        return (
            f"{links[0]}{more}: a symbolic link in this run's own directories; dsj run never follows "
            "a link it did not make. Remove it, then run again."
        )

    def _make_local_dirs(self) -> None:
        self.local_dir.mkdir(parents=True, exist_ok=True)
        self.progress_dir.mkdir(exist_ok=True)
        probe = self.local_dir / f".probe-{os.getpid()}"
        _write_own(probe, b"")  # a directory that exists but cannot be written fails here
        probe.unlink()

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
        env.pop(WORK_PLAN_ENV, None)
        if self.plan_key:
            env[WORK_PLAN_ENV] = self.plan_key
        return env

    def _start(self, shard: ShardProcess, slot: int) -> None:
        shard.attempts += 1
        shard.log_path = self.local_dir / f"{shard.name or shard_name(shard.index)}.log"
        try:
            log = _open_own(shard.log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, str(shard.log_path)) from None
        try:
            try:
                os.write(log, f"--- attempt {shard.attempts} at {time.strftime('%H:%M:%S')} ---\n".encode())
            except OSError as exc:  # a full log disk
                raise OSError(exc.errno, exc.strerror, str(shard.log_path)) from None
            self._spawn(shard, slot, log)
        finally:
            os.close(log)
        shard.state = "running"

    def _spawn(self, shard: ShardProcess, slot: int, log: int) -> None:
        assert self.lease is not None  # held from run() on
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
        # Its own session and process group, so a Ctrl-C reaches only the runner, which stops
        # workers in order, and killpg reaches everything a worker left in its group; the worker
        # stops by itself when the runner dies (PARENT_PID_ENV), and holds the run's lease
        # descriptor, so no other run starts while it is still saving its checkpoint.
        shard.proc = subprocess.Popen(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self._env(shard.index, slot),
            start_new_session=True,
            pass_fds=(self.lease.inheritable_fd,),
        )

    # -- the loop ---------------------------------------------------------------------------
    def _reap(self) -> None:
        for shard in self.shards:
            if shard.state != "running":
                continue
            assert shard.proc is not None  # a running shard has its process
            if shard.proc.poll() is None:
                continue
            code = shard.proc.returncode
            _signal_group(shard.proc.pid, signal.SIGKILL)  # whatever it left in its process group
            shard.exit_codes.append(code)
            if code == 0:
                shard.state = "committed"
            elif code == ExitCode.RESTART and not self.interrupted:  # bounded: each records failed items
                shard.restarts += 1
                shard.state, shard.retry_at = "pending", time.monotonic()
            elif code in (ExitCode.DO_NOT_RETRY, ExitCode.BUDGET_EXHAUSTED) or self._out_of_retries(shard):
                shard.state = "failed"
            else:
                shard.state = "pending"
                shard.retry_at = time.monotonic() + min(10.0, 0.5 * 2 ** (shard.attempts - 1))

    def _out_of_retries(self, shard: ShardProcess) -> bool:
        return shard.attempts - shard.restarts > self.spec.per_shard_retries or self.interrupted

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
        """SIGTERM to every running worker's process group; KILL_AFTER_SECONDS later, SIGKILL to
        the group of each one still running and to every process below it."""
        # A running shard always has its process.
        running = [shard.proc for shard in self.shards if shard.state == "running" and shard.proc is not None]
        for proc in running:
            if proc.poll() is None:
                _signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + KILL_AFTER_SECONDS
        for proc in running:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                below = descendants(proc.pid)  # those that left its group or session too
                _signal_group(proc.pid, signal.SIGKILL)
                for pid in below:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(1.0)  # only a process stuck in the kernel takes longer

    def run(self, total: int | None = None) -> int:
        """The whole run; `total` is the universe's size when the caller has counted it already
        (while checking its ids), so a streamed source is not read once more for it."""
        refusal = self._refusal()
        if refusal:
            self.view.refused(refusal)
            return ExitCode.BAD_SPEC
        try:
            self._make_local_dirs()
        except OSError as exc:
            self.view.refused(f"cannot write the run's logs in {self.local_dir}: {_os_error_text(exc)}")
            return ExitCode.BAD_SPEC
        try:
            self.lease = acquire_lease(self.store, self.run_id, lease_lock_dir())
        except LeaseHeld as exc:
            self.view.refused(str(exc))
            return ExitCode.RUN_BUSY
        except StorageError as exc:
            self.view.run_failed(str(exc))
            return ExitCode.FAILED
        try:
            return self._run(universe_size(self.spec) if total is None else total)
        except StorageError as exc:  # the output store failed under us (disk full, permissions, ...)
            self.view.run_failed(str(exc))
            return ExitCode.FAILED
        except OSError as exc:  # the run's own files (logs, progress): disk full, read-only, ...
            self.view.run_failed(_os_error_text(exc))
            return ExitCode.FAILED
        finally:
            self.lease.release()

    def _run(self, total: int) -> int:
        lease = self.lease
        assert lease is not None  # held from run() on
        started = time.monotonic()
        # The combine's table library takes a while to import; do it while shards run.
        if self.spec.output.format == "parquet":
            threading.Thread(target=_prewarm_combine, daemon=True).start()
        self._prepare()
        self._plan_work()
        self.view.started(
            self.spec,
            self.run_id,
            total,
            workers_text(self.workers, self.workers_capped, self.cpus, self.spec.parallelism),
            self.local_dir,
            self._plan_text(),
        )
        first_wave = list(range(self.workers))
        previous = signal.signal(signal.SIGINT, self._on_interrupt)
        previous_term = signal.signal(signal.SIGTERM, self._on_interrupt)
        try:
            self._loop(lease, total, started, first_wave)
        except BaseException:
            self._stop_all()  # no worker outlives a runner that fails
            raise
        finally:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, previous_term)
        if self.lease_lost:
            self.view.stopped(str(self.lease_lost))
            return ExitCode.FAILED
        if self.interrupted:
            committed = sum(s.state == "committed" for s in self.shards)
            resume = f"dsj run {self.opts.spec_path} --resume"
            if self.opts.output:
                resume += f" --output {self.opts.output}"
            self.view.interrupted(committed, len(self.shards), resume)
            return ExitCode.INTERRUPTED
        return self._finish(total, started)

    def _loop(self, lease: Lease, total: int, started: float, first_wave: list[int]) -> None:
        with self.view.live(total, len(self.shards)) as show:
            while True:
                self._reap()
                self._schedule(first_wave)
                show(read_file_progress(self.progress_dir), self.shards, time.monotonic() - started)
                if all(s.state in ("committed", "failed") for s in self.shards):
                    return
                if lease.lost:
                    self.lease_lost, self.interrupted = lease.lost, True
                if self.interrupted:
                    self._stop_all()
                    self._reap()
                    return
                time.sleep(0.1)

    def _on_interrupt(self, *_: object) -> None:
        self.interrupted = True

    def _ledger(self) -> SpendLedger | None:
        """The run's spend ledger (spec.budget), where its workers count: this process's
        environment is theirs (cache directory, Redis URL)."""
        url = self.spec.cache.redis_url
        if url is None:  # what the workers' DSJ_REDIS_URL makes of an absent spec value
            url = self.opts.redis_url if self.opts.redis_url is not None else os.environ.get("DSJ_REDIS_URL")
        directory = Path(self.opts.cache_dir).resolve() if self.opts.cache_dir else None
        return make_ledger(self.spec.budget, url, self.spec.cache.namespace, self.run_id, directory)

    def _spent(self) -> Spend | None:
        """The run's spend in one read of its ledger; None when it has none or its Redis is away."""
        ledger = self._ledger()
        if ledger is None:
            return None
        try:
            return ledger.totals()
        except RedisUnavailable as exc:
            self.view.note(str(exc))
            return None

    def _budget_stop(self) -> int | None:
        """Exit BUDGET_EXHAUSTED, saying the spend and how to go on, when workers stopped at
        spec.budget; None otherwise."""
        stopped = [s for s in self.shards if ExitCode.BUDGET_EXHAUSTED in s.exit_codes]
        if not stopped:
            return None
        totals = self._spent()
        resume = f"dsj run {self.opts.spec_path} --resume" + (
            f" --output {self.opts.output}" if self.opts.output else ""
        )
        self.view.budget_exhausted(
            over_budget(totals, self.spec.budget) if totals is not None else None,
            spend_text(totals) if totals is not None else "unknown",
            sum(s.state == "committed" for s in self.shards),
            len(self.shards),
            resume,
        )
        return ExitCode.BUDGET_EXHAUSTED

    def _finish(self, total: int, started: float) -> int:
        budget_stop = self._budget_stop()
        if budget_stop is not None:
            return budget_stop
        failed = [s.index for s in self.shards if s.state == "failed"]
        for index in failed:
            self.view.shard_failed(self.shards[index], last_error_line(self.shards[index].log_path))
        try:
            if self.plan is not None:  # a failed packet's items are recorded as failed, not its shards
                reusable = item_store(self.spec, self.store)
                assert reusable is not None  # the plan was made with it
                assemble_shards(self.spec, self.run_id, self.store, reusable, self.plan)
                failed = []
            result = combine_run(self.spec, self.run_id, self.store, total)
        except CombineRefused as exc:
            self.view.not_published(exc.reason, str(exc))
            return ExitCode.FAILED
        except OSError as exc:  # the combine's scratch space (TMPDIR) failed, e.g. disk full
            self.view.combine_failed(f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else ""))
            return ExitCode.FAILED
        except StorageError:
            raise
        except Exception as exc:  # shard data the combine cannot read: a reason, not a traceback
            self.view.combine_failed(f"{type(exc).__name__}: {exc}")
            return ExitCode.FAILED
        self.view.summary(
            self.spec,
            result,
            failed,
            time.monotonic() - started,
            self.store.key_uri(f"{layout.run_prefix(self.run_id)}failures/"),
            work=self._plan_text() or f"{sum(s.attempts > 0 for s in self.shards)} processes, one per shard",
        )
        return ExitCode.OK


def _prewarm_combine() -> None:
    import importlib

    with contextlib.suppress(ImportError):  # said by the combine itself, in one line
        importlib.import_module("pyarrow.parquet")
