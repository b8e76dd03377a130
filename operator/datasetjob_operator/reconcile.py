"""The reconciler's decisions: observed world in, actions and the new status out. Pure.

Level-based: every call looks at the whole picture (the DatasetJob, its Jobs and pods,
live progress) and says what should exist and what the status is. Nothing here talks to
the API server, so the state machine is tested in milliseconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from datasetjob.errors import SpecError
from datasetjob.spec.item_source import count_items
from datasetjob.spec.model import run_id as compute_run_id

from . import naming, planning
from .cluster_spec import checked_item_total, parsed_spec, with_default_output
from .conditions import conditions_for
from .generation_counts import count_generation
from .job_state import job_condition, job_finished, latest_message, pod_job
from .settings import Settings
from .status import CacheCounts, DatasetJobStatus, ItemCounts, JobNames, Output, Phase, ShardCounts
from .suspension import held_by_someone_else, suspend_patches


@dataclass
class Observed:
    name: str
    namespace: str
    uid: str
    generation: int
    spec: dict[str, Any]
    annotations: dict[str, str]
    status: DatasetJobStatus  # as last written
    jobs: dict[str, dict[str, Any]]  # this DatasetJob's Jobs by name
    pods: list[dict[str, Any]]  # this DatasetJob's pods
    now: str  # RFC 3339
    live_progress: dict[int, dict[str, Any]] | None = None  # per shard, while generating
    config_map_items: str | None = None  # text of spec.items.fromConfigMap, if read
    admission: dict[str, str] | None = None  # Job name -> Kueue's reason it is not admitted yet


class Event(NamedTuple):
    """A core/v1 Event to post on the DatasetJob once its status is written."""

    type: str  # Normal or Warning
    reason: str
    message: str


@dataclass
class Decision:
    status: DatasetJobStatus
    create: list[dict[str, Any]] = field(default_factory=list)
    delete_jobs: list[str] = field(default_factory=list)
    patch_jobs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    run_started: bool = False  # a run, or a retry of its failed shards, starts with this decision

    @property
    def phase(self) -> Phase | None:
        return self.status.phase


def _with_phase(
    obs: Observed,
    status: DatasetJobStatus,
    phase: Phase,
    reason: str,
    message: str,
    events: list[Event],
    event_type: str = "Normal",
) -> DatasetJobStatus:
    if status.phase != phase:
        events.append(Event(event_type, reason, message or phase.value))
    finished_now = phase.finished and not (obs.status.phase and obs.status.phase.finished)
    return replace(
        status,
        phase=phase,
        reason=reason,
        message=message,
        conditions=conditions_for(obs.status.conditions, phase, reason, message, obs.now, obs.generation),
        finished_at=obs.now if finished_now else status.finished_at,
    )


def _failed_decision(obs: Observed, reason: str, message: str) -> Decision:
    events: list[Event] = []
    status = replace(obs.status, observed_generation=obs.generation)
    return Decision(status=_with_phase(obs, status, Phase.FAILED, reason, message, events, "Warning"), events=events)


def decide(obs: Observed, settings: Settings) -> Decision:
    try:
        # Key order kept (not canonical JSON): the order of product keys is the item order.
        spec = parsed_spec(
            obs.name,
            obs.namespace,
            json.dumps(with_default_output(obs.spec, obs.namespace, obs.name, settings), separators=(",", ":")),
        )
        if not spec.output.uri:
            raise SpecError(
                [
                    "spec.output.uri: required in a cluster (s3://bucket/prefix), unless the "
                    "installation sets a default output location"
                ]
            )
    except SpecError as exc:
        return _failed_decision(obs, "InvalidSpec", "; ".join(exc.problems))

    regenerate = obs.annotations.get(naming.ANNOTATION_REGENERATE)
    retry_token = obs.annotations.get(naming.ANNOTATION_RETRY_FAILED)
    run_id = compute_run_id(spec.raw_spec, regenerate)
    same_run = obs.status.run_id == run_id
    attempt = (obs.status.attempt or "0") if same_run else "0"
    finished = bool(obs.status.phase and obs.status.phase.finished)
    retrying = bool(same_run and retry_token and retry_token != obs.status.retry_token and finished)
    if retrying:
        attempt = naming.attempt_of(retry_token)

    run = planning.Run(obs.name, obs.namespace, obs.uid, run_id, attempt, spec, regenerate)
    if not same_run or retrying:
        try:
            total_items = checked_item_total(spec, obs.config_map_items)
        except SpecError as exc:
            return _failed_decision(obs, "InvalidSpec", "; ".join(exc.problems))
        return _start(obs, run, settings, total_items, retry_token, retrying)
    # Every later tick (twice a second while shards run) only counts: O(1) for values,
    # product and range; the ids were checked when the run started.
    return _progress(obs, run, settings, count_items(spec.items, obs.config_map_items))


def _start(
    obs: Observed,
    run: planning.Run,
    settings: Settings,
    total_items: int | None,
    retry_token: str | None,
    retrying: bool,
) -> Decision:
    config_map = planning.config_map(run)
    size = sum(len(v) for v in config_map["data"].values())
    if size > settings.max_config_map_bytes:
        return _failed_decision(
            obs,
            "SpecTooLarge",
            f"the spec is {size} bytes, more than a ConfigMap holds; move inline items to spec.items.fromUri",
        )
    gen_name = naming.generate_job_name(run.name, run.run_id, run.attempt)
    # A new run replaces the old run's unfinished Jobs; finished ones stay until their TTL.
    stale = [name for name, job in obs.jobs.items() if name != gen_name and not job_finished(job)]
    status = replace(
        obs.status,
        run_id=run.run_id,
        attempt=run.attempt,
        observed_generation=obs.generation,
        started_at=obs.now,
        finished_at=None,
        jobs=JobNames(generate=gen_name),
        shards=ShardCounts(total=run.spec.shards, progress=f"0/{run.spec.shards}"),
        items=ItemCounts.of(total_items, 0, 0, 0),
        cache=CacheCounts(),
        output=None,
        failures=None,
        retry_token=retry_token,
        # The spec.suspend the operator last put on its Jobs: it changes a Job's suspension
        # only when spec.suspend changes, never to undo someone else's (e.g. Kueue's).
        applied_suspend=run.spec.suspend,
    )
    if retrying:
        message = f"retrying the failed shards and items of run {run.run_id}"
        reason = "RetryStarted"
    else:
        message = (
            f"run {run.run_id}: {total_items if total_items is not None else 'all'} items in {run.spec.shards} shards"
        )
        reason = "RunStarted"
    phase = Phase.SUSPENDED if run.spec.suspend else Phase.GENERATING
    status = _with_phase(obs, status, phase, reason, message, [])
    return Decision(
        status=status,
        create=_run_objects(run, settings),
        delete_jobs=stale,
        events=[Event("Normal", reason, message)],
        run_started=True,
    )


def _run_objects(run: planning.Run, settings: Settings) -> list[dict[str, Any]]:
    secret = planning.redis_secret(run, settings)
    return ([secret] if secret else []) + [planning.config_map(run), planning.generate_job(run, settings)]


def _progress(obs: Observed, run: planning.Run, settings: Settings, total_items: int | None) -> Decision:
    spec = run.spec
    status = replace(obs.status, observed_generation=obs.generation)
    if status.phase and status.phase.finished:
        return Decision(status=status)
    events: list[Event] = []
    gen_name = naming.generate_job_name(run.name, run.run_id, run.attempt)
    comb_name = naming.combine_job_name(run.name, run.run_id, run.attempt)
    gen = obs.jobs.get(gen_name)
    comb = obs.jobs.get(comb_name)
    if gen is None and comb is None:
        # Lost (deleted by hand, or not yet in our cache): create again; a 409 means it exists.
        return Decision(status=status, create=_run_objects(run, settings))

    decision = Decision(status=status, events=events)
    decision.patch_jobs = suspend_patches(status.applied_suspend, spec.suspend, {gen_name: gen, comb_name: comb})
    status.applied_suspend = spec.suspend
    if gen is not None:
        gen_pods = [p for p in obs.pods if pod_job(p) == gen_name]
        live = obs.live_progress if not job_finished(gen) else None
        counts = count_generation(gen, gen_pods, live, spec.shards)
        known_total = total_items if total_items is not None else (counts.items_seen_total if counts.finished else None)
        status.shards = counts.shard_counts()
        status.items = counts.item_counts(known_total)
        status.cache = counts.cache_counts()
        status.failures = counts.failures or None
        if comb is None:
            generation_over = counts.finished or job_condition(gen, "Failed") is not None
            if not generation_over:
                decision.status = _running_phase(
                    obs, status, spec.suspend, gen_name, gen, Phase.GENERATING, "Generating", "", events
                )
                return decision
            if counts.finished and len(counts.failed) <= spec.max_failed_shards:
                decision.create.append(planning.combine_job(run, settings))
                status.jobs = replace(status.jobs or JobNames(), combine=comb_name)
                gap = f" ({len(counts.failed)} shards failed: {status.shards.failed_indexes})" if counts.failed else ""
                decision.status = _with_phase(
                    obs, status, Phase.COMBINING, "CombineStarted", f"all shards finished{gap}; combining", events
                )
                return decision
            first = counts.failures[0].message if counts.failures else ""
            message = (
                f"{len(counts.failed)} of {spec.shards} shards failed (indexes "
                f"{status.shards.failed_indexes or '?'}), spec.retries.maxFailedShards allows "
                f"{spec.max_failed_shards}"
                + (f"; first error: {first}" if first else "")
                + "; annotate datagen.dev/retry-failed to rerun only those shards"
            )
            decision.status = _with_phase(obs, status, Phase.FAILED, "ShardsFailed", message, events, "Warning")
            return decision

    # The combine Job exists: with the generate Job alone, the branch above returned.
    assert comb is not None
    status.jobs = replace(status.jobs or JobNames(), combine=comb_name)
    comb_pods = [p for p in obs.pods if pod_job(p) == comb_name]
    if job_condition(comb, "Complete"):
        result = latest_message(comb_pods, "Succeeded") or {}
        status.output = Output(
            uri=result.get("uri"),
            manifest_uri=result.get("manifestUri"),
            rows=result.get("rows"),
            bytes=result.get("bytes"),
            sha256=result.get("sha256"),
            missing_shards=result.get("missingShards") or None,
        )
        items = result.get("items") or {}
        if items:
            status.items = ItemCounts.of(
                items.get("total", 0), items.get("done", 0), items.get("failed", 0), items.get("reused", 0)
            )
        cache = result.get("cache")
        if cache:
            status.cache = CacheCounts(hits=int(cache.get("hits", 0)), misses=int(cache.get("misses", 0)))
        decision.status = _with_phase(
            obs,
            status,
            Phase.SUCCEEDED,
            "Published",
            f"{result.get('rows')} rows published to {result.get('uri')}",
            events,
        )
    elif job_condition(comb, "Failed"):
        result = latest_message(comb_pods, "Failed") or {}
        reason = result.get("reason") or "CombineFailed"
        message = result.get("message") or "the combine Job failed; see its pod"
        decision.status = _with_phase(obs, status, Phase.FAILED, reason, message, events, "Warning")
    else:
        message = (status.message or "") if status.phase == Phase.COMBINING else "combining"
        decision.status = _running_phase(
            obs, status, spec.suspend, comb_name, comb, Phase.COMBINING, "CombineStarted", message, events
        )
    return decision


def _running_phase(
    obs: Observed,
    status: DatasetJobStatus,
    suspend: bool,
    job_name: str,
    job: dict[str, Any],
    phase: Phase,
    reason: str,
    message: str,
    events: list[Event],
) -> DatasetJobStatus:
    """An unfinished Job's phase: Queued while someone else (Kueue) holds it, Suspended when the
    spec says so, else `phase`."""
    held = None if suspend else held_by_someone_else(job_name, job, obs.admission)
    if held:
        return _with_phase(obs, status, Phase.QUEUED, held[0], held[1], events)
    if suspend:
        return _with_phase(obs, status, Phase.SUSPENDED, "Suspended", "", events)
    return _with_phase(obs, status, phase, reason, message, events)
