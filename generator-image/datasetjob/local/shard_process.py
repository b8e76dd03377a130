"""One shard as the local runner sees it: its process, attempts, state and exit codes."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class ShardProcess:
    index: int
    attempts: int = 0
    proc: subprocess.Popen[bytes] | None = None  # set when it starts
    state: str = "pending"  # pending | running | committed | failed
    exit_codes: list[int] = field(default_factory=list)
    log_path: Path | None = None
    retry_at: float = 0.0
