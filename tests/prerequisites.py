"""The system prerequisites list (scripts/prerequisites.txt): read it, and tell what is missing.

Standard library only: `make doctor` runs it before the venv exists, and the clean-root test runs it
in a minimal Debian root file system that has nothing but python3.
"""

from __future__ import annotations

import glob
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

LIST_FILE = Path(__file__).resolve().parents[1] / "scripts" / "prerequisites.txt"
PREINSTALLED = "preinstalled"
OPTIONAL = "optional"


@dataclass(frozen=True)
class Prerequisite:
    tool: str  # a command on PATH, or an absolute path (glob allowed)
    provider: str  # a Debian package, or PREINSTALLED
    needed_by: str

    @property
    def installed_by_scripts(self) -> bool:
        return self.provider != PREINSTALLED and self.needed_by != OPTIONAL

    def location(self) -> str | None:
        """Where the tool is on this machine, or None."""
        if self.tool.startswith("/"):
            found = sorted(glob.glob(self.tool))
            return found[0] if found else None
        return shutil.which(self.tool)

    def how_to_get(self) -> str:
        if self.provider == PREINSTALLED:
            return "comes with the machine; install it by hand"
        return f"apt-get install {self.provider}, or make prerequisites"


def read_list(path: Path = LIST_FILE) -> list[Prerequisite]:
    prerequisites = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 3:
            raise ValueError(f"{path}:{number}: expected 'tool provider needed-by', got {line!r}")
        prerequisites.append(Prerequisite(*fields))
    return prerequisites


def listed_tools(path: Path = LIST_FILE) -> set[str]:
    return {p.tool for p in read_list(path)}


def missing(needed_by: set[str] | None = None, path: Path = LIST_FILE) -> list[Prerequisite]:
    """The prerequisites (of these groups, else all but the optional ones) not on this machine."""
    return [
        p
        for p in read_list(path)
        if p.needed_by != OPTIONAL and (needed_by is None or p.needed_by in needed_by) and p.location() is None
    ]


def missing_lines(needed_by: set[str] | None = None) -> list[str]:
    """One line per missing prerequisite, each with what installs it (empty: nothing missing)."""
    lines = [f"{p.tool}: not found ({p.how_to_get()})" for p in missing(needed_by)]
    if os.geteuid() != 0 and (needed_by is None or "node" in needed_by):
        lines.append("root: the node needs root (namespaces, mounts, cgroups)")
    return lines
