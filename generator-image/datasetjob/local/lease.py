"""One `dsj run` per run of an output at a time: the runner holds a lease on runs/<runId>/.

- On disk (file://) the lease is the file runs/<runId>/lease.json, locked with flock(2). The
  runner's workers inherit the locked descriptor, so the lease ends only when the runner and
  every one of its workers are gone, however they ended: the kernel drops a dead process's lock.
- On S3 the lease is the object runs/<runId>/lease.json, created with a conditional write
  (If-None-Match: *) so that of two runners exactly one creates it. The holder rewrites it every
  RENEW_SECONDS (If-Match its last ETag); one not rewritten for STALE_AFTER_SECONDS, by the
  server's clock, was left by a dead holder. On the holder's own host a flock in the local cache
  dir (inherited by the workers as above) tells at once whether its processes are gone.

A live holder refuses a second run, naming its pid, host and start time; a dead holder's lease is
taken over by the next run (typically `dsj run --resume`, which keeps the checkpoints).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from datasetjob.errors import ConditionalWritesUnsupported, LeaseHeld, LeaseLost, StorageError
from datasetjob.store import layout
from datasetjob.store.backends import FileStore, S3Store, Store

log = logging.getLogger("datasetjob.lease")

RENEW_SECONDS = 15.0
STALE_AFTER_SECONDS = 90.0
# How long a run waits for the workers of a holder whose runner died on this host: they finish
# the items in hand and save their checkpoint, then exit.
DEAD_HOLDER_WORKERS_SECONDS = 60.0


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    startedAt: str

    @classmethod
    def this_process(cls) -> Holder:
        return cls(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

    @classmethod
    def parse(cls, data: bytes) -> Holder | None:
        try:
            raw = json.loads(data)
            return cls(int(raw["pid"]), str(raw["host"]), str(raw["startedAt"]))
        except (ValueError, KeyError, TypeError):
            return None  # empty (being written) or not ours

    def to_json(self, **extra: str) -> bytes:
        return json.dumps(dict(asdict(self), **extra)).encode()

    def describe(self) -> str:
        return f"pid {self.pid} on {self.host}, started {self.startedAt}"

    def is_dead_here(self) -> bool:
        """True when this holder ran on this host and its process no longer exists."""
        if self.host != socket.gethostname():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def lease_held(where: str, holder: Holder | None, workers_left: bool = False) -> LeaseHeld:
    """The refusal a second run gets, saying who holds the run and what to do."""
    who = holder.describe() if holder else "holder unknown"
    if workers_left:
        return LeaseHeld(
            f"{where} is still in use by the workers of a dsj run that died ({who}); they did "
            f"not exit within {DEAD_HOLDER_WORKERS_SECONDS:.0f}s. Stop them, then rerun with --resume.",
            holder,
        )
    return LeaseHeld(
        f"{where} is in use by another dsj run ({who}). Wait for it to finish, "
        "or stop it (Ctrl-C) and rerun with --resume to continue its work.",
        holder,
    )


class LocalLock:
    """An flock on a file, holding the holder's description as its content."""

    def __init__(self, path: Path):
        self.path = path
        self.fd: int | None = None

    def try_acquire(self) -> bool:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"{self.path.parent}: cannot create: {exc.strerror}") from None
        while True:
            try:  # never through a symbolic link: its target would be truncated and rewritten
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise StorageError(f"{self.path}: is a symbolic link, not a run's lease; remove it") from None
                raise StorageError(f"{self.path}: cannot open the run's lease: {exc.strerror}") from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            try:
                current = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
            if current:
                self.fd = fd
                return True
            os.close(fd)  # the last holder released (unlinked) it between our open and flock

    def holder(self) -> Holder | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            return None
        try:
            return Holder.parse(os.read(fd, 4096))
        except OSError:
            return None
        finally:
            os.close(fd)

    def write(self, data: bytes) -> None:
        assert self.fd is not None  # written only while held
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)

    def release(self) -> None:
        if self.fd is None:
            return
        try:
            self.path.unlink()  # before unlocking: a waiter then retries on a fresh file
        except FileNotFoundError:
            pass
        os.close(self.fd)
        self.fd = None


class S3Lease:
    def __init__(self, store: S3Store, key: str, holder: Holder):
        self.store, self.key, self.holder = store, key, holder
        self.etag: str | None = None
        self.conditional = True

    def acquire(self, same_host_is_dead: bool) -> None:
        where = self.store.key_uri(self.key)
        try:
            self.etag = self.store.create_if_absent(self.key, self.holder.to_json())
        except ConditionalWritesUnsupported:
            log.warning(
                "%s: this S3 server does not support conditional writes; the run lease is "
                "best effort (two runs started at the same moment could both proceed)",
                self.store.uri,
            )
            self.conditional = False
            self.etag = None if self.store.exists(self.key) else self._put()
        if self.etag is not None:
            return
        current = self.store.read_versioned(self.key)
        if current is None:  # released meanwhile
            return self.acquire(same_host_is_dead)
        body, etag, age = current
        if body == self.holder.to_json():  # our own write, sent again after it had landed
            self.etag = etag
            return
        other = Holder.parse(body)
        # On the holder's host we hold the host lock, so its runner and workers are gone.
        dead = (other is not None and other.host == self.holder.host and same_host_is_dead) or age > STALE_AFTER_SECONDS
        if not dead:
            raise lease_held(where, other)
        log.info("taking over the lease of a run that stopped (%s)", other.describe() if other else "unknown")
        self.etag = (
            self.store.replace_if_unchanged(self.key, self.holder.to_json(), etag) if self.conditional else self._put()
        )
        if self.etag is None:
            now = self.store.read_versioned(self.key)
            raise lease_held(where, Holder.parse(now[0]) if now else None)

    def _put(self) -> str:
        self.store.put_bytes(self.key, self.holder.to_json())
        return "*"

    def renew(self) -> None:
        body = self.holder.to_json(renewedAt=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        if not self.conditional:
            self._put()
            return
        assert self.etag is not None  # acquire() set it or raised
        etag = self.store.replace_if_unchanged(self.key, body, self.etag) or self._landed(body)
        if etag is None:
            raise LeaseLost(f"{self.store.key_uri(self.key)}: another run took over this run's lease")
        self.etag = etag

    def _landed(self, body: bytes) -> str | None:
        """The lease's ETag when it holds `body`: a write sent again (S3 did not answer it in
        time) fails its own condition when the first one had landed. No other holder writes
        these bytes: they name this process and the second of the renewal."""
        current = self.store.read_versioned(self.key)
        return current[1] if current is not None and current[0] == body else None

    def release(self) -> None:
        self.store.delete(self.key)


class Lease:
    """Held until release(); an S3 lease is renewed by a thread meanwhile (the combine included)."""

    def __init__(self, lock: LocalLock, remote: S3Lease | None):
        self.lock, self.remote = lock, remote
        self.lost: LeaseLost | None = None
        self._stop = threading.Event()
        if remote:
            threading.Thread(target=self._renew_loop, args=(remote,), name="lease-renewal", daemon=True).start()

    @property
    def inheritable_fd(self) -> int:
        """Pass to every worker (Popen pass_fds): the lease lasts until the last of them exits."""
        assert self.lock.fd is not None  # a Lease is made from a held lock, until release()
        return self.lock.fd

    def _renew_loop(self, remote: S3Lease) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            try:
                remote.renew()
            except LeaseLost as exc:
                self.lost = exc
                return
            except Exception as exc:  # a store hiccup: the next renewal may work, well before staleness
                log.warning("cannot renew the run lease: %s", exc)

    def release(self) -> None:
        self._stop.set()
        try:
            if self.remote and self.lost is None:
                self.remote.release()
        except StorageError as exc:  # S3 did not answer: the lease is left to go stale
            log.warning(
                "cannot release the run lease (%s); the next run takes it over once it is %.0fs old "
                "(on this host at once)",
                exc,
                STALE_AFTER_SECONDS,
            )
        finally:
            self.lock.release()


def _host_lock_path(store: Store, run_id: str, lock_dir: Path) -> Path:
    digest = hashlib.sha256(f"{store.uri}\n{run_id}".encode()).hexdigest()[:24]
    return lock_dir / f"{digest}.lock"


def acquire_lease(store: Store, run_id: str, lock_dir: Path) -> Lease:
    """The lease on runs/<run_id>/ of `store`, or LeaseHeld naming the live holder."""
    key = layout.lease_key(run_id)
    lock = LocalLock(store.path(key) if isinstance(store, FileStore) else _host_lock_path(store, run_id, lock_dir))
    where = store.key_uri(layout.run_prefix(run_id))
    if not lock.try_acquire():
        other = lock.holder()
        if other is None or not other.is_dead_here():
            raise lease_held(where, other)
        log.info("the run holding %s (%s) stopped; waiting for its workers to exit", where, other.describe())
        deadline = time.monotonic() + DEAD_HOLDER_WORKERS_SECONDS
        while not lock.try_acquire():
            if time.monotonic() > deadline:
                raise lease_held(where, other, workers_left=True)
            time.sleep(0.2)
    holder = Holder.this_process()
    try:
        lock.write(holder.to_json())
        remote = None
        if isinstance(store, S3Store):
            remote = S3Lease(store, key, holder)
            remote.acquire(same_host_is_dead=True)
    except BaseException:
        lock.release()
        raise
    return Lease(lock, remote)
