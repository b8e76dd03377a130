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

from datasetjob.cache.factory import make_cache
from datasetjob.combine.run import combine_run
from datasetjob.contract import IMAGE_DIGEST_ENV, REGENERATE_TOKEN_ENV, WORK_PLAN_ENV
from datasetjob.errors import CombineRefused, ExitCode, GeneratorConfigError, SpecError
from datasetjob.progress import FileProgress, NullProgress, ProgressSink, redis_progress
from datasetjob.ratelimit import TokenBucket, make_limiter
from datasetjob.redaction import CREDENTIALS_ENV, decode_secrets, restore_credentials
from datasetjob.redis_link import effective_redis_url
from datasetjob.spec.item_slice import ItemSlice, PacketItems, Positions
from datasetjob.spec.item_source import item_ids
from datasetjob.spec.model import DatasetJobSpec, spec_from_document
from datasetjob.spec.model import run_id as compute_run_id
from datasetjob.spec.work_packets import WorkPlan, plans_work
from datasetjob.store.backends import Store, open_store
from datasetjob.store.fingerprint import fingerprint_inputs, generator_fingerprint, image_digest
from datasetjob.store.item_store import ItemStore
from datasetjob.store.table_stack import require_table_stack
from datasetjob.store.universe import shard_slice, universe_size
from datasetjob.store.work_plan import load_plan, make_plan, packet_items, save_plan
from datasetjob.worker.assembly import assemble_shards
from datasetjob.worker.item_timeout import RestartWorker
from datasetjob.worker.lifetime import adopt_orphans, exit_now, stop_on_sigterm, stop_with_parent
from datasetjob.worker.logtext import OneLineFormatter
from datasetjob.worker.shard import ShardWorker, WorkerSetup
from datasetjob.worker.shard_summary import ShardSummary, write_termination_message
from datasetjob.worker.spend import make_ledger

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


def item_store(spec: DatasetJobSpec, store: Store) -> ItemStore | None:
    """Where this run takes and records reusable item rows; None when reuse is off. A command
    generator writes one file per shard, so its rows cannot be told apart by item."""
    if not spec.reuse.enabled or spec.generator.command:
        return None
    digest = image_digest(spec.generator.image, os.environ.get(IMAGE_DIGEST_ENV))
    inputs = fingerprint_inputs(spec, digest, os.environ.get(REGENERATE_TOKEN_ENV))
    return ItemStore(store, generator_fingerprint(inputs), inputs)


def open_output(spec: DatasetJobSpec) -> Store:
    if not spec.output.uri:
        raise GeneratorConfigError("spec.output.uri: required to run a worker")
    return open_store(spec.output.uri, spec.output.endpoint_url, spec.output.region)


def _make_limiter(spec: DatasetJobSpec) -> TokenBucket | None:
    if spec.rate_limit is None:
        return None
    return make_limiter(spec)


def worker_main(spec: DatasetJobSpec, index: int | None, run_id: str | None, exit_process: bool = True) -> int:
    """Run one shard. Never raises: every outcome is an exit code plus a termination message.

    With `exit_process` (the `dsj worker` process) it does not return either: the process ends
    with that code through lifetime.exit_now, killing whatever the generator or command left
    running (threads included)."""
    setup_logging()
    stop_with_parent()
    adopt_orphans()
    _extend_sys_path()
    code = _run_shard(spec, index, run_id)
    if exit_process:
        exit_now(code)
    return code


def _run_shard(spec: DatasetJobSpec, index: int | None, run_id: str | None) -> int:
    spec = with_credentials(spec)
    if index is None:
        index = int(os.environ.get("JOB_COMPLETION_INDEX", "-1"))
    run = resolve_run_id(spec, run_id)
    summary = ShardSummary(run, index)
    plan_key = os.environ.get(WORK_PLAN_ENV)
    plan: WorkPlan | None = None
    try:
        store = open_output(spec)
        if spec.output.format == "parquet" and not plan_key:  # a packet writes no table
            require_table_stack("spec.output.format parquet")
        plan = load_plan(store, plan_key) if plan_key else None
    except GeneratorConfigError as exc:
        summary.state, summary.error = "failed", str(exc)
        log.error("%s (not retrying: fix the spec)", exc)
        write_termination_message(summary)
        return ExitCode.DO_NOT_RETRY
    except Exception as exc:  # the store or the plan is not readable now: let the Job retry
        summary.state, summary.error = "failed", f"{type(exc).__name__}: {exc}"
        log.error("cannot read the run's output store or plan: %s", summary.error)
        write_termination_message(summary)
        return ExitCode.FAILED
    units = len(plan.packets) if plan else spec.shards
    if not 0 <= index < units:
        what = "work packet" if plan else "shard"
        summary.state, summary.error = "failed", f"{what} index {index} not in 0..{units - 1}"
        log.error(summary.error)
        write_termination_message(summary)
        return ExitCode.DO_NOT_RETRY

    slot = int(os.environ.get("DSJ_STAGGER_SLOT", index % max(1, spec.parallelism)))
    delay = slot * spec.generator.startup_stagger_seconds
    if delay:
        log.info("startup stagger: waiting %.1fs", delay)
        time.sleep(delay)

    worker = None
    try:
        items, ids = _work_items(spec, index, plan)
        progress_dir = os.environ.get("DSJ_PROGRESS_DIR")
        progress: ProgressSink = FileProgress(progress_dir, index) if progress_dir else NullProgress()
        cache = make_cache(spec, run)
        redis_url = effective_redis_url(spec.cache.redis_url)
        if redis_url:  # the cache is Redis: live progress goes to the run's hash beside it
            progress = redis_progress(
                redis_url, spec.cache.namespace, run, index, fallback=progress, on_publish=cache.flush_stats
            )
        setup = WorkerSetup(
            spec=spec,
            run_id=run,
            index=index,
            store=store,
            items=items,
            ids=ids,
            cache=cache,
            progress=progress,
            limiter=_make_limiter(spec),
            item_store=item_store(spec, store),
            plan_id=plan.plan_id if plan else None,
            spend=make_ledger(spec.budget, redis_url, spec.cache.namespace, run),
        )
        worker = ShardWorker(setup)
        stop_on_sigterm(worker.stopping)
        try:
            code = worker.run()
        finally:
            setup.cache.close()  # releases single-flight locks still held (e.g. when stopping)
        summary = worker.summary
        if code == ExitCode.BUDGET_EXHAUSTED:
            log.warning("%s stopped at the run's budget: %s", worker.name, summary.error)
        elif code == ExitCode.OK:
            log.info(
                "%s committed: %d items done, %d failed, %d rows",
                worker.name,
                summary.items_done,
                summary.items_failed,
                summary.rows,
            )
        elif summary.state != "failed":  # stopped by SIGTERM; a failed worker has said why
            summary.state = "stopped"
        write_termination_message(summary)
        return code
    except RestartWorker as exc:  # its checkpoint is saved: a fresh process continues the shard
        summary = worker.summary if worker else summary
        summary.state, summary.error = "restarting", str(exc)
        log.warning("%s", exc)
        write_termination_message(summary)
        return ExitCode.RESTART
    except (GeneratorConfigError, SpecError) as exc:
        summary = worker.summary if worker else summary
        summary.state, summary.error = "failed", str(exc)
        log.error("%s (not retrying: fix the spec or the generator image)", exc)
        write_termination_message(summary)
        return ExitCode.DO_NOT_RETRY
    except Exception as exc:  # anything else may be transient: let the Job retry the shard
        summary = worker.summary if worker else summary
        summary.state, summary.error = "failed", f"{type(exc).__name__}: {exc}"
        log.exception("shard %d failed", index)
        write_termination_message(summary)
        return ExitCode.FAILED


def _work_items(spec: DatasetJobSpec, index: int, plan: WorkPlan | None) -> tuple[PacketItems | ItemSlice, list[str]]:
    """A shard's items, or with a plan, its work packet's."""
    if plan is None:
        return shard_slice(spec, index)
    positions = plan.packets[index]
    items = packet_items(spec, positions)
    return PacketItems(Positions(positions), items), item_ids(items, spec.items.id_template) if items else []


def plan_main(spec: DatasetJobSpec, run_id: str | None, retry_failed: bool = False) -> int:
    """`dsj plan`: the run's plan made and stored; its summary printed and left as the
    termination message (the operator sizes the generate Job by it)."""
    setup_logging("plan ")
    spec = with_credentials(spec)
    run = resolve_run_id(spec, run_id)
    try:
        store = open_output(spec)
        items = item_store(spec, store)
        if items is None or not plans_work(spec):
            raise GeneratorConfigError("this spec plans no work: reuse is off, or its items are streamed")
        plan = make_plan(spec, run, store, items, retry_failed)
        key = save_plan(store, run, plan)
    except (GeneratorConfigError, SpecError) as exc:
        log.error("%s", exc)
        write_termination_message({"state": "failed", "runId": run, "reason": "PlanFailed", "message": str(exc)[:2000]})
        return ExitCode.DO_NOT_RETRY
    except Exception as exc:
        log.exception("planning failed")
        text = f"{type(exc).__name__}: {exc}"[:2000]
        write_termination_message({"state": "failed", "runId": run, "reason": "PlanFailed", "message": text})
        return ExitCode.FAILED
    planned = dict(plan.summary(), state="planned", runId=run, planKey=key)
    log.info("planned: %s", json.dumps(planned))
    write_termination_message(planned)
    print(json.dumps(planned))
    return ExitCode.OK


def combine_main(spec: DatasetJobSpec, run_id: str | None) -> int:
    setup_logging("combine ")
    spec = with_credentials(spec)
    run = resolve_run_id(spec, run_id)
    try:
        store = open_output(spec)
        plan_key = os.environ.get(WORK_PLAN_ENV)
        if plan_key:  # the packets are done: the shards come from the item store the plan read
            plan = load_plan(store, plan_key)
            assemble_shards(spec, run, store, ItemStore(store, plan.fingerprint, {}), plan)
        result = combine_run(spec, run, store, universe_size(spec))
    except GeneratorConfigError as exc:  # e.g. no table stack in this image: no retry installs one
        log.error("not published: %s", exc)
        write_termination_message(
            {"state": "failed", "runId": run, "reason": "CombineError", "message": str(exc)[:2000]}
        )
        return ExitCode.DO_NOT_RETRY
    except CombineRefused as exc:
        log.error("not published: %s", exc)
        write_termination_message({"state": "refused", "runId": run, "reason": exc.reason, "message": str(exc)[:2000]})
        return ExitCode.DO_NOT_RETRY
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
        return ExitCode.FAILED
    log.info("published %s: %d rows, sha256 %s", result.uri, result.rows, result.sha256)
    write_termination_message(result.to_message())
    print(json.dumps(result.to_message()))
    return ExitCode.OK
