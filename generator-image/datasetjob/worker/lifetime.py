"""How a worker's life ends: SIGTERM (from the kubelet, `dsj run`, or the death of `dsj run`)
makes it finish the items in hand, save its checkpoint and exit.

A local worker never outlives `dsj run`: when the runner dies (even by SIGKILL) the worker
gets SIGTERM.

Linux delivers the signal at once (prctl PR_SET_PDEATHSIG); elsewhere a watcher thread notices
the new parent within a second.
In a pod PARENT_PID_ENV is unset and the kubelet owns the worker's lifetime.
"""

from __future__ import annotations

import ctypes
import os
import signal
import threading
import time

from datasetjob.contract import PARENT_PID_ENV

PR_SET_PDEATHSIG = 1


def stop_with_parent(signum: int = signal.SIGTERM) -> None:
    parent = os.environ.get(PARENT_PID_ENV)
    if not parent or not parent.isdigit():
        return
    parent_pid = int(parent)
    try:
        armed = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signum), 0, 0, 0) == 0
    except (OSError, AttributeError):
        armed = False  # not Linux
    if armed:
        if os.getppid() != parent_pid:  # the runner died before the prctl call
            os.kill(os.getpid(), signum)
        return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1.0)
        os.kill(os.getpid(), signum)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def stop_on_sigterm(stopping: threading.Event) -> None:
    """SIGTERM sets `stopping`. The handler only writes a byte to a pipe and a thread sets the
    event: Event.set takes a lock that the interrupted main thread may be holding (a handler
    that took it could wait forever), and writing to a pipe takes none."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)

    def relay() -> None:
        os.read(read_fd, 1)
        stopping.set()

    def on_sigterm(*_: object) -> None:
        try:
            os.write(write_fd, b"x")
        except BlockingIOError:  # already signalled many times
            pass

    threading.Thread(target=relay, name="sigterm-relay", daemon=True).start()
    signal.signal(signal.SIGTERM, on_sigterm)
