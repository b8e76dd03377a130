"""The node's containerd root, kept between starts so that a warm start imports no image.

Importing the image archives (about 2 GB) into an empty containerd took most of a start. So
the node's containerd root (content store, metadata and overlayfs snapshots) lives under the
build cache, `<cache>/node-store/<slot>/containerd`, with `images.json` beside it: the key of
the archive each image was imported from (archive_key: what the archive holds, by digest). A
start imports only the images whose archive holds something else and removes the images no
archive names any more.

Only the root is kept: containerd's state directory, the kubelet's root and every mount stay
per run, inside the node's mount namespace. A slot is held with an exclusive flock; its file
descriptor is inherited by the node's processes, so the lock lasts until the last of them is
gone, even when the runner is killed. Runs at once take separate slots; when every slot is
taken, a run falls back to a throw-away root (imports everything, as a cold start does).
`python -m tests.e2e.harness clean` (`make cluster-clean`) removes the slots not in use.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tests.build_cache import cache_dir

from .images import ImageArchive

SLOTS = 3  # runs at once (the benches start two); each holds every image twice: content and unpacked
RECORD = "images.json"


def store_base() -> Path:
    return cache_dir() / "node-store"


def archive_key(archive: Path) -> str:
    """What the archive holds, read cheaply: a docker-archive's manifest.json names the image's
    config and layers by digest, so its hash changes when the image does, not when the same
    image is written again (a rebuild rewrites every archive). Other archives: the file's hash."""
    try:
        with tarfile.open(archive, "r:") as tar:  # uncompressed: the scan seeks over the layers
            manifest = tar.extractfile("manifest.json")
            if manifest is not None:
                return "manifest:" + hashlib.sha256(manifest.read()).hexdigest()
    except (KeyError, tarfile.TarError):
        pass
    return "file:" + file_sha256(archive)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def holds(stored: str, ref: str) -> bool:
    """Whether containerd's image name `stored` is `ref`: `ctr images import` stores the name
    qualified, with a registry host in front (and a library path for a one-part name)."""
    return stored == ref or stored.endswith("/" + ref)


def plan(
    images: list[ImageArchive], keys: dict[str, str], recorded: dict[str, str], present: Iterable[str]
) -> tuple[list[ImageArchive], list[str]]:
    """(images to import, stored names to remove).

    keys: archive_key by image ref now; recorded: the key each ref was imported from; present:
    the names containerd holds. An image is imported when containerd lacks it or its archive
    holds another image than the one imported; a stored name no image ref matches is removed.
    """
    present = list(present)
    load = [i for i in images if recorded.get(i.ref) != keys[i.ref] or not any(holds(name, i.ref) for name in present)]
    remove = [name for name in present if not any(holds(name, i.ref) for i in images)]
    return load, sorted(remove)


@dataclass
class ImageStore:
    """One slot, locked by this process (and, once started, by the node's processes)."""

    path: Path
    lock_fd: int

    @property
    def root(self) -> Path:
        return self.path / "containerd"

    def recorded(self) -> dict[str, str]:
        try:
            data = json.loads((self.path / RECORD).read_text())
        except (OSError, ValueError):
            return {}
        return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}

    def write_record(self, record: dict[str, str]) -> None:
        tmp = self.path / f".{RECORD}.tmp"
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        tmp.replace(self.path / RECORD)  # atomic: a killed run leaves the old record or the new

    def release(self) -> None:
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1


def _lock(slot: Path) -> int | None:
    """An exclusive lock on slot/.lock without waiting, or None when another run holds it."""
    while True:
        fd = os.open(slot / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.stat(slot / ".lock").st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        # `clean` removed the slot between our open and our lock: lock the new one.
        os.close(fd)
        slot.mkdir(parents=True, exist_ok=True)


def acquire(slots: int = SLOTS) -> ImageStore | None:
    """The first free slot, locked; None when every slot is in use."""
    for i in range(slots):
        slot = store_base() / str(i)
        slot.mkdir(parents=True, exist_ok=True)
        fd = _lock(slot)
        if fd is not None:
            return ImageStore(slot, fd)
    return None


def remove_stores() -> tuple[list[str], list[str]]:
    """Removes every slot no running node holds: (removed, in use)."""
    base = store_base()
    removed: list[str] = []
    in_use: list[str] = []
    if not base.is_dir():
        return removed, in_use
    for slot in sorted(base.iterdir()):
        if not slot.is_dir():
            continue
        if slot.name.startswith(".trash-"):  # what an interrupted clean left
            shutil.rmtree(slot, ignore_errors=True)
            continue
        fd = _lock(slot)
        if fd is None:
            in_use.append(str(slot))
            continue
        try:
            # Renamed first, so a run that starts meanwhile makes a fresh slot under the old name.
            trash = base / f".trash-{os.getpid()}-{slot.name}"
            slot.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
            removed.append(str(slot))
        finally:
            os.close(fd)
    try:
        base.rmdir()
    except OSError:
        pass
    return removed, in_use
