"""Process entry points for `dsj worker` and `dsj combine`: environment in, exit code out.

These run in pods and in the local runner's child processes; both read the same inputs:
the DatasetJob document (a file), the run id, and the shard index.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time

from .cache.factory import make_cache
from .cache.redis_backend import RedisCache
from .combine import CombineRefused, combine_run
from .contract import EXIT_DO_NOT_RETRY, EXIT_OK, EXIT_RETRY, IMAGE_DIGEST_ENV, REGENERATE_TOKEN_ENV
from .errors import GeneratorConfigError, SpecError
from .fingerprint import fingerprint_inputs, generator_fingerprint, image_digest
from .item_store import ItemStore
from .lifetime import stop_on_sigterm, stop_with_parent
from .logtext import OneLineFormatter
from .progress import FileProgress, NullProgress, redis_progress
from .ratelimit import make_limiter
from .redaction import CREDENTIALS_ENV, decode_secrets, restore_credentials
from .shard_summary import ShardSummary, write_termination_message
from .spec import DatasetJobSpec, spec_from_document
from .spec import run_id as compute_run_id
from .storage import open_store
from .universe import resolve_items
from .worker import ShardWorker, WorkerSetup

log = logging.getLogger("datasetjob.worker")


def setup_logging(prefix: str = "") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter(f"%(asctime)s %(levelname)s {prefix}%(name)s: %(message)s"))
    logging.basicConfig(level=os.environ.get("DSJ_LOG_LEVEL", "INFO"), handlers=[handler])


def _extend_sys_path() -> None:
    for entry in filter(None, os.environ.get("DSJ_GENERATOR_PATH", "").split(os.pathsep)):
        if entry not in sys.path:
            sys.path.insert(0, entry)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())


def with_credentials(spec: DatasetJobSpec) -> DatasetJobSpec:
    """The spec with the credentials `dsj run` kept out of the written document put back."""
    secrets = decode_secrets(os.environ.get(CREDENTIALS_ENV))
    if not secrets:
        return spec
    doc = json.loads(json.dumps(spec.to_document()))  # a copy: restoring writes into it
    return spec_from_document(restore_credentials(doc, secrets), rules=False)


def resolve_run_id(spec: DatasetJobSpec, given: str | None) -> str:
    return given or os.environ.get("DSJ_RUN_ID") or compute_run_id(spec.raw_spec, os.environ.get(REGENERATE_TOKEN_ENV))


def item_store(spec: DatasetJobSpec, store) -> ItemStore | None:
    """Where this run takes and records reusable item rows; None when reuse is off. A command
    generator writes one file per shard, so its rows cannot be told apart by item."""
    if not spec.reuse.enabled or spec.generator.command:
        return None
    digest = image_digest(spec.generator.image, os.environ.get(IMAGE_DIGEST_ENV))
    inputs = fingerprint_inputs(spec, digest, os.environ.get(REGENERATE_TOKEN_ENV))
    return ItemStore(store, generator_fingerprint(inputs), inputs)


def open_output(spec: DatasetJobSpec):
    if not spec.output.uri:
        raise GeneratorConfigError("spec.output.uri: required to run a worker")
    return open_store(spec.output.uri, spec.output.endpoint_url, spec.output.region)


def _make_limiter(spec: DatasetJobSpec):
    if spec.rate_limit is None:
        return None
    return make_limiter(spec)


def worker_main(spec: DatasetJobSpec, index: int | None, run_id: str | None) -> int:
    """Run one shard. Never raises: every outcome is an exit code plus a termination message."""
    setup_logging()
    stop_with_parent()
    _extend_sys_path()
    spec = with_credentials(spec)
    if index is None:
        index = int(os.environ.get("JOB_COMPLETION_INDEX", "-1"))
    run = resolve_run_id(spec, run_id)
    summary = ShardSummary(run, index)
    if not 0 <= index < spec.shards:
        summary.state, summary.error = "failed", f"shard index {index} not in 0..{spec.shards - 1}"
        log.error(summary.error)
        write_termination_message(summary)
        return EXIT_DO_NOT_RETRY

    slot = int(os.environ.get("DSJ_STAGGER_SLOT", index % max(1, spec.parallelism)))
    delay = slot * spec.generator.startup_stagger_seconds
    if delay:
        log.info("startup stagger: waiting %.1fs", delay)
        time.sleep(delay)

    worker = None
    try:
        store = open_output(spec)
        items, ids = resolve_items(spec)
        progress_dir = os.environ.get("DSJ_PROGRESS_DIR")
        progress = FileProgress(progress_dir, index) if progress_dir else NullProgress()
        setup = WorkerSetup(
            spec=spec,
            run_id=run,
            index=index,
            store=store,
            items=items,
            ids=ids,
            cache=make_cache(spec, run),
            progress=progress,
            limiter=_make_limiter(spec),
            item_store=item_store(spec, store),
        )
        if isinstance(setup.cache, RedisCache):
            setup.progress = redis_progress(setup.cache, run, index, fallback=progress)
        worker = ShardWorker(setup)
        stop_on_sigterm(worker.stopping)
        try:
            code = worker.run()
        finally:
            setup.cache.close()  # releases single-flight locks still held (e.g. when stopping)
        summary = worker.summary
        if code == EXIT_OK:
            log.info(
                "shard %d committed: %d items done, %d failed, %d rows",
                index,
                summary.items_done,
                summary.items_failed,
                summary.rows,
            )
        else:
            summary.state = "stopped"
        write_termination_message(summary)
        return code
    except (GeneratorConfigError, SpecError) as exc:
        summary = worker.summary if worker else summary
        summary.state, summary.error = "failed", str(exc)
        log.error("%s (not retrying: fix the spec or the generator image)", exc)
        write_termination_message(summary)
        return EXIT_DO_NOT_RETRY
    except Exception as exc:  # anything else may be transient: let the Job retry the shard
        summary = worker.summary if worker else summary
        summary.state, summary.error = "failed", f"{type(exc).__name__}: {exc}"
        log.exception("shard %d failed", index)
        write_termination_message(summary)
        return EXIT_RETRY


def combine_main(spec: DatasetJobSpec, run_id: str | None) -> int:
    setup_logging("combine ")
    spec = with_credentials(spec)
    run = resolve_run_id(spec, run_id)
    try:
        store = open_output(spec)
        items, _ = resolve_items(spec)
        result = combine_run(spec, run, store, len(items))
    except CombineRefused as exc:
        log.error("not published: %s", exc)
        write_termination_message({"state": "refused", "runId": run, "reason": exc.reason, "message": str(exc)[:2000]})
        return EXIT_DO_NOT_RETRY
    except Exception as exc:
        log.exception("combine failed")
        write_termination_message(
            {
                "state": "failed",
                "runId": run,
                "reason": "CombineError",
                "message": f"{type(exc).__name__}: {exc}"[:2000],
            }
        )
        return EXIT_RETRY
    log.info("published %s: %d rows, sha256 %s", result.uri, result.rows, result.sha256)
    write_termination_message(result.to_message())
    print(json.dumps(result.to_message()))
    return EXIT_OK
