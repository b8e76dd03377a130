"""Combine a run's committed shards into one validated, deduplicated dataset, then publish.

Decisions (what to publish, or why not) are pure functions over the shard manifests, in
`combine.rules`; the rows are streamed shard by shard, so memory does not grow with the
number of shards or rows (spec.combine.sortBy and dedupeBy are applied out of core, in
`combine.ordering`).

A shard file is published only as its manifest committed it: its sha256 and row count are
checked as it is read. One that does not match (cut short, overwritten) refuses the run
(ShardCorrupt) and has its manifest moved aside, so `--resume` generates that shard again.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NoReturn

from datasetjob.combine.ordering import OrderedRows
from datasetjob.combine.rules import (
    check_columns,
    check_coverage,
    check_success_ratio,
    check_value,
    count_manifest_items,
    run_lineage,
)
from datasetjob.errors import CombineRefused, RowValueError, StorageError
from datasetjob.redaction import redact
from datasetjob.spec.model import DatasetJobSpec
from datasetjob.spec.sharding import compress_indexes, shard_name
from datasetjob.store import layout
from datasetjob.store.backends import FileStore, S3Store, Store, local_tempdir
from datasetjob.store.rowtypes import conform_row
from datasetjob.store.table_stack import require_table_stack
from datasetjob.store.tables import RowWriter, declared_arrow_schema, file_digest, iter_rows

if TYPE_CHECKING:  # the table libraries load slowly; imported where rows are written
    import pyarrow as pa


@dataclass
class CombineResult:
    run_id: str
    uri: str
    manifest_uri: str
    rows: int
    bytes: int
    sha256: str
    items: dict[str, Any]
    missing_shards: list[int] = field(default_factory=list)
    duplicates_dropped: int = 0
    cache: dict[str, Any] = field(default_factory=dict)
    usage: dict[str, float] | None = None  # the run's spend (spec.budget), when counted
    rate_limit: dict[str, Any] | None = None  # the scope as last seen, and this run's throttles

    def to_message(self) -> dict[str, Any]:
        return {
            "state": "published",
            "runId": self.run_id,
            "uri": self.uri,
            "manifestUri": self.manifest_uri,
            "rows": self.rows,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "items": self.items,
            "missingShards": compress_indexes(self.missing_shards),
            "duplicatesDropped": self.duplicates_dropped,
            "cache": self.cache,
            **({"usage": self.usage} if self.usage else {}),
            **({"rateLimit": self.rate_limit} if self.rate_limit else {}),
        }


def _read_manifests(store: Store, run_id: str, shards: int) -> dict[int, dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for key in store.list(f"{layout.run_prefix(run_id)}shards/"):
        if key.endswith(".json"):
            manifest = json.loads(store.get_text(key))
            if manifest.get("runId") == run_id and 0 <= manifest["shard"] < shards:
                out[manifest["shard"]] = manifest
    return out


def _read_packet_manifests(store: Store, run_id: str) -> list[dict[str, Any]]:
    """The manifests of the run's committed work packets (of every plan it made)."""
    keys = [k for k in store.list(layout.packet_prefix(run_id)) if k.endswith(".json")]
    return [json.loads(store.get_text(k)) for k in keys]


def _first_failure(store: Store, run_id: str, manifests: dict[int, dict[str, Any]]) -> dict[str, Any] | None:
    """The first failed item in item order, to name it when the run is refused."""
    for index in sorted(manifests):
        if manifests[index]["items"]["failed"]:
            try:
                text = store.get_text(layout.failures_key(run_id, index))
            except StorageError:
                return None
            first = next((line for line in text.splitlines() if line.strip()), None)
            return json.loads(first) if first else None
    return None


class ShardFiles:
    """The committed shards' files, downloaded to tmpdir once each and checked against their
    manifests (sha256 on download, row count once read)."""

    def __init__(self, store: Store, run_id: str, fmt: str, tmpdir: str, manifests: dict[int, dict[str, Any]]):
        self.store, self.run_id, self.fmt, self.tmpdir, self.manifests = store, run_id, fmt, tmpdir, manifests

    def local(self, index: int) -> str:
        """The shard's file in tmpdir (the parquet schema pass keeps it for the rows)."""
        path = os.path.join(self.tmpdir, f"{shard_name(index)}.{self.fmt}")
        if not os.path.exists(path):
            key = layout.shard_data_key(self.run_id, index, self.fmt)
            try:
                self.store.download(key, path)
            except StorageError:
                if self.store.exists(key):
                    raise
                self.corrupt(index, "is missing")
            expected = self.manifests[index].get("sha256")
            if expected:
                sha, size = file_digest(path)
                if sha != expected:
                    os.unlink(path)
                    self.corrupt(
                        index,
                        f"has sha256 {sha[:12]}… ({size} bytes) but its manifest committed {expected[:12]}… "
                        f"({self.manifests[index].get('bytes', '?')} bytes)",
                    )
        return path

    def rows(self, index: int) -> Iterator[dict[str, Any]]:
        path = self.local(index)
        count = 0
        try:
            for row in iter_rows(path, self.fmt):
                count += 1
                yield row
        finally:
            os.unlink(path)
        if count != self.manifests[index]["rows"]:
            self.corrupt(index, f"holds {count} rows but its manifest committed {self.manifests[index]['rows']}")

    def corrupt(self, index: int, what: str) -> NoReturn:
        """Uncommit the shard (its manifest moved aside) and refuse the run."""
        uri = self.store.key_uri(layout.shard_data_key(self.run_id, index, self.fmt))
        aside = _set_manifest_aside(self.store, layout.shard_manifest_key(self.run_id, index))
        raise CombineRefused(
            "ShardCorrupt",
            f"{shard_name(index)}'s data file {uri} {what}. Nothing was published; the shard is no longer "
            f"committed (its manifest was moved to {aside}): resume the run (dsj run SPEC --resume, or "
            "rerun the Job) to generate it again.",
        )


def _set_manifest_aside(store: Store, key: str) -> str:
    """Moves a shard manifest to <key>.corrupt-<time> (not a .json key: no longer a commit)."""
    aside = f"{key}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    if isinstance(store, FileStore):
        os.replace(store.path(key), store.path(aside))
    else:
        store.put_bytes(aside, store.get_bytes(key))
        if isinstance(store, S3Store):
            store.delete(key)
        else:
            store.delete_prefix(key)
    return store.key_uri(aside)


def _arrow_schema(
    files: ShardFiles, indexes: list[int], columns: list[str], declared: dict[str, str]
) -> pa.Schema | None:
    """Declared types when there are any (values are converted to them); otherwise the shards'
    types unified, refusing (naming the column) a column that is a number in one shard and
    text in another."""
    require_table_stack("spec.output.format parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    if declared:
        return declared_arrow_schema(columns, declared)
    schemas = {index: pq.read_schema(files.local(index)) for index in indexes}
    if not schemas:
        return None
    try:
        return pa.unify_schemas(list(schemas.values()), promote_options="permissive")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    first: dict[str, tuple[pa.DataType, int]] = {}
    for index, schema in schemas.items():
        for f in schema:
            if pa.types.is_null(f.type):
                continue
            seen_type, seen_index = first.setdefault(f.name, (f.type, index))
            try:
                pa.unify_schemas(
                    [pa.schema([pa.field(f.name, seen_type)]), pa.schema([f])], promote_options="permissive"
                )
            except (pa.ArrowTypeError, pa.ArrowInvalid):
                raise CombineRefused(
                    "SchemaMismatch",
                    f"column {f.name!r} is {seen_type} in {shard_name(seen_index)} but {f.type} in "
                    f"{shard_name(index)}; declare its type in spec.combine.columns to convert",
                ) from None
    raise CombineRefused(
        "SchemaMismatch",
        "the shards' Parquet schemas cannot be merged; declare the column types in spec.combine.columns",
    )


@dataclass
class Verdict:
    """What the shard manifests say about a run that may be published."""

    manifests: dict[int, dict[str, Any]]
    missing: list[int]
    items: dict[str, Any]
    columns: list[str]
    packets: list[dict[str, Any]] = field(default_factory=list)  # work packets' manifests (their cache counts)


def judge_run(spec: DatasetJobSpec, run_id: str, store: Store, total_items: int) -> Verdict:
    """Read the shard manifests and apply the spec's bar; raises CombineRefused with a reason."""
    combine = spec.combine
    declared = dict(combine.columns)
    manifests = _read_manifests(store, run_id, spec.shards)
    missing = check_coverage(spec.shards, manifests, spec.max_failed_shards)
    items = count_manifest_items(total_items, manifests)
    first_failure = _first_failure(store, run_id, manifests) if items["failed"] else None
    check_success_ratio(items, combine.min_item_success_ratio, first_failure)
    columns = check_columns(manifests, declared)
    for col in list(combine.dedupe_by) + list(combine.sort_by):
        if columns and col not in columns:
            raise CombineRefused("SchemaMismatch", f"spec.combine: column {col!r} is not in the data {columns}")
    return Verdict(manifests, missing, items, columns, _read_packet_manifests(store, run_id))


def _checked_rows(files: ShardFiles, index: int, declared: dict[str, str]) -> Iterator[dict[str, Any]]:
    """One shard's rows, each held to the declared column types."""
    fmt = files.fmt
    for n, row in enumerate(files.rows(index)):
        if fmt == "csv":  # CSV stays text (byte-identical rows): checked, not converted
            for col, kind in declared.items():
                check_value(col, kind, row.get(col), f"{shard_name(index)} row {n + 1}")
            yield row
            continue
        try:
            yield conform_row(row, declared, fmt)
        except RowValueError as exc:
            raise CombineRefused("SchemaMismatch", f"{shard_name(index)} row {n + 1}: {exc}") from None


def _write_dataset(rows: Iterable[dict[str, Any]], writer: RowWriter, batch_rows: int = 10_000) -> None:
    batch: list[dict[str, Any]] = []
    for row in rows:
        batch.append(row)
        if len(batch) >= batch_rows:
            writer.write(batch)
            batch = []
    writer.write(batch)
    writer.close()


def dataset_manifest(
    spec: DatasetJobSpec, run_id: str, verdict: Verdict, dataset: dict[str, Any], dropped: int
) -> dict[str, Any]:
    """manifest.json of a published run (credentials in the spec masked). Pure."""
    manifests, items = verdict.manifests, verdict.items
    manifest = {
        "runId": run_id,
        "name": spec.name,
        "specHash": run_id,
        "image": spec.generator.image,
        "format": spec.output.format,
        "dataset": dataset,
        "items": items,
        "coverage": {
            "shards": spec.shards,
            "committed": len(manifests),
            "missing": compress_indexes(verdict.missing),
            "itemSuccessRatio": items["done"] / items["total"] if items["total"] else 1.0,
        },
        "duplicatesDropped": dropped,
        "cache": {
            "hits": sum(m["cache"]["hits"] for m in [*manifests.values(), *verdict.packets]),
            "misses": sum(m["cache"]["misses"] for m in [*manifests.values(), *verdict.packets]),
        },
        **_usage(manifests, verdict.packets),
        "lineage": run_lineage(manifests),
        "shards": {
            shard_name(i): {"rows": m["rows"], "sha256": m.get("sha256"), "items": m["items"]}
            for i, m in sorted(manifests.items())
        },
        "spec": spec.raw_spec,
        "publishedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    redacted: dict[str, Any] = redact(manifest)  # the spec may name a Redis with its password
    return redacted


def _usage(manifests: dict[int, dict[str, Any]], packets: list[dict[str, Any]]) -> dict[str, Any]:
    """The run's "usage" and "rateLimit", when its generators reported any. Usage is the run's
    spend as its budget ledger counted it (every attempt; the largest total any worker saw, as
    totals only grow), else the sum of what the workers reported; the rate limit is the scope as
    last seen, with this run's throttles summed."""
    parts = [*manifests.values(), *packets]
    out: dict[str, Any] = {}
    spent: dict[str, float] = {}
    summed: dict[str, float] = {}
    for m in parts:
        for name, value in (m.get("spent") or {}).items():
            spent[name] = max(spent.get(name, 0.0), float(value))
        for name, value in (m.get("usage") or {}).items():
            summed[name] = summed.get(name, 0.0) + float(value)
    if spent or any(summed.values()):
        out["usage"] = spent or summed
    limits = [m["rateLimit"] for m in parts if isinstance(m.get("rateLimit"), dict)]
    if limits:
        latest = max(limits, key=lambda limit: int(limit.get("scopeThrottles", 0)))
        out["rateLimit"] = dict(latest, throttles=sum(int(limit.get("throttles", 0)) for limit in limits))
    return out


def _publish(store: Store, run_id: str, fmt: str, path: str, manifest: dict[str, Any]) -> str:
    """The dataset, then its manifest, then latest.json (last: readers follow it); the manifest's URI."""
    store.put_file(layout.combined_key(run_id, fmt), path)
    store.put_bytes(layout.manifest_key(run_id), json.dumps(manifest, indent=1).encode())
    manifest_uri = store.key_uri(layout.manifest_key(run_id))
    latest = {k: manifest[k] for k in ("runId", "name", "publishedAt")}
    latest.update(dataset=manifest["dataset"], manifestUri=manifest_uri)
    store.put_bytes(layout.LATEST_KEY, json.dumps(latest, indent=1).encode())
    return manifest_uri


def combine_run(spec: DatasetJobSpec, run_id: str, store: Store, total_items: int) -> CombineResult:
    """Judge, merge and publish run `run_id`. Raises CombineRefused with a reason."""
    fmt = spec.output.format
    verdict = judge_run(spec, run_id, store, total_items)
    tmpdir = local_tempdir("dsj-combine-")
    try:
        files = ShardFiles(store, run_id, fmt, tmpdir, verdict.manifests)
        with_rows = [i for i in sorted(verdict.manifests) if verdict.manifests[i]["rows"] > 0]
        for index in sorted(verdict.manifests):
            if verdict.manifests[index]["rows"] == 0:
                os.unlink(files.local(index))  # checked too: an empty shard must still be the one committed
        declared = dict(spec.combine.columns)
        schema = _arrow_schema(files, with_rows, verdict.columns, declared) if fmt == "parquet" else None
        out_path = os.path.join(tmpdir, f"combined-dataset.{fmt}")
        writer = RowWriter(out_path, fmt, verdict.columns, schema)
        checked = (row for index in with_rows for row in _checked_rows(files, index, declared))
        rows = OrderedRows(checked, tmpdir, spec.combine.sort_by, spec.combine.dedupe_by, declared)
        _write_dataset(rows, writer)
        sha, size = file_digest(out_path)
        uri = store.key_uri(layout.combined_key(run_id, fmt))
        dataset: dict[str, Any] = {
            "uri": uri,
            "rows": writer.rows,
            "bytes": size,
            "sha256": sha,
            "columns": verdict.columns,
        }
        manifest = dataset_manifest(spec, run_id, verdict, dataset, rows.dropped)
        manifest_uri = _publish(store, run_id, fmt, out_path, manifest)
        return CombineResult(
            run_id=run_id,
            uri=uri,
            manifest_uri=manifest_uri,
            rows=writer.rows,
            bytes=size,
            sha256=sha,
            items=verdict.items,
            missing_shards=verdict.missing,
            duplicates_dropped=rows.dropped,
            cache=manifest["cache"],
            usage=manifest.get("usage"),
            rate_limit=manifest.get("rateLimit"),
        )
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
