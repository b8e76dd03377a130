"""How the operator reaches the API server: Kopf's watches and the kubernetes client's writes,
both with the same credentials.

The chart mounts an explicit projected token (automount is off) and names its folder in
$DSJ_SERVICEACCOUNT_DIR. Without it: the pod's default service account, else a kubeconfig.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import kopf
from kubernetes import client, config
from kubernetes.config.incluster_config import InClusterConfigLoader


def _service_account_dir() -> Path | None:
    folder = os.environ.get("DSJ_SERVICEACCOUNT_DIR")
    return Path(folder) if folder else None


def _api_server() -> str:
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def kopf_connection(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """What Kopf's login handler returns; `kwargs` are that handler's."""
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


def api_client() -> client.ApiClient:
    """The kubernetes client the operator writes with (see kube.Kube)."""
    folder = _service_account_dir()
    configuration = client.Configuration()
    # kubernetes.config has no annotations: its calls below are untyped.
    if folder is not None:
        configuration.host = _api_server()
        InClusterConfigLoader(  # type: ignore[no-untyped-call]
            token_filename=str(folder / "token"),
            cert_filename=str(folder / "ca.crt"),
            environ={
                "KUBERNETES_SERVICE_HOST": os.environ["KUBERNETES_SERVICE_HOST"],
                "KUBERNETES_SERVICE_PORT": os.environ.get("KUBERNETES_SERVICE_PORT", "443"),
            },
        ).load_and_set(configuration)
        return client.ApiClient(configuration)
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    return client.ApiClient()
