"""Reading DatasetJob documents from YAML/JSON files, within the spec size limit."""

from __future__ import annotations

import errno
import io
import os
import stat
from pathlib import Path
from typing import BinaryIO

from datasetjob.errors import SpecError
from datasetjob.spec.limits import MAX_SPEC_BYTES, MAX_WRITTEN_SPEC_BYTES, size_text
from datasetjob.spec.model import DatasetJobSpec, spec_from_document
from datasetjob.spec.safe_parse import parse_json, parse_yaml

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFDIR: "a directory",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class _NoWaitReader(io.FileIO):
    """A character device read without ever waiting: /dev/zero streams (into the byte limits),
    a terminal refuses instead of waiting for someone to type."""

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        if data is None:
            raise BlockingIOError(errno.EAGAIN, "not a regular file (a device with nothing to read without waiting)")
        return data


def open_regular_file(path: str | Path) -> BinaryIO:
    """`path` open for reading, or OSError (naming what it is) unless it is a regular file: a
    FIFO would block the reader until some writer came. The open itself never waits
    (O_NONBLOCK, cleared again for a regular file). A character device such as /dev/zero is
    read without waiting, within the caller's byte limits."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISCHR(mode):
            return _NoWaitReader(fd, "rb")
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"not a regular file ({_KINDS.get(stat.S_IFMT(mode), 'unknown kind')})")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_spec_text(path: str | Path, max_bytes: int = MAX_SPEC_BYTES) -> str:
    """The file's text; refused (naming the limit) past `max_bytes` or when not UTF-8."""
    try:
        with open_regular_file(path) as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise SpecError([f"{path}: cannot read: {exc.strerror}"]) from None
    if len(data) > max_bytes:
        raise SpecError(
            [
                f"{path}: larger than {size_text(max_bytes)} (the spec size limit); put large "
                "item lists in a file and use spec.items.fromUri"
            ]
        )
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise SpecError(
            [f"{path}: not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line})"]
        ) from None


def load_document(path: str | Path, max_bytes: int = MAX_SPEC_BYTES) -> object:
    """The file's one document, unchecked: spec_from_document refuses anything but a DatasetJob."""
    text = read_spec_text(path, max_bytes)
    if str(path).endswith(".json"):
        return parse_json(text, str(path))
    docs = [d for d in parse_yaml(text, str(path)) if d is not None]
    jobs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "DatasetJob"]
    if len(jobs) != 1:
        if len(docs) == 1:
            return docs[0]
        raise SpecError([f"{path}: expected one DatasetJob document, found {len(jobs)}"])
    return jobs[0]


def load_spec_file(path: str | Path, rules: bool = True) -> DatasetJobSpec:
    """A user's spec (rules=True), or one dsj wrote for a worker or combine (rules=False: checked
    in full before it was written, and allowed to be larger as indented JSON)."""
    return spec_from_document(load_document(path, MAX_SPEC_BYTES if rules else MAX_WRITTEN_SPEC_BYTES), rules=rules)
