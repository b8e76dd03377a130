"""Kopf glue: observe (indexes + the object), decide (reconcile.decide), act (apply.apply), once.

All change handlers and the resync timer call the same level-based `reconcile`, so missing
an event never matters: the next tick sees the whole picture again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import kopf

from datasetjob import API_GROUP, API_VERSION
from datasetjob.progress import read_redis_progress
from datasetjob.spec.model import cache_namespace

from . import metrics
from .admission import pending_reasons
from .apply import Target, apply
from .crd import PLURAL
from .kube import Kube, now_rfc3339
from .naming import LABEL_DATASETJOB
from .reconcile import Decision, Observed, decide
from .settings import Settings
from .status import DatasetJobStatus, Phase

SETTINGS = Settings.from_env()
RESOURCE = dict(group=API_GROUP, version=API_VERSION, plural=PLURAL)
log = logging.getLogger("datasetjob.operator")
# Kueue's pending reasons change slowly: re-read them this often at most (seconds).
ADMISSION_READ_SECONDS = 2.0


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_):
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
    memo.kube = Kube(_api_client())
    memo.locks = {}
    memo.phase_since = {}
    memo.config_maps = {}
    memo.admission = {}
    metrics.serve(SETTINGS.metrics_port)


def _service_account_dir() -> Path | None:
    """The chart mounts an explicit projected token (automount is off) and names its folder."""
    folder = os.environ.get("DSJ_SERVICEACCOUNT_DIR")
    return Path(folder) if folder else None


def _api_server() -> str:
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


@kopf.on.login()
def login(**kwargs):
    folder = _service_account_dir()
    if folder is None:
        return kopf.login_via_client(**kwargs)
    return kopf.ConnectionInfo(
        server=_api_server(),
        ca_path=str(folder / "ca.crt"),
        scheme="Bearer",
        token=(folder / "token").read_text().strip(),
        default_namespace=(folder / "namespace").read_text().strip() if (folder / "namespace").exists() else None,
    )


def _api_client():
    from kubernetes import client, config
    from kubernetes.config.incluster_config import InClusterConfigLoader

    folder = _service_account_dir()
    configuration = client.Configuration()
    if folder is not None:
        configuration.host = _api_server()
        InClusterConfigLoader(
            token_filename=str(folder / "token"),
            cert_filename=str(folder / "ca.crt"),
            environ={
                "KUBERNETES_SERVICE_HOST": os.environ["KUBERNETES_SERVICE_HOST"],
                "KUBERNETES_SERVICE_PORT": os.environ.get("KUBERNETES_SERVICE_PORT", "443"),
            },
        ).load_and_set(configuration)
        return client.ApiClient(configuration)
    try:
        config.load_incluster_config()
    except config.ConfigException:
        config.load_kube_config()
    return client.ApiClient()


def _slim(body, keep_spec: bool) -> dict:
    """What the reconciler needs of a child, copied out of Kopf's live body."""
    meta = body.get("metadata", {})
    out = {
        "metadata": {
            k: json.loads(json.dumps(meta.get(k))) for k in ("name", "labels", "annotations", "creationTimestamp")
        },
        "status": json.loads(json.dumps(body.get("status") or {})),
    }
    if keep_spec:
        out["spec"] = {"suspend": (body.get("spec") or {}).get("suspend", False)}
    return out


@kopf.index("batch", "v1", "jobs", labels={LABEL_DATASETJOB: kopf.PRESENT})
def jobs_by_owner(namespace, labels, body, **_):
    return {(namespace, labels[LABEL_DATASETJOB]): _slim(body, keep_spec=True)}


@kopf.index("", "v1", "pods", labels={LABEL_DATASETJOB: kopf.PRESENT})
def pods_by_owner(namespace, labels, body, **_):
    return {(namespace, labels[LABEL_DATASETJOB]): _slim(body, keep_spec=False)}


def _live_progress(spec: dict, namespace: str, name: str, status: DatasetJobStatus) -> dict | None:
    if status.phase != Phase.GENERATING or not status.run_id:
        return None
    spec_url = (spec.get("cache") or {}).get("redisUrl")
    url = SETTINGS.default_redis_url_with_password() if spec_url is None else spec_url
    if not url:
        return None
    try:
        # Where the workers write it: the same function decides for both sides.
        return read_redis_progress(url, cache_namespace(spec.get("cache"), name, namespace), status.run_id)
    except Exception as exc:  # live counts are a nicety; final counts come from pods
        log.debug("no live progress for %s: %s", name, exc)
        return None


def _config_map_items(memo: kopf.Memo, namespace: str, spec: dict) -> str | None:
    """The item list of spec.items.fromConfigMap, read at most once per resync period: it is
    only counted (pods read it themselves), and the active loop ticks twice a second."""
    source = (spec.get("items") or {}).get("fromConfigMap")
    if not source:
        return None
    key = (namespace, source["name"], source["key"])
    read_at, text = memo.config_maps.get(key, (0.0, None))
    if time.monotonic() - read_at > SETTINGS.resync_seconds:
        text = memo.kube.config_map_key(*key)
        memo.config_maps[key] = (time.monotonic(), text)
    return text


def _admission(memo: kopf.Memo, namespace: str, spec: dict, jobs: list[dict]) -> dict[str, str] | None:
    """Kueue's reasons for this namespace's waiting Jobs, read only while a Job of a queued
    DatasetJob is suspended, and at most every couple of seconds per namespace."""
    if not spec.get("queueName") or spec.get("suspend"):
        return None
    if not any((j.get("spec") or {}).get("suspend") for j in jobs):
        return None
    read_at, reasons = memo.admission.get(namespace, (0.0, {}))
    if time.monotonic() - read_at > ADMISSION_READ_SECONDS:
        reasons = pending_reasons(memo.kube.workloads(namespace))
        memo.admission[namespace] = (time.monotonic(), reasons)
    return reasons


def _followed(status, **_) -> bool:
    """Followed closely: not reconciled yet, or pods are working."""
    phase = (status or {}).get("phase")
    return phase is None or (phase in Phase.__members__.values() and Phase(phase).running)


@kopf.on.resume(**RESOURCE)
@kopf.on.create(**RESOURCE)
@kopf.on.update(**RESOURCE)
@kopf.timer(**RESOURCE, interval=SETTINGS.resync_seconds, id="resync")
@kopf.timer(**RESOURCE, interval=SETTINGS.active_resync_seconds, when=_followed, id="follow")
def reconcile(
    meta, spec, status, uid, name, namespace, memo: kopf.Memo, jobs_by_owner: kopf.Index, pods_by_owner: kopf.Index, **_
):
    lock = memo.locks.setdefault(uid, threading.Lock())
    with lock:  # one reconcile per object at a time (the timer and a change handler may overlap)
        key = (namespace, name)
        stored_status = json.loads(json.dumps(dict(status or {})))
        own_status = DatasetJobStatus.from_dict(stored_status)
        own_jobs = list(jobs_by_owner.get(key, []))
        observed = Observed(
            name=name,
            namespace=namespace,
            uid=uid,
            generation=meta.get("generation", 0),
            spec=json.loads(json.dumps(dict(spec))),
            annotations=dict(meta.get("annotations") or {}),
            status=own_status,
            jobs={j["metadata"]["name"]: j for j in own_jobs},
            pods=list(pods_by_owner.get(key, [])),
            now=now_rfc3339(),
            live_progress=_live_progress(dict(spec), namespace, name, own_status),
            config_map_items=_config_map_items(memo, namespace, dict(spec)),
            admission=_admission(memo, namespace, dict(spec), own_jobs),
        )
        decision = decide(observed, memo.settings)
        target = Target(
            namespace=namespace,
            name=name,
            uid=uid,
            resource_version=meta["resourceVersion"],
            stored_status=stored_status,
        )
        if apply(memo.kube, target, decision):
            _observe_metrics(memo, uid, namespace, own_status.phase, decision)


def _observe_metrics(memo, uid: str, namespace: str, old_phase: Phase | None, decision: Decision) -> None:
    """Counts what a decision changed; called once per decision whose status write landed."""
    new_phase = decision.phase
    if old_phase == new_phase and not decision.run_started:
        return
    now = time.monotonic()
    previous = memo.phase_since.get(uid)
    if previous and previous[0] != new_phase:
        metrics.PHASE_SECONDS.labels(previous[0]).observe(now - previous[1])
    memo.phase_since[uid] = (new_phase, now)
    if decision.run_started:
        metrics.RUNS_STARTED.labels(namespace).inc()
    if new_phase and new_phase.finished and not (old_phase and old_phase.finished):
        status = decision.status
        metrics.RUNS_FINISHED.labels(namespace, new_phase, status.reason or "").inc()
        items = status.items
        metrics.ITEMS.labels(namespace, "done").inc(items.done if items else 0)
        metrics.ITEMS.labels(namespace, "failed").inc(items.failed if items else 0)
        metrics.SHARD_FAILURES.labels(namespace).inc(status.shards.failed if status.shards else 0)
