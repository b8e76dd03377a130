"""What a shard reports when it ends: its counts, as the one-line termination message the
operator reads from the pod status (and the local runner from the worker's output)."""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("datasetjob.worker")


@dataclass
class ShardSummary:
    run_id: str
    index: int
    items_total: int = 0
    items_done: int = 0
    items_failed: int = 0
    items_skipped: int = 0  # done by an earlier attempt (from the checkpoint)
    items_reused: int = 0  # done by an earlier run: rows taken from the item store
    rows: int = 0
    cache_hits: int = 0
    cache_misses: int = 0
    upstream_calls: int = 0
    # what the generators used ({"requests", "tokens", "cost"}: ctx.limit takes, ctx.usage reports)
    usage: dict[str, float] = field(default_factory=dict)
    # the scope's effective limits under back-pressure, and the throttles (sdk.context.Counters.rate_limit)
    rate_limit: dict[str, Any] | None = None
    sha256: str | None = None
    bytes: int = 0
    state: str = "running"
    error: str | None = None
    spent: dict[str, float] | None = None  # the run's spend (every worker's), when spec.budget is set
    columns: list[str] = field(default_factory=list)

    def to_message(self) -> dict[str, Any]:
        """The one-line termination message (kept well under the 4 KiB limit)."""
        out: dict[str, Any] = {
            "runId": self.run_id,
            "shard": self.index,
            "state": self.state,
            "items": {
                "total": self.items_total,
                "done": self.items_done,
                "failed": self.items_failed,
                "skipped": self.items_skipped,
                "reused": self.items_reused,
            },
            "rows": self.rows,
            "cache": {"hits": self.cache_hits, "misses": self.cache_misses},
            "upstreamCalls": self.upstream_calls,
        }
        if self.usage:
            out["usage"] = self.usage
        if self.rate_limit:
            out["rateLimit"] = self.rate_limit
        if self.sha256:
            out["sha256"] = self.sha256
        if self.error:
            out["error"] = self.error[:1500]
        if self.spent is not None:
            out["spent"] = {name: round(value, 6) for name, value in self.spent.items()}
        return out


def write_termination_message(summary: ShardSummary | dict[str, Any]) -> None:
    message = summary.to_message() if isinstance(summary, ShardSummary) else summary
    path = os.environ.get("DSJ_TERMINATION_LOG") or "/dev/termination-log"
    if not os.environ.get("DSJ_TERMINATION_LOG") and not os.path.exists(path):
        return  # not in a pod
    try:
        with open(path, "w") as f:
            f.write(json.dumps(message, separators=(",", ":")) + "\n")
    except OSError as exc:
        log.warning("cannot write termination message to %s: %s", path, exc)
