"""What a Job and its pods say: finished or not, conditions, the workers' termination messages. Pure."""

from __future__ import annotations

import json
from typing import Any

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
