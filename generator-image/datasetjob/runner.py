"""`dsj run`: the whole DatasetJob on one machine — shards as local processes, then combine.

Same worker code, same storage layout, same exit semantics as in a cluster; the local runner
plays the Job controller (at most `workers` shards at once, per-shard retries, a failure
budget) and the operator (progress, combine, summary).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.console import Group

from . import layout
from .combine import CombineRefused, CombineResult, combine_run
from .universe import resolve_items
from .progress import read_file_progress, tally_progress
from .sharding import compress_indexes, shard_bounds, shard_name
from .spec import DatasetJobSpec, run_id as compute_run_id
from .redaction import CREDENTIALS_ENV, encode_secrets, redact_text, split_credentials
from .errors import StorageError
from .storage import open_store
from .contract import EXIT_DO_NOT_RETRY, EXIT_RUN_BUSY, PARENT_PID_ENV, RETRY_FAILED_ITEMS_ENV
from .lease import Lease, LeaseHeld, acquire_lease

EXIT_INTERRUPTED = 130


@dataclass
class ShardProcess:
    index: int
    attempts: int = 0
    proc: subprocess.Popen | None = None
    state: str = "pending"  # pending | running | committed | failed
    exit_codes: list[int] = field(default_factory=list)
    log_path: Path | None = None
    retry_at: float = 0.0


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
    def __init__(self, spec: DatasetJobSpec, opts: LocalRunOptions, console: Console | None = None):
        if opts.output or not spec.output.uri:
            spec = spec.with_output_uri(opts.output or default_output_uri(spec.name))
        self.spec = spec
        self.opts = opts
        self.console = console or Console(stderr=True, quiet=opts.quiet)
        # Why a run failed or was refused reaches stderr even with --quiet.
        self.errors = console or Console(stderr=True)
        self.run_id = compute_run_id(spec.raw_spec)
        self.store = open_store(spec.output.uri, spec.output.endpoint_url, spec.output.region)
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
    def _prepare(self) -> tuple[list, list[str]]:
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

    def _env(self, index: int, slot: int) -> dict:
        env = dict(os.environ, JOB_COMPLETION_INDEX=str(index), DSJ_RUN_ID=self.run_id,
                   DSJ_PROGRESS_DIR=str(self.progress_dir), DSJ_STAGGER_SLOT=str(slot),
                   PYTHONUNBUFFERED="1")
        env["DSJ_GENERATOR_PATH"] = os.pathsep.join(filter(None, [
            os.getcwd(), str(Path(self.opts.spec_path).resolve().parent), env.get("DSJ_GENERATOR_PATH")]))
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
        shard.attempts += 1
        shard.log_path = self.local_dir / f"{shard_name(shard.index)}.log"
        log = open(shard.log_path, "a")
        log.write(f"--- attempt {shard.attempts} at {time.strftime('%H:%M:%S')} ---\n")
        log.flush()
        cmd = [sys.executable, "-m", "datasetjob", "worker", "--spec", str(self.spec_file),
               "--index", str(shard.index), "--run-id", self.run_id]
        # Its own session, so a Ctrl-C reaches only the runner, which stops workers in order; the
        # worker stops by itself when the runner dies (PARENT_PID_ENV), and holds the run's lease
        # descriptor, so no other run starts while it is still saving its checkpoint.
        shard.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                      env=self._env(shard.index, slot), start_new_session=True,
                                      pass_fds=(self.lease.inheritable_fd,))
        log.close()
        shard.state = "running"

    # -- the loop ---------------------------------------------------------------------------
    def _reap(self) -> None:
        for shard in self.shards:
            if shard.state != "running" or shard.proc.poll() is None:
                continue
            code = shard.proc.returncode
            shard.exit_codes.append(code)
            if code == 0:
                shard.state = "committed"
            elif code == EXIT_DO_NOT_RETRY or shard.attempts > self.spec.per_shard_retries or self.interrupted:
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
        for shard in self.shards:
            if shard.state == "running" and shard.proc.poll() is None:
                os.killpg(shard.proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for shard in self.shards:
            if shard.state == "running":
                try:
                    shard.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    os.killpg(shard.proc.pid, signal.SIGKILL)
                    shard.proc.wait()

    def run(self) -> int:
        try:
            self.lease = acquire_lease(self.store, self.run_id, lease_lock_dir())
        except LeaseHeld as exc:
            print(f"dsj run: refused: {redact_text(str(exc))}", file=sys.stderr)  # even with --quiet
            return EXIT_RUN_BUSY
        except StorageError as exc:
            self._error(f"[red bold]Run failed[/]: {escape(redact_text(str(exc)))}")
            return 1
        try:
            return self._run()
        except StorageError as exc:  # the output store failed under us (disk full, permissions, ...)
            self._error(f"[red bold]Run failed[/]: {escape(redact_text(str(exc)))}")
            return 1
        finally:
            self.lease.release()

    def _error(self, markup: str) -> None:
        """Why a run failed or was refused: on stderr even with --quiet."""
        self.errors.print(markup, highlight=False, soft_wrap=True)

    def _run(self) -> int:
        started = time.monotonic()
        # The combine's table libraries take a while to import; do it while shards run.
        threading.Thread(target=_prewarm_combine, daemon=True).start()
        items, _ = self._prepare()
        total = len(items)
        self.console.print(f"[bold]{self.spec.name}[/] run [cyan]{self.run_id}[/]: {total} items in "
                           f"{self.spec.shards} shards, {self._workers_text()} → {redact_text(self.spec.output.uri)}")
        self.console.print(f"logs: {self.local_dir}/shard-*.log")
        bar = Progress(TextColumn("[bold]items"), BarColumn(), MofNCompleteColumn(),
                       TextColumn("{task.fields[rate]:>7.1f} items/s"), TextColumn("failed {task.fields[failed]}"),
                       TimeElapsedColumn(), TimeRemainingColumn(), console=self.console)
        task = bar.add_task("items", total=total, rate=0.0, failed=0)
        first_wave = list(range(self.workers))
        previous = signal.signal(signal.SIGINT, self._on_interrupt)
        previous_term = signal.signal(signal.SIGTERM, self._on_interrupt)
        lease_lost = None
        try:
            with Live(Group(bar), console=self.console, refresh_per_second=4, transient=False) as live:
                while True:
                    self._reap()
                    self._schedule(first_wave)
                    snap = read_file_progress(self.progress_dir)
                    totals = tally_progress(snap)["items"]
                    done, failed = totals["done"] + totals["failed"], totals["failed"]
                    elapsed = time.monotonic() - started
                    bar.update(task, completed=done, failed=failed, rate=done / elapsed if elapsed else 0)
                    live.update(Group(bar, self._shard_table(snap, total)))
                    if all(s.state in ("committed", "failed") for s in self.shards):
                        break
                    if self.lease.lost:
                        lease_lost, self.interrupted = self.lease.lost, True
                    if self.interrupted:
                        self._stop_all()
                        self._reap()
                        break
                    time.sleep(0.1)
        finally:
            signal.signal(signal.SIGINT, previous)
            signal.signal(signal.SIGTERM, previous_term)
        self.console.print()
        if lease_lost:
            print(f"dsj run: stopped: {lease_lost}", file=sys.stderr)
            return 1
        if self.interrupted:
            committed = sum(s.state == "committed" for s in self.shards)
            self.errors.print(f"[yellow]Interrupted.[/] {committed}/{self.spec.shards} shards committed, "
                               "finished items checkpointed. Resume with:\n"
                               f"  dsj run {self.opts.spec_path} --resume"
                               + (f" --output {self.opts.output}" if self.opts.output else ""), soft_wrap=True)
            return EXIT_INTERRUPTED
        return self._finish(total, started)

    def _workers_text(self) -> str:
        text = f"{self.workers} worker{'s' if self.workers != 1 else ''}"
        if self.workers_capped:
            text += (f" (capped at the {self.cpus} CPU{'s' if self.cpus != 1 else ''} of this machine; "
                     f"spec.parallelism is {self.spec.parallelism}, --workers N overrides)")
        return text

    def _on_interrupt(self, *_):
        self.interrupted = True

    def _shard_table(self, snap: dict, total: int) -> Table:
        table = Table(box=None, padding=(0, 1), show_edge=False)
        for col in ("shard", "state", "items", "failed", "rows", "cache hit", "attempt"):
            table.add_column(col, justify="right" if col not in ("shard", "state") else "left")
        shown = [s for s in self.shards if s.state == "running"] if self.spec.shards > 20 else self.shards
        for shard in shown[:20]:
            s = snap.get(shard.index, {})
            start, stop = shard_bounds(total, self.spec.shards, shard.index)
            it = s.get("items", {})
            cache = s.get("cache", {})
            lookups = cache.get("hits", 0) + cache.get("misses", 0)
            color = {"committed": "green", "failed": "red", "running": "cyan"}.get(shard.state, "dim")
            table.add_row(shard_name(shard.index), f"[{color}]{shard.state}[/]",
                          f"{it.get('done', 0) + it.get('failed', 0)}/{stop - start}", str(it.get("failed", 0)),
                          str(s.get("rows", 0)), f"{cache.get('hits', 0) / lookups:.0%}" if lookups else "-",
                          str(shard.attempts))
        if self.spec.shards > 20:
            counts = {st: sum(s.state == st for s in self.shards) for st in ("pending", "committed", "failed")}
            table.caption = ", ".join(f"{v} {k}" for k, v in counts.items())
        return table

    def _finish(self, total: int, started: float) -> int:
        failed = [s.index for s in self.shards if s.state == "failed"]
        for index in failed:
            shard = self.shards[index]
            self._error(f"[red]{shard_name(index)} failed[/] (exit codes {shard.exit_codes}); "
                        f"log: {escape(str(shard.log_path))}")
        try:
            result = combine_run(self.spec, self.run_id, self.store, total)
        except CombineRefused as exc:
            self._error(f"[red bold]Not published[/] ({exc.reason}): {escape(redact_text(str(exc)))}")
            return 1
        except OSError as exc:  # the combine's scratch space (TMPDIR) failed, e.g. disk full
            detail = f"{exc.strerror or exc}" + (f": {exc.filename}" if exc.filename else "")
            self._error(f"[red bold]Not published[/]: combine failed: {escape(redact_text(detail))}")
            return 1
        self._summary(result, failed, time.monotonic() - started)
        return 0

    def _summary(self, result: CombineResult, failed: list[int], wall: float) -> None:
        it = result.items
        lookups = result.cache["hits"] + result.cache["misses"]
        table = Table(title=f"{self.spec.name} · run {self.run_id}", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("shards", f"{self.spec.shards - len(failed)}/{self.spec.shards} committed"
                      + (f" (failed: {compress_indexes(failed)})" if failed else ""))
        table.add_row("items", f"{it['done']} done, {it['failed']} failed, {it['missing']} missing of {it['total']}")
        table.add_row("reuse", f"{it['generated']} generated, {it['reused']} reused from earlier runs"
                      if self.spec.reuse.enabled else f"off: {it['generated']} generated")
        table.add_row("rows", f"{result.rows}" + (f" ({result.duplicates_dropped} duplicates dropped)"
                                                  if result.duplicates_dropped else ""))
        table.add_row("cache", f"{result.cache['hits']} hits, {result.cache['misses']} misses"
                      + (f" ({result.cache['hits'] / lookups:.1%} hit rate)" if lookups else ""))
        table.add_row("time", f"{wall:.1f}s ({total_rate(it, wall):.1f} items/s)")
        table.add_row("dataset", redact_text(result.uri))
        table.add_row("sha256", result.sha256)
        table.add_row("manifest", redact_text(result.manifest_uri))
        if it["failed"]:
            table.add_row("failures", redact_text(self.store.key_uri(f"{layout.run_prefix(self.run_id)}failures/")))
        self.console.print(table)
        print(redact_text(result.uri))


def _prewarm_combine() -> None:
    import importlib

    importlib.import_module("pandas")


def total_rate(items: dict, wall: float) -> float:
    return (items["done"] + items["failed"]) / wall if wall else 0.0
