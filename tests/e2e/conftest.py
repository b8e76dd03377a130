"""Fixtures of the e2e tier: a real control plane and the process kubelet.

Session fixtures (one cluster for the whole run):
  control_plane -> harness.ControlPlane   (etcd, kube-apiserver, kube-controller-manager)
  kubelet       -> harness.ProcessKubelet (one Node, pods run as local processes)
  cluster       -> harness.e2e.E2ECluster (both, plus clients, kubectl/helm, waiting, reports)
Per test:
  namespace     -> str, a fresh namespace deleted after the test

If the binaries have not been built, every e2e test errors with the message to run
`make controlplane` — the tier never skips silently.
"""

from __future__ import annotations

import re
import uuid

import pytest

from tests.e2e.harness.cluster import BinariesMissing, ControlPlane
from tests.e2e.harness.e2e import E2ECluster, WaitTimeout
from tests.e2e.harness.kubelet import ProcessKubelet


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def control_plane():
    cp = ControlPlane()
    missing = None
    try:
        cp.start()
    except BinariesMissing as exc:
        missing = str(exc)
    if missing:
        pytest.fail(f"{missing}\nThe e2e tier needs them: run `make controlplane` first.", pytrace=False)
    try:
        yield cp
    finally:
        cp.stop()


@pytest.fixture(scope="session")
def kubelet(control_plane):
    k = ProcessKubelet(control_plane.kubeconfig).start()
    try:
        yield k
    finally:
        k.stop()


@pytest.fixture(scope="session")
def cluster(control_plane, kubelet):
    c = E2ECluster(control_plane, kubelet)
    try:
        yield c
    finally:
        c.close()


@pytest.fixture
def namespace(request, cluster):
    """A fresh namespace named after the test; deleted (without waiting) afterwards."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"{base}-{uuid.uuid4().hex[:5]}"
    cluster.rest.post("/api/v1/namespaces", {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": name, "labels": {"datagen.dev/e2e": "true"}},
    })
    request.node._e2e_namespace = name
    yield name
    cluster.rest.delete(f"/api/v1/namespaces/{name}", ok_statuses=(404, 409))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failed e2e test, attach the namespace's objects, events, pod logs and component logs."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when != "call" or not rep.failed:
        return
    if call.excinfo is not None and call.excinfo.errisinstance(WaitTimeout):
        return  # its message already carries the report
    c = item.funcargs.get("cluster") if hasattr(item, "funcargs") else None
    ns = getattr(item, "_e2e_namespace", None)
    if c is None:
        return
    try:
        text = c.report(namespace=ns)
    except Exception as exc:  # noqa: BLE001
        text = f"(could not build the cluster report: {exc!r})"
    rep.sections.append(("e2e cluster report", text))
