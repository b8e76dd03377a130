"""Reading DatasetJob documents from YAML/JSON files, within the spec size limit."""

from __future__ import annotations

from pathlib import Path

from .errors import SpecError
from .limits import MAX_SPEC_BYTES, size_text
from .safe_parse import parse_json, parse_yaml
from .spec import DatasetJobSpec, spec_from_document


def read_spec_text(path: str | Path) -> str:
    """The file's text; refused (naming the limit) past MAX_SPEC_BYTES or when not UTF-8."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError([f"{path}: cannot read: {exc.strerror}"]) from None
    if len(data) > MAX_SPEC_BYTES:
        raise SpecError([f"{path}: larger than {size_text(MAX_SPEC_BYTES)} (the spec size limit); put large "
                         "item lists in a file and use spec.items.fromUri"])
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise SpecError([f"{path}: not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} "
                         f"(line {line})"]) from None


def load_document(path: str | Path) -> dict:
    text = read_spec_text(path)
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
    return spec_from_document(load_document(path), rules=rules)
