"""The observe step: one reconcile's view of the world, read once, for the pure `decide`.

The DatasetJob as Kopf delivered it, its Jobs and pods from Kopf's in-memory indexes, live
progress from Redis while shards run, and two API reads that ObjectMemory reuses for a while.
Kopf's live bodies are copied out, so nothing changes under the decision while it is made.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from datasetjob.errors import SpecError
from datasetjob.progress import read_redis_progress
from datasetjob.spec.model import DatasetJobSpec

from .admission import pending_reasons
from .apply import Target
from .cluster_spec import cluster_spec
from .kube import Kube, now_rfc3339
from .object_memory import ObjectMemory
from .reconcile import Observed, credentials_secret_to_check, decide
from .settings import Settings
from .status import DatasetJobStatus, Phase

log = logging.getLogger("datasetjob.operator")
# Kueue's pending reasons change slowly: re-read them this often at most (seconds).
ADMISSION_READ_SECONDS = 2.0
# A run waiting for its credentials Secret starts within this long of its creation (seconds).
SECRET_READ_SECONDS = 2.0

ChildIndex = Mapping[tuple[str, str], Iterable[dict[str, Any]]]  # (namespace, DatasetJob name) -> slim children


def new_memory(settings: Settings) -> ObjectMemory:
    """The item list of spec.items.fromConfigMap is read at most once per resync period: it is
    only counted (pods read it themselves), and the active loop ticks twice a second."""
    return ObjectMemory(
        config_map_ttl=settings.resync_seconds, admission_ttl=ADMISSION_READ_SECONDS, secret_ttl=SECRET_READ_SECONDS
    )


# A made-up DatasetJob for `warm_up`: the smallest spec that parses.
_WARM_UP_SPEC = {
    "items": {"range": {"stop": 1}},
    "shards": 1,
    "generator": {"function": "warm.up:generate"},
    "output": {"uri": "s3://warm-up/out"},
}


def warm_up(settings: Settings) -> None:
    """One decision on a made-up DatasetJob, applied nowhere, before the operator watches: the
    first real one would otherwise pay for building the spec validator (the CEL grammar and
    rules, about a second of CPU) before its Jobs are created."""
    observed = Observed(
        name="warm-up",
        namespace="default",
        uid="warm-up",
        generation=1,
        spec=dict(_WARM_UP_SPEC),
        annotations={},
        status=DatasetJobStatus.from_dict({}),
        jobs={},
        pods=[],
        now=now_rfc3339(),
    )
    try:
        decide(observed, settings)
    except Exception as exc:  # a head start only: the first real decision builds it anyway
        log.debug("warm-up decision failed: %s", exc)


def slim_child(body: Mapping[str, Any], keep_spec: bool) -> dict[str, Any]:
    """What the reconciler needs of a child Job or pod, copied out of Kopf's live body."""
    meta = body.get("metadata", {})
    out: dict[str, Any] = {
        "metadata": {
            k: json.loads(json.dumps(meta.get(k)))
            for k in ("name", "labels", "annotations", "creationTimestamp", "deletionTimestamp")
        },
        "status": json.loads(json.dumps(body.get("status") or {})),
    }
    spec = body.get("spec") or {}
    if keep_spec:
        out["spec"] = {"suspend": spec.get("suspend", False)}
    elif spec.get("nodeName"):  # a pod's node: a lost node's pods are named in the status
        out["spec"] = {"nodeName": str(spec["nodeName"])}
    return out


@dataclass(frozen=True)
class Observation:
    observed: Observed  # what `decide` reads
    target: Target  # what `apply` writes to: the object as it was read


def observe(
    *,
    meta: Mapping[str, Any],
    spec: Mapping[str, Any],
    status: Mapping[str, Any] | None,
    uid: str,
    name: str,
    namespace: str,
    jobs_by_owner: ChildIndex,
    pods_by_owner: ChildIndex,
    memory: ObjectMemory,
    kube: Kube,
    settings: Settings,
) -> Observation:
    """Call it holding `memory.lock(uid)`."""
    key = (namespace, name)
    stored_status = json.loads(json.dumps(dict(status or {})))
    own_status = DatasetJobStatus.from_dict(stored_status)
    own_spec = json.loads(json.dumps(dict(spec)))
    own_jobs = list(jobs_by_owner.get(key, []))
    typed = _typed_spec(name, namespace, own_spec, settings)
    observed = Observed(
        name=name,
        namespace=namespace,
        uid=uid,
        generation=meta.get("generation", 0),
        spec=own_spec,
        annotations=dict(meta.get("annotations") or {}),
        status=own_status,
        jobs={j["metadata"]["name"]: j for j in own_jobs},
        pods=list(pods_by_owner.get(key, [])),
        now=now_rfc3339(),
        live_progress=_live_progress(settings, typed, own_status) if typed else None,
        config_map_items=_config_map_items(memory, kube, uid, typed) if typed else None,
        admission=_admission(memory, kube, uid, typed, own_jobs) if typed else None,
    )
    observed = _with_credentials_check(observed, memory, kube, settings)
    target = Target(
        namespace=namespace,
        name=name,
        uid=uid,
        resource_version=meta["resourceVersion"],
        stored_status=stored_status,
    )
    return Observation(observed, target)


def _with_credentials_check(observed: Observed, memory: ObjectMemory, kube: Kube, settings: Settings) -> Observed:
    """Whether the credentials Secret exists, read only when a run is about to start."""
    secret = credentials_secret_to_check(observed, settings)
    if secret is None:
        memory.stop_reading_secret(observed.uid)
        return observed
    namespace = observed.namespace
    found = memory.secret_exists(observed.uid, namespace, secret, lambda: kube.secret_exists(namespace, secret))
    return replace(observed, credentials_secret_found=found)


def _typed_spec(name: str, namespace: str, spec: dict[str, Any], settings: Settings) -> DatasetJobSpec | None:
    """The spec as the run uses it (the same cached parse `decide` makes); None when it does
    not parse, which `decide` reports on the object with every problem named."""
    try:
        return cluster_spec(name, namespace, spec, settings)
    except SpecError:
        return None


def _live_progress(
    settings: Settings, spec: DatasetJobSpec, status: DatasetJobStatus
) -> dict[int, dict[str, Any]] | None:
    if status.phase != Phase.GENERATING or not status.run_id:
        return None
    url = settings.default_redis_url_with_password() if spec.cache.redis_url is None else spec.cache.redis_url
    if not url:
        return None
    try:
        # Where the workers write it: spec.cache.namespace decides for both sides.
        return read_redis_progress(url, spec.cache.namespace, status.run_id)
    except Exception as exc:  # live counts are a nicety; final counts come from pods
        log.debug("no live progress for %s: %s", spec.name, exc)
        return None


def _config_map_items(memory: ObjectMemory, kube: Kube, uid: str, spec: DatasetJobSpec) -> str | None:
    """The item list of spec.items.fromConfigMap, if the spec names one."""
    if not spec.items.from_config_map or spec.namespace is None:
        return None
    namespace = spec.namespace
    cm_name, cm_key = spec.items.from_config_map
    return memory.config_map_items(
        uid, namespace, cm_name, cm_key, lambda: kube.config_map_key(namespace, cm_name, cm_key)
    )


def _admission(
    memory: ObjectMemory, kube: Kube, uid: str, spec: DatasetJobSpec, jobs: list[dict[str, Any]]
) -> dict[str, str] | None:
    """Kueue's reasons for this namespace's waiting Jobs, read only while a Job of a queued
    DatasetJob is suspended."""
    if not spec.queue_name or spec.suspend or spec.namespace is None:
        return None
    namespace = spec.namespace
    if not any((j.get("spec") or {}).get("suspend") for j in jobs):
        return None
    return memory.admission(uid, namespace, lambda: pending_reasons(kube.workloads(namespace)))
