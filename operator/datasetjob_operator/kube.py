"""The operator's writes to the API server: create-or-adopt, delete, patch, events.

Everything here is idempotent: a 409 on create of an object we name deterministically is
success ("already done"), a 404 on delete is success ("already gone").
"""

from __future__ import annotations

import logging
import uuid
from datetime import UTC, datetime
from typing import Any, cast

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from datasetjob import API_GROUP, API_VERSION, KIND

from .admission import KUEUE_GROUP, KUEUE_VERSION, WORKLOADS
from .crd import PLURAL
from .naming import FIELD_MANAGER

log = logging.getLogger("datasetjob.operator")
# Only the Secret's metadata comes back: its values never reach the operator.
_METADATA_ONLY = {"Accept": "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"}


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Kube:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.api = api_client
        self.core = client.CoreV1Api(api_client)
        self.batch = client.BatchV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self._told_secrets_forbidden = False

    def create(self, obj: dict[str, Any]) -> bool:
        """True if created now, False if it already existed."""
        ns, kind = obj["metadata"]["namespace"], obj["kind"]
        # The client validates a dict body into its model (V1Job, ...) before it sends it.
        try:
            if kind == "Job":
                self.batch.create_namespaced_job(ns, obj, field_manager=FIELD_MANAGER)  # type: ignore[arg-type]
            elif kind == "ConfigMap":
                self.core.create_namespaced_config_map(ns, obj, field_manager=FIELD_MANAGER)  # type: ignore[arg-type]
            elif kind == "Secret":
                self.core.create_namespaced_secret(ns, obj, field_manager=FIELD_MANAGER)  # type: ignore[arg-type]
            else:
                raise ValueError(f"cannot create {kind}")
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        log.info("created %s %s/%s", kind, ns, obj["metadata"]["name"])
        return True

    def delete_job(self, namespace: str, name: str) -> None:
        """Background propagation: without it the Job's pods would be orphaned."""
        try:
            self.batch.delete_namespaced_job(name, namespace, propagation_policy="Background")
        except ApiException as exc:
            if exc.status != 404:
                raise

    def patch_job(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        self.batch.patch_namespaced_job(name, namespace, patch, field_manager=FIELD_MANAGER)

    def patch_status(self, namespace: str, name: str, resource_version: str, status_patch: dict[str, Any]) -> bool:
        """Writes a DatasetJob's status, only if the object is still at `resource_version`.

        False when it is not (409: someone wrote since we read it, so the decision was made
        from a stale view) or when it is gone (404). The next reconcile decides again."""
        body = {"metadata": {"resourceVersion": resource_version}, "status": status_patch}
        try:
            self.custom.patch_namespaced_custom_object_status(
                API_GROUP, API_VERSION, namespace, PLURAL, name, body, field_manager=FIELD_MANAGER
            )
        except ApiException as exc:
            if exc.status in (404, 409):
                return False
            raise
        return True

    def datasetjob(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The DatasetJob as the API server has it now; None when it is gone."""
        try:
            # The client declares `object`: a custom object is a JSON object.
            return cast(
                dict[str, Any],
                self.custom.get_namespaced_custom_object(API_GROUP, API_VERSION, namespace, PLURAL, name),
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def config_map_key(self, namespace: str, name: str, key: str) -> str | None:
        try:
            cm = self.core.read_namespaced_config_map(name, namespace)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return (cm.data or {}).get(key)

    def secret_exists(self, namespace: str, name: str) -> bool | None:
        """Whether Secret namespace/name exists, asked by a server-side dry-run create: the
        operator may create Secrets but never read them, and "already exists" answers without
        a value leaving the API server. None when even that is refused (the pods will tell)."""
        try:
            self.core.create_namespaced_secret(namespace, {"metadata": {"name": name}}, dry_run="All")  # type: ignore[arg-type]  # the client validates a dict body into V1Secret
        except ApiException as exc:
            if exc.status == 409:
                return True
            if exc.status == 403:
                if not self._told_secrets_forbidden:
                    self._told_secrets_forbidden = True
                    log.warning(
                        "cannot check that output credentials Secrets exist (no RBAC create on secrets in %s); "
                        "a missing one shows when the run's pods cannot start",
                        namespace,
                    )
                return None
            raise
        return False

    def workloads(self, namespace: str) -> list[dict[str, Any]]:
        """Kueue's Workloads in a namespace; [] where Kueue is not installed or not readable."""
        try:
            # The client declares `object`: a custom object list is a JSON object.
            listing = cast(
                dict[str, Any],
                self.custom.list_namespaced_custom_object(KUEUE_GROUP, KUEUE_VERSION, namespace, WORKLOADS),
            )
            return listing.get("items") or []
        except ApiException as exc:
            if exc.status in (403, 404):
                return []
            raise

    def event(self, namespace: str, name: str, uid: str, type_: str, reason: str, message: str) -> None:
        """A core/v1 Event on the DatasetJob (what `kubectl describe` shows)."""
        stamp = datetime.now(UTC)
        body = client.CoreV1Event(
            metadata=client.V1ObjectMeta(name=f"{name}.{uuid.uuid4().hex[:12]}", namespace=namespace),
            involved_object=client.V1ObjectReference(
                api_version=f"{API_GROUP}/{API_VERSION}", kind=KIND, name=name, namespace=namespace, uid=uid
            ),
            type=type_,
            reason=reason,
            message=message[:1024],
            count=1,
            first_timestamp=stamp,
            last_timestamp=stamp,
            source=client.V1EventSource(component=FIELD_MANAGER),
            reporting_component=FIELD_MANAGER,
            reporting_instance=FIELD_MANAGER,
        )
        try:
            self.core.create_namespaced_event(namespace, body)
        except ApiException as exc:  # an event is worth a log line, never a failed reconcile
            log.warning("cannot post event %s on %s/%s: %s", reason, namespace, name, exc.reason)
