"""generator.itemTimeoutSeconds: an item that runs longer fails with ItemTimeout, and the shard
goes on.

Function mode. A Python thread cannot be killed, so with a timeout every item runs on a daemon
worker thread (at concurrency 1 too) and the shard's thread watches the deadlines. A call past
its deadline is abandoned: its item is recorded as failed at once, a new thread takes the
abandoned one's place, and whatever the call returns later is dropped (whoever marks a call over
first, the watcher or its thread, owns its outcome, so an item is never recorded twice). An
abandoned thread that returns ends, so only calls still stuck are leaked; when more than
`max_stuck(concurrency)` are, the worker saves its checkpoint, with the failed items beside it,
and exits ExitCode.RESTART. The Job (without counting a retry) or `dsj run` starts a fresh process
that loads the checkpoint: nothing done is generated again and nothing failed is tried again in
that run (`--retry-failed` and later runs do retry them). Each restart records more than
max_stuck failed items, so restarts are bounded by the shard's item count.

Command mode: the shard's command gets `limit` seconds per item of the shard; past that its
process group is killed, its output discarded and every item of the shard fails.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from datasetjob.store import layout
from datasetjob.store.backends import Store
from datasetjob.store.checkpoint import Checkpoint

log = logging.getLogger("datasetjob.worker")

POLL_SECONDS = 0.2  # the longest a new call's start goes unseen by the watcher
COMMAND_KILL_GRACE_SECONDS = 2.0  # SIGTERM, then SIGKILL: a command may clean up first

Outcome = Any  # what the item function returns; recorded as given
Record = Callable[[int, Any, BaseException | None], None]


class ItemTimeout(Exception):
    """An item ran longer than generator.itemTimeoutSeconds."""


class RestartWorker(Exception):
    """Too many calls are stuck on abandoned threads: the checkpoint is saved; the process
    exits ExitCode.RESTART so that a fresh one continues the shard."""


class FailureCount(Protocol):
    items_failed: int


def max_stuck(concurrency: int) -> int:
    """Abandoned calls still running that a worker tolerates; one more and it restarts."""
    return max(2, concurrency)


def seconds_text(seconds: float) -> str:
    return f"{seconds:g} s"


@dataclass(eq=False)
class _Call:
    position: int
    started: float | None = None  # monotonic, set by the thread that runs it
    thread: int | None = None  # that thread's ident
    over: bool = False  # finished, abandoned or cancelled; set under the lock, once


class TimedItems:
    """Runs an item function over positions, `width` at a time, each call with a deadline."""

    def __init__(
        self,
        one: Callable[[int], Outcome],
        width: int,
        limit: float,
        stopping: threading.Event,
        stuck_limit: int | None = None,
    ):
        self.one = one
        self.width = width
        self.limit = limit
        self.stopping = stopping
        self.stuck_limit = max_stuck(width) if stuck_limit is None else stuck_limit
        self.stuck = 0  # abandoned calls that have not returned
        self.abandoned = 0  # every call abandoned, returned since or not
        self._lock = threading.Lock()
        self._inbox: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[tuple[_Call, Outcome, BaseException | None]] = queue.SimpleQueue()

    def run(self, todo: Iterable[int], record: Record) -> bool:
        """Every position of `todo` until `stopping`, each outcome (rows, an error, or
        ItemTimeout) passed to `record` in this thread. False when it stopped early because more
        than `stuck_limit` calls are stuck: then items not started are left undone."""
        feed = iter(todo)
        inflight: list[_Call] = []
        threads = 0
        too_many = False
        try:
            while True:
                while not too_many and not self.stopping.is_set() and len(inflight) < 2 * self.width:
                    position = next(feed, None)
                    if position is None:
                        break
                    if threads < self.width:
                        self._start_thread()
                        threads += 1
                    call = _Call(position)
                    inflight.append(call)
                    self._inbox.put(call)
                if too_many or self.stopping.is_set():
                    inflight = self._cancel_queued(inflight)
                if not inflight:
                    return not too_many
                self._take_done(inflight, record)
                for call in self._overdue(inflight):
                    inflight.remove(call)
                    too_many = too_many or self.stuck > self.stuck_limit
                    if not too_many:
                        self._start_thread()  # in the place of the one left with the call
                    record(call.position, None, ItemTimeout(self._why(call)))
        finally:
            for _ in range(threads):  # idle threads end; busy ones after their call
                self._inbox.put(None)

    def _start_thread(self) -> None:
        threading.Thread(target=self._serve, name="item", daemon=True).start()

    def _serve(self) -> None:
        while True:
            call = self._inbox.get()
            if call is None:
                return
            if not self._begin(call):  # cancelled before it started
                continue
            outcome: Outcome = None
            error: BaseException | None = None
            try:
                outcome = self.one(call.position)
            except BaseException as exc:  # the generator's own error: this item fails, the shard goes on
                error = exc
            if not self._end(call):  # abandoned meanwhile: the late outcome is dropped, as is this thread
                return
            self._done.put((call, outcome, error))

    def _begin(self, call: _Call) -> bool:
        with self._lock:
            if call.over:
                return False
            call.started, call.thread = time.monotonic(), threading.get_ident()
            return True

    def _end(self, call: _Call) -> bool:
        """True when the call's outcome is its own to give; False when it was abandoned."""
        with self._lock:
            if call.over:
                self.stuck -= 1
                return False
            call.over = True
            return True

    def _cancel_queued(self, inflight: list[_Call]) -> list[_Call]:
        with self._lock:
            for call in inflight:
                if call.started is None:
                    call.over = True
            return [call for call in inflight if call.started is not None]

    def _take_done(self, inflight: list[_Call], record: Record) -> None:
        """Waits for an outcome until the next deadline (POLL_SECONDS at most); records every
        outcome there is."""
        with self._lock:
            starts = [c.started for c in inflight if c.started is not None]
        now = time.monotonic()
        wait = min([POLL_SECONDS, *(s + self.limit - now for s in starts)])
        try:
            item = self._done.get(timeout=max(0.0, wait))
        except queue.Empty:
            return
        while True:
            call, outcome, error = item
            inflight.remove(call)
            record(call.position, outcome, error)
            try:
                item = self._done.get_nowait()
            except queue.Empty:
                return

    def _overdue(self, inflight: list[_Call]) -> list[_Call]:
        """Calls past their deadline, now abandoned (a call that finished meanwhile is not)."""
        now = time.monotonic()
        late = []
        with self._lock:
            for call in inflight:
                if call.started is not None and not call.over and now - call.started >= self.limit:
                    call.over = True
                    self.stuck += 1
                    self.abandoned += 1
                    late.append(call)
        return late

    def _why(self, call: _Call) -> str:
        return f"still running after {seconds_text(self.limit)}; abandoned{_stuck_at(call)}"


def _stuck_at(call: _Call) -> str:
    """Where the abandoned call is now, as ` at file:line`, for its failure record: the innermost
    frame outside Python's own library (a wait or a socket read there says little)."""
    frame = sys._current_frames().get(call.thread or -1)
    shown = frame
    while frame is not None and frame.f_code.co_name != "_serve":
        if not _in_stdlib(frame.f_code.co_filename):
            shown = frame
            break
        frame = frame.f_back
    if shown is None:
        return ""
    return f" at {os.path.basename(shown.f_code.co_filename)}:{shown.f_lineno}"


_STDLIB = tuple({sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]})


def _in_stdlib(filename: str) -> bool:
    return filename.startswith(_STDLIB) and "-packages" not in filename


# -- restarts: the failed items kept beside the checkpoint ------------------------------------


def attempt_tag(store: Store, run_id: str, index: int, plan_id: str | None) -> str:
    """What tells this shard's attempts apart from those of a later retry-failed pass: the
    commit time of the shard (empty before its first commit). Failed items carried over a
    restart count only within one pass, so --retry-failed tries them again."""
    if plan_id is not None:  # a committed packet is never generated again
        return ""
    key = layout.shard_manifest_key(run_id, index)
    if not store.exists(key):
        return ""
    return str(json.loads(store.get_text(key)).get("committedAt", ""))


def carry_failures(
    checkpoint: Checkpoint,
    tag: str,
    todo: list[int],
    failures: list[dict[str, Any]],
    summary: FailureCount,
    lock: threading.Lock,
) -> list[int]:
    """`todo` without the items an earlier process of this pass recorded as failed before it
    restarted; their failures are taken into `failures` as they were."""
    carried = {p: entry["failed"] for p, entry in checkpoint.failed.items() if entry.get("tag", "") == tag}
    left = [p for p in todo if p not in carried]
    taken = [dict(carried[p], position=p) for p in todo if p in carried]
    if taken:
        with lock:
            failures.extend(taken)
            summary.items_failed += len(taken)
        log.info("%d items failed before this process restarted; not tried again in this attempt", len(taken))
    return left


def restart(checkpoint: Checkpoint, failures: list[dict[str, Any]], tag: str, stuck: int) -> None:
    """Saves what the shard has (its finished items, and its failed ones so that they are not
    tried again) and raises RestartWorker."""
    checkpoint.flush()
    checkpoint.save_failures(failures, tag)
    raise RestartWorker(f"{stuck} item calls are stuck past generator.itemTimeoutSeconds; restarting the worker")


# -- command mode --------------------------------------------------------------------------------


def command_deadline(limit: float | None, items: int) -> float:
    """When a shard's command is out of time (time.monotonic), or infinity without a limit."""
    if limit is None:
        return float("inf")
    return time.monotonic() + limit * max(1, items)


def kill_command(proc: subprocess.Popen[Any]) -> None:
    """SIGTERM to the command's process group, SIGKILL to it when it is still there."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(COMMAND_KILL_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # what the command left in its group


def command_failures(limit: float, ids: list[str]) -> list[dict[str, Any]]:
    """Every item of a shard whose command ran out of time."""
    error = (
        f"ItemTimeout: the generator command ran longer than {seconds_text(limit * max(1, len(ids)))} "
        f"(generator.itemTimeoutSeconds {seconds_text(limit)} x {len(ids)} items); its process group was killed"
    )
    return [{"id": item_id, "error": error} for item_id in ids]
