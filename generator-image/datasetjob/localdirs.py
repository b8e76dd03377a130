"""Where a worker keeps machine-local state: the embedded cache's directory (DSJ_EMBEDDED_CACHE_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

# Set by `dsj run --cache-dir` and by the operator for its pods; the local rate-limit buckets
# live under it too (<dir>/ratelimit/).
EMBEDDED_CACHE_DIR_ENV = "DSJ_EMBEDDED_CACHE_DIR"


def embedded_cache_dir() -> Path:
    """$DSJ_EMBEDDED_CACHE_DIR, else ~/.cache/datasetjob/embedded-cache (XDG_CACHE_HOME honoured)."""
    env = os.environ.get(EMBEDDED_CACHE_DIR_ENV)
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "datasetjob" / "embedded-cache"
