"""What a Job and its pods say: finished or not, conditions, the workers' termination messages. Pure."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any, NamedTuple

INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def termination(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The terminated state of the pod's first container, if it has ended."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    if not statuses:
        return None
    return ((statuses[0].get("state") or {}).get("terminated")) or None


def termination_message(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The one-line JSON summary a worker or combine pod leaves (None if absent or not JSON)."""
    term = termination(pod)
    if not term or not term.get("message"):
        return None
    for line in reversed(term["message"].strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def pod_index(pod: dict[str, Any]) -> int | None:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(INDEX_ANNOTATION)
    return int(value) if value is not None and str(value).isdigit() else None


def job_condition(job: dict[str, Any], type_: str) -> dict[str, Any] | None:
    conditions: list[dict[str, Any]] = (job.get("status") or {}).get("conditions") or []
    for cond in conditions:
        if cond.get("type") == type_ and cond.get("status") == "True":
            return cond
    return None


def job_finished(job: dict[str, Any]) -> bool:
    return bool(job_condition(job, "Complete") or job_condition(job, "Failed"))


def pod_job(pod: dict[str, Any]) -> str | None:
    labels = (pod.get("metadata") or {}).get("labels") or {}
    return labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")


def latest_message(pods: list[dict[str, Any]], phase: str) -> dict[str, Any] | None:
    ended = [p for p in pods if (p.get("status") or {}).get("phase") == phase]
    ended.sort(key=lambda p: (p.get("metadata") or {}).get("creationTimestamp") or "")
    for pod in reversed(ended):
        message = termination_message(pod)
        if message:
            return message
    return None


# Waiting reasons of a container that will not start by itself: a missing Secret or ConfigMap
# key, an image that cannot be pulled or named. (ContainerCreating and PodInitializing are
# the normal way in.)
CANNOT_START_REASONS = frozenset(
    {
        "CreateContainerConfigError",
        "CreateContainerError",
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
    }
)


class StartProblem(NamedTuple):
    """Why a pending pod's containers do not start, and since when (RFC 3339)."""

    reason: str
    message: str
    since: str


def pod_condition(pod: dict[str, Any], type_: str) -> dict[str, Any] | None:
    conditions: list[dict[str, Any]] = (pod.get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c.get("type") == type_), None)


def start_problem(pod: dict[str, Any]) -> StartProblem | None:
    """What keeps a pending pod from starting, if it is something that will not pass by itself:
    the scheduler finds no node for it, or a container waits for a Secret, a ConfigMap or an
    image that is not there. None for a pod that is starting, running or finished."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    if meta.get("deletionTimestamp") or status.get("phase") != "Pending":
        return None
    scheduled = pod_condition(pod, "PodScheduled")
    # Waiting started when the pod was scheduled (or, before that, created).
    since = (scheduled or {}).get("lastTransitionTime") or meta.get("creationTimestamp") or ""
    if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
        return StartProblem("Unschedulable", scheduled.get("message") or "no node fits the pod", since)
    statuses = (status.get("initContainerStatuses") or []) + (status.get("containerStatuses") or [])
    for container in statuses:
        waiting = (container.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") in CANNOT_START_REASONS:
            return StartProblem(waiting["reason"], waiting.get("message") or "", since)
    return None


def unconfirmed_node(pod: dict[str, Any], now: str, grace_seconds: float) -> str | None:
    """The node of a pod that was to be gone more than grace_seconds ago and is not: its
    deletion waits for a kubelet that no longer answers (the node is lost). None otherwise.

    A lost node's pods stay Terminating: with a pod failure policy, the Job controller replaces
    a pod only once it has failed, and only the pod garbage collector fails it, when the Node
    is deleted or tainted node.kubernetes.io/out-of-service."""
    meta = pod.get("metadata") or {}
    deadline = meta.get("deletionTimestamp")  # the time by which the kubelet should be done
    node = (pod.get("spec") or {}).get("nodeName")
    if not deadline or not node or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
        return None
    return str(node) if seconds_between(deadline, now) >= grace_seconds else None


def seconds_between(start: str, end: str) -> float:
    """Seconds from one RFC 3339 time to another; 0 when either is missing or malformed."""
    try:
        return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except (TypeError, ValueError):
        return 0.0
