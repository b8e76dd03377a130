"""One shard (or work packet) as the local runner sees it: its process, attempts, state and exit codes."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ShardProcess:
    index: int
    attempts: int = 0
    restarts: int = 0  # attempts that ended asking for a fresh process (ExitCode.RESTART): not failures
    proc: subprocess.Popen[bytes] | None = None  # set when it starts
    state: str = "pending"  # pending | running | committed | failed
    exit_codes: list[int] = field(default_factory=list)
    log_path: Path | None = None
    retry_at: float = 0.0
    name: str = ""  # shard-NNNNN, or packet-NNNNN when the run planned its work
    items: int | None = None  # a work packet's item count (a shard's follows from the spec)


def last_error_line(log_path: Path | None, tail_bytes: int = 64 << 10) -> str | None:
    """The last line of a shard's log that says what went wrong (not a traceback frame or an
    attempt marker), shortened; None when the log has none."""
    if log_path is None:
        return None
    try:
        with open(log_path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - tail_bytes))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return None
    for line in reversed(text.splitlines()):
        if line.strip() and not line.startswith((" ", "\t", "---", "Traceback")):
            return line.strip()[:300]
    return None
