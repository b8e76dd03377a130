"""Which items a shard owns, in which order it works on them, and names derived from a shard index. Pure."""

from __future__ import annotations

from collections.abc import Iterable, Sequence


def shard_bounds(total: int, shards: int, index: int) -> tuple[int, int]:
    """[start, stop) of shard `index`: contiguous, sizes differ by at most one, the larger first."""
    if shards < 1 or not 0 <= index < shards:
        raise ValueError(f"shard index {index} out of range for {shards} shards")
    base, extra = divmod(total, shards)
    start = index * base + min(index, extra)
    return start, start + base + (1 if index < extra else 0)


def shard_name(index: int) -> str:
    return f"shard-{index:05d}"


def compress_indexes(indexes: Iterable[int]) -> str:
    """[0,1,2,3,5,7,8] -> "0-3,5,7-8", the format of Job.status.completedIndexes."""
    parts, run_start, prev = [], None, None
    for i in sorted(set(indexes)):
        if prev is not None and i == prev + 1:
            prev = i
            continue
        if run_start is not None:
            parts.append(str(run_start) if run_start == prev else f"{run_start}-{prev}")
        run_start = prev = i
    if run_start is not None:
        parts.append(str(run_start) if run_start == prev else f"{run_start}-{prev}")
    return ",".join(parts)


def expand_indexes(text: str | None) -> list[int]:
    """The inverse of compress_indexes."""
    out: list[int] = []
    for part in (text or "").split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def processing_order(positions: Sequence[int], index: int) -> list[int]:
    """The shard's items, rotated by a golden-ratio share of its length per shard index.

    Shards of a product universe tend to need the same shared keys in the same order (every
    shard wants date 1, then date 2, ...), so without rotation they all miss the same key at
    the same moment and queue behind one single-flight holder. A low-discrepancy rotation
    spreads first touches across shards. Only the processing order changes; output order
    stays the item order.
    """
    items = list(positions)
    if not items:
        return items
    offset = int(index * 0.6180339887498949 * len(items)) % len(items)
    return items[offset:] + items[:offset]
