"""Parsing a spec cannot exhaust memory or the stack: limits with errors naming the limit and field.

Each hostile input runs `dsj validate` in a child process under an address-space and CPU-time
rlimit, so a regression fails the test (exit code, message) instead of taking the machine down.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from datasetjob.spec import limits

HEADER = "apiVersion: datagen.dev/v1alpha1\nkind: DatasetJob\nmetadata: {name: limits}\n"
GENERATOR = "  generator: {function: 'json:dumps'}\n"
CHILD_MEMORY = 1 << 30  # bytes of address space: far above what a legal spec needs
CHILD_CPU_SECONDS = 60  # a runaway loop is killed instead of hanging the suite


def _limit_child() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_MEMORY, CHILD_MEMORY))
    resource.setrlimit(resource.RLIMIT_CPU, (CHILD_CPU_SECONDS, CHILD_CPU_SECONDS))


def validate(path: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "datasetjob", "validate", str(path), *extra],
        capture_output=True,
        text=True,
        preexec_fn=_limit_child,
        cwd=path.parent,
    )


def spec_file(tmp_path: Path, body: str, name: str = "job.yaml") -> Path:
    path = tmp_path / name
    path.write_text(HEADER + "spec:\n" + body)
    return path


def assert_refused(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    for needle in needles:
        assert needle in proc.stderr, proc.stderr[-3000:]


def test_a_yaml_alias_bomb_is_refused_by_the_alias_expansion_limit(tmp_path):
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, 10):
        prev = f"*a{n - 1}"
        lines.append(f"a{n}: &a{n} [{','.join([prev] * 9)}]")
    bomb = (
        HEADER
        + "x-bomb:\n"
        + "".join(f"  {line}\n" for line in lines)
        + "spec:\n  items:\n    values: *a9\n"
        + GENERATOR
    )
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb)
    assert len(bomb) < 2000
    proc = validate(path)
    assert_refused(proc, "alias", str(limits.MAX_EXPANDED_NODES))


def test_deep_nesting_is_refused_by_the_depth_limit_not_a_recursion_error(tmp_path):
    depth = 100_000
    path = spec_file(tmp_path, "  items:\n    values: " + "[" * depth + "]" * depth + "\n" + GENERATOR)
    proc = validate(path)
    assert_refused(proc, "nested deeper than", str(limits.MAX_DEPTH), "spec.items.values")
    assert "RecursionError" not in proc.stderr


def test_deep_nesting_in_json_is_refused_too(tmp_path):
    depth = 100_000
    path = tmp_path / "job.json"
    path.write_text(
        '{"apiVersion": "datagen.dev/v1alpha1", "kind": "DatasetJob", "metadata": {"name": "x"},'
        ' "spec": {"items": {"values": ' + "[" * depth + "]" * depth + "}}}"
    )
    assert_refused(validate(path), "nested deeper than", str(limits.MAX_DEPTH))


def test_a_spec_larger_than_the_size_limit_is_refused_without_parsing_it(tmp_path):
    values = "".join(f"    - item-{i:09d}\n" for i in range(limits.MAX_SPEC_BYTES // 20 + 10))
    path = spec_file(tmp_path, "  items:\n    values:\n" + values + GENERATOR)
    assert path.stat().st_size > limits.MAX_SPEC_BYTES
    assert_refused(validate(path), "spec size limit", "spec.items.fromUri")


def test_more_values_than_the_inline_limit_point_to_from_uri(tmp_path):
    n = limits.MAX_INLINE_ITEMS + 1
    path = spec_file(tmp_path, "  items:\n    values: [" + ",".join("1" for _ in range(n)) + "]\n" + GENERATOR)
    assert path.stat().st_size < limits.MAX_SPEC_BYTES
    assert_refused(
        validate(path), "spec.items.values", f"inline limit of {limits.MAX_INLINE_ITEMS}", "spec.items.fromUri"
    )


def test_a_range_beyond_the_item_limit_is_refused_before_expanding(tmp_path):
    path = spec_file(tmp_path, f"  items:\n    range: {{stop: {limits.MAX_ITEMS + 1}}}\n" + GENERATOR)
    assert_refused(validate(path), "spec.items.range", f"limit of {limits.MAX_ITEMS}")


def test_a_range_at_the_item_limit_validates_without_expanding(tmp_path):
    """The rlimits (1 GiB, 60 s of CPU) would stop a child that expanded it."""
    path = spec_file(tmp_path, f"  items:\n    range: {{stop: {limits.MAX_ITEMS}}}\n  shards: 100\n" + GENERATOR)
    proc = validate(path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert str(limits.MAX_ITEMS) in proc.stdout + proc.stderr


def test_a_product_beyond_the_item_limit_is_refused_before_expanding(tmp_path):
    keys = "".join(f"      k{k}: [{','.join(str(i) for i in range(100))}]\n" for k in range(5))
    path = spec_file(tmp_path, "  items:\n    product:\n" + keys + GENERATOR)
    assert_refused(validate(path), "spec.items.product", f"limit of {limits.MAX_ITEMS}")


def test_from_uri_stops_at_the_byte_cap_on_an_endless_file(tmp_path):
    path = spec_file(tmp_path, "  items:\n    fromUri: file:///dev/zero\n" + GENERATOR)
    assert_refused(validate(path), "spec.items.fromUri", "limit")


def test_from_uri_beyond_the_item_limit_is_refused(tmp_path, monkeypatch):
    """MAX_ITEM_SOURCE_BYTES keeps a file under MAX_ITEMS lines: the count is checked with a
    smaller limit, in process (the same code path as `dsj validate`)."""
    from datasetjob.errors import SpecError
    from datasetjob.spec import item_source
    from datasetjob.spec.documents import load_spec_file
    from datasetjob.store.universe import check_universe

    assert limits.MAX_ITEM_SOURCE_BYTES // 2 < limits.MAX_ITEMS  # 2 bytes a line at the least
    monkeypatch.setattr(item_source, "MAX_ITEMS", 1000)
    items = tmp_path / "items.txt"
    items.write_text("".join(f"{i}\n" for i in range(1001)))
    path = spec_file(tmp_path, f"  items:\n    fromUri: file://{items}\n" + GENERATOR)
    with pytest.raises(SpecError) as refused:
        check_universe(load_spec_file(path))
    assert refused.value.problems[0].startswith("spec.items.fromUri: ") and "limit of 1000" in str(refused.value)
    items.write_text("".join(f"{i}\n" for i in range(1000)))
    assert check_universe(load_spec_file(path)) == 1000


def test_a_large_legal_range_validates_streaming(tmp_path):
    """A million range items: valid, and validation keeps no per-item list (checked in-process)."""
    import tracemalloc

    from datasetjob.spec.documents import load_spec_file
    from datasetjob.store.universe import check_universe

    path = spec_file(tmp_path, "  items:\n    range: {stop: 1000000}\n  shards: 10\n" + GENERATOR)
    spec = load_spec_file(path)
    tracemalloc.start()
    try:
        assert check_universe(spec) == 1_000_000
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 << 20, peak  # range ids are unique by construction: nothing per item is kept


def test_from_uri_validation_streams_the_file(tmp_path):
    """Memory grows with the ids kept for the uniqueness check, not with a copy of the text."""
    import tracemalloc

    from datasetjob.spec.documents import load_spec_file
    from datasetjob.store.universe import check_universe

    n = 200_000
    items = tmp_path / "items.jsonl"
    items.write_text("".join(json.dumps({"symbol": f"S{i}", "pad": "x" * 200}) + "\n" for i in range(n)))
    path = spec_file(tmp_path, f"  items:\n    fromUri: file://{items}\n    idTemplate: '{{symbol}}'\n" + GENERATOR)
    spec = load_spec_file(path)
    tracemalloc.start()
    try:
        assert check_universe(spec) == n
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < items.stat().st_size, (peak, items.stat().st_size)


def test_a_worker_reads_the_spec_dsj_run_wrote_even_when_indented_json_outgrows_the_yaml(tmp_path):
    """A legal flow-style YAML list can double in size as the indented JSON the runner writes."""
    from datasetjob.spec.documents import load_spec_file

    values = [f"ab{i:05d}" for i in range(limits.MAX_INLINE_ITEMS)]
    user = spec_file(tmp_path, "  items:\n    values: [" + ",".join(values) + "]\n" + GENERATOR)
    assert user.stat().st_size <= limits.MAX_SPEC_BYTES
    spec = load_spec_file(user)
    written = tmp_path / "datasetjob.json"
    written.write_text(json.dumps(spec.to_document(), indent=1))
    assert written.stat().st_size > limits.MAX_SPEC_BYTES
    assert load_spec_file(written, rules=False).items.values == tuple(values)
