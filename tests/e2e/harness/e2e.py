"""What e2e tests hold: one object for the running cluster, waiting, and failure reports."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.build_cache import control_plane_binaries

from .cluster import kubectl_path
from .local_cluster import LocalCluster
from .rest import ApiError, KubeRest


class WaitTimeout(AssertionError):
    """A wait ran out of time; the message carries the diagnostics report."""


def condition(obj: dict | Any, type_: str) -> dict | None:
    """The condition of that type in obj['status']['conditions'] (dicts or client models)."""
    if not isinstance(obj, dict):
        obj = _to_dict(obj)
    for c in ((obj or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == type_:
            return c
    return None


def condition_true(obj: dict | Any, type_: str) -> bool:
    c = condition(obj, type_)
    return bool(c and c.get("status") == "True")


def _to_dict(obj: Any) -> dict:
    from kubernetes.client import ApiClient

    return ApiClient().sanitize_for_serialization(obj)


class E2ECluster:
    """A running local cluster (control plane, real node, add-ons), with helpers for tests.

    Attributes: `local` (the LocalCluster), `control_plane`, `node`, `s3` (the in-cluster S3
    server), `kubeconfig` (admin, Path), `rest` (KubeRest, dicts in API form), `api_client`
    (kubernetes client, admin) and `core`, `batch`, `apps`, `rbac`, `apiext`, `custom`, `auth`.
    """

    def __init__(self, local: LocalCluster):
        self.local = local
        self.control_plane = local.control_plane
        self.node = local.node
        self.nodes = local.nodes
        self.s3 = local.s3
        self.kubeconfig = self.control_plane.kubeconfig
        self.rest = KubeRest.from_kubeconfig(self.kubeconfig)
        self._api_client = None

    # -- clients -----------------------------------------------------------------------
    @property
    def api_client(self):
        if self._api_client is None:
            from kubernetes import config

            self._api_client = config.new_client_from_config(config_file=str(self.kubeconfig))
        return self._api_client

    def client_for_token(self, token: str):
        """A kubernetes ApiClient that authenticates with a bearer token (e.g. a ServiceAccount's)."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.control_plane.server
        cfg.ssl_ca_cert = str(self.control_plane.ca_file)
        cfg.api_key = {"authorization": token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(cfg)

    def _api(self, name: str):
        from kubernetes import client

        return getattr(client, name)(self.api_client)

    core = property(lambda self: self._api("CoreV1Api"))
    batch = property(lambda self: self._api("BatchV1Api"))
    apps = property(lambda self: self._api("AppsV1Api"))
    rbac = property(lambda self: self._api("RbacAuthorizationV1Api"))
    apiext = property(lambda self: self._api("ApiextensionsV1Api"))
    custom = property(lambda self: self._api("CustomObjectsApi"))
    auth = property(lambda self: self._api("AuthenticationV1Api"))

    def env(self, kubeconfig: str | Path | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["KUBECONFIG"] = str(kubeconfig or self.kubeconfig)
        return env

    # -- command-line tools ---------------------------------------------------------------
    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        kubeconfig: str | Path | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess:
        """Runs kubectl (see cluster.kubectl_path) against this cluster; text output."""
        exe = kubectl_path()
        if not exe:
            raise RuntimeError("kubectl is not installed (Debian package `kubectl`)")
        return self._run([exe, *args], check, input, kubeconfig, timeout)

    def helm(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        kubeconfig: str | Path | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess:
        """Runs the helm built by `make controlplane` against this cluster."""
        exe = control_plane_binaries()["helm"]
        if not exe.exists():
            raise RuntimeError(f"helm is missing ({exe}); run `make controlplane`")
        return self._run([str(exe), *args], check, input, kubeconfig, timeout)

    def _run(self, argv, check, input, kubeconfig, timeout) -> subprocess.CompletedProcess:
        res = subprocess.run(
            argv, input=input, capture_output=True, text=True, env=self.env(kubeconfig), timeout=timeout
        )
        if check and res.returncode != 0:
            raise AssertionError(
                f"{' '.join(argv)} exited with {res.returncode}\nstdout:\n{res.stdout}\nstderr:\n{res.stderr}"
            )
        return res

    # -- waiting --------------------------------------------------------------------------
    def wait_for(
        self,
        predicate: Callable[[], Any],
        *,
        timeout: float = 60,
        interval: float = 0.25,
        what: str = "condition",
        namespace: str | None = None,
        objects: list[str] = (),
    ) -> Any:
        """Polls predicate() until it returns something truthy and returns that.

        On timeout raises WaitTimeout with a report: the API objects at `objects` (API
        paths), events and pods of `namespace` with their logs, and the tail of every
        component log. Exceptions from predicate count as "not yet" (the last is reported).
        """
        deadline = time.monotonic() + timeout
        last_exc: BaseException | None = None
        while True:
            try:
                value = predicate()
                if value:
                    return value
            except Exception as exc:  # noqa: BLE001 - not ready yet
                last_exc = exc
            if time.monotonic() >= deadline:
                break
            time.sleep(interval)
        msg = f"timed out after {timeout}s waiting for {what}"
        if last_exc is not None:
            msg += f" (last error: {last_exc!r})"
        raise WaitTimeout(msg + "\n" + self.report(namespace=namespace, objects=objects))

    def create_namespace(self, name: str) -> str:
        """A namespace of the e2e tier (labelled so), holding the default output credentials."""
        metadata = {"name": name, "labels": {"datagen.dev/e2e": "true"}}
        self.rest.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": metadata})
        self.local.addons.add_credentials(name)
        return name

    def wait_crd_established(self, name: str, timeout: float = 60) -> dict:
        """Until the CRD `name` is Established. (`kubectl wait` fails outright when it reads the
        CRD before the API server has written any condition to it.)"""
        return self.wait_for_object(
            f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
            lambda crd: condition_true(crd, "Established"),
            timeout=timeout,
            what=f"CRD {name} Established",
        )

    def wait_for_object(
        self,
        path: str,
        predicate: Callable[[dict], Any],
        *,
        timeout: float = 60,
        what: str | None = None,
        namespace: str | None = None,
    ) -> dict:
        """GETs the API path until predicate(obj) is truthy; returns the object (a dict)."""

        def check():
            try:
                obj = self.rest.get(path)
            except ApiError as exc:
                if exc.status == 404:
                    return None
                raise
            return obj if predicate(obj) else None

        ns = namespace or _namespace_of(path)
        return self.wait_for(
            check, timeout=timeout, what=what or f"{path} to satisfy the predicate", namespace=ns, objects=[path]
        )

    def wait_gone(self, path: str, *, timeout: float = 60, namespace: str | None = None) -> None:
        def gone():
            try:
                self.rest.get(path)
            except ApiError as exc:
                if exc.status == 404:
                    return True
                raise
            return False

        self.wait_for(
            gone,
            timeout=timeout,
            what=f"{path} to be deleted",
            namespace=namespace or _namespace_of(path),
            objects=[path],
        )

    # -- diagnostics ------------------------------------------------------------------------
    def report(self, namespace: str | None = None, objects: list[str] = (), log_lines: int = 40) -> str:
        """A text report for a failed test: objects, events, pods and their logs, component logs."""
        out: list[str] = []

        def section(title: str, body: str) -> None:
            out.append(f"===== {title} =====")
            out.append(body.rstrip() or "(empty)")

        for path in objects:
            try:
                section(path, _yaml(self.rest.get(path)))
            except Exception as exc:  # noqa: BLE001
                section(path, f"(cannot read: {exc})")
        if namespace:
            try:
                events = self.rest.get(f"/api/v1/namespaces/{namespace}/events")["items"]
                events.sort(key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")
                lines = [
                    f"{e.get('lastTimestamp') or e.get('eventTime')} {e.get('type')} "
                    f"{e['involvedObject'].get('kind')}/{e['involvedObject'].get('name')} "
                    f"{e.get('reason')}: {e.get('message')}"
                    for e in events
                ]
                section(f"events in {namespace}", "\n".join(lines))
            except Exception as exc:  # noqa: BLE001
                section(f"events in {namespace}", f"(cannot read: {exc})")
            try:
                pods = self.rest.get(f"/api/v1/namespaces/{namespace}/pods")["items"]
                section(f"pods in {namespace}", "\n".join(_pod_line(p) for p in pods))
            except Exception as exc:  # noqa: BLE001
                section(f"pods in {namespace}", f"(cannot read: {exc})")
            for pod in _pod_names(self.rest, namespace):
                section(f"log of {namespace}/{pod}", self.pod_log(namespace, pod, tail=log_lines))
        for name, text in self.control_plane.logs_tail(log_lines).items():
            section(f"{name} log (last {log_lines} lines)", text)
        for node in self.local.nodes:
            for name, text in node.logs_tail(log_lines).items():
                section(f"{node.node_name} {name} log (last {log_lines} lines)", text)
        return "\n".join(out)

    def pod_log(
        self, namespace: str, pod: str, container: str | None = None, tail: int | None = None, previous: bool = False
    ) -> str:
        """`kubectl logs` of a pod (through the API server and the kubelet, as a user would)."""
        args = ["logs", "-n", namespace, pod]
        if container:
            args += ["-c", container]
        if tail:
            args.append(f"--tail={tail}")
        if previous:
            args.append("--previous")
        res = self.kubectl(*args, check=False, timeout=30)
        return res.stdout if res.returncode == 0 else f"(kubectl logs failed: {res.stderr.strip()})"

    def close(self) -> None:
        self.rest.close()
        if self._api_client is not None:
            try:
                self._api_client.close()
            except Exception:  # noqa: BLE001
                pass


def _pod_names(rest: KubeRest, namespace: str) -> list[str]:
    try:
        return [p["metadata"]["name"] for p in rest.get(f"/api/v1/namespaces/{namespace}/pods")["items"]]
    except Exception:  # noqa: BLE001 - a report never fails
        return []


def _namespace_of(path: str) -> str | None:
    parts = path.strip("/").split("/")
    if "namespaces" in parts:
        i = parts.index("namespaces")
        if i + 1 < len(parts):
            return parts[i + 1]
    return None


def _yaml(obj: object) -> str:
    try:
        import yaml

        if isinstance(obj, dict):
            obj = dict(obj)
            meta = dict(obj.get("metadata") or {})
            meta.pop("managedFields", None)
            obj["metadata"] = meta
        return yaml.safe_dump(obj, sort_keys=False)
    except Exception:  # noqa: BLE001
        return json.dumps(obj, indent=2)


def _pod_line(p: dict) -> str:
    st = p.get("status") or {}
    states = []
    for cs in st.get("containerStatuses") or []:
        state = cs.get("state") or {}
        kind = next(iter(state), "?")
        detail = state.get(kind) or {}
        extra = (
            f" exit={detail.get('exitCode')} {detail.get('reason', '')}"
            if kind == "terminated"
            else (f" {detail.get('reason', '')} {detail.get('message', '')}" if kind == "waiting" else "")
        )
        states.append(f"{cs['name']}:{kind}{extra}")
    meta = p["metadata"]
    deleting = " deleting" if meta.get("deletionTimestamp") else ""
    return (
        f"{meta['name']} phase={st.get('phase')}{deleting} node={p['spec'].get('nodeName')} "
        f"finalizers={meta.get('finalizers', [])} {' '.join(states)}"
    )
