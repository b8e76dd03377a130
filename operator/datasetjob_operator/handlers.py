"""Kopf registrations, and only those: each handler is a few lines over observe, decide, apply.

All change handlers and the resync timers call the same level-based `reconcile`, so missing
an event never matters: the next tick sees the whole picture again.
"""

from __future__ import annotations

import logging
from typing import Any, TypedDict

import kopf

from datasetjob import API_GROUP, API_VERSION

from . import metrics
from .apply import apply
from .crd import PLURAL
from .kube import Kube
from .login import api_client, kopf_connection
from .naming import LABEL_DATASETJOB
from .observe import new_memory, observe, slim_child
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
    memo.settings = SETTINGS
    memo.kube = Kube(api_client())
    memo.memory = new_memory(SETTINGS)
    metrics.serve(SETTINGS.metrics_port)


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


# Optional: it adds no finalizer of its own and never holds a deletion up. The timers above
# already keep Kopf's finalizer on every DatasetJob, so it runs on each deletion seen live.
@kopf.on.delete(**RESOURCE, optional=True)
def forget(uid: str, memo: kopf.Memo, **_: Any) -> None:
    memo.memory.forget(uid)
