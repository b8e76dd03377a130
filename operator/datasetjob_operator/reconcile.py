"""The reconciler's decisions: observed world in, actions and the new status out. Pure.

Level-based: every call looks at the whole picture (the DatasetJob, its Jobs and pods,
live progress) and says what should exist and what the status is. Nothing here talks to
the API server, so the state machine is tested in milliseconds.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

from datasetjob.errors import SpecError
from datasetjob.spec.apitypes import to_api
from datasetjob.spec.budget import over_budget
from datasetjob.spec.item_source import count_items
from datasetjob.spec.model import DatasetJobSpec
from datasetjob.spec.model import run_id as compute_run_id
from datasetjob.spec.work_packets import plans_work

from . import naming, planning
from .cluster_spec import checked_item_total, cluster_spec
from .conditions import Stall, conditions_for, stalled_reason
from .generation_counts import count_generation
from .job_state import (
    job_condition,
    job_finished,
    latest_message,
    pod_job,
    seconds_between,
    start_problem,
    unconfirmed_node,
)
from .settings import Settings
from .status import (
    CacheCounts,
    DatasetJobStatus,
    ItemCounts,
    JobNames,
    Output,
    Phase,
    PlanCounts,
    RateLimitState,
    ShardCounts,
    Usage,
)
from .suspension import held_by_someone_else, suspend_patches

# A pod that cannot start (see job_state.start_problem) counts only after this many seconds:
# an image pull that fails once, or a Secret created a moment after the DatasetJob, pass.
POD_START_GRACE_SECONDS = 30.0
# Stalled reasons: the run's credentials Secret is missing (checked before the Job is
# created), and pods that cannot start.
CREDENTIALS_SECRET_NOT_FOUND = "CredentialsSecretNotFound"
PODS_CANNOT_START = "PodsCannotStart"
PODS_ON_LOST_NODE = "PodsOnLostNode"
BUDGET_EXHAUSTED = "BudgetExhausted"
POD_STALLS = (PODS_CANNOT_START, PODS_ON_LOST_NODE)
# How long past its deletion deadline (the end of its grace period) a pod may stay before its
# node counts as lost: a kubelet that answers confirms within seconds of killing the container.
LOST_POD_GRACE_SECONDS = 15.0


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
    # Does the Secret of spec.output.credentialsSecret exist? Read only before a run starts;
    # None when not read or not readable (the pods then say it, see POD_START_GRACE_SECONDS).
    credentials_secret_found: bool | None = None


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
    phase: Phase | None,
    reason: str,
    message: str,
    events: list[Event],
    event_type: str = "Normal",
    stall: Stall | None = None,
) -> DatasetJobStatus:
    """The status in `phase`; with a `stall`, Stalled is True and the stall is the status's
    reason and message. Events: a phase change, a stall that starts (or changes its reason),
    and pods that start after a stall."""
    if status.phase != phase and phase is not None:
        events.append(Event(event_type, reason, message or phase.value))
    was_stalled = stalled_reason(obs.status.conditions)
    if stall is not None and was_stalled != stall.reason:
        events.append(Event("Warning", stall.reason, stall.message))
    elif stall is None and was_stalled in POD_STALLS and status.phase == phase and phase is not None:
        events.append(Event("Normal", "PodsStarted", f"the pods that could not start have started ({phase.value})"))
    finished_now = bool(phase and phase.finished) and not (obs.status.phase and obs.status.phase.finished)
    conditions = conditions_for(obs.status.conditions, phase, reason, message, obs.now, obs.generation, stall)
    return replace(
        status,
        phase=phase,
        reason=stall.reason if stall else reason,
        message=stall.message if stall else message,
        conditions=conditions,
        finished_at=obs.now if finished_now else status.finished_at,
    )


def _failed_decision(obs: Observed, reason: str, message: str) -> Decision:
    events: list[Event] = []
    status = replace(obs.status, observed_generation=obs.generation)
    return Decision(status=_with_phase(obs, status, Phase.FAILED, reason, message, events, "Warning"), events=events)


def _cluster_spec(obs: Observed, settings: Settings) -> DatasetJobSpec:
    """The spec as the run would use it; SpecError names every problem."""
    spec = cluster_spec(obs.name, obs.namespace, obs.spec, settings)
    if not spec.output.uri:
        raise SpecError(
            [
                "spec.output.uri: required in a cluster (s3://bucket/prefix), unless the "
                "installation sets a default output location"
            ]
        )
    return spec


class _Plan(NamedTuple):
    run: planning.Run
    starting: bool  # a new run, or a retry of the current one's failed shards, starts now
    retrying: bool
    retry_token: str | None


def _plan(obs: Observed, spec: DatasetJobSpec) -> _Plan:
    regenerate = obs.annotations.get(naming.ANNOTATION_REGENERATE)
    retry_token = obs.annotations.get(naming.ANNOTATION_RETRY_FAILED)
    run_id = compute_run_id(spec.raw_spec, regenerate)
    same_run = obs.status.run_id == run_id
    attempt = (obs.status.attempt or "0") if same_run else "0"
    finished = bool(obs.status.phase and obs.status.phase.finished)
    retrying = bool(same_run and retry_token and retry_token != obs.status.retry_token and finished)
    if retrying:
        attempt = naming.attempt_of(retry_token)
    elif same_run and finished and _budget_raised(obs, spec):
        # The same run goes on where its budget stopped it: a new attempt, from its checkpoints.
        retrying, retry_token = True, obs.status.retry_token
        attempt = naming.attempt_of(f"budget:{json.dumps(to_api(spec.budget), sort_keys=True)}:{attempt}")
    run = planning.Run(obs.name, obs.namespace, obs.uid, run_id, attempt, spec, regenerate)
    return _Plan(run, not same_run or retrying, retrying, retry_token)


def _budget_raised(obs: Observed, spec: DatasetJobSpec) -> bool:
    """A run stopped at its budget whose spec.budget now allows more than it spent."""
    if obs.status.phase != Phase.FAILED or obs.status.reason != BUDGET_EXHAUSTED:
        return False
    spent = to_api(obs.status.usage) if obs.status.usage else {}
    return over_budget({k: float(v) for k, v in spent.items()}, spec.budget) is None


def credentials_secret_to_check(obs: Observed, settings: Settings) -> str | None:
    """The Secret (spec.output.credentialsSecret, or the installation's default) whose
    existence `decide` needs: only when a run is about to start."""
    try:
        spec = _cluster_spec(obs, settings)
    except SpecError:
        return None
    return spec.output.credentials_secret if _plan(obs, spec).starting else None


def decide(obs: Observed, settings: Settings) -> Decision:
    try:
        spec = _cluster_spec(obs, settings)
    except SpecError as exc:
        return _failed_decision(obs, "InvalidSpec", "; ".join(exc.problems))

    plan = _plan(obs, spec)
    if plan.starting:
        try:
            total_items = checked_item_total(spec, obs.config_map_items)
        except SpecError as exc:
            return _failed_decision(obs, "InvalidSpec", "; ".join(exc.problems))
        if obs.credentials_secret_found is False and spec.output.credentials_secret:
            return _waiting_for_secret(obs, plan.run, spec.output.credentials_secret)
        return _start(obs, plan.run, settings, total_items, plan.retry_token, plan.retrying, _plans(obs, spec))
    # Every later tick (twice a second while shards run) only counts: O(1) for values,
    # product and range; the ids were checked when the run started.
    return _progress(obs, plan.run, settings, count_items(spec.items, obs.config_map_items))


def _plans(obs: Observed, spec: DatasetJobSpec) -> bool:
    """Whether the run starts with a plan Job (store.work_plan): it reuses items, and an earlier
    run of this DatasetJob may have stored some. A first run has nothing to reuse: its shards
    start at once, without a plan pod before them."""
    return plans_work(spec) and obs.status.run_id is not None


def _waiting_for_secret(obs: Observed, run: planning.Run, secret: str) -> Decision:
    """The run's pods would wait for a Secret that is not there: the Job is not created until
    it exists (every reconcile looks again). A previous run's unfinished Jobs go, as when the
    run starts: the spec that made them is gone."""
    message = (
        f'spec.output.credentialsSecret: Secret "{secret}" not found in namespace {obs.namespace}; '
        "the run starts once it exists"
    )
    events: list[Event] = []
    status = replace(obs.status, observed_generation=obs.generation)
    stall = Stall(CREDENTIALS_SECRET_NOT_FOUND, message)
    gen_name = naming.generate_job_name(run.name, run.run_id, run.attempt)
    stale = [name for name, job in obs.jobs.items() if name != gen_name and not job_finished(job)]
    return Decision(
        status=_with_phase(obs, status, None, "", "", events, stall=stall), delete_jobs=stale, events=events
    )


def _start(
    obs: Observed,
    run: planning.Run,
    settings: Settings,
    total_items: int | None,
    retry_token: str | None,
    retrying: bool,
    planned: bool = False,
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
    first_job = naming.plan_job_name(run.name, run.run_id, run.attempt) if planned else gen_name
    # A new run replaces the old run's unfinished Jobs; finished ones stay until their TTL.
    stale = [name for name, job in obs.jobs.items() if name != first_job and not job_finished(job)]
    status = replace(
        obs.status,
        run_id=run.run_id,
        attempt=run.attempt,
        observed_generation=obs.generation,
        started_at=obs.now,
        finished_at=None,
        jobs=JobNames(plan=first_job) if planned else JobNames(generate=gen_name),
        plan=None,
        shards=ShardCounts(total=run.spec.shards, progress="planning" if planned else f"0/{run.spec.shards}"),
        items=ItemCounts.of(total_items, 0, 0, 0),
        cache=CacheCounts(),
        usage=obs.status.usage if retrying else None,  # a run's spend counts across its attempts
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
        create=_run_objects(run, settings, planned),
        delete_jobs=stale,
        events=[Event("Normal", reason, message)],
        run_started=True,
    )


def _run_objects(run: planning.Run, settings: Settings, planned: bool = False) -> list[dict[str, Any]]:
    secret = planning.redis_secret(run, settings)
    first = planning.plan_job(run, settings) if planned else planning.generate_job(run, settings)
    return ([secret] if secret else []) + [planning.config_map(run), first]


def _rate_limit_state(scope: dict[str, Any], throttles: int) -> RateLimitState:
    """The scope as a worker's summary says it (sdk Counters.rate_limit), with this run's throttles."""
    return RateLimitState(
        effective={k: float(v) for k, v in (scope.get("effective") or {}).items()},
        factor=float(scope.get("factor", 1.0)),
        throttles=throttles,
        scope_throttles=int(scope.get("scopeThrottles", 0)),
    )


def _plan_key(status: DatasetJobStatus) -> str | None:
    """The run's plan, when its packets (not its shards) are the generate Job's indexes."""
    return status.plan.key or None if status.plan else None


def _after_plan(run: planning.Run, settings: Settings, status: DatasetJobStatus) -> dict[str, Any]:
    """The Job that follows a read plan: the generate Job over its work packets (or over the
    shards, when nothing was stored to reuse), or the combine Job when nothing needs generating."""
    plan = status.plan
    assert plan is not None  # read from the plan pod before
    if plan.key and plan.packets == 0:
        return planning.combine_job(run, settings, plan.key)
    return planning.generate_job(run, settings, plan.packets if plan.key else None, plan.key or None)


def _planning(
    obs: Observed, run: planning.Run, settings: Settings, status: DatasetJobStatus, job: dict[str, Any]
) -> Decision:
    """The plan Job's turn: wait for it, then read its plan into the status and create what follows."""
    events: list[Event] = []
    name = naming.plan_job_name(run.name, run.run_id, run.attempt)
    pods = [p for p in obs.pods if pod_job(p) == name]
    if job_condition(job, "Failed"):
        failed = latest_message(pods, "Failed") or {}
        message = "planning failed: " + (failed.get("message") or "see the plan pod's log")
        return Decision(
            status=_with_phase(obs, status, Phase.FAILED, "PlanFailed", message, events, "Warning"), events=events
        )
    result = latest_message(pods, "Succeeded") if job_condition(job, "Complete") else None
    if result is None:
        status = _running_phase(
            obs, status, run.spec.suspend, name, job, pods, Phase.GENERATING, "Planning", "", events
        )
        return Decision(status=status, events=events)
    packets, reused = int(result.get("packets", 0)), int(result.get("reused", 0))
    status.plan = PlanCounts(
        packets=packets,
        shards_with_work=int(result.get("shardsWithWork", 0)),
        shards_reused=int(result.get("shardsReused", 0)),
        to_generate=int(result.get("toGenerate", 0)),
        reused=reused,
        # Nothing stored to reuse: the shards generate their own items, as without a plan.
        key=str(result.get("planKey", "")) if reused else "",
    )
    follow = _after_plan(run, settings, status)
    decision = Decision(status=status, create=[follow], events=events)
    if follow["metadata"]["name"] == naming.combine_job_name(run.name, run.run_id, run.attempt):
        status.jobs = replace(status.jobs or JobNames(), combine=follow["metadata"]["name"])
        status.shards = _planned_shards(status, 0, 0)
        message = f"every item reused ({reused}): no generate Job; combining"
        decision.status = _with_phase(obs, status, Phase.COMBINING, "CombineStarted", message, events)
    else:
        status.jobs = replace(status.jobs or JobNames(), generate=follow["metadata"]["name"])
        message = (
            f"planned: {status.plan.to_generate} items to generate in {packets} work packets, {reused} reused"
            if status.plan.key
            else "planned: nothing stored to reuse; every shard generates"
        )
        decision.status = _with_phase(obs, status, Phase.GENERATING, "Planned", message, events)
    return decision


def _planned_shards(status: DatasetJobStatus, succeeded: int, active: int) -> ShardCounts:
    plan = status.plan
    assert plan is not None and status.shards is not None
    return replace(
        status.shards,
        active=active,
        progress=f"{succeeded}/{plan.packets} packets; {plan.shards_with_work} of {status.shards.total} "
        f"shards with work, {plan.shards_reused} reused",
    )


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
    planned = bool(status.jobs and status.jobs.plan)
    if gen is None and comb is None:
        if planned and status.plan is None:
            plan_job = obs.jobs.get(naming.plan_job_name(run.name, run.run_id, run.attempt))
            if plan_job is not None:
                return _planning(obs, run, settings, status, plan_job)
        # Lost (deleted by hand, or not yet in our cache): create again; a 409 means it exists.
        if planned and status.plan is not None:
            return Decision(status=status, create=[_after_plan(run, settings, status)])
        return Decision(status=status, create=_run_objects(run, settings, planned))
    plan_key = _plan_key(status)

    decision = Decision(status=status, events=events)
    decision.patch_jobs = suspend_patches(status.applied_suspend, spec.suspend, {gen_name: gen, comb_name: comb})
    status.applied_suspend = spec.suspend
    if gen is not None:
        gen_pods = [p for p in obs.pods if pod_job(p) == gen_name]
        live = obs.live_progress if not job_finished(gen) else None
        completions = status.plan.packets if plan_key and status.plan else spec.shards
        counts = count_generation(gen, gen_pods, live, completions)
        known_total = total_items if total_items is not None else (counts.items_seen_total if counts.finished else None)
        status.shards = replace(counts.shard_counts(), total=spec.shards)
        status.items = counts.item_counts(known_total)
        status.throughput, status.eta = pace(status.items, status.started_at, obs.now)
        if counts.rate_limit is not None:
            status.rate_limit = _rate_limit_state(counts.rate_limit, counts.throttles)
        if counts.spent:
            status.usage = Usage(**{k: v for k, v in counts.spent.items() if k in ("requests", "tokens", "cost")})
        if plan_key and status.plan:  # the stored items count as done (and reused) from the start
            status.shards = _planned_shards(status, len(counts.succeeded), counts.active)
            stored = status.plan.reused
            status.items = ItemCounts.of(
                known_total, counts.items_done + stored, counts.items_failed, counts.items_reused + stored
            )
        status.cache = counts.cache_counts()
        status.failures = counts.failures or None
        if comb is None:
            generation_over = counts.finished or job_condition(gen, "Failed") is not None
            if not generation_over:
                decision.status = _running_phase(
                    obs, status, spec.suspend, gen_name, gen, gen_pods, Phase.GENERATING, "Generating", "", events
                )
                return decision
            if counts.budget_stop:
                left = (status.items.total - status.items.done - status.items.failed) if status.items else 0
                message = (
                    f"{counts.budget_stop}; {max(0, left)} items left; finished items are kept: raise "
                    "spec.budget to continue this run"
                )
                decision.status = _with_phase(obs, status, Phase.FAILED, BUDGET_EXHAUSTED, message, events, "Warning")
                return decision
            if counts.finished and len(counts.failed) <= spec.max_failed_shards:
                decision.create.append(planning.combine_job(run, settings, plan_key))
                status.jobs = replace(status.jobs or JobNames(), combine=comb_name)
                gap = f" ({len(counts.failed)} shards failed: {status.shards.failed_indexes})" if counts.failed else ""
                decision.status = _with_phase(
                    obs, status, Phase.COMBINING, "CombineStarted", f"all shards finished{gap}; combining", events
                )
                return decision
            first = counts.failures[0].message if counts.failures else ""
            unit = "work packets" if plan_key else "shards"
            message = (
                f"{len(counts.failed)} of {completions} {unit} failed (indexes "
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
    # SuccessCriteriaMet comes a moment before Complete (the Job controller's pod cleanup between);
    # taken once the pod's result is seen too.
    succeeded = latest_message(comb_pods, "Succeeded")
    if job_condition(comb, "Complete") or (succeeded and job_condition(comb, "SuccessCriteriaMet")):
        result = succeeded or {}
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
        scope = result.get("rateLimit")
        if isinstance(scope, dict):
            status.rate_limit = _rate_limit_state(scope, int(scope.get("throttles", 0)))
        usage = result.get("usage")
        if isinstance(usage, dict):  # the published run's spend, over all its attempts
            status.usage = Usage(**{k: float(v) for k, v in usage.items() if k in ("requests", "tokens", "cost")})
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
        # The message the combine started with, unless a stall has replaced it since.
        kept = status.phase == Phase.COMBINING and status.reason == "CombineStarted"
        message = (status.message or "") if kept else "combining"
        decision.status = _running_phase(
            obs, status, spec.suspend, comb_name, comb, comb_pods, Phase.COMBINING, "CombineStarted", message, events
        )
    return decision


def _running_phase(
    obs: Observed,
    status: DatasetJobStatus,
    suspend: bool,
    job_name: str,
    job: dict[str, Any],
    pods: list[dict[str, Any]],
    phase: Phase,
    reason: str,
    message: str,
    events: list[Event],
) -> DatasetJobStatus:
    """An unfinished Job's phase: Queued while someone else (Kueue) holds it, Suspended when the
    spec says so, else `phase`, Stalled while its pods cannot start."""
    held = None if suspend else held_by_someone_else(job_name, job, obs.admission)
    if held:
        return _with_phase(obs, status, Phase.QUEUED, held[0], held[1], events)
    if suspend:
        return _with_phase(obs, status, Phase.SUSPENDED, "Suspended", "", events)
    stall = pods_cannot_start(pods, obs.now) or pods_on_lost_nodes(pods, obs.now)
    return _with_phase(obs, status, phase, reason, message, events, stall=stall)


def pods_on_lost_nodes(pods: list[dict[str, Any]], now: str) -> Stall | None:
    """A stall while pods wait for a lost node to confirm them gone (job_state.unconfirmed_node):
    how many, on which nodes, and what brings the run back."""
    nodes = Counter(node for node in (unconfirmed_node(p, now, LOST_POD_GRACE_SECONDS) for p in pods) if node)
    if not nodes:
        return None
    where = ", ".join(f"{count} on {node}" for node, count in sorted(nodes.items()))
    return Stall(
        PODS_ON_LOST_NODE,
        f"{sum(nodes.values())} pods ({where}) wait for their node to confirm them stopped: it does not "
        "answer. Kubernetes replaces them once the node is back, its Node object deleted, or it is tainted "
        "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute",
    )


def pods_cannot_start(pods: list[dict[str, Any]], now: str) -> Stall | None:
    """A stall when some of a Job's pods have been unable to start for POD_START_GRACE_SECONDS:
    how many of its unfinished pods, and the most frequent reason with the kubelet's or the
    scheduler's message, e.g. '3 of 10 pods cannot start: CreateContainerConfigError:
    secret "s3-credentials" not found'."""
    live = [
        p
        for p in pods
        if (p.get("status") or {}).get("phase") in (None, "Pending", "Running")
        and not (p.get("metadata") or {}).get("deletionTimestamp")
    ]
    problems = [problem for problem in map(start_problem, live) if problem is not None]
    stuck = [(p.reason, p.message) for p in problems if seconds_between(p.since, now) >= POD_START_GRACE_SECONDS]
    if not stuck:
        return None
    (reason, detail), _ = Counter(stuck).most_common(1)[0]
    return Stall(
        PODS_CANNOT_START,
        f"{len(stuck)} of {len(live)} pods cannot start: {reason}" + (f": {detail}" if detail else ""),
    )


def pace(items: ItemCounts | None, started_at: str | None, now: str) -> tuple[str | None, str | None]:
    """(items generated or failed per second since the run started, the time left at that pace)
    for kubectl get -o wide; reused items come at once and are left out of the pace."""
    elapsed = seconds_between(started_at or "", now)
    if items is None or elapsed <= 0:
        return None, None
    made = items.generated + items.failed
    if not made:
        return "0/s", None
    rate = made / elapsed
    left = max(0, items.total - items.done - items.failed) if items.total else None
    return f"{rate:.3g}/s", _duration(left / rate) if left else None


def _duration(seconds: float) -> str:
    whole = int(round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
