"""The write step: carries out a reconcile decision against the API server, in one place.

Order matters. Child objects first (every write is idempotent: deterministic names, 409 on
create and 404 on delete mean "already done"). Then the status, in one write conditioned on
the resourceVersion the decision was made from, so a decision from a stale view (an
overlapping timer, a lagging watch) never lands. Events last, and only when the status write
landed: a stale decision's events would be duplicates.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from .kube import Kube
from .reconcile import Decision
from .status import merge_patch

log = logging.getLogger("datasetjob.operator")


@dataclass(frozen=True)
class Target:
    """The DatasetJob a decision is about, as it was read."""

    namespace: str
    name: str
    uid: str
    resource_version: str
    stored_status: dict[str, Any]  # the status as the API server had it


def apply(kube: Kube, target: Target, decision: Decision) -> bool:
    """True when the decision's status landed (or nothing in it changed); False when the object
    moved on since it was read, and nothing but idempotent child writes happened."""
    for job_name in decision.delete_jobs:
        kube.delete_job(target.namespace, job_name)
    for obj in decision.create:
        kube.create(obj)
    for job_name, job_patch in decision.patch_jobs:
        kube.patch_job(target.namespace, job_name, job_patch)
    status_patch = merge_patch(target.stored_status, decision.status.to_dict())
    if status_patch and not kube.patch_status(target.namespace, target.name, target.resource_version, status_patch):
        log.debug(
            "status of %s/%s changed since it was read; deciding again on the next tick", target.namespace, target.name
        )
        return False
    for event in decision.events:
        kube.event(target.namespace, target.name, target.uid, event.type, event.reason, event.message)
    return True
