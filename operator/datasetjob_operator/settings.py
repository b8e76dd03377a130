"""Operator settings, read once from the environment (the chart sets them). Pure data."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Requests of pods whose DatasetJob names none: enough for the scheduler (and Kueue's quota)
# to count them, small enough for a laptop cluster. Limits are left to the user: a default
# memory limit would kill generators that legitimately need more.
DEFAULT_GENERATE_RESOURCES = {"requests": {"cpu": "100m", "memory": "256Mi"}}
# The combine pod holds the whole dataset while it deduplicates and sorts.
DEFAULT_COMBINE_RESOURCES = {"requests": {"cpu": "100m", "memory": "512Mi"}}


def with_password(url: str, password: str) -> str:
    """redis://host:6379/0 + pw -> redis://:pw@host:6379/0 (no-op without a password)."""
    if not url or not password or "@" in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://:{password}@{rest}"


@dataclass(frozen=True)
class Settings:
    # Image used when a DatasetJob names none (the worker runtime image of this release).
    worker_image: str = "datasetjob/worker:0.1.0"
    # Image of every combine pod: the worker with the table stack. "" = the generator's image
    # (which must then have the table stack for Parquet, sortBy or dedupeBy).
    combine_image: str = "datasetjob/worker-tables:0.1.0"
    # How pods start the data plane; the image must have `dsj` on its PATH.
    worker_command: tuple[str, ...] = ("dsj",)
    # The chart's in-cluster Redis; used when spec.cache.redisUrl is absent. "" = none.
    default_redis_url: str = ""
    # Its password. Pods get it from a per-run Secret in their own namespace, never inline.
    default_redis_password: str = field(default="", repr=False)
    # Level-based resync: each DatasetJob is re-examined this often (seconds); the children
    # come from in-memory indexes, so a tick with nothing to do makes no API call.
    resync_seconds: float = 10.0
    # While shards run or combine, a tighter loop for progress counts and stalls. The next step
    # does not wait for it: a child Job that ends reconciles its DatasetJob at once.
    active_resync_seconds: float = 0.5
    # Where DatasetJobs without spec.output.uri write: <prefix>/<namespace>/<name>.
    default_output_prefix: str = ""
    default_endpoint_url: str = ""
    default_credentials_secret: str = ""  # a Secret of that name in each DatasetJob's namespace
    run_as_user: int = 65532
    metrics_port: int = 0  # 0 = no metrics endpoint
    namespaces: tuple[str, ...] = field(default_factory=tuple)  # empty = all namespaces
    # Resources of generate / combine pods when spec.generator.resources / spec.combine.resources
    # are absent (the chart's worker.resources.generate / .combine).
    generate_resources: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_GENERATE_RESOURCES))
    combine_resources: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_COMBINE_RESOURCES))
    # Past this many bytes a spec does not fit a ConfigMap (1 MiB minus room for metadata).
    max_config_map_bytes: int = 1_000_000
    # How long generate, plan and combine pods stay bound to an unreachable or not-ready node
    # before the node-lifecycle controller evicts them (Kubernetes' default is 300 s).
    node_loss_toleration_seconds: int = 30
    # Kopf peering object shared by the replicas ("" = standalone: one replica only), and how
    # long a replica's record lasts without a keep-alive: a killed active replica is replaced
    # after about this long.
    peering: str = ""
    peering_lifetime: int = 10

    def default_redis_url_with_password(self) -> str:
        return with_password(self.default_redis_url, self.default_redis_password)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        return cls(
            worker_image=env.get("DSJ_WORKER_IMAGE", cls.worker_image),
            combine_image=env.get("DSJ_COMBINE_IMAGE", cls.combine_image),
            worker_command=tuple((env.get("DSJ_WORKER_COMMAND") or "dsj").split()),
            default_redis_url=env.get("DSJ_DEFAULT_REDIS_URL", ""),
            default_redis_password=env.get("DSJ_REDIS_PASSWORD", ""),
            resync_seconds=float(env.get("DSJ_RESYNC_SECONDS", cls.resync_seconds)),
            active_resync_seconds=float(env.get("DSJ_ACTIVE_RESYNC_SECONDS", cls.active_resync_seconds)),
            run_as_user=int(env.get("DSJ_RUN_AS_USER", cls.run_as_user)),
            default_output_prefix=env.get("DSJ_DEFAULT_OUTPUT_PREFIX", "").rstrip("/"),
            default_endpoint_url=env.get("DSJ_DEFAULT_ENDPOINT_URL", ""),
            default_credentials_secret=env.get("DSJ_DEFAULT_CREDENTIALS_SECRET", ""),
            metrics_port=int(env.get("DSJ_METRICS_PORT", "0")),
            namespaces=tuple(n for n in env.get("DSJ_WATCH_NAMESPACES", "").split(",") if n),
            generate_resources=_json_object(env, "DSJ_GENERATE_RESOURCES", DEFAULT_GENERATE_RESOURCES),
            combine_resources=_json_object(env, "DSJ_COMBINE_RESOURCES", DEFAULT_COMBINE_RESOURCES),
            node_loss_toleration_seconds=int(
                env.get("DSJ_NODE_LOSS_TOLERATION_SECONDS", cls.node_loss_toleration_seconds)
            ),
            peering=env.get("DSJ_PEERING", ""),
            peering_lifetime=int(env.get("DSJ_PEERING_LIFETIME", cls.peering_lifetime)),
        )


def _json_object(env: Mapping[str, str], name: str, default: dict[str, Any]) -> dict[str, Any]:
    """A JSON object from the environment (the chart renders values with toJson); the default
    when unset. A malformed value stops the operator at startup, naming the variable."""
    text = env.get(name, "").strip()
    if not text:
        return dict(default)
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{name}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{name}: must be a JSON object like {json.dumps(default)}")
    return value
