#!/usr/bin/env python3
"""`make doctor`: what this machine has and lacks for `make demo` and `make test`.

Prints every system prerequisite (scripts/prerequisites.txt) as found or missing with what
installs it, then what is built and cached (control plane, Kueue, versitygw, images, the venv).
Exits 1 when a prerequisite the tests need is missing; a missing build is only reported, since
`make test` builds it. Standard library only: it runs before the venv exists.

  scripts/doctor.py                       the whole report
  scripts/doctor.py --installed-by-scripts only the prerequisites the scripts install, no cache state
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests import build_cache  # noqa: E402 (after the path insert)
from tests.prerequisites import OPTIONAL, read_list  # noqa: E402


def prerequisites_report(installed_by_scripts: bool) -> int:
    """Prints one line per prerequisite; returns how many required ones are missing."""
    entries = [p for p in read_list() if p.installed_by_scripts or not installed_by_scripts]
    width = max(len(p.tool) for p in entries)
    print("System prerequisites (scripts/prerequisites.txt; `make prerequisites` installs the Debian packages):")
    missing = 0
    for p in entries:
        where = p.location()
        if where:
            state, detail = "found", where
        elif p.needed_by == OPTIONAL:
            state, detail = "absent", "optional: used when present, never installed"
        else:
            state, detail = "MISSING", p.how_to_get()
            missing += 1
        print(f"  {state:<8} {p.tool:<{width}}  {p.needed_by:<8}  {detail}")
    if os.geteuid() != 0:
        print("  MISSING  root: the node needs root (namespaces, mounts, cgroups)")
        missing += 1
    return missing


def cache_report() -> None:
    """Prints what the build scripts have built, and what builds the rest."""
    print(f"\nBuilt and cached under {build_cache.cache_dir()} (`make test` builds what is missing):")
    versions = build_cache.read_versions()
    built: list[tuple[str, Path, str]] = [
        (name, path, "make controlplane") for name, path in build_cache.control_plane_binaries(versions).items()
    ]
    built.append((f"kueue {versions['KUEUE_VERSION']}", build_cache.kueue_paths(versions)[0], "make kueue"))
    prometheus = build_cache.prometheus_paths(versions)
    built += [
        (f"{name} {versions['PROMETHEUS_VERSION']}", prometheus[name], "make prometheus")
        for name in ("prometheus", "promtool")
    ]
    built.append(
        (f"prometheus-operator CRDs {versions['PROMETHEUS_OPERATOR_VERSION']}", prometheus["crds"], "make prometheus")
    )
    built.append(("versitygw", build_cache.versitygw_binary(), "make services"))
    try:
        built += [(ref, archive, "make images") for ref, archive in build_cache.image_archive_paths()]
    except (OSError, RuntimeError) as exc:
        print(f"  unknown  images: {exc}")
    built.append(("venv", REPO / ".venv" / ".installed", "make venv"))
    width = max(len(name) for name, _, _ in built)
    for name, path, target in built:
        state = "built" if path.exists() else "missing"
        print(f"  {state:<8} {name:<{width}}  {path if path.exists() else target}")
    # The test node's containerd root, kept between cluster starts (tests/e2e/harness/image_store.py).
    store = build_cache.cache_dir() / "node-store"
    slots = sorted(p.name for p in store.glob("[0-9]*") if (p / "images.json").is_file())
    state = "kept" if slots else "none"
    detail = f"slots: {', '.join(slots) or 'none'}; `make cluster-clean` removes them"
    print(f"  {state:<8} {'node images':<{width}}  {store} ({detail})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--installed-by-scripts",
        action="store_true",
        help="check only what scripts/install-prerequisites.sh installs (no preinstalled tools, no cache)",
    )
    args = parser.parse_args()
    missing = prerequisites_report(args.installed_by_scripts)
    if not args.installed_by_scripts:
        cache_report()
    if missing:
        print(f"\n{missing} prerequisite(s) missing: run `make prerequisites` (scripts/install-prerequisites.sh).")
        return 1
    print("\nNo prerequisite is missing.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
