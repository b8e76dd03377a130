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


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def published(out: Path) -> tuple[Path, dict]:
    """The dataset file and manifest that latest.json points at."""
    latest = json.loads((out / "latest.json").read_text())
    manifest = json.loads((out / "runs" / latest["runId"] / "manifest.json").read_text())
    return Path(latest["dataset"]["uri"].removeprefix("file://")), manifest


def deepcopy(doc):
    return copy.deepcopy(doc)
