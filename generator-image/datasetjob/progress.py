"""Live per-shard progress: the worker publishes snapshots, the local runner (or the operator)
reads them. Local mode uses one small JSON file per shard, rewritten atomically."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


class NullProgress:
    def publish(self, snapshot: dict) -> None:
        pass


class FileProgress:
    def __init__(self, directory: str | os.PathLike, index: int):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / f"{index:05d}.json"

    def publish(self, snapshot: dict) -> None:
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(dict(snapshot, updatedAt=time.time())))
        os.replace(tmp, self.path)


def read_file_progress(directory: str | os.PathLike) -> dict[int, dict]:
    out = {}
    folder = Path(directory)
    if not folder.is_dir():
        return out
    for path in folder.glob("*.json"):
        try:
            out[int(path.stem)] = json.loads(path.read_text())
        except (ValueError, OSError):
            continue  # replaced while we read it; the next poll sees it
    return out
