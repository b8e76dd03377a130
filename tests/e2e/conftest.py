"""Fixtures of the e2e tier: one real local cluster for the whole run.

Session fixtures:
  cluster   -> harness.e2e.E2ECluster: etcd, kube-apiserver, kube-controller-manager and
               kube-scheduler; a real node (kubelet on containerd + runc, bridge CNI,
               kube-proxy) running the project's own images; CoreDNS; an S3 server pod; and
               the chart installed by helm (the operator and its Redis), as a user would.
  s3        -> harness.addons.S3Access: the in-cluster S3 server (pods use .endpoint_url,
               this host .client())
  redis     -> ClusterRedis: the chart's Redis, for pods (.url) and for this host (.client())
  operator  -> ChartOperator: the chart's operator pod
Per test:
  namespace -> a fresh namespace with the default output credentials; deleted afterwards
  bucket    -> a fresh bucket on the in-cluster S3 server

If binaries or images are missing, or the machine cannot run containers, every e2e test
errors with the one message that says what to do — the tier never skips silently.
"""

from __future__ import annotations

import base64
import os
import re
import signal
import uuid
from dataclasses import dataclass

import pytest
import redis as redis_lib

from tests.e2e.chart_operator import ChartOperator
from tests.e2e.harness.addons import RELEASE, SYSTEM_NAMESPACE, AddonError
from tests.e2e.harness.cluster import ControlPlaneError
from tests.e2e.harness.e2e import E2ECluster, WaitTimeout
from tests.e2e.harness.images import ImagesMissing
from tests.e2e.harness.local_cluster import LocalCluster
from tests.e2e.harness.network import NetworkError

# Nodes of the session's cluster: several, so scheduling, spread, cross-node traffic and the
# loss of a node are exercised (DSJ_E2E_NODES=1 runs the tier on one node).
E2E_NODES = int(os.environ.get("DSJ_E2E_NODES", "3"))

# What the tests set at install time: a short idle resync so level-based fixes show quickly.
CHART_VALUES = {"operator": {"resyncSeconds": 1}}


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/e2e/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.e2e)


def _exit_on_sigterm(signum, frame):
    raise SystemExit(128 + signum)  # unwinds through the fixtures: the cluster is stopped cleanly


@pytest.fixture(scope="session")
def cluster():
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    local = LocalCluster(chart_values=CHART_VALUES, nodes=E2E_NODES)
    problem = None
    try:
        local.start()
    except (ControlPlaneError, ImagesMissing, NetworkError, AddonError) as exc:
        problem = str(exc)
    if problem:
        pytest.fail(
            f"the local cluster did not start:\n{problem}\n"
            "The e2e tier needs `make controlplane images` and a machine that runs containers.",
            pytrace=False,
        )
    c = E2ECluster(local)
    try:
        yield c
    finally:
        c.close()
        local.stop()


@pytest.fixture(scope="session")
def s3(cluster):
    return cluster.s3


@dataclass
class ClusterRedis:
    """The chart's Redis: `url` as pods reach it (Service DNS), `host_url` from this host."""

    url: str
    host_url: str

    def client(self) -> redis_lib.Redis:
        return redis_lib.Redis.from_url(self.host_url)


@pytest.fixture(scope="session")
def redis(cluster) -> ClusterRedis:
    name = f"{RELEASE}-redis"
    secret = cluster.core.read_namespaced_secret(name, SYSTEM_NAMESPACE)
    password = base64.b64decode(secret.data["password"]).decode()
    ip = cluster.core.read_namespaced_service(name, SYSTEM_NAMESPACE).spec.cluster_ip
    return ClusterRedis(
        url=f"redis://:{password}@{name}.{SYSTEM_NAMESPACE}.svc:6379/1", host_url=f"redis://:{password}@{ip}:6379/1"
    )


@pytest.fixture
def namespace(request, cluster):
    """A fresh namespace named after the test, holding the default output credentials."""
    base = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = cluster.create_namespace(f"{base}-{uuid.uuid4().hex[:5]}")
    request.node._e2e_namespace = name
    yield name
    cluster.rest.delete(f"/api/v1/namespaces/{name}", ok_statuses=(404, 409))


@pytest.fixture(scope="session")
def operator(cluster) -> ChartOperator:
    """The operator the chart installed (kill() deletes its pod; the Deployment makes another)."""
    return ChartOperator(cluster).start()


@pytest.fixture
def s3_ns(namespace):
    """The test namespace; it holds the S3 credentials Secret the samples reference."""
    return namespace


@pytest.fixture
def bucket(s3):
    name = f"dsj-e2e-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=name)
    return name


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
