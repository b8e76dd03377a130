"""Reading and writing row files in the three output formats (csv, jsonl, parquet).

CSV is written row by row with a fixed value format (not through a DataFrame) so a row's text
never depends on which other rows share its file: the combined dataset is then byte-identical
whatever the number of shards. The combine reads CSV back as text for the same reason.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any, TextIO

from datasetjob.store.rowtypes import Row
from datasetjob.store.table_stack import require_table_stack

# A value may be long text (a document, a prompt): the csv module's default cap is 128 KiB.
csv.field_size_limit(2**31 - 1)

if TYPE_CHECKING:  # imported where used: pyarrow takes a while to load
    import pyarrow as pa
    import pyarrow.parquet as pq


def format_csv_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return str(value)


def _json_line(row: Row, strict: bool = True) -> str:
    # Strict JSON: rows are conformed first (rowtypes), so NaN/Infinity here is a bug, not data.
    return json.dumps(row, ensure_ascii=False, allow_nan=not strict) + "\n"


def columns_of(rows: Iterable[Row]) -> list[str]:
    """Union of the rows' keys in first-seen order."""
    seen: dict[str, None] = {}
    for row in rows:
        for key in row:
            seen.setdefault(key, None)
    return list(seen)


def write_rows(
    rows: list[Row], path: str, fmt: str, columns: list[str] | None = None, strict_json: bool = True
) -> list[str]:
    """Write `rows` to `path`; returns the column list. Zero rows → an empty file.
    `strict_json=False` is for scratch files only (Parquet floats may be infinite)."""
    columns = columns if columns is not None else columns_of(rows)
    if fmt == "csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            if columns:
                writer = csv.writer(f, lineterminator="\n")
                writer.writerow(columns)
                for row in rows:
                    writer.writerow([format_csv_value(row.get(c)) for c in columns])
    elif fmt == "jsonl":
        with open(path, "w", encoding="utf-8") as f:
            for row in rows:
                f.write(_json_line({c: row.get(c) for c in columns}, strict_json))
    elif fmt == "parquet":
        require_table_stack("spec.output.format parquet")
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pylist([{c: row.get(c) for c in columns} for row in rows]) if rows else pa.table({})
        pq.write_table(table, path)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    return columns


def declared_arrow_schema(columns: list[str], declared: dict[str, str]) -> pa.Schema:
    """The Parquet schema of spec.combine.columns, in the dataset's column order."""
    require_table_stack("spec.output.format parquet")
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
    return pa.schema([pa.field(c, types[declared[c]]) for c in columns])


def read_columns(path: str, fmt: str) -> list[str]:
    if fmt == "csv":
        with open(path, newline="", encoding="utf-8") as f:
            return next(csv.reader(f), [])
    if fmt == "jsonl":
        with open(path, encoding="utf-8") as f:
            first = f.readline()
        return list(json.loads(first)) if first.strip() else []
    if fmt == "parquet":
        require_table_stack("spec.output.format parquet")
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    raise ValueError(f"unknown format {fmt!r}")


def iter_rows(path: str, fmt: str, chunk_rows: int = 50_000) -> Iterator[Row]:
    """Stream a row file; memory is bounded by `chunk_rows`. CSV values stay text (read with the
    csv module: the table stack is not loaded for a CSV run)."""
    if fmt == "csv":
        yield from _csv_rows(path)
    elif fmt == "jsonl":
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)
    elif fmt == "parquet":
        require_table_stack("spec.output.format parquet")
        import pyarrow.parquet as pq

        parquet = pq.ParquetFile(path)
        for batch in parquet.iter_batches(batch_size=chunk_rows):
            yield from batch.to_pylist()
    else:
        raise ValueError(f"unknown format {fmt!r}")


def _csv_header(names: list[str]) -> list[str]:
    """Column names with repeats made unique as `name.1`, `name.2`, ... (as pandas reads them)."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name in seen:
            seen[name] += 1
            name = f"{name}.{seen[name]}"
        seen.setdefault(name, 0)
        out.append(name)
    return out


def _csv_rows(path: str) -> Iterator[Row]:
    """Rows of a CSV file with a header, every value as text: blank lines skipped, a short row
    filled with empty values; a row longer than the header or a quote left open is refused
    (ValueError naming the line)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                return
            columns = _csv_header(header)
            width = len(columns)
            for values in reader:
                if not values:
                    continue
                if len(values) > width:
                    raise ValueError(f"{len(values)} fields, but the header names {width} columns")
                if len(values) < width:
                    values += [""] * (width - len(values))
                yield dict(zip(columns, values, strict=True))
        except (csv.Error, ValueError) as exc:
            raise ValueError(f"line {reader.line_num}: {exc}") from None


def file_digest(path: str) -> tuple[str, int]:
    """(sha256 hex, size in bytes)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
            size += len(block)
    return h.hexdigest(), size


class RowWriter:
    """Incremental writer for the combined dataset (the combine never holds all rows)."""

    def __init__(self, path: str, fmt: str, columns: list[str], arrow_schema: pa.Schema | None = None):
        self.path, self.fmt, self.columns = path, fmt, columns
        self.rows = 0
        self._f: TextIO | None = None
        self._pq: pq.ParquetWriter | None = None
        self._schema = arrow_schema
        if fmt == "csv":
            self._f = open(path, "w", newline="", encoding="utf-8")
            self._csv = csv.writer(self._f, lineterminator="\n")
            if columns:
                self._csv.writerow(columns)
        elif fmt == "jsonl":
            self._f = open(path, "w", encoding="utf-8")
        elif fmt == "parquet":
            require_table_stack("spec.output.format parquet")
        else:
            raise ValueError(f"unknown format {fmt!r}")

    def write(self, rows: list[Row]) -> None:
        if not rows:
            return
        self.rows += len(rows)
        if self.fmt == "csv":
            for row in rows:
                self._csv.writerow([format_csv_value(row.get(c)) for c in self.columns])
        elif self.fmt == "jsonl":
            assert self._f is not None  # opened for csv and jsonl
            for row in rows:
                self._f.write(_json_line({c: row.get(c) for c in self.columns}))
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pylist([{c: r.get(c) for c in self.columns} for r in rows], schema=self._schema)
            if self._pq is None:
                self._schema = table.schema
                self._pq = pq.ParquetWriter(self.path, self._schema)
            self._pq.write_table(table)

    def close(self) -> None:
        if self._f:
            self._f.close()
        if self.fmt == "parquet":
            if self._pq is None:
                import pyarrow as pa
                import pyarrow.parquet as pq

                pq.write_table(pa.table({c: [] for c in self.columns}), self.path)
            else:
                self._pq.close()
