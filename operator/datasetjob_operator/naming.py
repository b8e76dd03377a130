"""Deterministic names and labels of everything the operator creates. Pure.

Names are a function of (DatasetJob name, run id, attempt), so after a restart the operator
finds what it created instead of creating it again (a 409 on create means "already done").
"""

from __future__ import annotations

import hashlib

from datasetjob import API_GROUP

LABEL_DATASETJOB = f"{API_GROUP}/datasetjob"
LABEL_RUN = f"{API_GROUP}/run-id"
LABEL_ATTEMPT = f"{API_GROUP}/attempt"
LABEL_ROLE = f"{API_GROUP}/role"
ANNOTATION_REGENERATE = f"{API_GROUP}/regenerate"
ANNOTATION_RETRY_FAILED = f"{API_GROUP}/retry-failed"
FIELD_MANAGER = "datasetjob-operator"

ROLE_PLAN = "plan"
ROLE_GENERATE = "generate"
ROLE_COMBINE = "combine"


def attempt_of(retry_token: str | None) -> str:
    """ "0" for a fresh run; a short hash for each retry-failed token."""
    if not retry_token:
        return "0"
    return "r" + hashlib.sha256(retry_token.encode()).hexdigest()[:5]


def _base(name: str, run_id: str, attempt: str) -> str:
    return f"{name}-{run_id}" if attempt == "0" else f"{name}-{run_id}-{attempt}"


def config_map_name(name: str, run_id: str, attempt: str) -> str:
    return _base(name, run_id, attempt)


def plan_job_name(name: str, run_id: str, attempt: str) -> str:
    return f"{_base(name, run_id, attempt)}-plan"


def generate_job_name(name: str, run_id: str, attempt: str) -> str:
    return f"{_base(name, run_id, attempt)}-gen"


def redis_secret_name(name: str, run_id: str, attempt: str) -> str:
    return f"{_base(name, run_id, attempt)}-redis"


def combine_job_name(name: str, run_id: str, attempt: str) -> str:
    return f"{_base(name, run_id, attempt)}-combine"


def labels(name: str, run_id: str, attempt: str, role: str | None = None) -> dict[str, str]:
    out = {
        "app.kubernetes.io/name": "datasetjob",
        "app.kubernetes.io/managed-by": FIELD_MANAGER,
        LABEL_DATASETJOB: name,
        LABEL_RUN: run_id,
        LABEL_ATTEMPT: attempt,
    }
    if role:
        out[LABEL_ROLE] = role
    return out
