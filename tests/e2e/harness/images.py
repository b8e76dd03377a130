"""The project's images for the node: archives that `make images` builds (scripts/build-images.sh and node-images.sh).

The node imports them into containerd before its kubelet starts, so pods find every image
they name locally; there is no registry to pull from.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.build_cache import image_archive_paths


class ImagesMissing(RuntimeError):
    """The image archives have not been built."""


@dataclass(frozen=True)
class ImageArchive:
    ref: str  # the name pods use, e.g. datasetjob/worker:0.1.0
    archive: Path


def image_archives() -> list[ImageArchive]:
    """Every image archive of the current inputs; raises ImagesMissing naming what to run."""
    try:
        images = [ImageArchive(ref, archive) for ref, archive in image_archive_paths()]
    except RuntimeError as exc:
        raise ImagesMissing(str(exc)) from None
    missing = [f"{i.ref} ({i.archive})" for i in images if not i.archive.is_file()]
    if not images or missing:
        raise ImagesMissing(
            "image archives are missing: " + (", ".join(missing) or "none listed") + ". Build them with `make images`."
        )
    return images
