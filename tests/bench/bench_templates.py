"""Peak memory of `dsj validate` on the worst id template the spec allows (goal: < 50 MB over
the baseline of validating a small spec), and on a format-spec memory bomb, which is refused.

The worst allowed template: about a thousand placeholders (most of them an empty field, the
rest long values), over a product of a few thousand items, every id at the id length limit.
Usage: python tests/bench/bench_templates.py
Not a test: nothing here asserts a time or a size.
"""

from __future__ import annotations

import os
import sys
import tempfile
import tracemalloc
from pathlib import Path

import yaml
from bench_validate import measure  # a sibling script: benches run as `python tests/bench/...`

from datasetjob.spec import limits

HEADER = {"apiVersion": "datagen.dev/v1alpha1", "kind": "DatasetJob", "metadata": {"name": "bench"}}
GENERATOR = {"function": "json:dumps"}


def write(path: Path, spec: dict) -> Path:
    path.write_text(yaml.safe_dump({**HEADER, "spec": spec}, sort_keys=False, width=1 << 20))
    return path


def specs(tmp: Path) -> dict[str, Path]:
    cap = limits.MAX_ID_LENGTH
    long_values = [f"{i:05d}" + "v" * (cap - 6) for i in range(1500)]  # 1500 x 506 chars: ~0.75 MiB
    worst = {
        "items": {
            "product": {"a": long_values, "c": ["0", "1", "2"], "e": [""]},
            "productOrder": ["a", "c", "e"],
            "idTemplate": "{a}{c}" + "{e}" * 1000,  # 1002 placeholders; each id is `cap` characters
        },
        "shards": 10,
        "generator": GENERATOR,
    }
    small = {"items": {"product": {"k": ["a", "b"]}, "idTemplate": "{k}"}, "generator": GENERATOR}
    bomb = {"items": {"product": {"k": ["a", "b"]}, "idTemplate": "{k:>999999999}"}, "generator": GENERATOR}
    return {
        "baseline: 2 items, '{k}'": write(tmp / "small.yaml", small),
        "worst allowed: 4500 ids of 512 chars, 1002 placeholders": write(tmp / "worst.yaml", worst),
        "refused: '{k:>999999999}'": write(tmp / "bomb.yaml", bomb),
    }


def in_process_peak(path: Path) -> float:
    """tracemalloc peak (MB) of loading the spec and checking every id, in this process."""
    from datasetjob.spec.documents import load_spec_file
    from datasetjob.store.universe import check_universe

    tracemalloc.start()
    try:
        check_universe(load_spec_file(path))
        return tracemalloc.get_traced_memory()[1] / (1 << 20)
    finally:
        tracemalloc.stop()


def main() -> None:
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
    with tempfile.TemporaryDirectory(prefix="dsj-bench-templates-") as tmp:
        paths = specs(Path(tmp))
        print(f"{'spec':58} {'wall':>8} {'peak RSS':>10} {'over baseline':>14}  result")
        baseline = None
        for name, path in paths.items():
            wall, rss, last = measure([sys.executable, "-m", "datasetjob", "validate", str(path)], check=False)
            baseline = rss if baseline is None else baseline
            result = last.replace(str(path), "spec")[:70]
            print(f"{name:58} {wall:6.2f} s {rss:7.1f} MB {rss - baseline:+11.1f} MB  {result}")
        worst = paths["worst allowed: 4500 ids of 512 chars, 1002 placeholders"]
        print(f"worst allowed, in process: tracemalloc peak {in_process_peak(worst):.1f} MB")


if __name__ == "__main__":
    main()
