"""Every error the data plane raises on purpose, and the one table of exit codes.

Each error carries the exit code a command ends with when it stops there; `dsj`, the local
runner and the worker all read their codes from `ExitCode`, and the operator reads the worker's
from the same table (a `DO_NOT_RETRY` exit fails the Job index at once).

    DatasetJobError                     exit 1
      SpecError (ValueError)            exit 2   a spec that cannot run; each problem names its field
        OptionError                     exit 2   a command-line option that cannot work
      GeneratorConfigError              exit 78  the generator cannot load or start: no retry helps
      StorageError                      exit 1   the output store failed
        ConditionalWritesUnsupported             the S3 server refuses If-None-Match / If-Match
      RedisUnavailable                  exit 1   the shared Redis, needed now, did not answer in time
      LeaseHeld                         exit 75  another `dsj run` holds the run
      LeaseLost                         exit 1   another run took the lease over
      CombineRefused                    exit 1   the run's data does not meet the spec's bar
      RowValueError (ValueError)                 one value its column cannot hold (fails the item)
      CacheValueError (TypeError)                a value the cache cannot store as JSON (fails the item)
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of `dsj` (run, validate, worker, combine), by meaning."""

    OK = 0  # published; the shard committed
    FAILED = 1  # the run failed (shards over budget, too few items, the store); a worker: retry the shard
    BAD_SPEC = 2  # a bad spec or usage: nothing was written
    BUDGET_EXHAUSTED = 77  # sysexits EX_NOPERM: spec.budget reached: finished items are kept; raise it, then resume
    RUN_BUSY = 75  # sysexits EX_TEMPFAIL: another `dsj run` holds this run's lease; nothing was done
    DO_NOT_RETRY = 78  # sysexits EX_CONFIG: the generator config is broken, a retry cannot help
    RESTART = 79  # a worker left too many stuck items (itemTimeoutSeconds): checkpointed, start a fresh one
    INTERRUPTED = 130  # Ctrl-C: finished items are checkpointed, --resume continues
    TERMINATED = 143  # stopped by SIGTERM after checkpointing


class DatasetJobError(Exception):
    """The root of every error the data plane raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILED


class SpecError(DatasetJobError, ValueError):
    """A spec that cannot run. Each problem names the field path it is about."""

    exit_code = ExitCode.BAD_SPEC

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class OptionError(SpecError):
    """A command-line option that cannot work; reported like a bad spec."""


class GeneratorConfigError(DatasetJobError, RuntimeError):
    """The generator cannot be loaded or started; retrying the shard would not help."""

    exit_code = ExitCode.DO_NOT_RETRY


class StorageError(DatasetJobError, RuntimeError):
    """Reading or writing the output store failed."""


class ConditionalWritesUnsupported(StorageError):
    """The S3 server rejects If-None-Match / If-Match on PUT."""


class RedisUnavailable(DatasetJobError):
    """The shared Redis did not answer within its retry window (or refused the request), where
    going on without it is not safe: the run's spend ledger (spec.budget)."""


class LeaseHeld(DatasetJobError):
    """Another `dsj run` holds this run; `holder` says who, when it is known."""

    exit_code = ExitCode.RUN_BUSY

    def __init__(self, message: str, holder: object | None = None):
        self.holder = holder
        super().__init__(message)


class LeaseLost(DatasetJobError):
    """Another run took the lease over (this run looked dead to it)."""


class CombineRefused(DatasetJobError):
    """The run's data does not meet the spec's bar; `reason` is a CamelCase word for status."""

    def __init__(self, reason: str, message: str):
        self.reason = reason
        super().__init__(message)


class RowValueError(DatasetJobError, ValueError):
    """A value its column or the output format cannot hold; the message names the column."""


class CacheValueError(DatasetJobError, TypeError):
    """A value that cannot be stored as JSON."""
