"""Reading DatasetJob documents from YAML/JSON files."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from .errors import SpecError
from .spec import DatasetJobSpec, spec_from_document


def load_document(path: str | Path) -> dict:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SpecError([f"{path}: cannot read: {exc.strerror}"]) from None
    if str(path).endswith(".json"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise SpecError([f"{path}: not valid JSON: {exc}"]) from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise SpecError([f"{path}: not valid YAML: {exc}"]) from None
    jobs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "DatasetJob"]
    if len(jobs) != 1:
        if len(docs) == 1:
            return docs[0]
        raise SpecError([f"{path}: expected one DatasetJob document, found {len(jobs)}"])
    return jobs[0]


def load_spec_file(path: str | Path, rules: bool = True) -> DatasetJobSpec:
    return spec_from_document(load_document(path), rules=rules)
