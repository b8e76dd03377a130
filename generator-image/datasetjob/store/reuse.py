"""Which stored item rows a shard may take, and the lineage of the ones it took. Pure.

A stored record is one item's rows under one generator fingerprint, with the run that
generated them and when. Failed items are never stored, so they are always generated again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from datasetjob.store.rowtypes import Row

# A str as json.dumps(s, ensure_ascii=False) writes it, without building an encoder per call.
json_string = json.encoder.encode_basestring


@dataclass(frozen=True)
class ItemRecord:
    id: str
    item_digest: str
    rows: list[Row]
    run_id: str
    generated_at: float  # seconds since the epoch

    def to_line(self) -> str:
        rows = json.dumps(self.rows, ensure_ascii=False)
        return segment_line(self.id, self.item_digest, rows, self.run_id, self.generated_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "item": self.item_digest,
            "rows": self.rows,
            "runId": self.run_id,
            "generatedAt": self.generated_at,
        }

    @classmethod
    def from_json(cls, value: Any) -> ItemRecord:
        """The record a segment line holds; ValueError when the line is not one."""
        if not isinstance(value, dict):
            raise ValueError(f"a record is a JSON object, not {type(value).__name__}")
        fields: dict[str, tuple[type, ...]] = {
            "id": (str,),
            "item": (str,),
            "rows": (list,),
            "runId": (str,),
            "generatedAt": (int, float),
        }
        for name, kinds in fields.items():
            if not isinstance(value.get(name), kinds) or isinstance(value.get(name), bool):
                raise ValueError(f"field {name!r} is missing or has the wrong type")
        if not all(isinstance(row, dict) for row in value["rows"]):
            raise ValueError("field 'rows' holds something that is not a row")
        return cls(
            id=value["id"],
            item_digest=value["item"],
            rows=value["rows"],
            run_id=value["runId"],
            generated_at=float(value["generatedAt"]),
        )


_ID_FIRST = '{"id": '  # to_json puts the id first, so a reader can skip a line after its id
_decoder = json.JSONDecoder()


def segment_line(item_id: str, item_digest: str, rows_json: str, run_id: str, generated_at: float) -> str:
    """One record of a segment, its rows already JSON (the worker encodes each row once): the
    text json.dumps(record.to_json(), ensure_ascii=False) gives, id first."""
    return (
        f'{{"id": {json_string(item_id)}, "item": {json_string(item_digest)}, "rows": {rows_json}, '
        f'"runId": {json_string(run_id)}, "generatedAt": {float.__repr__(float(generated_at))}}}\n'
    )


def segment_body(records: list[ItemRecord]) -> bytes:
    return "".join(r.to_line() for r in records).encode("utf-8")


def parse_segment(text: str, ids: set[str] | None = None, rows: bool = True) -> list[ItemRecord]:
    """The records of a segment; with `ids`, only theirs (a shard wants a tenth of the rows of a
    ten-shard run: decoding only the ids of the rest keeps start-up short). ValueError naming
    the line when the text is not a segment."""
    out = []
    for number, line in enumerate(text.split("\n"), 1):  # not splitlines: rows may hold U+2028
        if not line.strip():
            continue
        try:
            if ids is not None and line.startswith(_ID_FIRST):
                item_id, _ = _decoder.raw_decode(line, len(_ID_FIRST))
                if item_id not in ids:
                    continue
            record = ItemRecord.from_json(json.loads(line))
            out.append(record if rows else replace(record, rows=[]))
        except (ValueError, TypeError) as exc:
            raise ValueError(f"line {number}: {exc}") from None
    return out


def select_reusable(
    records: list[ItemRecord], wanted: dict[int, tuple[str, str]], now: float, max_age_seconds: int | None
) -> dict[int, ItemRecord]:
    """position → the record to reuse, for the wanted (position → (id, item digest)) that have
    one: the newest record of the same item that is not older than max_age_seconds."""
    newest: dict[tuple[str, str], ItemRecord] = {}
    for record in records:
        if max_age_seconds is not None and now - record.generated_at > max_age_seconds:
            continue
        key = (record.id, record.item_digest)
        if key not in newest or record.generated_at > newest[key].generated_at:
            newest[key] = record
    return {position: newest[key] for position, key in wanted.items() if key in newest}


def lineage(reused: dict[int, ItemRecord]) -> dict[str, list[str]]:
    """source run → ids of the items taken from it, in item order."""
    out: dict[str, list[str]] = {}
    for position in sorted(reused):
        out.setdefault(reused[position].run_id, []).append(reused[position].id)
    return out


def merge_lineage(parts: list[dict[str, list[str]]]) -> dict[str, list[str]]:
    """Per-shard lineages (in shard order) as one, source runs in sorted order."""
    out: dict[str, list[str]] = {}
    for part in parts:
        for run, ids in part.items():
            out.setdefault(run, []).extend(ids)
    return {run: out[run] for run in sorted(out)}
