"""One shard, start to commit: the code every generator pod (and every local process) runs.

Exit codes: 0 = shard committed (failed items are recorded, not fatal); 1 = retry me;
ExitCode.DO_NOT_RETRY = the generator config is broken, a retry cannot help (mapped to FailIndex
by the Job's podFailurePolicy); 143 = stopped by SIGTERM after checkpointing; ExitCode.RESTART =
too many calls stuck past generator.itemTimeoutSeconds, checkpoint saved: start a fresh process.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from datasetjob.cache.base import Cache
from datasetjob.contract import RETRY_FAILED_ITEMS_ENV
from datasetjob.errors import ExitCode, GeneratorConfigError, RedisUnavailable
from datasetjob.progress import ProgressSink
from datasetjob.ratelimit.base import TokenBucket
from datasetjob.sdk.context import Counters, ItemContext
from datasetjob.spec.budget import USAGE, Spend, no_spend, over_budget, spend_text
from datasetjob.spec.item_slice import ItemSlice, PacketItems
from datasetjob.spec.model import DatasetJobSpec
from datasetjob.spec.sharding import processing_order, shard_name
from datasetjob.store import layout
from datasetjob.store.backends import Store, local_tempdir
from datasetjob.store.checkpoint import Checkpoint
from datasetjob.store.fingerprint import item_digest
from datasetjob.store.item_store import ItemStore
from datasetjob.store.layout import packet_name
from datasetjob.store.reuse import ItemRecord, lineage, segment_line, select_reusable
from datasetjob.store.rowtypes import Row, conform_row, type_conflicts
from datasetjob.store.tables import file_digest, iter_rows, read_columns, write_rows
from datasetjob.worker.command import output_path, shard_values, work_dir
from datasetjob.worker.generator import encode_rows, json_safe_rows, load_function, normalise_rows, substitute
from datasetjob.worker.item_timeout import (
    TimedItems,
    attempt_tag,
    carry_failures,
    command_deadline,
    command_failures,
    kill_command,
    restart,
)
from datasetjob.worker.shard_summary import ShardSummary
from datasetjob.worker.spend import SpendLedger

log = logging.getLogger("datasetjob.worker")


@dataclass
class WorkerSetup:
    spec: DatasetJobSpec
    run_id: str
    index: int
    store: Store
    items: ItemSlice | PacketItems  # this shard's (or work packet's) items only, never the universe
    ids: list[str]  # their ids, in the same order
    cache: Cache
    progress: ProgressSink
    limiter: TokenBucket | None = None  # None: no spec.rateLimit
    item_store: ItemStore | None = None  # when spec.reuse is on (function mode)
    plan_id: str | None = None  # a work packet of this plan (store.work_plan), not a shard
    spend: SpendLedger | None = None  # the run's spend, when spec.budget is set


class ShardWorker:
    def __init__(self, setup: WorkerSetup):
        self.s = setup
        self.spec = setup.spec
        self.fmt = setup.spec.output.format
        self.positions = setup.items.positions
        self.counters = Counters()
        self.summary = ShardSummary(setup.run_id, setup.index, items_total=len(self.positions))
        self.stopping = threading.Event()  # set on SIGTERM: checkpoint and stop
        self._done = threading.Event()  # the shard is over: stops the progress ticker
        self._lock = threading.Lock()
        self._reused: dict[int, ItemRecord] = {}
        self._generated: dict[int, list[Row]] = {}
        self._encoded: dict[int, str] = {}  # position → its rows as JSON, for the item store
        self._digests: dict[int, str] = {}  # position → item_digest, computed once
        self._checkpoint: Checkpoint | None = None  # function mode; flushed or discarded at commit
        self.name = packet_name(setup.index) if setup.plan_id else shard_name(setup.index)
        self.budget_reached: str | None = None  # why no new item starts (spec.budget), once reached
        self.spend_unknown: str | None = None  # why the run's spend cannot be counted (its Redis is away)
        self._spend_sent = no_spend()  # this worker's usage the ledger has counted

    # -- progress ---------------------------------------------------------------------------
    def _publish(self) -> None:
        self._publish_counters()
        self.s.progress.publish(dict(self.summary.to_message(), index=self.summary.index))

    def _progress_loop(self) -> None:
        while not self._done.wait(0.3):
            with self._lock:
                self._publish()

    # -- the shard ----------------------------------------------------------------------------
    def run(self) -> int:
        if self.s.plan_id is not None:
            return self._run_packet(self.s.plan_id)
        store, run_id, index = self.s.store, self.s.run_id, self.s.index
        if store.exists(layout.shard_manifest_key(run_id, index)):
            manifest = json.loads(store.get_text(layout.shard_manifest_key(run_id, index)))
            retry_items = os.environ.get(RETRY_FAILED_ITEMS_ENV) == "1" and manifest["items"]["failed"] > 0
            if not retry_items or self.spec.generator.command:
                log.info("%s already committed by an earlier attempt; nothing to do", shard_name(index))
                self._from_manifest(manifest)
                return ExitCode.OK
            log.info("%s: retrying its %d failed items", shard_name(index), manifest["items"]["failed"])
        log.info(
            "%s of run %s: items %d..%d (%d items), concurrency %d",
            shard_name(index),
            run_id,
            *self._bounds(-1),
            len(self.positions),
            self.spec.generator.concurrency,
        )
        ticker = threading.Thread(target=self._progress_loop, daemon=True)
        ticker.start()
        try:
            if self.spec.generator.command:
                rows_file, failures = self.run_command()
            else:
                rows_file, failures = self._run_function()
            if rows_file is None:
                return self._stopped()
            self._commit(rows_file, failures)
            return ExitCode.OK
        finally:
            self._done.set()
            with self._lock:
                self._publish()

    def _made_already(self) -> tuple[Checkpoint, dict[int, list[Row]]]:
        """The shard's checkpoint, and the rows of its items that need no generating."""
        checkpoint = Checkpoint(self.s.store, self.s.run_id, self.s.index)
        results: dict[int, list[Row]] = checkpoint.load()
        results = {p: r for p, r in results.items() if p in self.positions}
        self.summary.items_skipped = len(results)
        if results:
            log.info("%s: %d items already done by an earlier attempt, skipping them", self.name, len(results))
        self._reused = self._reusable(results)
        results.update((p, record.rows) for p, record in self._reused.items())
        self.summary.items_reused = len(self._reused)
        self.summary.items_done = len(results)
        self.summary.rows = sum(len(r) for r in results.values())
        return checkpoint, results

    def item_function(self) -> Callable[[int], tuple[list[Row], str]]:
        """The generator applied to the item at a position: its rows, and their JSON text."""
        assert self.spec.generator.function is not None  # the spec's rules: a function when no command
        fn = load_function(self.spec.generator.function)
        declared = dict(self.spec.combine.columns)

        def one(position: int) -> tuple[list[Row], str]:
            item, item_id = self.item(position), self.item_id(position)
            ctx = ItemContext(
                item=item,
                item_id=item_id,
                shard=self.name,
                index=self.s.index,
                run_id=self.s.run_id,
                cache=self.s.cache,
                counters=self.counters,
                limiter=self.s.limiter,
                default_ttl=self.spec.cache.ttl_seconds,
            )
            rows = json_safe_rows(normalise_rows(fn(item, ctx)), item_id)
            # A value its column or the format cannot hold fails this item, not the shard.
            rows = [conform_row(row, declared, self.fmt) for row in rows]
            return rows, encode_rows(rows)

        return one

    def _generate_all(
        self, results: dict[int, list[Row]], failures: list[dict[str, Any]], checkpoint: Checkpoint
    ) -> bool:
        """Every item not in `results` generated; False when stopped first (checkpoint saved)."""
        one = self.item_function()
        todo = [p for p in processing_order(self.positions, self.s.index) if p not in results]
        self._count_spend()  # a budget reached before this process started: no item starts
        self._generate(one, todo, results, failures, checkpoint)
        if self.stopping.is_set() and len(results) + len(failures) < len(self.positions):
            checkpoint.flush()
            log.warning(
                "%s: stopped after %d of %d items; checkpoint saved", self.name, len(results), len(self.positions)
            )
            return False
        return True

    def _run_function(self) -> tuple[str | None, list[dict[str, Any]]]:
        checkpoint, results = self._made_already()
        failures: list[dict[str, Any]] = []
        if not self._generate_all(results, failures, checkpoint):
            return None, failures
        return self._write_results(results, failures, checkpoint)

    # -- a work packet ------------------------------------------------------------------------
    def _run_packet(self, plan_id: str) -> int:
        """Generate the packet's items into the item store; its failures and counts beside it.
        The packet manifest is the commit marker: a retried pod of a committed packet does nothing."""
        store, run_id, index = self.s.store, self.s.run_id, self.s.index
        assert self.s.item_store is not None  # plans_work: a packet's rows go to the item store
        marker = layout.packet_manifest_key(run_id, plan_id, index)
        if store.exists(marker):
            log.info("%s already committed by an earlier attempt; nothing to do", self.name)
            self._from_manifest(json.loads(store.get_text(marker)))
            return ExitCode.OK
        log.info(
            "%s of run %s (plan %s): %d items, concurrency %d",
            self.name,
            run_id,
            plan_id,
            len(self.positions),
            self.spec.generator.concurrency,
        )
        ticker = threading.Thread(target=self._progress_loop, daemon=True)
        ticker.start()
        try:
            checkpoint = Checkpoint(
                store, run_id, index, prefix=layout.packet_checkpoint_prefix(run_id, plan_id, index)
            )
            results = {p: r for p, r in checkpoint.load().items() if p in self.positions}
            self.summary.items_skipped = self.summary.items_done = len(results)
            self.summary.rows = sum(len(r) for r in results.values())
            failures: list[dict[str, Any]] = []
            if not self._generate_all(results, failures, checkpoint):
                return self._stopped()
            self._generated = results
            self._save_generated()
            body = "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in sorted(failures, key=_position))
            store.put_bytes(layout.packet_failures_key(run_id, plan_id, index), body.encode("utf-8"))
            self.summary.state = "committed"
            self._publish_counters()
            manifest = dict(self.summary.to_message(), planId=plan_id, packet=index)
            store.put_bytes(marker, json.dumps(manifest, indent=1).encode("utf-8"))
            checkpoint.discard()
            return ExitCode.OK
        finally:
            self._done.set()
            with self._lock:
                self._publish()

    # -- a shard assembled from the item store ------------------------------------------------
    def commit_assembled(self, failed: dict[int, dict[str, Any]], generated: set[int], missing_error: str) -> None:
        """Commits the shard from the item store once its run's packets are done: every item is
        there (reused, or generated by a packet of this run: `generated`), or failed, with the
        failure its packet recorded (`failed`, by position) or else `missing_error`. Items the
        packets generated count as done, not reused."""
        checkpoint, results = self._made_already()
        own = {p for p in self._reused if p in generated}
        for position in own:
            del self._reused[position]
        self.summary.items_reused -= len(own)
        failures = []
        for position in self.positions:
            if position not in results:
                failure = failed.get(position) or {"error": missing_error, "where": ""}
                failures.append(dict(failure, id=self.item_id(position), position=position))
        self.summary.items_failed = len(failures)
        path, failures = self._write_results(results, failures, checkpoint)
        self._generated = {}  # stored already, by the packets
        self._commit(path, failures)
        self._publish()

    def _write_results(
        self, results: dict[int, list[Row]], failures: list[dict[str, Any]], checkpoint: Checkpoint
    ) -> tuple[str, list[dict[str, Any]]]:
        """The shard's rows in item order, written to a local file to commit."""
        if self.fmt == "parquet":
            self._fail_type_conflicts(results, failures, dict(self.spec.combine.columns))
        self._generated = {p: rows for p, rows in results.items() if p not in self._reused}
        ordered = [row for p in self.positions if p in results for row in results[p]]
        tmpdir = local_tempdir()
        path = os.path.join(tmpdir, f"shard.{self.fmt}")
        self.summary.columns = write_rows(ordered, path, self.fmt)
        self._checkpoint = checkpoint
        return path, sorted(failures, key=lambda f: f["position"])

    def _bounds(self, last: int = 0) -> tuple[int, int]:
        """The shard's first position and its end (or, with last=-1, its last position)."""
        assert isinstance(self.positions, range)  # a shard's items are contiguous
        return self.positions.start, self.positions.stop + last

    def item(self, position: int) -> Any:
        return self.s.items.items[self.s.items.offset(position)]

    def item_id(self, position: int) -> str:
        return self.s.ids[self.s.items.offset(position)]

    def _digest(self, position: int) -> str:
        digest = self._digests.get(position)
        if digest is None:
            digest = self._digests[position] = item_digest(self.item(position))
        return digest

    def _generate(
        self,
        one: Callable[[int], tuple[list[Row], str]],
        todo: list[int],
        results: dict[int, list[Row]],
        failures: list[dict[str, Any]],
        checkpoint: Checkpoint,
    ) -> None:
        """`one` over every position of `todo` until stopped, each outcome recorded: in this
        thread when items run one at a time (no Future, no hand-off per item), else
        `concurrency` at a time on threads, a few queued ahead."""

        def record(position: int, outcome: tuple[list[Row], str] | None, exc: BaseException | None) -> None:
            if outcome is not None:
                self._record_success(position, outcome, results, checkpoint)
            else:
                assert exc is not None  # an item either gives rows or raises
                self._record_failure(position, exc, failures)
            self._count_spend()

        width = self.spec.generator.concurrency
        limit = self.spec.generator.item_timeout_seconds
        if limit is not None:  # on threads that a stuck call can be left on (item_timeout.py)
            tag = attempt_tag(self.s.store, self.s.run_id, self.s.index, self.s.plan_id)
            todo = carry_failures(checkpoint, tag, todo, failures, self.summary, self._lock)
            timed = TimedItems(one, width, limit, self.stopping)
            if not timed.run(todo, record):
                restart(checkpoint, failures, tag, timed.stuck)
            return
        if width == 1:
            for position in todo:
                if self.stopping.is_set():
                    return
                try:
                    outcome = one(position)
                except Exception as exc:  # the generator's own error: this item fails, the shard goes on
                    record(position, None, exc)
                else:
                    record(position, outcome, None)
            return
        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="item") as pool:
            pending: dict[Future[tuple[list[Row], str]], int] = {}
            queue = iter(todo)
            # A few queued ahead keep the threads busy; under a budget none are, so what runs past
            # the budget is at most the items in flight (concurrency per worker).
            depth = width if self.s.spend is not None else width * 2
            while True:
                while len(pending) < depth and not self.stopping.is_set():
                    queued = next(queue, None)
                    if queued is None:
                        break
                    pending[pool.submit(one, queued)] = queued
                if not pending:
                    break
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    error = fut.exception()
                    record(pending.pop(fut), None if error else fut.result(), error)
                if self.stopping.is_set():  # queued items not started yet stay to do (a resume makes them)
                    for fut in [f for f in pending if f.cancel()]:
                        del pending[fut]

    def _reusable(self, done: dict[int, list[Row]]) -> dict[int, ItemRecord]:
        """Rows that earlier runs stored for this shard's other items (none when reuse is off)."""
        if self.s.item_store is None:
            return {}
        wanted = {p: (self.item_id(p), self._digest(p)) for p in self.positions if p not in done}
        if not wanted:
            return {}
        records = self.s.item_store.load({item_id for item_id, _ in wanted.values()})
        reused = select_reusable(records, wanted, time.time(), self.spec.reuse.max_age_seconds)
        log.info(
            "%s: %d of %d items reused from earlier runs (fingerprint %s)",
            self.name,
            len(reused),
            len(self.positions),
            self.s.item_store.fingerprint,
        )
        return reused

    def _save_generated(self) -> None:
        """This commit's newly generated items, for later runs. Checkpointed items of a retried
        committed shard are stored again: a duplicate record is harmless (the newest wins)."""
        if self.s.item_store is None or not self._generated:
            return
        now, run_id, encoded = time.time(), self.s.run_id, self._encoded
        lines = [
            segment_line(self.item_id(p), self._digest(p), encoded.get(p) or encode_rows(rows), run_id, now)
            for p, rows in sorted(self._generated.items())
        ]
        self.s.item_store.save(run_id, self.name, lines)

    def _fail_type_conflicts(
        self, results: dict[int, list[Row]], failures: list[dict[str, Any]], declared: dict[str, str]
    ) -> None:
        """A Parquet column holds one type: items whose value has another kind than the column's
        first value (in item order) fail, named, instead of the whole shard."""
        in_order = ((p, results[p]) for p in self.positions if p in results)
        for position, why in type_conflicts(in_order, declared).items():
            rows = results.pop(position)
            self.summary.items_done -= 1
            self.summary.items_failed += 1
            self.summary.rows -= len(rows)
            failures.append(
                {"id": self.item_id(position), "position": position, "error": f"RowValueError: {why}", "where": ""}
            )
            log.warning("item %s failed: %s", self.item_id(position), why)

    def _stopped(self) -> int:
        """The exit code of a worker stopped before its end (checkpoint saved): by SIGTERM, at
        spec.budget (not retried: the run waits for a raised budget), or with the spend unknown
        (retried: its Redis may be back by then)."""
        if self.budget_reached:
            self.summary.state, self.summary.error = "budget-exhausted", self.budget_reached
            return ExitCode.BUDGET_EXHAUSTED
        if self.spend_unknown:
            self.summary.state, self.summary.error = "failed", self.spend_unknown
            return ExitCode.FAILED
        return ExitCode.TERMINATED

    def _usage(self) -> Spend:
        """This worker's usage so far, as its generators reported it (ctx.limit, ctx.usage)."""
        c = self.counters
        return {name: float(getattr(c, name, 0) or 0) for name in USAGE}

    def _count_spend(self) -> None:
        """The item's usage into the run's ledger; past spec.budget, no new item starts (the
        items in flight finish and are kept). While the ledger waits for its Redis no new item
        starts either; if Redis stays away the worker stops, checkpointed, and fails."""
        ledger = self.s.spend
        if ledger is None or self.spend_unknown:
            return
        with self._lock:
            now = self._usage()
            delta = {name: now[name] - self._spend_sent[name] for name in USAGE}
            self._spend_sent = now
        try:
            totals = ledger.add(delta)
        except RedisUnavailable as exc:
            self.spend_unknown = str(exc)
            log.error("%s: %s: no new item starts", self.name, exc)
            self.stopping.set()
            return
        self.summary.spent = totals
        reason = over_budget(totals, self.spec.budget)
        if reason and not self.budget_reached:
            self.budget_reached = f"{reason}; spent so far: {spend_text(totals)}"
            log.warning("%s: %s: no new item starts", self.name, self.budget_reached)
            self.stopping.set()

    def _record_success(
        self, position: int, outcome: tuple[list[Row], str], results: dict[int, list[Row]], checkpoint: Checkpoint
    ) -> None:
        rows, encoded = outcome
        with self._lock:
            results[position] = rows
            self._encoded[position] = encoded
            self.summary.items_done += 1
            self.summary.rows += len(rows)
        checkpoint.record(position, self.item_id(position), encoded)

    def _record_failure(self, position: int, exc: BaseException, failures: list[dict[str, Any]]) -> None:
        item_id = self.item_id(position)
        tb = traceback.extract_tb(exc.__traceback__)
        where = f"{tb[-1].filename}:{tb[-1].lineno}" if tb else ""
        error = _utf8(f"{type(exc).__name__}: {exc}")  # a generator's message may hold any text
        with self._lock:
            self.summary.items_failed += 1
            failures.append({"id": item_id, "position": position, "error": error, "where": _utf8(where)})
        log.warning("item %s failed: %s", item_id, error)

    def run_command(self) -> tuple[str | None, list[dict[str, Any]]]:
        tmpdir = local_tempdir()
        staged = None
        try:
            staged, failures = self._run_command_in(tmpdir)
            return staged, failures
        finally:
            if staged is None:  # failed or stopped: nothing to commit, nothing to keep
                shutil.rmtree(tmpdir, ignore_errors=True)

    def _run_command_in(self, tmpdir: str) -> tuple[str | None, list[dict[str, Any]]]:
        gen = self.spec.generator
        assert gen.command is not None  # command mode
        items_file = os.path.join(tmpdir, "items.jsonl")
        with open(items_file, "w", encoding="utf-8") as f:
            for p in self.positions:
                f.write(json.dumps(self.item(p), ensure_ascii=False) + "\n")
        values = shard_values(gen, list(self.s.ids), self.s.index, self.s.run_id, items_file)
        output = output_path(gen, values)
        argv = [substitute(a, values) for a in gen.command]
        cwd = work_dir(gen)
        if output.is_file():
            output.unlink()  # never publish a stale file from an earlier attempt
        log.info("running %s", " ".join(argv)[:500])
        try:
            proc = subprocess.Popen(argv, cwd=cwd, start_new_session=True)
        except (FileNotFoundError, PermissionError) as exc:
            raise GeneratorConfigError(f"spec.generator.command: cannot start {argv[0]!r}: {exc}") from None
        deadline = command_deadline(gen.item_timeout_seconds, len(self.positions))
        while proc.poll() is None:
            if self.stopping.wait(0.2):
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait()
                return None, []
            if time.monotonic() > deadline:
                kill_command(proc)
                return self._command_timed_out(tmpdir)
        if proc.returncode != 0:
            raise RuntimeError(f"generator command exited with code {proc.returncode}")
        output = output_path(gen, values)  # again: the command may have made a symlink since
        if not output.is_file():
            raise RuntimeError(f"generator command exited 0 but wrote no {output}")
        staged = os.path.join(tmpdir, f"shard.{self.fmt}")
        shutil.copyfile(output, staged)
        missing, self.summary.rows = self._account_for_items(staged, output)
        self.summary.columns = read_columns(staged, self.fmt)
        self.summary.items_done = len(self.positions) - len(missing)
        self.summary.items_failed = len(missing)
        self._checkpoint = None
        return staged, [
            {"id": item_id, "error": "the generator command wrote no row for this item"} for item_id in missing
        ]

    def _command_timed_out(self, tmpdir: str) -> tuple[str, list[dict[str, Any]]]:
        """Past generator.itemTimeoutSeconds per item: every item fails; its output, perhaps
        half written, is not read."""
        limit = self.spec.generator.item_timeout_seconds
        assert limit is not None  # a deadline comes from a limit
        failures = command_failures(limit, list(self.s.ids))
        log.warning("%s: %s", self.name, failures[0]["error"] if failures else "out of time")
        staged = os.path.join(tmpdir, f"shard.{self.fmt}")
        self.summary.columns = write_rows([], staged, self.fmt)
        self.summary.items_done, self.summary.items_failed, self.summary.rows = 0, len(failures), 0
        self._checkpoint = None
        return staged, failures

    def _account_for_items(self, staged: str, output: Path) -> tuple[list[str], int]:
        """Check a command's output against the shard's items: (the ids it wrote no row for, rows).

        Every row must be an object; with `idColumn` each row names an item of this shard and the
        items it names are the ones done; without it the rows cannot be told apart, so an output
        with no rows (for a shard with items) fails unless the spec allows it."""
        gen = self.spec.generator
        own = list(self.s.ids)
        named: set[str] = set()
        rows = 0
        try:
            for rows, row in enumerate(iter_rows(staged, self.fmt), 1):
                if not isinstance(row, dict):
                    raise RuntimeError(f"{output}: row {rows} is not an object (a {type(row).__name__})")
                if gen.id_column is not None:
                    value = row.get(gen.id_column)
                    named.add("" if value is None else str(value))
        except (ValueError, UnicodeDecodeError) as exc:  # not JSON, not UTF-8, not the format at all
            raise RuntimeError(f"{output}: cannot read it as {self.fmt}: {exc}") from None
        if gen.id_column is not None:
            strangers = sorted(named - set(own))
            if strangers:
                raise RuntimeError(
                    f"{output}: column {gen.id_column!r} names {len(strangers)} item(s) not in this shard, "
                    f"e.g. {strangers[0]!r}"
                )
            return [item_id for item_id in own if item_id not in named], rows
        if rows == 0 and own and not gen.allow_empty_output:
            raise RuntimeError(
                f"{output}: the generator command wrote no rows for {len(own)} item(s); set "
                "spec.generator.idColumn to account for items, or allowEmptyOutput: true if that is expected"
            )
        return [], rows

    def _commit(self, path: str, failures: list[dict[str, Any]]) -> None:
        """Failures, then data, then the shard manifest: the manifest is the commit marker."""
        store, run_id, index = self.s.store, self.s.run_id, self.s.index
        sha, size = file_digest(path)
        self.summary.sha256, self.summary.bytes = sha, size
        body = "".join(json.dumps(f, ensure_ascii=False) + "\n" for f in failures)
        store.put_bytes(layout.failures_key(run_id, index), body.encode("utf-8"))
        store.put_file(layout.shard_data_key(run_id, index, self.fmt), path)
        self._save_generated()
        self.summary.state = "committed"
        self._publish_counters()
        manifest = dict(
            self.summary.to_message(),
            format=self.fmt,
            bytes=size,
            columns=self.summary.columns,
            positions=list(self._bounds()),
            fingerprint=self.s.item_store.fingerprint if self.s.item_store else None,
            reusedFrom=lineage(self._reused),
            committedAt=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        )
        store.put_bytes(layout.shard_manifest_key(run_id, index), json.dumps(manifest, indent=1).encode("utf-8"))
        if self._checkpoint is not None:
            if failures:  # kept, so a retry-failed attempt reruns only the failed items
                self._checkpoint.flush()
            else:
                self._checkpoint.discard()
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)

    def _publish_counters(self) -> None:
        s = self.summary
        s.cache_hits, s.cache_misses = self.counters.cache_hits, self.counters.cache_misses
        s.upstream_calls = self.counters.upstream_calls
        s.usage, s.rate_limit = self.counters.usage(), self.counters.rate_limit()

    def _from_manifest(self, manifest: dict[str, Any]) -> None:
        s = self.summary
        s.state = "committed"
        s.items_done = manifest["items"]["done"]
        s.items_failed = manifest["items"]["failed"]
        s.items_skipped = manifest["items"].get("skipped", 0)
        s.items_reused = manifest["items"].get("reused", 0)
        s.rows, s.sha256 = manifest["rows"], manifest.get("sha256")
        s.cache_hits, s.cache_misses = manifest["cache"]["hits"], manifest["cache"]["misses"]
        s.usage, s.rate_limit, s.spent = manifest.get("usage") or {}, manifest.get("rateLimit"), manifest.get("spent")
        self.s.progress.publish(dict(s.to_message(), index=s.index))


def _position(failure: dict[str, Any]) -> int:
    return int(failure["position"])


def _utf8(text: str) -> str:
    """`text` as UTF-8 can carry it: a lone surrogate becomes its escape."""
    return text if text.isascii() else text.encode("utf-8", "backslashreplace").decode("utf-8")
