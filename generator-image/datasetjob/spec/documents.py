"""Reading DatasetJob documents from YAML/JSON files, within the spec size limit."""

from __future__ import annotations

from pathlib import Path

from datasetjob.errors import SpecError
from datasetjob.spec.limits import MAX_SPEC_BYTES, MAX_WRITTEN_SPEC_BYTES, size_text
from datasetjob.spec.model import DatasetJobSpec, spec_from_document
from datasetjob.spec.safe_parse import parse_json, parse_yaml


def read_spec_text(path: str | Path, max_bytes: int = MAX_SPEC_BYTES) -> str:
    """The file's text; refused (naming the limit) past `max_bytes` or when not UTF-8."""
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise SpecError([f"{path}: cannot read: {exc.strerror}"]) from None
    if len(data) > max_bytes:
        raise SpecError(
            [
                f"{path}: larger than {size_text(max_bytes)} (the spec size limit); put large "
                "item lists in a file and use spec.items.fromUri"
            ]
        )
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(
            [f"{path}: not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line})"]
        ) from None


def load_document(path: str | Path, max_bytes: int = MAX_SPEC_BYTES) -> object:
    """The file's one document, unchecked: spec_from_document refuses anything but a DatasetJob."""
    text = read_spec_text(path, max_bytes)
    if str(path).endswith(".json"):
        return parse_json(text, str(path))
    docs = [d for d in parse_yaml(text, str(path)) if d is not None]
    jobs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "DatasetJob"]
    if len(jobs) != 1:
        if len(docs) == 1:
            return docs[0]
        raise SpecError([f"{path}: expected one DatasetJob document, found {len(jobs)}"])
    return jobs[0]


def load_spec_file(path: str | Path, rules: bool = True) -> DatasetJobSpec:
    """A user's spec (rules=True), or one dsj wrote for a worker or combine (rules=False: checked
    in full before it was written, and allowed to be larger as indented JSON)."""
    return spec_from_document(load_document(path, MAX_SPEC_BYTES if rules else MAX_WRITTEN_SPEC_BYTES), rules=rules)
