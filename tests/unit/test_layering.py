"""The layering contracts in pyproject.toml ([tool.importlinter]), checked statically."""

import shutil
import subprocess
import sys
from pathlib import Path


def test_import_contracts_hold():
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert exe, "import-linter (a dev dependency) is not installed"
    proc = subprocess.run([exe], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stdout + proc.stderr
