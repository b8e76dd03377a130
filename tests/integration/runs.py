"""Helpers for running the local runner as a user would: `dsj run` in a subprocess."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "manifests" / "samples" / "smart-money-flow.yaml"


def sample_doc(symbols: int = 12, dates: int = 6, shards: int = 4, **spec_over) -> dict:
    """The smart-money sample, scaled down."""
    doc = yaml.safe_load(SAMPLE.read_text())
    product = doc["spec"]["items"]["product"]
    product["symbol"] = product["symbol"][:symbols]
    product["date"] = product["date"][:dates]
    doc["spec"]["shards"] = shards
    doc["spec"]["parallelism"] = shards
    for key, value in spec_over.items():
        doc["spec"][key] = value
    return doc


def datasetjob(name: str, **spec) -> dict:
    """A DatasetJob document named `name` with these spec fields."""
    return {"apiVersion": "datagen.dev/v1alpha1", "kind": "DatasetJob", "metadata": {"name": name}, "spec": spec}


def write_doc(doc: dict, path: Path) -> Path:
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def dsj(
    *args: str, cwd: Path, env: dict | None = None, check: bool = False, timeout: int = 300, **popen
) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "SMF_LATENCY_MS": "1", **(env or {})}
    cmd = [sys.executable, "-m", "datasetjob", *args]
    proc = subprocess.run(cmd, cwd=cwd, env=full_env, capture_output=True, text=True, timeout=timeout, **popen)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def local_dataset(doc: dict, work: Path, timeout: int = 300) -> Path:
    """The dataset `dsj run` makes of a cluster spec on this machine, as CSV under `work` (its
    output, cache and work directory there): what a run in the cluster must equal."""
    local = copy.deepcopy(doc)
    local["spec"]["output"] = {"format": "csv"}
    proc = dsj(
        "run",
        str(write_doc(local, work / "spec.yaml")),
        "--output",
        f"file://{work}/out",
        "--workdir",
        str(work),
        cwd=work,
        env={"DSJ_EMBEDDED_CACHE_DIR": str(work / "cache")},
        timeout=timeout,
    )
    if proc.returncode != 0:
        raise AssertionError(f"dsj run exited {proc.returncode}\n{proc.stderr[-3000:]}")
    dataset, _ = published(work / "out")
    return dataset


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def published(out: Path) -> tuple[Path, dict]:
    """The dataset file and manifest that latest.json points at."""
    latest = json.loads((out / "latest.json").read_text())
    manifest = json.loads((out / "runs" / latest["runId"] / "manifest.json").read_text())
    return Path(latest["dataset"]["uri"].removeprefix("file://")), manifest


def deepcopy(doc):
    return copy.deepcopy(doc)
