"""A shard committed as a worker commits it (its data file, then its manifest), for the tests
and benches of the combine that need rows in a run but no generator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datasetjob.store import layout
from datasetjob.store.backends import Store
from datasetjob.store.tables import file_digest, write_rows


def commit_shard(
    store: Store, run_id: str, index: int, rows: list[dict[str, Any]], fmt: str, path: Path, items_done: int
) -> Path:
    """Writes `rows` to `path` in `fmt`, publishes it as shard `index` of `run_id` with its
    manifest, and returns `path` (still there, for the caller to read or remove)."""
    columns = write_rows(rows, str(path), fmt)
    sha, size = file_digest(str(path))
    store.put_file(layout.shard_data_key(run_id, index, fmt), str(path))
    manifest = {
        "runId": run_id,
        "shard": index,
        "rows": len(rows),
        "sha256": sha,
        "bytes": size,
        "columns": columns,
        "items": {"done": items_done, "failed": 0},
        "cache": {"hits": 0, "misses": 0},
    }
    store.put_bytes(layout.shard_manifest_key(run_id, index), json.dumps(manifest).encode())
    return path
