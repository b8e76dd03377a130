"""Kopf registrations, and only those: each handler is a few lines over observe, decide, apply.

All change handlers, the resync timers and a child Job that ends call the same level-based
`reconcile`, so missing an event never matters: the next tick sees the whole picture again.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping
from threading import Lock
from typing import Any, TypedDict

import kopf

from datasetjob import API_GROUP, API_VERSION

from . import live_metrics, metrics
from .apply import apply
from .crd import PLURAL
from .job_state import job_condition
from .kube import Kube
from .login import api_client, kopf_connection
from .naming import LABEL_DATASETJOB
from .observe import ChildIndex, new_memory, observe, slim_child, warm_up
from .reconcile import decide
from .settings import Settings
from .status import Phase


class _Resource(TypedDict):
    group: str
    version: str
    plural: str


SETTINGS = Settings.from_env()
RESOURCE: _Resource = {"group": API_GROUP, "version": API_VERSION, "plural": PLURAL}


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    # Kopf's own bookkeeping under our group, not kopf.zalando.org.
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=API_GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=API_GROUP, key="last-handled-configuration"
    )
    settings.persistence.finalizer = f"{API_GROUP}/finalizer"
    # Events are ours to post (phase changes); not one per handler log line.
    settings.posting.level = logging.ERROR
    # Re-list from time to time even if the watch looks healthy; fail fast on a dead API server.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 10
    settings.networking.request_timeout = 30
    settings.execution.max_workers = 16
    # With peering (several replicas): a killed active replica is replaced after this long.
    settings.peering.lifetime = SETTINGS.peering_lifetime
    settings.peering.stealth = True  # no log line per keep-alive
    memo.settings = SETTINGS
    memo.kube = Kube(api_client())
    memo.memory = new_memory(SETTINGS)
    metrics.serve(SETTINGS.metrics_port)
    warm_up(SETTINGS)


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf_connection(**kwargs)


@kopf.index("batch", "v1", "jobs", labels={LABEL_DATASETJOB: kopf.PRESENT})
def jobs_by_owner(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    assert namespace is not None  # Jobs are namespaced
    return {(namespace, labels[LABEL_DATASETJOB]): slim_child(body, keep_spec=True)}


@kopf.index("", "v1", "pods", labels={LABEL_DATASETJOB: kopf.PRESENT})
def pods_by_owner(
    namespace: str | None, labels: kopf.Labels, body: kopf.Body, **_: Any
) -> dict[tuple[str, str], dict[str, Any]]:
    assert namespace is not None  # pods are namespaced
    return {(namespace, labels[LABEL_DATASETJOB]): slim_child(body, keep_spec=False)}


def _followed(status: kopf.Status, **_: Any) -> bool:
    """Followed closely: not reconciled yet, or pods are working."""
    phase = status.get("phase") if status else None
    return phase is None or (phase in Phase.__members__.values() and Phase(phase).running)


# Kopf passes its indexes (jobs_by_owner, pods_by_owner) as keyword arguments that its handler
# protocols do not declare: hence the one ignore, where the function is first registered.
@kopf.on.resume(**RESOURCE)
@kopf.on.create(**RESOURCE)
@kopf.on.update(**RESOURCE)
@kopf.timer(**RESOURCE, interval=SETTINGS.resync_seconds, id="resync")
@kopf.timer(**RESOURCE, interval=SETTINGS.active_resync_seconds, when=_followed, id="follow")  # type: ignore[arg-type]
def reconcile(
    meta: kopf.Meta,
    spec: kopf.Spec,
    status: kopf.Status,
    uid: str,
    name: str,
    namespace: str | None,
    memo: kopf.Memo,
    jobs_by_owner: kopf.Index[tuple[str, str], dict[str, Any]],
    pods_by_owner: kopf.Index[tuple[str, str], dict[str, Any]],
    **_: Any,
) -> None:
    assert namespace is not None  # DatasetJobs are namespaced (see crd.py)
    _reconcile(meta, spec, status, uid, name, namespace, memo, jobs_by_owner, pods_by_owner)


def _reconcile(
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    status: Mapping[str, Any] | None,
    uid: str,
    name: str,
    namespace: str,
    memo: kopf.Memo,
    jobs_by_owner: ChildIndex,
    pods_by_owner: ChildIndex,
) -> None:
    with memo.memory.lock(uid):  # one reconcile per object at a time (the timer and a change handler may overlap)
        seen = observe(
            meta=meta,
            spec=spec,
            status=status,
            uid=uid,
            name=name,
            namespace=namespace,
            jobs_by_owner=jobs_by_owner,
            pods_by_owner=pods_by_owner,
            memory=memo.memory,
            kube=memo.kube,
            settings=memo.settings,
        )
        decision = decide(seen.observed, memo.settings)
        if apply(memo.kube, seen.target, decision):
            metrics.count_decision(memo.memory, uid, namespace, seen.observed.status.phase, decision)
            live_metrics.update(namespace, name, decision.status, spec)


class _Once:
    """Keys seen recently (bounded: a key forgotten long after its Job finished costs one
    extra reconcile, never a wrong one)."""

    def __init__(self, size: int = 4096) -> None:
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._size = size
        self._lock = Lock()

    def first(self, key: str) -> bool:
        with self._lock:
            if key in self._seen:
                return False
            self._seen[key] = None
            if len(self._seen) > self._size:
                self._seen.popitem(last=False)
            return True


_FINISHED_JOBS = _Once()
# The Job controller sets SuccessCriteriaMet / FailureTarget a moment before Complete / Failed:
# the owner's decision may already be made on the first (decide checks the shards and pods).
_ENDING = ("SuccessCriteriaMet", "FailureTarget", "Complete", "Failed")


def _ending(status: Mapping[str, Any]) -> list[str]:
    """The ending conditions that are True on a Job."""
    job = {"status": dict(status)}
    return [c for c in _ENDING if job_condition(job, c)]


def _just_finished(type: str | None, status: kopf.Status, **_: Any) -> bool:
    """A child Job's change while it ends (not the listing at startup: resume covers that)."""
    return type == "MODIFIED" and bool(_ending(status))


# The owner's next step (the combine Job, the final phase) waits on a Job that ends: reconcile
# it now rather than on its next timer tick. The indexes already hold this Job's new state
# (Kopf indexes an event before its handlers see it).
@kopf.on.event("batch", "v1", "jobs", labels={LABEL_DATASETJOB: kopf.PRESENT}, when=_just_finished)  # type: ignore[arg-type]
def child_job_finished(
    uid: str,
    namespace: str | None,
    labels: kopf.Labels,
    status: kopf.Status,
    memo: kopf.Memo,
    jobs_by_owner: kopf.Index[tuple[str, str], dict[str, Any]],
    pods_by_owner: kopf.Index[tuple[str, str], dict[str, Any]],
    **_: Any,
) -> None:
    assert namespace is not None  # Jobs are namespaced
    # Once per ending condition: a Job's later changes (pods cleaned up) are not news.
    if not _FINISHED_JOBS.first(f"{uid}/{','.join(_ending(status))}"):
        return
    owner = memo.kube.datasetjob(namespace, labels[LABEL_DATASETJOB])  # fresh: the write below is conditioned on it
    if owner is None or owner["metadata"].get("deletionTimestamp"):  # going: nothing more to start
        return
    meta = owner["metadata"]
    _reconcile(
        meta,
        owner.get("spec") or {},
        owner.get("status"),
        meta["uid"],
        meta["name"],
        namespace,
        memo,
        jobs_by_owner,
        pods_by_owner,
    )


# Optional: it adds no finalizer of its own and never holds a deletion up. The timers above
# already keep Kopf's finalizer on every DatasetJob, so it runs on each deletion seen live.
@kopf.on.delete(**RESOURCE, optional=True)
def forget(uid: str, name: str, namespace: str | None, memo: kopf.Memo, **_: Any) -> None:
    memo.memory.forget(uid)
    live_metrics.forget(namespace or "", name)
