"""Fuzzing `dsj validate` and `dsj run` with malformed specs (hypothesis).

Every case must end in exit 2 with a reason on stderr: no traceback, no other exit code, no file
written, and bounded work. Work is bounded by CPU time (an ITIMER_PROF guard, not a wall
clock) and by traced memory (tracemalloc), per case.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import signal
import tempfile
import tracemalloc
from pathlib import Path

import celpy
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from datasetjob.cli import main
from datasetjob.spec import limits
from datasetjob.spec.documents import load_spec_file
from datasetjob.spec.model import run_id

celpy.Environment()  # a CEL environment raises the recursion limit: once here, not inside a case

CPU_SECONDS_PER_CASE = 30
PEAK_BYTES_PER_CASE = 256 << 20

GOOD = {
    "apiVersion": "datagen.dev/v1alpha1",
    "kind": "DatasetJob",
    "metadata": {"name": "fuzz"},
    "spec": {
        "items": {"product": {"symbol": ["A", "B"], "date": ["d1", "d2"]}, "idTemplate": "{symbol}:{date}"},
        "shards": 2,
        "generator": {"function": "json:dumps", "concurrency": 2},
        "output": {"format": "csv"},
        "retries": {"perShard": 1, "maxFailedShards": 0},
        "combine": {"sortBy": ["symbol"], "columns": {"symbol": "string"}, "minItemSuccessRatio": 0.5},
        "cache": {"ttlSeconds": 60},
    },
}

FUZZ = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
HEAVY = settings(FUZZ, max_examples=10)  # each case parses a spec near a limit

finite_floats = st.floats(allow_nan=False, allow_infinity=False)
json_scalars = st.none() | st.booleans() | st.integers() | finite_floats | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=20,
)
not_an_integer = (
    st.text(max_size=10)
    | st.booleans()
    | st.none()
    | st.lists(json_scalars, max_size=3)
    | st.dictionaries(st.text(max_size=5), json_scalars, max_size=3)
    | finite_floats.filter(lambda f: not f.is_integer())
)
not_a_string = (
    st.integers()
    | st.booleans()
    | st.none()
    | finite_floats
    | st.lists(json_scalars, min_size=1, max_size=3)
    | st.dictionaries(st.text(max_size=5), json_scalars, max_size=3)
)
INTEGER_FIELDS = [
    ("spec", "shards"),
    ("spec", "generator", "concurrency"),
    ("spec", "retries", "perShard"),
    ("spec", "cache", "ttlSeconds"),
]
STRING_FIELDS = [
    ("spec", "generator", "function"),
    ("spec", "output", "format"),
    ("spec", "items", "idTemplate"),
    ("metadata", "name"),
    ("kind",),
    ("apiVersion",),
]
MAPPINGS = [
    ("spec",),
    ("spec", "generator"),
    ("spec", "output"),
    ("spec", "retries"),
    ("spec", "combine"),
    ("spec", "cache"),
    ("spec", "items"),
    (),
]


def _set(doc: dict, path: tuple, value) -> dict:
    node = doc
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return doc


def good_yaml() -> str:
    return yaml.safe_dump(GOOD, sort_keys=False)


@contextlib.contextmanager
def cpu_guard(seconds: int):
    def stop(*_):
        raise AssertionError(f"a case used more than {seconds} s of CPU")

    previous = signal.signal(signal.SIGPROF, stop)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)


def check_refused(content: bytes, suffix: str = ".yaml") -> None:
    """Both commands refuse the file with exit 2, a reason, no traceback, nothing written."""
    with tempfile.TemporaryDirectory(prefix="dsj-fuzz-") as tmp:
        spec = Path(tmp, "job" + suffix)
        spec.write_bytes(content)
        cwd = os.getcwd()
        os.chdir(tmp)
        tracemalloc.start()
        try:
            for args in (
                ["validate", str(spec)],
                ["run", str(spec), "--output", f"file://{tmp}/out", "--workdir", f"{tmp}/work", "--quiet"],
            ):
                err, out = io.StringIO(), io.StringIO()
                with cpu_guard(CPU_SECONDS_PER_CASE), contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                    code = main(args)
                assert code == 2, (args[0], code, err.getvalue()[-2000:], content[:300])
                assert "Traceback" not in err.getvalue()
                assert "invalid DatasetJob" in err.getvalue() or "cannot run" in err.getvalue(), err.getvalue()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            os.chdir(cwd)
        assert peak < PEAK_BYTES_PER_CASE, peak
        assert sorted(os.listdir(tmp)) == [spec.name], os.listdir(tmp)


@FUZZ
@given(st.binary(max_size=3000))
def test_random_bytes(content):
    check_refused(content)


@FUZZ
@given(st.sampled_from(INTEGER_FIELDS), not_an_integer)
def test_wrong_type_for_an_integer_field(path, value):
    check_refused(yaml.safe_dump(_set(copy.deepcopy(GOOD), path, value)).encode())


@FUZZ
@given(st.sampled_from(STRING_FIELDS), not_a_string)
def test_wrong_type_for_a_string_field(path, value):
    check_refused(yaml.safe_dump(_set(copy.deepcopy(GOOD), path, value)).encode())


@FUZZ
@given(st.sampled_from(MAPPINGS), st.text(min_size=1, max_size=10), json_values)
def test_unknown_field(path, key, value):
    doc = copy.deepcopy(GOOD)
    node = doc
    for part in path:
        node = node[part]
    node["x-" + key] = value
    check_refused(yaml.safe_dump(doc).encode())


@FUZZ
@given(json_values.filter(lambda v: not isinstance(v, dict)))
def test_items_that_are_not_a_mapping(value):
    check_refused(yaml.safe_dump(_set(copy.deepcopy(GOOD), ("spec", "items"), value)).encode())


@HEAVY
@given(st.integers(min_value=2, max_value=40), st.integers(min_value=7, max_value=40))
def test_alias_bombs(fanout, levels):
    lines = ["  a0: &a0 [lol]"]
    for n in range(1, levels):
        lines.append(f"  a{n}: &a{n} [{', '.join([f'*a{n - 1}'] * fanout)}]")
    text = (
        "x-bomb:\n"
        + "\n".join(lines)
        + "\n"
        + good_yaml().replace("    product:", f"    values: *a{levels - 1}\n    x-product:")
    )
    if fanout ** (levels - 1) <= limits.MAX_EXPANDED_NODES:
        text = "x-unknown: 1\n" + text  # still malformed, just not by the alias limit
    check_refused(text.encode())


@HEAVY
@given(
    st.integers(min_value=limits.MAX_DEPTH, max_value=50_000),
    st.sampled_from(["[", "{a: "]),
    st.sampled_from([".yaml", ".json"]),
)
def test_deep_nesting(depth, opener, suffix):
    closer = "]" if opener == "[" else "}"
    if suffix == ".json":
        opener = '{"a": ' if opener != "[" else opener
    nested = opener * depth + "1" + closer * depth
    doc = json.dumps(GOOD).replace('"shards": 2', f'"shards": {nested}')
    check_refused(doc.encode(), suffix)


@FUZZ
@given(st.sampled_from(["spec:", "  shards:", "  generator:", "    function:", "metadata:"]))
def test_duplicate_keys(line):
    text = good_yaml()
    start = text.index(line + (" " if not line.endswith(":") else ""))
    end = text.index("\n", start)
    block_end = end
    indent = len(line) - len(line.lstrip())
    for nxt in text[end + 1 :].split("\n"):  # the key's whole block, then the same block again
        if nxt and len(nxt) - len(nxt.lstrip()) <= indent:
            break
        block_end += len(nxt) + 1
    block = text[start : block_end + 1]
    check_refused((text[: block_end + 1] + block + text[block_end + 1 :]).encode())


@FUZZ
@given(st.integers(min_value=0, max_value=2000), st.binary(min_size=1, max_size=4).map(lambda b: b"\xff" + b))
def test_bytes_that_are_not_utf8(position, junk):
    text = good_yaml().encode()
    position = min(position, len(text))
    check_refused(text[:position] + junk + text[position:])


@HEAVY
@given(st.sampled_from(["range", "product"]), st.integers(min_value=limits.MAX_ITEMS + 1, max_value=1 << 62))
def test_too_many_items(kind, n):
    keys = 1
    while 1000**keys < n:  # a product of at least n items: as many keys of 1000 values as that takes
        keys += 1
    items = (
        {"range": {"stop": n}} if kind == "range" else {"product": {f"k{k}": list(range(1000)) for k in range(keys)}}
    )
    check_refused(yaml.safe_dump(_set(copy.deepcopy(GOOD), ("spec", "items"), items)).encode())


@FUZZ
@given(
    st.sampled_from(["symbol", "date", "missing"]),
    st.sampled_from([":>", ":<", ":^", ":0", ":_", ":,", ":.", "!r", "!s", "!a", ".real", "[0]", ":{symbol}"]),
    st.integers(min_value=0, max_value=1 << 62),
    st.text(alphabet="-_:/ ab", max_size=5),
)
def test_id_templates_with_format_specs(field, spec_kind, width, literal):
    """A template may only name fields: a width, conversion or lookup is refused before any id is built."""
    template = f"{literal}{{{field}{spec_kind}{width}}}{literal}"
    check_refused(yaml.safe_dump(_set(copy.deepcopy(GOOD), ("spec", "items", "idTemplate"), template)).encode())


PLANTED = [
    "work/logs/{run}",
    "work/logs/{run}/.progress",
    "work/logs/{run}/datasetjob.json",
    "work/logs/{run}/shard-00000.log",
    "out/runs/{run}/lease.json",
    "out/runs/{run}/spec.json",
    "out/runs/{run}/shards/shard-00001.json",
]


@FUZZ
@given(st.sampled_from(PLANTED), st.booleans())
def test_planted_symlinks_in_the_runs_directories(where, to_a_directory):
    """The run id is a hash of the spec, so anyone can plant a link where a run will write: the run
    is refused naming the link, and what the link points at is left as it was."""
    with tempfile.TemporaryDirectory(prefix="dsj-fuzz-links-") as tmp:
        spec = Path(tmp, "job.yaml")
        spec.write_text(good_yaml())
        victim = Path(tmp, "victim")
        if to_a_directory:
            victim.mkdir()
            (victim / "precious.txt").write_text("keep me")
        else:
            victim.write_text("keep me")
        before = sorted((p.name, p.read_bytes()) for p in ([victim] if victim.is_file() else victim.iterdir()))
        link = Path(tmp, where.format(run=run_id(load_spec_file(str(spec)).raw_spec)))
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(victim)
        err = io.StringIO()
        cwd = os.getcwd()
        os.chdir(tmp)
        try:
            args = ["run", str(spec), "--output", f"file://{tmp}/out", "--workdir", f"{tmp}/work", "--quiet"]
            with (
                cpu_guard(CPU_SECONDS_PER_CASE),
                contextlib.redirect_stderr(err),
                contextlib.redirect_stdout(io.StringIO()),
            ):
                code = main(args)
        finally:
            os.chdir(cwd)
        assert code == 2, (where, code, err.getvalue()[-2000:])
        assert "Traceback" not in err.getvalue()
        assert link.name in err.getvalue(), err.getvalue()
        after = sorted((p.name, p.read_bytes()) for p in ([victim] if victim.is_file() else victim.iterdir()))
        assert after == before
