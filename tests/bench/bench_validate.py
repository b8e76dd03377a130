"""Peak memory and time of `dsj validate` on large legal universes (goal: a 10^7-line fromUri file
in < 30 s and < 300 MB; a 10^8 range in < 1 s).

Universes: `range` of 10^8 and of MAX_ITEMS items (O(1): ids are the numbers); a `fromUri` file
of 10^7 plain lines and one of JSON lines with an idTemplate (streamed: 8 bytes of hash an id,
in a fixed buffer); products checked from their value lists (MAX_ITEMS items, an idTemplate
that shows the ids unique) and id by id (MAX_BUILT_PRODUCT_IDS items, one that cannot).
Usage: python tests/bench/bench_validate.py [--lines 10000000] [--range 100000000]
Not a test: nothing here asserts a time or a size.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from datasetjob.spec.limits import MAX_BUILT_PRODUCT_IDS, MAX_ITEM_SOURCE_BYTES, MAX_ITEMS

HEADER = "apiVersion: datagen.dev/v1alpha1\nkind: DatasetJob\nmetadata: {name: bench}\nspec:\n"
GENERATOR = "  shards: 100\n  generator: {function: 'json:dumps'}\n"


def measure(cmd: list[str], check: bool = True) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, last line of stdout, else of stderr) of one child process;
    with `check`, a failing child ends the bench."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    out, err = proc.stdout.read(), proc.stderr.read()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if check and proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{err}")
    return wall, usage.ru_maxrss / 1024, ((out.strip() or err.strip()).splitlines() or [""])[-1]


def power(n: int) -> str:
    exponent = len(str(n)) - 1
    return f"10^{exponent}" if n == 10**exponent else str(n)


def universes(tmp: Path, lines: int, range_stop: int) -> dict[str, tuple[str, int]]:
    """name -> (spec.items as YAML, the number of items)."""
    plain = tmp / "plain.txt"
    with open(plain, "w") as f:
        f.writelines(f"item-{i:07d}\n" for i in range(lines))
    objects = tmp / "objects.jsonl"
    json_lines = min(lines, MAX_ITEM_SOURCE_BYTES // 50)  # ~45 bytes a line, under the byte cap
    with open(objects, "w") as f:
        for i in range(json_lines):
            f.write(json.dumps({"symbol": f"S{i // 36:06d}", "date": f"2025-{i % 36:02d}"}) + "\n")
    thousand = "[" + ",".join(str(i) for i in range(1000)) + "]"
    padded = "[" + ",".join(f"'{i:03d}'" for i in range(1000)) + "]"
    names = "[" + ",".join(f"s{i}" for i in range(MAX_BUILT_PRODUCT_IDS // 1000)) + "]"
    return {
        f"range ({power(range_stop)})": (f"    range: {{stop: {range_stop}}}\n", range_stop),
        f"range ({power(MAX_ITEMS)}, MAX_ITEMS)": (f"    range: {{stop: {MAX_ITEMS}}}\n", MAX_ITEMS),
        f"fromUri, {power(lines)} plain lines": (f"    fromUri: file://{plain}\n", lines),
        f"fromUri, {power(json_lines)} JSON + idTemplate": (
            f"    fromUri: file://{objects}\n    idTemplate: '{{symbol}}:{{date}}'\n",
            json_lines,
        ),
        f"product {power(10**9)}, '{{a}}-{{b}}-{{c}}'": (
            f"    product: {{a: {thousand}, b: {thousand}, c: {thousand}}}\n    idTemplate: '{{a}}-{{b}}-{{c}}'\n",
            10**9,
        ),
        f"product {power(MAX_BUILT_PRODUCT_IDS)}, '{{a}}{{b}}' id by id": (
            f"    product: {{a: {names}, b: {padded}}}\n    idTemplate: '{{a}}{{b}}'\n",
            MAX_BUILT_PRODUCT_IDS,
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=10_000_000, help="lines of the fromUri files")
    parser.add_argument("--range", type=int, default=100_000_000, help="items of the range")
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="dsj-bench-validate-") as tmp:
        specs = universes(Path(tmp), args.lines, args.range)
        imports_only = "import datasetjob.cli, datasetjob.store.universe, jsonschema, celpy"
        baseline = measure([sys.executable, "-c", imports_only])
        print(f"{'universe':42} {'dsj validate':>22}")
        print(f"{'(python + imports only)':42} {baseline[0]:8.2f} s {baseline[1]:8.0f} MB")
        for i, (name, (items, count)) in enumerate(specs.items()):
            path = Path(tmp, f"spec{i}.yaml")
            path.write_text(HEADER + "  items:\n" + items + GENERATOR)
            wall, rss, out = measure([sys.executable, "-m", "datasetjob", "validate", str(path)])
            print(f"{name:42} {wall:8.2f} s {rss:8.0f} MB peak RSS")
            assert f"{count} items" in out, out


if __name__ == "__main__":
    main()
