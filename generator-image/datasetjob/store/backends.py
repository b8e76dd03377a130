"""The output store: a directory (file://) or an S3 bucket prefix (s3://), same layout in both.

Every write is atomic: a reader sees the whole object or nothing. On disk that is a temp file
in the store's own `.tmp/` (same filesystem) renamed into place; on S3 a PUT (or a completed
multipart upload) is only visible once complete. A request sent again (s3_retry: an S3 server
that stopped answering is waited for, up to DSJ_S3_RETRY_SECONDS) writes the same key with the
same bytes, so a retried write stays whole and idempotent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlparse

from datasetjob.errors import ConditionalWritesUnsupported, StorageError
from datasetjob.store.s3_retry import CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS, wait_out_outages

# A body cut off mid-way (the server went away while sending it) is asked for again; the GET
# itself waits out the outage.
BODY_READ_ATTEMPTS = 3


class Store(ABC):
    """One output location. A backend that misses a method cannot be made (an unimplemented
    `exists` must never read as "missing")."""

    uri: str

    @abstractmethod
    def put_bytes(self, key: str, data: bytes) -> None: ...
    @abstractmethod
    def put_file(self, key: str, path: str | os.PathLike[str]) -> None: ...
    @abstractmethod
    def get_bytes(self, key: str) -> bytes: ...
    @abstractmethod
    def open_read(self, key: str) -> BinaryIO: ...
    @abstractmethod
    def download(self, key: str, path: str | os.PathLike[str]) -> None: ...
    @abstractmethod
    def exists(self, key: str) -> bool: ...
    @abstractmethod
    def list(self, prefix: str) -> list[str]: ...
    @abstractmethod
    def delete_prefix(self, prefix: str, keep: frozenset[str] = frozenset()) -> None:
        """Delete every key under `prefix` but those in `keep`; raise StorageError if any stays."""

    def key_uri(self, key: str) -> str:
        return f"{self.uri.rstrip('/')}/{key}"

    def get_text(self, key: str) -> str:
        return self.get_bytes(key).decode("utf-8")


class FileStore(Store):
    def __init__(self, root: str | os.PathLike[str]):
        self.root = Path(root).resolve()
        self.uri = f"file://{self.root}"

    def path(self, key: str) -> Path:
        return self.root / key

    def _tmp(self) -> Path:
        tmp = self.root / ".tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp / f"{uuid.uuid4().hex}.part"

    def _publish(self, tmp: Path, key: str) -> None:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, final)

    def _write(self, key: str, fill: Callable[[Path], object]) -> None:
        """fill(tmp) writes the object to a temp file, published whole or removed (disk full)."""
        tmp = None
        try:
            tmp = self._tmp()
            fill(tmp)
            self._publish(tmp, key)
        except OSError as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise StorageError(f"{self.key_uri(key)}: cannot write: {exc.strerror or exc}") from None

    def put_bytes(self, key: str, data: bytes) -> None:
        def fill(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())

        self._write(key, fill)

    def put_file(self, key: str, path: str | os.PathLike[str]) -> None:
        self._write(key, lambda tmp: shutil.copyfile(path, tmp))

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.path(key).read_bytes()
        except FileNotFoundError:
            raise StorageError(f"{self.key_uri(key)}: not found") from None

    def open_read(self, key: str) -> BinaryIO:
        try:
            return open(self.path(key), "rb")
        except OSError as exc:
            raise StorageError(f"{self.key_uri(key)}: {exc.strerror}") from None

    def download(self, key: str, path: str | os.PathLike[str]) -> None:
        try:
            shutil.copyfile(self.path(key), path)
        except FileNotFoundError:
            raise StorageError(f"{self.key_uri(key)}: not found") from None

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def list(self, prefix: str) -> list[str]:
        base = self.path(prefix)
        folder = base if prefix.endswith("/") else base.parent
        if not folder.is_dir():
            return []
        out = []
        for dirpath, _, files in os.walk(folder):
            for name in files:
                rel = os.path.relpath(os.path.join(dirpath, name), self.root)
                if rel.startswith(prefix) and not rel.startswith(".tmp/"):
                    out.append(rel)
        return sorted(out)

    def delete_prefix(self, prefix: str, keep: frozenset[str] = frozenset()) -> None:
        """Never follows a symbolic link: a link under the prefix is removed, not its target."""
        try:
            self._delete(prefix, keep)
        except OSError as exc:
            where = exc.filename or self.path(prefix)
            raise StorageError(f"{where}: cannot delete: {exc.strerror or exc}") from None

    def _delete(self, prefix: str, keep: frozenset[str]) -> None:
        target = self.path(prefix.rstrip("/"))
        kept = {self.path(k) for k in keep}
        if target.is_symlink():
            if target not in kept:
                target.unlink()
        elif target.is_dir() and kept:
            for child in target.iterdir():
                if child in kept:
                    continue
                if any(k.is_relative_to(child) for k in kept):
                    self._delete(str(child.relative_to(self.root)) + "/", keep)
                elif child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        elif target.is_dir():
            shutil.rmtree(target)
        elif target.exists() and target not in kept:
            target.unlink()


class S3Store(Store):
    def __init__(self, bucket: str, prefix: str, endpoint_url: str | None = None, region: str | None = None):
        import boto3
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.uri = f"s3://{bucket}/{self.prefix}".rstrip("/")
        config = Config(
            # botocore's own retries give up within seconds; s3_retry's hook waits out an outage
            retries={"mode": "standard", "total_max_attempts": 1},
            connect_timeout=CONNECT_TIMEOUT_SECONDS,
            read_timeout=READ_TIMEOUT_SECONDS,
            s3={"addressing_style": "path"} if endpoint_url else {},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        self.client = boto3.client(
            "s3",
            endpoint_url=endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or None,
            region_name=region or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
            config=config,
        )
        wait_out_outages(self.client)

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _wrap(self, exc: Exception, key: str) -> StorageError:
        return StorageError(f"{self.key_uri(key)}: {exc}")

    def put_bytes(self, key: str, data: bytes) -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)
        except Exception as exc:  # botocore raises many types; callers need one
            raise self._wrap(exc, key) from exc

    def put_file(self, key: str, path: str | os.PathLike[str]) -> None:
        try:
            self.client.upload_file(str(path), self.bucket, self._key(key))
        except Exception as exc:
            raise self._wrap(exc, key) from exc

    def _get_whole(self, key: str) -> tuple[bytes, dict[str, Any]]:
        """The object's bytes, and the GetObject answer they came with."""
        from botocore.exceptions import HTTPClientError, IncompleteReadError

        cut_off: Exception | None = None
        for _ in range(BODY_READ_ATTEMPTS):
            answer: dict[str, Any] = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
            try:
                return answer["Body"].read(), answer
            except (HTTPClientError, IncompleteReadError) as exc:
                cut_off = exc
        assert cut_off is not None  # the loop returned or was cut off every time
        raise cut_off

    def get_bytes(self, key: str) -> bytes:
        try:
            return self._get_whole(key)[0]
        except Exception as exc:
            raise self._wrap(exc, key) from exc

    def open_read(self, key: str) -> BinaryIO:
        try:
            body: BinaryIO = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            return body
        except Exception as exc:
            raise self._wrap(exc, key) from exc

    def download(self, key: str, path: str | os.PathLike[str]) -> None:
        try:
            self.client.download_file(self.bucket, self._key(key), str(path))
        except Exception as exc:
            raise self._wrap(exc, key) from exc

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise self._wrap(exc, key) from exc
        except Exception as exc:  # no answer within the retry window
            raise self._wrap(exc, key) from exc

    def list(self, prefix: str) -> list[str]:
        out: list[str] = []
        strip = len(self.prefix) + 1 if self.prefix else 0
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=self._key(prefix)
            ):
                out.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        except Exception as exc:
            raise self._wrap(exc, prefix) from exc
        return sorted(out)

    def delete_prefix(self, prefix: str, keep: frozenset[str] = frozenset()) -> None:
        keys = [k for k in self.list(prefix) if k not in keep]
        failed: list[str] = []
        for i in range(0, len(keys), 1000):
            try:
                answer = self.client.delete_objects(
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": self._key(k)} for k in keys[i : i + 1000]], "Quiet": True},
                )
            except Exception as exc:
                raise self._wrap(exc, prefix) from None
            # A 200 answer may still list keys it could not delete: they stay, and a stale shard
            # manifest among them would pass for a committed shard of the next run.
            failed += [f"{e.get('Key')} ({e.get('Code')}: {e.get('Message', '')})" for e in answer.get("Errors", [])]
        if failed:
            shown = ", ".join(failed[:5]) + (f" and {len(failed) - 5} more" if len(failed) > 5 else "")
            raise StorageError(f"{self.key_uri(prefix)}: {len(failed)} object(s) could not be deleted: {shown}")

    # -- conditional writes (the run lease) ---------------------------------------------------
    def _conditional_put(self, key: str, data: bytes, **condition: str) -> str | None:
        """The new ETag, or None when the condition failed; ConditionalWritesUnsupported when the
        server says it cannot do conditional writes."""
        from botocore.exceptions import ClientError

        try:
            etag: str = self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, **condition)["ETag"]
            return etag
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return None
            if code in ("NotImplemented", "501"):
                raise ConditionalWritesUnsupported(f"{self.uri}: {exc}") from None
            raise self._wrap(exc, key) from exc
        except Exception as exc:
            raise self._wrap(exc, key) from exc

    def create_if_absent(self, key: str, data: bytes) -> str | None:
        return self._conditional_put(key, data, IfNoneMatch="*")

    def replace_if_unchanged(self, key: str, data: bytes, etag: str) -> str | None:
        return self._conditional_put(key, data, IfMatch=etag)

    def read_versioned(self, key: str) -> tuple[bytes, str, float] | None:
        """(body, ETag, seconds since it was written by the server's clock), or None if absent."""
        from email.utils import parsedate_to_datetime

        from botocore.exceptions import ClientError

        try:
            body, resp = self._get_whole(key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._wrap(exc, key) from exc
        except Exception as exc:
            raise self._wrap(exc, key) from exc
        now = parsedate_to_datetime(resp["ResponseMetadata"]["HTTPHeaders"]["date"])
        return body, resp["ETag"], (now - resp["LastModified"]).total_seconds()

    def delete(self, key: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))
        except Exception as exc:
            raise self._wrap(exc, key) from exc


def check_writable(store: Store, source: str) -> None:
    """Refuse an output a run could not write (a read-only or pseudo filesystem), before it starts.
    An S3 store shows its errors on the first write instead (a probe would need credentials now)."""
    if not isinstance(store, FileStore):
        return
    probe = store.root / ".tmp" / f"probe-{uuid.uuid4().hex}"
    try:
        probe.parent.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise StorageError(f"{source}: cannot write to {store.uri}: {exc.strerror or exc}") from None


def open_store(uri: str, endpoint_url: str | None = None, region: str | None = None) -> Store:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return FileStore(parsed.netloc + parsed.path if parsed.netloc not in ("", "localhost") else parsed.path)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise StorageError(f"{uri}: no bucket")
        return S3Store(parsed.netloc, parsed.path, endpoint_url, region)
    if not parsed.scheme:
        return FileStore(uri)
    raise StorageError(f"{uri}: unsupported scheme {parsed.scheme!r} (use file:// or s3://)")


def open_uri(uri: str, endpoint_url: str | None = None, region: str | None = None) -> BinaryIO:
    """One object named by a URI, open for streaming reads."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":  # any path, including one at the root (file:///items.txt)
        path = parsed.netloc + parsed.path if parsed.netloc not in ("", "localhost") else parsed.path
        try:
            return open(path, "rb")
        except OSError as exc:
            raise StorageError(f"{uri}: {exc.strerror}") from None
    head, _, name = uri.rstrip("/").rpartition("/")
    return open_store(head, endpoint_url, region).open_read(name)


def local_tempdir(prefix: str = "dsj-") -> str:
    """A scratch dir that works under a read-only root filesystem (TMPDIR is an emptyDir)."""
    return tempfile.mkdtemp(prefix=prefix)
