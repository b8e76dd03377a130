"""A local worker never outlives `dsj run`: when the runner dies (even by SIGKILL) the worker
gets SIGTERM, which makes it finish the items in hand, save its checkpoint and exit.

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

from .contract import PARENT_PID_ENV

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
