"""Command mode's templates, decided the same way by the worker and by `dsj run`/`dsj validate`:
the placeholder values of a shard, and the output file its command writes.

The worker deletes a stale output file before the command runs and copies it afterwards, so the
file must lie inside the shard's working directory (`generator.workingDir`, else the worker's
current directory) after resolving `..` and symlinks; anything else is a bad spec. A local run
(`dsj run`) also keeps the working directory inside the directory it runs in.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

from datasetjob.errors import GeneratorConfigError
from datasetjob.spec.model import DatasetJobSpec, GeneratorSpec
from datasetjob.spec.sharding import shard_name
from datasetjob.worker.generator import substitute

ITEMS_SEPARATOR = ","


def _field_using(gen: GeneratorSpec, placeholder: str) -> str | None:
    token = "{" + placeholder + "}"
    if any(token in arg for arg in gen.command or ()):
        return "spec.generator.command"
    if token in (gen.output_file or ""):
        return "spec.generator.outputFile"
    return None


def items_value(gen: GeneratorSpec, ids: Sequence[str]) -> str:
    """The `{items}` text: ids joined by commas, refused when an id itself holds a comma."""
    field = _field_using(gen, "items")
    if field is None:
        return ""
    for item_id in ids:
        if ITEMS_SEPARATOR in item_id:
            raise GeneratorConfigError(
                f"{field}: item id {item_id!r} contains {ITEMS_SEPARATOR!r}, the separator of {{items}}, "
                "so the list would be ambiguous; use {items_file} instead (a file with one JSON item per line)"
            )
    return ITEMS_SEPARATOR.join(ids)


def shard_values(gen: GeneratorSpec, ids: Sequence[str], index: int, run_id: str, items_file: str) -> dict[str, str]:
    return {
        "items": items_value(gen, ids),
        "items_file": items_file,
        "shard": shard_name(index),
        "index": str(index),
        "run_id": run_id,
    }


def work_dir(gen: GeneratorSpec) -> Path:
    """Where the command runs: the shard's working directory, resolved."""
    return Path(gen.working_dir or os.getcwd()).resolve()


def output_path(gen: GeneratorSpec, values: dict[str, str]) -> Path:
    """The command's output file, resolved; GeneratorConfigError when it leaves the work dir."""
    base = work_dir(gen)
    assert gen.output_file is not None  # the spec's rules require outputFile with a command
    written = substitute(gen.output_file, values)
    target = (base / written).resolve()  # follows symlinks of every existing component
    if target == base or not target.is_relative_to(base):
        raise GeneratorConfigError(
            f"spec.generator.outputFile: {written!r} resolves to {str(target)!r}, outside the shard's "
            f"working directory {str(base)!r}; name a file inside it (a relative path, no '..', "
            "no symlink that leads out)"
        )
    return target


def check_work_dir_within(gen: GeneratorSpec, base: Path) -> None:
    """A local run's rule: the command's working directory lies inside `base` (where `dsj run`
    runs), `..` and symlinks resolved. The worker deletes a stale output file there before each
    attempt, so a working directory elsewhere would let a spec delete a file anywhere on this
    machine. (A pod's working directory is the container's own, so the worker does not ask.)"""
    if not gen.working_dir:
        return
    root = base.resolve()
    target = (root / gen.working_dir).resolve()  # an absolute working dir replaces the root
    if not target.is_relative_to(root):
        raise GeneratorConfigError(
            f"spec.generator.workingDir: {gen.working_dir!r} resolves to {str(target)!r}, outside the "
            f"directory dsj run runs in ({str(root)!r}); a local run keeps the command inside it (the "
            "worker deletes a stale outputFile there): name a directory inside it, or run dsj run from "
            "a directory that contains the working directory"
        )


def check_command(spec: DatasetJobSpec, shards: Iterable[tuple[int, Sequence[str]]], run_id: str) -> None:
    """Every shard's templates, given each shard's ids in turn, before anything runs (the worker
    checks again where it runs)."""
    gen = spec.generator
    if not gen.command:
        return
    items_file = os.path.join(tempfile.gettempdir(), "dsj-shard", "items.jsonl")  # a worker's scratch file
    for index, ids in shards:
        output_path(gen, shard_values(gen, ids, index, run_id, items_file))
