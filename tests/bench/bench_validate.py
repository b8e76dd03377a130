"""Peak memory and time of `dsj validate` on large legal universes (goal: < 300 MB, < 10 s).

Universes: 10^6 `range` items, and a 10^6-line `fromUri` file (plain lines, and JSON objects
with an idTemplate). Beside each `dsj validate` it measures what every worker of a run holds
(the expanded item list and ids, `resolve_items`), so the two can be compared in one run.
Usage: python tests/bench/bench_validate.py [--items 1000000]
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

HEADER = "apiVersion: datagen.dev/v1alpha1\nkind: DatasetJob\nmetadata: {name: bench}\nspec:\n"
GENERATOR = "  shards: 10\n  generator: {function: 'json:dumps'}\n"
EXPAND = (
    "import sys; from datasetjob.spec.documents import load_spec_file; "
    "from datasetjob.store.universe import resolve_items; "
    "items, ids = resolve_items(load_spec_file(sys.argv[1])); print(len(ids))"
)


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


def universes(tmp: Path, n: int) -> dict[str, Path]:
    plain = tmp / "plain.txt"
    with open(plain, "w") as f:
        for i in range(n):
            f.write(f"ITEM{i:08d}\n")
    objects = tmp / "objects.jsonl"
    with open(objects, "w") as f:
        for i in range(n):
            f.write(json.dumps({"symbol": f"S{i // 36:06d}", "date": f"2025-{i % 36:02d}"}) + "\n")
    specs = {
        f"range (10^{len(str(n)) - 1})": f"  items:\n    range: {{stop: {n}}}\n",
        "fromUri, plain lines": f"  items:\n    fromUri: file://{plain}\n",
        "fromUri, JSON lines + idTemplate": (
            f"  items:\n    fromUri: file://{objects}\n    idTemplate: '{{symbol}}:{{date}}'\n"
        ),
    }
    out = {}
    for i, (name, items) in enumerate(specs.items()):
        path = tmp / f"spec{i}.yaml"
        path.write_text(HEADER + items + GENERATOR)
        out[name] = path
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=1_000_000)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="dsj-bench-validate-") as tmp:
        specs = universes(Path(tmp), args.items)
        imports_only = "import datasetjob.cli, datasetjob.store.universe, jsonschema, celpy"
        baseline = measure([sys.executable, "-c", imports_only])
        print(f"{'universe':36} {'dsj validate':>22} {'a worker expands (list)':>26}")
        print(f"{'(python + imports only)':36} {baseline[0]:8.2f} s {baseline[1]:8.0f} MB")
        for name, path in specs.items():
            vwall, vrss, vout = measure([sys.executable, "-m", "datasetjob", "validate", str(path)])
            ewall, erss, eout = measure([sys.executable, "-c", EXPAND, str(path)])
            print(f"{name:36} {vwall:8.2f} s {vrss:8.0f} MB {ewall:10.2f} s {erss:8.0f} MB")
            assert str(args.items) in vout and eout == str(args.items), (vout, eout)


if __name__ == "__main__":
    main()
