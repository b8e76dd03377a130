"""Building the objects of a run: the spec ConfigMap, the Indexed generate Job and the combine
Job. Pure functions from (DatasetJob, run, settings) to manifests (dicts)."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from datasetjob import API_GROUP, API_VERSION, KIND
from datasetjob.contract import ITEMS_DIR_ENV, REGENERATE_TOKEN_ENV, RETRY_FAILED_ITEMS_ENV, WORK_PLAN_ENV
from datasetjob.errors import ExitCode
from datasetjob.spec.apitypes import to_api
from datasetjob.spec.model import DatasetJobSpec, GeneratorSpec

from . import naming
from .settings import Settings, with_password

# The worker exits that fail its Job index at once (plain ints: manifests are YAML and JSON):
# a broken generator config, and a run at its spec.budget (a raised budget starts a new attempt).
DO_NOT_RETRY = int(ExitCode.DO_NOT_RETRY)
BUDGET_EXHAUSTED = int(ExitCode.BUDGET_EXHAUSTED)
# A worker that asks for a fresh process (too many items stuck past itemTimeoutSeconds) has saved
# its checkpoint and recorded those items as failed: not a failure of the shard.
RESTART = int(ExitCode.RESTART)
SPEC_DIR = "/etc/datasetjob/spec"
ITEMS_DIR = "/etc/datasetjob/items"
SPEC_FILE = "datasetjob.json"
CONTAINER = "generator"
COMBINE_CONTAINER = "combine"
PLAN_CONTAINER = "plan"
_CONTAINERS = {
    naming.ROLE_GENERATE: CONTAINER,
    naming.ROLE_COMBINE: COMBINE_CONTAINER,
    naming.ROLE_PLAN: PLAN_CONTAINER,
}
# Kueue reads these labels on a Job: the LocalQueue that admits it, and its WorkloadPriorityClass.
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
KUEUE_PRIORITY_LABEL = "kueue.x-k8s.io/priority-class"


@dataclass(frozen=True)
class Run:
    """One run of one DatasetJob: what every builder needs."""

    name: str
    namespace: str
    uid: str
    run_id: str
    attempt: str
    spec: DatasetJobSpec
    regenerate: str | None = None  # the datagen.dev/regenerate token the run id includes

    @property
    def owner_reference(self) -> dict[str, Any]:
        return {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "name": self.name,
            "uid": self.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    def metadata(self, name: str, role: str | None = None) -> dict[str, Any]:
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": naming.labels(self.name, self.run_id, self.attempt, role),
            "ownerReferences": [self.owner_reference],
        }

    def job_metadata(self, name: str, role: str) -> dict[str, Any]:
        """A Job's metadata: ours, plus the labels Kueue admits it by (spec.queueName, ...)."""
        meta = self.metadata(name, role)
        if self.spec.queue_name:
            meta["labels"][KUEUE_QUEUE_LABEL] = self.spec.queue_name
        if self.spec.workload_priority_class:
            meta["labels"][KUEUE_PRIORITY_LABEL] = self.spec.workload_priority_class
        return meta


def spec_document(run: Run) -> str:
    """The DatasetJob as the worker reads it. References to Secrets stay references."""
    doc = run.spec.to_document()
    doc["metadata"]["namespace"] = run.namespace
    return json.dumps(doc, indent=1)  # not sorted: product key order is meaningful


def config_map(run: Run) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": run.metadata(naming.config_map_name(run.name, run.run_id, run.attempt)),
        "data": {SPEC_FILE: spec_document(run)},
    }


def uses_default_redis(run: Run, settings: Settings) -> bool:
    return run.spec.cache.redis_url is None and bool(settings.default_redis_url)


def redis_secret(run: Run, settings: Settings) -> dict[str, Any] | None:
    """The default Redis's password as a Secret in the run's namespace (pods can only
    reference Secrets of their own namespace); owned by the DatasetJob, so it goes with it."""
    if not (uses_default_redis(run, settings) and settings.default_redis_password):
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": run.metadata(naming.redis_secret_name(run.name, run.run_id, run.attempt)),
        "stringData": {"password": settings.default_redis_password},
    }


def _env(run: Run, settings: Settings) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = [
        {"name": "DSJ_SPEC_FILE", "value": f"{SPEC_DIR}/{SPEC_FILE}"},
        {"name": "DSJ_RUN_ID", "value": run.run_id},
        {"name": "DSJ_EMBEDDED_CACHE_DIR", "value": "/tmp/dsj-cache"},
        {"name": "HOME", "value": "/tmp"},
        {"name": "TMPDIR", "value": "/tmp"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]
    if uses_default_redis(run, settings):
        if settings.default_redis_password:
            env.append(
                {
                    "name": "DSJ_REDIS_PASSWORD",
                    "valueFrom": {
                        "secretKeyRef": {
                            "name": naming.redis_secret_name(run.name, run.run_id, run.attempt),
                            "key": "password",
                        }
                    },
                }
            )
            # $(VAR) is expanded by the kubelet: the password never appears in the Job spec.
            env.append(
                {"name": "DSJ_REDIS_URL", "value": with_password(settings.default_redis_url, "$(DSJ_REDIS_PASSWORD)")}
            )
        else:
            env.append({"name": "DSJ_REDIS_URL", "value": settings.default_redis_url})
    if run.spec.items.from_config_map:
        env.append({"name": ITEMS_DIR_ENV, "value": ITEMS_DIR})
    if run.attempt != "0":
        env.append({"name": RETRY_FAILED_ITEMS_ENV, "value": "1"})
    if run.regenerate:  # a regenerated run must not reuse the rows it is meant to replace
        env.append({"name": REGENERATE_TOKEN_ENV, "value": run.regenerate})
    if run.spec.output.endpoint_url:
        env.append({"name": "AWS_ENDPOINT_URL", "value": run.spec.output.endpoint_url})
    # The user's env last, so it can override ours on purpose.
    return env + [dict(e) for e in run.spec.generator.env]


def _pod_fields(gen: GeneratorSpec) -> dict[str, Any]:
    """The pod spec fields taken as they are from spec.generator (the schema checks their shape)."""
    fields = {
        "nodeSelector": gen.node_selector,
        "tolerations": gen.tolerations,
        "serviceAccountName": gen.service_account_name,
        "affinity": gen.affinity,
        "topologySpreadConstraints": gen.topology_spread_constraints,
        "imagePullSecrets": gen.image_pull_secrets,
        "priorityClassName": gen.priority_class_name,
        "runtimeClassName": gen.runtime_class_name,
    }
    # to_api copies: the manifest never shares a list or a mapping with the spec.
    return {name: to_api(value) for name, value in fields.items() if value is not None}


# The node-lifecycle controller taints a lost node with these (NoExecute); without a toleration
# of our own the DefaultTolerationSeconds admission plugin keeps pods there for 300 s.
NODE_LOSS_TAINTS = ("node.kubernetes.io/unreachable", "node.kubernetes.io/not-ready")


def node_loss_tolerations(own: list[dict[str, Any]], settings: Settings) -> list[dict[str, Any]]:
    """The user's tolerations, plus a short NoExecute toleration of each node-loss taint that
    none of theirs covers (theirs win: Kubernetes applies the shortest matching toleration)."""

    def covered(key: str) -> bool:
        return any(
            t.get("key") == key or (not t.get("key") and t.get("operator") == "Exists")
            for t in own
            if t.get("effect") in (None, "", "NoExecute")
        )

    ours = [
        {
            "key": key,
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": settings.node_loss_toleration_seconds,
        }
        for key in NODE_LOSS_TAINTS
        if not covered(key)
    ]
    return [*own, *ours]


def _spread(run: Run, role: str) -> list[dict[str, Any]]:
    """Soft spread of one run's pods over nodes: a lost node takes fewer shards with it, and a
    full node never keeps a pod from starting (ScheduleAnyway)."""
    return [
        {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
            "labelSelector": {"matchLabels": naming.labels(run.name, run.run_id, run.attempt, role)},
        }
    ]


def _pod_template(
    run: Run, settings: Settings, role: str, args: list[str], plan_key: str | None = None
) -> dict[str, Any]:
    """`plan_key`: the run's plan (generate: the pod's work packet is there; combine: the shards
    are assembled from the item store first)."""
    gen = run.spec.generator
    env = _env(run, settings) + ([{"name": WORK_PLAN_ENV, "value": plan_key}] if plan_key else [])
    # The combine runs no generator code: the installation's image with the table stack (Parquet,
    # sortBy / dedupeBy), whatever the generator image has; the generator's pull policy and
    # working directory are about its own image.
    # The plan runs in the generator's image: it works out the generator's fingerprint (which an
    # image may set through its environment) exactly as the workers do.
    own_image = role != naming.ROLE_COMBINE or not settings.combine_image
    container: dict[str, Any] = {
        "name": _CONTAINERS[role],
        "image": (gen.image or settings.worker_image) if own_image else settings.combine_image,
        "command": list(settings.worker_command),
        "args": args,
        "env": env,
        "volumeMounts": [
            {"name": "spec", "mountPath": SPEC_DIR, "readOnly": True},
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "securityContext": {
            "runAsNonRoot": True,
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if run.spec.output.credentials_secret:
        container["envFrom"] = [{"secretRef": {"name": run.spec.output.credentials_secret}}]
    if gen.image_pull_policy is not None and own_image:
        container["imagePullPolicy"] = gen.image_pull_policy
    container["resources"] = _resources(run, settings, role)
    if gen.working_dir and own_image:
        container["workingDir"] = gen.working_dir
    volumes = [
        {"name": "spec", "configMap": {"name": naming.config_map_name(run.name, run.run_id, run.attempt)}},
        {"name": "tmp", "emptyDir": {}},
    ]
    if run.spec.items.from_config_map:
        cm_name, key = run.spec.items.from_config_map
        volumes.append({"name": "items", "configMap": {"name": cm_name, "items": [{"key": key, "path": key}]}})
        container["volumeMounts"].append({"name": "items", "mountPath": ITEMS_DIR, "readOnly": True})
    pod: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": settings.run_as_user,
            "runAsGroup": settings.run_as_user,
            "fsGroup": settings.run_as_user,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
        **_pod_fields(gen),
    }
    pod["tolerations"] = node_loss_tolerations(pod.get("tolerations") or [], settings)
    if role == naming.ROLE_GENERATE and not (gen.affinity or gen.topology_spread_constraints):
        pod["topologySpreadConstraints"] = _spread(run, role)
    # The user's labels first: ours (which the operator and the Job controller select by) win.
    labels = {**(gen.pod_labels or {}), **naming.labels(run.name, run.run_id, run.attempt, role)}
    metadata: dict[str, Any] = {"labels": labels}
    if gen.pod_annotations:
        metadata["annotations"] = dict(gen.pod_annotations)
    return {"metadata": metadata, "spec": pod}


def _resources(run: Run, settings: Settings, role: str) -> dict[str, Any]:
    """The spec's resources for this role as given, else the installation's default: a whole
    replacement, never a merge (a merged default request could exceed the user's limit)."""
    own = run.spec.generator.resources if role == naming.ROLE_GENERATE else run.spec.combine.resources
    if own is not None:
        return copy.deepcopy(own)
    default = settings.generate_resources if role == naming.ROLE_GENERATE else settings.combine_resources
    return copy.deepcopy(dict(default))


def _ttl(run: Run) -> dict[str, Any]:
    ttl = run.spec.ttl_seconds_after_finished
    return {} if ttl is None else {"ttlSecondsAfterFinished": ttl}


def _fail_job_policy(container: str) -> dict[str, Any]:
    """A one-pod Job's failure policy: its "do not retry" exit fails the Job at once; an eviction
    or a preemption is retried without counting."""
    return {
        "rules": [
            {
                "action": "FailJob",
                "onExitCodes": {"containerName": container, "operator": "In", "values": [DO_NOT_RETRY]},
            },
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        ]
    }


def plan_job(run: Run, settings: Settings) -> dict[str, Any]:
    """One pod that reads the item store and stores the run's plan (store.work_plan); its
    termination message says how many work packets the generate Job needs."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": run.job_metadata(naming.plan_job_name(run.name, run.run_id, run.attempt), naming.ROLE_PLAN),
        "spec": {
            "completions": 1,
            "parallelism": 1,
            "backoffLimit": 2,
            "suspend": run.spec.suspend,
            "podFailurePolicy": _fail_job_policy(PLAN_CONTAINER),
            **_ttl(run),
            "template": _pod_template(run, settings, naming.ROLE_PLAN, ["plan"]),
        },
    }


def generate_job(
    run: Run, settings: Settings, packets: int | None = None, plan_key: str | None = None
) -> dict[str, Any]:
    """The Indexed generate Job: one completion per shard, or with a plan, per work packet."""
    spec = run.spec
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": run.job_metadata(naming.generate_job_name(run.name, run.run_id, run.attempt), naming.ROLE_GENERATE),
        "spec": {
            "completionMode": "Indexed",
            "completions": spec.shards if packets is None else packets,
            "parallelism": spec.parallelism,
            "backoffLimitPerIndex": spec.per_shard_retries,
            "maxFailedIndexes": spec.max_failed_shards,
            "suspend": spec.suspend,
            "podFailurePolicy": {
                "rules": [
                    # A broken generator config fails the same way on every retry: stop at once.
                    {
                        "action": "FailIndex",
                        "onExitCodes": {
                            "containerName": CONTAINER,
                            "operator": "In",
                            "values": [BUDGET_EXHAUSTED, DO_NOT_RETRY],
                        },
                    },
                    # Evictions and preemptions are not the shard's fault: retry without counting.
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                    # Each restart records items as failed, so restarts end with the shard's items.
                    {
                        "action": "Ignore",
                        "onExitCodes": {"containerName": CONTAINER, "operator": "In", "values": [RESTART]},
                    },
                ]
            },
            **_ttl(run),
            "template": _pod_template(run, settings, naming.ROLE_GENERATE, ["worker"], plan_key),
        },
    }


def combine_job(run: Run, settings: Settings, plan_key: str | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": run.job_metadata(naming.combine_job_name(run.name, run.run_id, run.attempt), naming.ROLE_COMBINE),
        "spec": {
            "completions": 1,
            "parallelism": 1,
            "backoffLimit": 2,
            # Refused data (too few items, schema mismatch) will not change on a retry.
            "podFailurePolicy": _fail_job_policy(COMBINE_CONTAINER),
            **_ttl(run),
            "template": _pod_template(run, settings, naming.ROLE_COMBINE, ["combine"], plan_key),
        },
    }
