"""The project's images for the node: archives that `make images` builds (scripts/build-images.sh).

The node imports them into containerd before its kubelet starts, so pods find every image
they name locally; there is no registry to pull from.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-images.sh"


class ImagesMissing(RuntimeError):
    """The image archives have not been built."""


@dataclass(frozen=True)
class ImageArchive:
    ref: str  # the name pods use, e.g. datasetjob/worker:0.1.0
    archive: Path


def image_archives() -> list[ImageArchive]:
    """Every image archive of the current inputs; raises ImagesMissing naming what to run."""
    res = subprocess.run([str(BUILD_SCRIPT), "--print-archives"], capture_output=True, text=True)
    if res.returncode != 0:
        raise ImagesMissing(f"{BUILD_SCRIPT.name} --print-archives failed: {res.stderr.strip()}")
    images = []
    for line in res.stdout.splitlines():
        ref, sep, path = line.partition("=")
        if sep:
            images.append(ImageArchive(ref.strip(), Path(path.strip())))
    missing = [f"{i.ref} ({i.archive})" for i in images if not i.archive.is_file()]
    if not images or missing:
        raise ImagesMissing(
            "image archives are missing: " + (", ".join(missing) or "none listed") + ". Build them with `make images`."
        )
    return images
