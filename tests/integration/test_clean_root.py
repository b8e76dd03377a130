"""The prerequisites list, proven on a clean machine.

scripts/prove-prerequisites.sh makes a minimal Debian root file system of this machine's release
(cached), runs scripts/install-prerequisites.sh in it under podman, then the prerequisite check.
A package the project needs but the list forgets fails here, not on a user's new machine.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_install_prerequisites_leaves_nothing_missing_on_a_clean_debian():
    proc = subprocess.run(
        [str(REPO / "scripts" / "prove-prerequisites.sh")], capture_output=True, text=True, timeout=1200
    )
    report = proc.stdout + proc.stderr
    assert proc.returncode == 0, report
    assert "No prerequisite is missing." in report
    # The check ran over the packages the scripts install, containerd among them.
    assert any(line.split()[:2] == ["found", "containerd"] for line in report.splitlines()), report
