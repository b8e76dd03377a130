"""The dataset's rows in order, deduplicated, out of core.

Without spec.combine.sortBy or dedupeBy the rows stream through as they come (shard by shard,
each in file order). Up to IN_MEMORY_ROWS rows are sorted and deduplicated in memory (Python's
stable sort over the same keys). Past that, DuckDB sorts and deduplicates them within a memory
limit, spilling to the combine's scratch directory:
- the rows go to a scratch Parquet file in batches, each as its JSON text (a payload that reads
  back as the same row) beside its sort key, its dedupe key and its position in the input;
- a sortBy column's key is `sort_key_part` (computed here, in Python) as three columns: rank,
  number (0.0 unless the rank is 0) and text, so DuckDB's ORDER BY rank, number, text compares
  as Python compares the tuples (VARCHAR compares by UTF-8 bytes: code point order), and ties
  keep the input order (the position);
- the dedupe key is the JSON text of the dedupeBy values; the first row of each key in that
  order is kept, the rest counted in `dropped`. Which rows are kept is decided first, from the
  keys alone; the sort then carries the kept rows' payloads (a window over the payloads too
  runs out of memory where this does not).
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from datasetjob.combine.rules import sort_key_part
from datasetjob.store.rowtypes import Row
from datasetjob.store.table_stack import require_table_stack

BATCH_ROWS = 50_000  # rows per batch, into DuckDB and out of it
# Up to this many rows the order is decided in memory: starting DuckDB and writing the scratch
# file cost more than the sort itself (a quarter second for the 3,700-row sample).
IN_MEMORY_ROWS = 20_000
MEMORY_LIMIT = "256MB"  # DuckDB's; it spills past it
# json.dumps(value, ensure_ascii=False) and json.dumps(value, sort_keys=True), one encoder each
_payload = json.JSONEncoder(ensure_ascii=False).encode
_key_part = json.JSONEncoder(sort_keys=True).encode


class OrderedRows:
    """`rows` sorted by `sort_by` (ties in input order) with the first row of each `dedupe_by`
    key kept; `dropped` counts the rest once iterated. `declared` (spec.combine.columns) says
    how a sortBy column's values compare. Scratch files go in `tmpdir`."""

    def __init__(
        self,
        rows: Iterable[Row],
        tmpdir: str,
        sort_by: Sequence[str] = (),
        dedupe_by: Sequence[str] = (),
        declared: dict[str, str] | None = None,
        memory_limit: str = MEMORY_LIMIT,
    ):
        self.rows, self.tmpdir, self.sort_by, self.dedupe_by = rows, tmpdir, tuple(sort_by), tuple(dedupe_by)
        self.kinds = [(declared or {}).get(c) for c in self.sort_by]
        self.memory_limit = memory_limit
        self.dropped = 0

    def __iter__(self) -> Iterator[Row]:
        if not self.sort_by and not self.dedupe_by:
            yield from self.rows  # already in order: streamed, nothing held
            return
        rows = iter(self.rows)
        first = list(itertools.islice(rows, IN_MEMORY_ROWS + 1))
        if len(first) <= IN_MEMORY_ROWS:
            yield from self._in_memory(first)
            return
        self.rows = itertools.chain(first, rows)
        require_table_stack("spec.combine.sortBy / dedupeBy", ("pyarrow", "duckdb"))
        scratch = os.path.join(self.tmpdir, "ordering-rows.parquet")
        total = self._write_scratch(scratch)  # every row read first: the shards' checks run to the end
        kept = 0
        try:
            for batch in self._query(scratch):
                kept += len(batch)
                yield from batch
        finally:
            os.unlink(scratch)
        self.dropped = total - kept

    def _in_memory(self, rows: list[Row]) -> Iterator[Row]:
        """The same order and the same rows kept as the DuckDB query's: a stable sort by the
        sort_key_part tuples (ties keep the input order), then the first row of each key."""
        if self.sort_by:
            columns = list(zip(self.sort_by, self.kinds, strict=True))
            rows = sorted(rows, key=lambda row: tuple(sort_key_part(row.get(c), kind) for c, kind in columns))
        seen: set[tuple[str, ...]] = set()
        for row in rows:
            if self.dedupe_by:
                key = tuple(_key_part(row.get(c)) for c in self.dedupe_by)
                if key in seen:
                    self.dropped += 1
                    continue
                seen.add(key)
            yield row

    def _write_scratch(self, path: str) -> int:
        """The rows' payloads and keys to a Parquet file at `path`; the number of rows."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        fields = [pa.field("seq", pa.int64())]
        for i in range(len(self.sort_by)):
            fields += [pa.field(f"r{i}", pa.int8()), pa.field(f"n{i}", pa.float64()), pa.field(f"t{i}", pa.string())]
        if self.dedupe_by:
            fields.append(pa.field("dkey", pa.string()))
        fields.append(pa.field("payload", pa.string()))
        schema = pa.schema(fields)
        key_columns: list[list[Any]] = [[] for _ in range(3 * len(self.sort_by))]
        dkeys: list[str] = []
        payloads: list[str] = []
        sort_columns = list(zip(self.sort_by, self.kinds, strict=True))
        total = 0

        with pq.ParquetWriter(path, schema) as writer:

            def flush() -> None:
                nonlocal total
                arrays = [pa.array(range(total, total + len(payloads)), pa.int64())]
                arrays += [pa.array(values, schema.field(1 + j).type) for j, values in enumerate(key_columns)]
                if self.dedupe_by:
                    arrays.append(pa.array(dkeys, pa.string()))
                arrays.append(pa.array(payloads, pa.string()))
                writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
                total += len(payloads)
                for values in key_columns:
                    values.clear()
                dkeys.clear()
                payloads.clear()

            for row in self.rows:
                for i, (column, kind) in enumerate(sort_columns):
                    part = sort_key_part(row.get(column), kind)
                    key_columns[3 * i].append(part[0])
                    if len(part) == 3:  # (0, number, text)
                        key_columns[3 * i + 1].append(part[1])
                        key_columns[3 * i + 2].append(part[2])
                    else:  # (1, text) or (2, "")
                        key_columns[3 * i + 1].append(0.0)
                        key_columns[3 * i + 2].append(part[1])
                if len(self.dedupe_by) == 1:
                    dkeys.append(_key_part(row.get(self.dedupe_by[0])))
                elif self.dedupe_by:
                    dkeys.append(json.dumps([_key_part(row.get(c)) for c in self.dedupe_by]))
                payloads.append(_payload(row))
                if len(payloads) >= BATCH_ROWS:
                    flush()
            flush()
        return total

    def _query(self, path: str) -> Iterator[list[Row]]:
        """The kept rows in order, a batch at a time (DuckDB streams its sorted result)."""
        import duckdb

        order = ", ".join([f"r{i}, n{i}, t{i}" for i in range(len(self.sort_by))] + ["seq"])
        source = "read_parquet('{}')".format(path.replace("'", "''"))
        config: dict[str, str | bool | int | float | list[str]] = {
            "memory_limit": self.memory_limit,
            "temp_directory": os.path.join(self.tmpdir, "duckdb-spill"),
            "threads": 1,  # as fast here as 2, and each thread needs memory of its own
            "preserve_insertion_order": False,  # the query orders its result itself
        }
        con = duckdb.connect(":memory:", config=config)
        try:
            kept = ""
            if self.dedupe_by:  # which rows are first of their key, from the keys alone (not the payloads)
                con.execute(
                    f"CREATE TEMP TABLE kept AS SELECT seq FROM {source} "
                    f"QUALIFY row_number() OVER (PARTITION BY dkey ORDER BY {order}) = 1"
                )
                kept = " SEMI JOIN kept USING (seq)"
            con.execute(f"SELECT payload FROM {source}{kept} ORDER BY {order}")
            while batch := con.fetchmany(BATCH_ROWS):
                yield [json.loads(payload) for (payload,) in batch]
        finally:
            con.close()
