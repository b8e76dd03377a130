"""How a worker's life ends: SIGTERM (from the kubelet, `dsj run`, or the death of `dsj run`)
makes it finish the items in hand, save its checkpoint and exit.

A local worker never outlives `dsj run`: when the runner dies (even by SIGKILL) the worker
gets SIGTERM. Linux delivers the signal at once (prctl PR_SET_PDEATHSIG); elsewhere a watcher
thread notices the new parent within a second. In a pod PARENT_PID_ENV is unset and the kubelet
owns the worker's lifetime.

Nothing a worker started outlives it:

- A local worker that has not exited STOP_GRACE_SECONDS after SIGTERM (an item that never
  returns, a command that ignores the signal) kills what it started and exits 143 at once.
- The worker adopts the orphans of what it starts (PR_SET_CHILD_SUBREAPER): a command's
  `sleep 300 &`, a generator's forked child, even one that left for its own session, stays its
  descendant; `exit_now` kills every descendant (and, when the worker leads its process group,
  the rest of the group) and ends the process with os._exit, so a non-daemon thread cannot hold
  a finished worker either.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import NoReturn

from datasetjob.contract import PARENT_PID_ENV
from datasetjob.errors import ExitCode

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
# A local worker's time from SIGTERM to exit when its work does not stop by itself. `dsj run`
# kills a worker still there after a longer grace (runner.KILL_AFTER_SECONDS).
STOP_GRACE_SECONDS = 5.0


def _prctl(option: int, value: int) -> bool:
    try:
        return bool(ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False  # not Linux


def stop_with_parent(signum: int = signal.SIGTERM) -> None:
    parent = os.environ.get(PARENT_PID_ENV)
    if not parent or not parent.isdigit():
        return
    parent_pid = int(parent)
    if _prctl(PR_SET_PDEATHSIG, int(signum)):
        if os.getppid() != parent_pid:  # the runner died before the prctl call
            os.kill(os.getpid(), signum)
        return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os.kill(os.getpid(), signum)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def adopt_orphans() -> None:
    """Make this process the reaper of its descendants' orphans, so that `kill_leftovers` finds
    them (Linux; elsewhere a no-op)."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)


def _processes() -> dict[int, tuple[int, int, int, str]]:
    """pid -> (parent pid, process group, session, state) of every process in /proc."""
    out: dict[int, tuple[int, int, int, str]] = {}
    try:
        entries = list(Path("/proc").iterdir())
    except OSError:
        return out  # no /proc: not Linux
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        out[int(entry.name)] = (int(fields[1]), int(fields[2]), int(fields[3]), fields[0])
    return out


def descendants(pid: int, table: dict[int, tuple[int, int, int, str]] | None = None) -> list[int]:
    """Every live (not zombie) process below `pid`, from a snapshot of /proc."""
    table = _processes() if table is None else table
    children: dict[int, list[int]] = {}
    for child, (parent, _, _, _) in table.items():
        children.setdefault(parent, []).append(child)
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(children.get(current, []))
    return [p for p in found if table[p][3] != "Z"]


def _leftovers() -> list[int]:
    me = os.getpid()
    table = _processes()
    found = set(descendants(me, table))
    group, session = os.getpgrp(), os.getsid(0)
    if group == me or session == me:  # our own group or session: everything in it is ours
        found.update(p for p, (_, pgrp, sid, state) in table.items() if state != "Z" and me in (pgrp, sid))
    found.discard(me)
    return sorted(found)


def kill_leftovers(wait_seconds: float = 2.0) -> None:
    """SIGKILL every process this one started that is still there (see the module docstring).
    Repeats until none is left, for the children that a killed process leaves to us."""
    deadline = time.monotonic() + wait_seconds
    while True:
        pids = _leftovers()
        if not pids or time.monotonic() > deadline:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)


def exit_now(code: int) -> NoReturn:
    """End the worker process: kill what it left running, flush, os._exit (no thread can hold it)."""
    kill_leftovers()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(int(code))


def _give_up_after(seconds: float) -> None:
    time.sleep(seconds)
    with contextlib.suppress(OSError):
        os.write(2, f"worker: still running {seconds:.0f}s after SIGTERM; killing its processes and exiting\n".encode())
    exit_now(ExitCode.TERMINATED)


def stop_on_sigterm(stopping: threading.Event, grace: float | None = None) -> None:
    """SIGTERM sets `stopping`. The handler only writes a byte to a pipe and a thread sets the
    event: Event.set takes a lock that the interrupted main thread may be holding (a handler
    that took it could wait forever), and writing to a pipe takes none.

    `grace` seconds after the signal the process ends regardless (`exit_now`); by default a
    local worker (PARENT_PID_ENV set) gets STOP_GRACE_SECONDS and a pod's worker is left to
    its kubelet's termination grace period."""
    if grace is None and os.environ.get(PARENT_PID_ENV):
        grace = STOP_GRACE_SECONDS
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def relay() -> None:
        os.read(read_fd, 1)
        stopping.set()
        if grace is not None:
            _give_up_after(grace)

    def on_sigterm(*_: object) -> None:
        try:
            os.write(write_fd, b"x")
        except BlockingIOError:  # already signalled many times
            pass

    threading.Thread(target=relay, name="sigterm-relay", daemon=True).start()
    signal.signal(signal.SIGTERM, on_sigterm)
