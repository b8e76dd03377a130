"""What `dsj run` shows: the run's header, a live progress bar and shard table, why shards
failed or the run was not published, and the summary. `LocalRunner` schedules and reports
here; nothing in this module decides anything about the run.

Progress and the summary go to stderr (silenced by --quiet); why a run failed or was refused
reaches stderr even with --quiet; the dataset's URI is the one line on stdout.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from datasetjob.progress import sum_shard_progress
from datasetjob.redaction import redact_text
from datasetjob.spec.budget import spend_text
from datasetjob.spec.sharding import compress_indexes, shard_bounds, shard_name

if TYPE_CHECKING:
    from datasetjob.combine.run import CombineResult
    from datasetjob.local.shard_process import ShardProcess
    from datasetjob.spec.model import DatasetJobSpec

# More shards than this: the table shows only the running ones (at most this many) and a count.
TABLE_ROWS = 20


def workers_text(workers: int, capped: bool, cpus: int, parallelism: int) -> str:
    text = f"{workers} worker{'s' if workers != 1 else ''}"
    if capped:
        text += (
            f" (capped at the {cpus} CPU{'s' if cpus != 1 else ''} of this machine; "
            f"spec.parallelism is {parallelism}, --workers N overrides)"
        )
    return text


def total_rate(items: dict[str, int], wall: float) -> float:
    return (items["done"] + items["failed"]) / wall if wall else 0.0


class RunView:
    def __init__(self, console: Console | None = None, quiet: bool = False):
        self.console = console or Console(stderr=True, quiet=quiet)
        # Why a run failed or was refused reaches stderr even with --quiet.
        self.errors = console or Console(stderr=True)

    # -- before the run -------------------------------------------------------------------------
    def refused(self, reason: str) -> None:
        print(f"dsj run: refused: {redact_text(reason)}", file=sys.stderr)  # even with --quiet

    def note(self, message: str) -> None:
        print(f"dsj run: {redact_text(message)}", file=sys.stderr)  # even with --quiet

    def run_failed(self, reason: str) -> None:
        self._error(f"[red bold]Run failed[/]: {escape(redact_text(reason))}")

    def started(
        self, spec: DatasetJobSpec, run_id: str, total: int, workers: str, log_dir: Path, plan: str | None = None
    ) -> None:
        """`plan`: what the run's plan found to do (a planned run's processes are work packets)."""
        assert spec.output.uri is not None  # LocalRunner always sets the output
        self.console.print(
            f"[bold]{spec.name}[/] run [cyan]{run_id}[/]: {total} items in "
            f"{spec.shards} shards, {workers} → {redact_text(spec.output.uri)}"
        )
        if plan:
            self.console.print(f"plan: {plan}")
        self.console.print(f"logs: {log_dir}/{'packet' if plan else 'shard'}-*.log")

    # -- while shards run -----------------------------------------------------------------------
    @contextmanager
    def live(
        self, total: int, shards: int
    ) -> Iterator[Callable[[dict[int, dict[str, Any]], list[ShardProcess], float], None]]:
        """A function to call on every tick with (progress snapshots by shard index, the shard
        processes, seconds since the run started); the bar and the table redraw from them."""
        bar = Progress(
            TextColumn("[bold]items"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:>7.1f} items/s"),
            TextColumn("failed {task.fields[failed]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        task = bar.add_task("items", total=total, rate=0.0, failed=0)

        with Live(Group(bar), console=self.console, refresh_per_second=4, transient=False) as live:

            def show(snapshots: dict[int, dict[str, Any]], processes: list[ShardProcess], elapsed: float) -> None:
                totals = sum_shard_progress(snapshots)["items"]
                done, failed = totals["done"] + totals["failed"], totals["failed"]
                bar.update(task, completed=done, failed=failed, rate=done / elapsed if elapsed else 0)
                limit = rate_limit_text([s.get("rateLimit") for s in snapshots.values()])
                parts = [bar, Text(limit)] if limit else [bar]
                live.update(Group(*parts, shard_table(snapshots, processes, total, shards)))

            yield show
        self.console.print()

    # -- after ----------------------------------------------------------------------------------
    def stopped(self, reason: str) -> None:
        print(f"dsj run: stopped: {reason}", file=sys.stderr)

    def interrupted(self, committed: int, shards: int, resume: str) -> None:
        self.errors.print(
            f"[yellow]Interrupted.[/] {committed}/{shards} shards committed, "
            f"finished items checkpointed. Resume with:\n  {resume}",
            soft_wrap=True,
        )

    def budget_exhausted(self, reason: str | None, spent: str, committed: int, units: int, resume: str) -> None:
        self.errors.print(
            f"[yellow bold]Stopped at the budget[/]: {escape(reason or 'spec.budget reached')}. "
            f"Spent: {escape(spent)}. {committed}/{units} committed; finished items are kept. "
            f"Raise spec.budget, then continue (no item is generated again):\n  {escape(resume)}",
            soft_wrap=True,
        )

    def shard_failed(self, shard: ShardProcess, last_error: str | None = None) -> None:
        why = f": {escape(redact_text(last_error))}" if last_error else ""
        self._error(
            f"[red]{shard.name or shard_name(shard.index)} failed[/] (exit codes {shard.exit_codes}){why}; "
            f"log: {escape(str(shard.log_path))}"
        )

    def not_published(self, reason: str, message: str) -> None:
        self._error(f"[red bold]Not published[/] ({reason}): {escape(redact_text(message))}")

    def combine_failed(self, detail: str) -> None:
        self._error(f"[red bold]Not published[/]: combine failed: {escape(redact_text(detail))}")

    def summary(
        self,
        spec: DatasetJobSpec,
        result: CombineResult,
        failed: list[int],
        wall: float,
        failures_uri: str,
        work: str | None = None,
    ) -> None:
        it = result.items
        lookups = result.cache["hits"] + result.cache["misses"]
        table = Table(title=f"{spec.name} · run {result.run_id}", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row(
            "shards",
            f"{spec.shards - len(failed)}/{spec.shards} committed"
            + (f" (failed: {compress_indexes(failed)})" if failed else ""),
        )
        if work:
            table.add_row("work", work)
        table.add_row("items", f"{it['done']} done, {it['failed']} failed, {it['missing']} missing of {it['total']}")
        table.add_row(
            "reuse",
            f"{it['generated']} generated, {it['reused']} reused from earlier runs"
            if spec.reuse.enabled
            else f"off: {it['generated']} generated",
        )
        table.add_row(
            "rows",
            f"{result.rows}"
            + (f" ({result.duplicates_dropped} duplicates dropped)" if result.duplicates_dropped else ""),
        )
        table.add_row(
            "cache",
            f"{result.cache['hits']} hits, {result.cache['misses']} misses"
            + (f" ({result.cache['hits'] / lookups:.1%} hit rate)" if lookups else ""),
        )
        if result.usage:
            table.add_row("spend", spend_text(result.usage))
        if result.rate_limit:
            table.add_row("rate limit", rate_limit_text([result.rate_limit]))
        table.add_row("time", f"{wall:.1f}s ({total_rate(it, wall):.1f} items/s)")
        table.add_row("dataset", redact_text(result.uri))
        table.add_row("sha256", result.sha256)
        table.add_row("manifest", redact_text(result.manifest_uri))
        if it["failed"]:
            table.add_row("failures", redact_text(failures_uri))
        self.console.print(table)
        print(redact_text(result.uri))

    def _error(self, markup: str) -> None:
        """Why a run failed or was refused: on stderr even with --quiet."""
        self.errors.print(markup, highlight=False, soft_wrap=True)


def rate_limit_text(limits: list[Any]) -> str:
    """The rate-limit scope as the workers last saw it: its effective limits under back-pressure
    and the throttles this run reported (empty without a weighted limit). Pure."""
    seen = [limit for limit in limits if isinstance(limit, dict)]
    if not seen:
        return ""
    latest = max(seen, key=lambda limit: int(limit.get("scopeThrottles", 0)))
    rates = ", ".join(f"{name} {value:g}" for name, value in (latest.get("effective") or {}).items())
    throttles = sum(int(limit.get("throttles", 0)) for limit in seen)
    return f"rate limit: {rates or '-'} (x{float(latest.get('factor', 1.0)):.2f}), {throttles} throttles"


def _shard_size(total: int, shards: int, index: int) -> int:
    start, stop = shard_bounds(total, shards, index)
    return stop - start


def shard_table(snapshots: dict[int, dict[str, Any]], processes: list[ShardProcess], total: int, shards: int) -> Table:
    table = Table(box=None, padding=(0, 1), show_edge=False)
    unit = "packet" if processes and processes[0].items is not None else "shard"
    for col in (unit, "state", "items", "failed", "rows", "cache hit", "attempt"):
        table.add_column(col, justify="right" if col not in (unit, "state") else "left")
    shown = [s for s in processes if s.state == "running"] if shards > TABLE_ROWS else processes
    for shard in shown[:TABLE_ROWS]:
        s = snapshots.get(shard.index, {})
        size = shard.items if shard.items is not None else _shard_size(total, shards, shard.index)
        it = s.get("items", {})
        cache = s.get("cache", {})
        lookups = cache.get("hits", 0) + cache.get("misses", 0)
        color = {"committed": "green", "failed": "red", "running": "cyan"}.get(shard.state, "dim")
        table.add_row(
            shard.name or shard_name(shard.index),
            f"[{color}]{shard.state}[/]",
            f"{it.get('done', 0) + it.get('failed', 0)}/{size}",
            str(it.get("failed", 0)),
            str(s.get("rows", 0)),
            f"{cache.get('hits', 0) / lookups:.0%}" if lookups else "-",
            str(shard.attempts),
        )
    if shards > TABLE_ROWS:
        counts = {st: sum(s.state == st for s in processes) for st in ("pending", "committed", "failed")}
        table.caption = ", ".join(f"{v} {k}" for k, v in counts.items())
    return table
