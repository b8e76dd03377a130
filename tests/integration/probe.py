"""A tiny SDK generator written next to a test's spec: it records every call, so a test can
count how often each item was generated, and fails the items whose id says so."""

from __future__ import annotations

from pathlib import Path

from tests.integration.runs import write_doc

PROBE_SOURCE = """
import json, os, time

def generate(item, ctx):
    calls = os.environ.get("PROBE_CALLS")
    if calls:  # one short O_APPEND write per call: lines from many processes never interleave
        fd = os.open(calls, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(fd, (json.dumps(ctx.item_id) + "\\n").encode())
        os.close(fd)
    time.sleep(float(os.environ.get("PROBE_SLEEP", "0")))
    if ctx.item_id.startswith("fail"):
        raise ValueError("cannot make " + ctx.item_id)
    return {"id": ctx.item_id, "size": len(ctx.item_id)}
"""


def probe_doc(values: list, shards: int = 2, **spec_over) -> dict:
    spec = {
        "items": {"values": values},
        "shards": shards,
        "generator": {"function": "probe_gen:generate", "concurrency": 2},
        "combine": {"minItemSuccessRatio": 0.0},
    }
    spec.update(spec_over)
    return {"apiVersion": "datagen.dev/v1alpha1", "kind": "DatasetJob", "metadata": {"name": "probe"}, "spec": spec}


def write_probe(doc: dict, folder: Path, name: str = "probe.yaml") -> Path:
    (folder / "probe_gen.py").write_text(PROBE_SOURCE)
    return write_doc(doc, folder / name)


def calls(path: Path) -> list[str]:
    import json

    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
