"""Who holds a run's Jobs: the spec (spec.suspend, applied by the operator) or someone else
(Kueue waiting to admit, a person). The operator changes only what it set. Pure."""

from __future__ import annotations

from typing import Any

from .job_state import job_finished
from .planning import KUEUE_QUEUE_LABEL


def suspend_patches(
    applied: bool | None, wanted: bool, jobs: dict[str, dict[str, Any] | None]
) -> list[tuple[str, dict[str, Any]]]:
    """Patches that put spec.suspend on the run's unfinished Jobs, only when it differs from
    what the operator applied last (status.appliedSuspend; None for a run started before that
    field existed: the spec counts as applied). A Job's suspension that someone else set or
    lifted (Kueue admits by unsuspending, and holds or preempts by suspending) is theirs."""
    if applied is None or applied == wanted:
        return []
    return [
        (name, {"spec": {"suspend": wanted}}) for name, job in jobs.items() if job is not None and not job_finished(job)
    ]


def held_by_someone_else(
    name: str, job: dict[str, Any], admission: dict[str, str] | None = None
) -> tuple[str, str] | None:
    """(reason, message) when an unfinished Job of the run is suspended although spec.suspend
    is false: Kueue waiting to admit it (with Kueue's own reason when known), or a person or
    another controller holding it."""
    if not (job.get("spec") or {}).get("suspend") or job_finished(job):
        return None
    queue = ((job.get("metadata") or {}).get("labels") or {}).get(KUEUE_QUEUE_LABEL)
    if queue:
        why = (admission or {}).get(name)
        return (
            "WaitingForAdmission",
            f"Job {name} waits in Kueue queue {queue}: "
            + (f"{why}" if why else "not admitted yet (kubectl get workloads shows why)"),
        )
    return (
        "JobSuspended",
        f"Job {name} was suspended by someone else; the operator leaves it so "
        "(resume it with kubectl patch job, or set spec.suspend)",
    )
