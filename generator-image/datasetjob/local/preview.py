"""`dsj run --sample N`: the generator on N items spread across the universe, its rows shown as a
table before a long run. Nothing is published and no lease is taken: the rows go to the terminal
(a command's output to a scratch directory, removed after). The cache is the run's, so a warm
cache answers as it would in the run.

What the combine would check is shown beside the rows: each column's kind as generated and as
declared in spec.combine.columns, with a warning where they disagree; an item whose rows a
declared column cannot hold fails here as it would in the run, named with its error.
"""

from __future__ import annotations

import itertools
import shutil
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from datasetjob.cache.factory import make_cache
from datasetjob.progress import NullProgress
from datasetjob.spec.item_slice import PacketItems, Positions, items_at
from datasetjob.spec.item_source import item_ids
from datasetjob.spec.model import DatasetJobSpec
from datasetjob.store.backends import FileStore, local_tempdir
from datasetjob.store.rowtypes import Row, value_kind
from datasetjob.store.tables import iter_rows
from datasetjob.store.universe import universe_items, universe_size
from datasetjob.worker.shard import ShardWorker, WorkerSetup

PREVIEW_RUN = "preview"
_KIND_OF_DECLARED = {"int64": "number", "float64": "number", "bool": "bool", "string": "string"}


def spread(total: int, n: int) -> list[int]:
    """`n` positions spread evenly over a universe of `total` items, first and last included. Pure."""
    if n <= 0 or total <= 0:
        return []
    if n >= total:
        return list(range(total))
    if n == 1:
        return [0]
    return sorted({round(k * (total - 1) / (n - 1)) for k in range(n)})


@dataclass
class Preview:
    rows: list[tuple[str, Row]] = field(default_factory=list)  # (item id, row)
    failures: list[tuple[str, Any, str]] = field(default_factory=list)  # (item id, item, error)
    kinds: dict[str, Counter[str]] = field(default_factory=dict)  # column -> kinds seen

    def warnings(self, declared: dict[str, str]) -> list[str]:
        """Where the generated columns and spec.combine.columns disagree. Pure."""
        out = []
        if declared:
            for column in declared:
                if column not in self.kinds:
                    out.append(f"column {column!r} is declared in spec.combine.columns but no sampled row has it")
            for column in self.kinds:
                if column not in declared:
                    out.append(f"column {column!r} is generated but not declared in spec.combine.columns")
        for column, kind in declared.items():
            seen = set(self.kinds.get(column, {})) - {"missing"}
            wanted = _KIND_OF_DECLARED.get(kind)
            if wanted and seen and seen != {wanted} and not (wanted == "string" and seen <= {"string"}):
                out.append(f"column {column!r} is declared {kind} but holds {', '.join(sorted(seen))} values")
        kinds_by_column = {c: set(k) - {"missing"} for c, k in self.kinds.items()}
        out += [
            f"column {c!r} mixes {', '.join(sorted(k))} values (Parquet holds one kind a column)"
            for c, k in kinds_by_column.items()
            if len(k) > 1 and c not in declared
        ]
        return out


def sample_items(spec: DatasetJobSpec, n: int) -> tuple[list[int], list[Any]]:
    """The positions and items of the sample (a streamed source is read once, up to the last)."""
    positions = spread(universe_size(spec), n)
    found = items_at(spec.items, positions)
    if found is None:
        wanted = set(positions)
        found = [
            item for p, item in enumerate(itertools.islice(universe_items(spec), positions[-1] + 1)) if p in wanted
        ]
    return positions, found


def run_preview(spec: DatasetJobSpec, n: int) -> Preview:
    positions, items = sample_items(spec, n)
    ids = item_ids(items, spec.items.id_template) if items else []
    scratch = local_tempdir("dsj-preview-")
    try:
        setup = WorkerSetup(
            spec=spec,
            run_id=PREVIEW_RUN,
            index=0,
            store=FileStore(scratch),
            items=PacketItems(Positions(positions), items),
            ids=ids,
            cache=make_cache(spec, PREVIEW_RUN),
            progress=NullProgress(),
        )
        worker = ShardWorker(setup)
        preview = Preview()
        try:
            if spec.generator.command:
                _command(worker, preview)
            else:
                _function(worker, positions, preview)
        finally:
            setup.cache.close()
        return preview
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _function(worker: ShardWorker, positions: Sequence[int], preview: Preview) -> None:
    one = worker.item_function()
    for position in positions:
        item_id = worker.item_id(position)
        try:
            rows, _ = one(position)
        except Exception as exc:  # the generator's own error: shown with its item, as the run records it
            preview.failures.append((item_id, worker.item(position), f"{type(exc).__name__}: {exc}"))
            continue
        for row in rows:
            _add_row(preview, item_id, row)


def _command(worker: ShardWorker, preview: Preview) -> None:
    staged, failures = worker.run_command()
    if staged is None:
        return
    try:
        for row in iter_rows(staged, worker.fmt):
            _add_row(preview, "", row)
    finally:
        shutil.rmtree(staged.rsplit("/", 1)[0], ignore_errors=True)
    preview.failures += [(f["id"], None, f["error"]) for f in failures]


def show_preview(preview: Preview, spec: DatasetJobSpec, n: int) -> None:
    """The sampled rows, the columns' kinds against spec.combine.columns, warnings and failed items."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(stderr=False)
    declared = dict(spec.combine.columns)
    columns = list(preview.kinds)
    rows = Table(title=f"{spec.name}: {len(preview.rows)} rows from a sample of {n} items (nothing published)")
    rows.add_column("item", style="dim")
    for column in columns:
        rows.add_column(column, overflow="fold")
    for item_id, row in preview.rows:
        rows.add_row(escape(item_id), *(escape(_cell(row.get(column))) for column in columns))
    console.print(rows)
    kinds = Table(title="columns", show_edge=False)
    for heading in ("column", "generated", "declared (spec.combine.columns)"):
        kinds.add_column(heading)
    for column in columns:
        seen = ", ".join(f"{k} ({c})" for k, c in preview.kinds[column].most_common())
        kinds.add_row(escape(column), seen, declared.get(column, "-"))
    console.print(kinds)
    for warning in preview.warnings(declared):
        console.print(f"[yellow]warning[/]: {escape(warning)}")
    for item_id, item, error in preview.failures:
        shown = f" {_cell(item)}" if item is not None else ""
        console.print(f"[red]item {escape(item_id)} failed[/]{escape(shown)}: {escape(error)}")


def _cell(value: Any, width: int = 40) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _add_row(preview: Preview, item_id: str, row: Row) -> None:
    preview.rows.append((item_id, row))
    for column, value in row.items():
        preview.kinds.setdefault(column, Counter())[value_kind(value) or "missing"] += 1
