"""The operator on the real control plane: the process kubelet runs the real worker and
combine, against a real redis-server and a real S3 server; the operator runs as its own
process under the ServiceAccount and RBAC from manifests/."""

from __future__ import annotations

import copy
import hashlib
import json
import time

import pytest
import yaml

from tests.e2e.harness.e2e import WaitTimeout
from tests.e2e.operator_process import OperatorProcess, install_crd_and_rbac
from tests.integration.runs import SAMPLE, dsj, published, sha256, write_doc

GROUP, VERSION, PLURAL = "datagen.dev", "v1alpha1", "datasetjobs"


@pytest.fixture(scope="module")
def operator(cluster, redis_server, tmp_path_factory):
    install_crd_and_rbac(cluster)
    op = OperatorProcess(cluster, tmp_path_factory.mktemp("operator"),
                         {"DSJ_DEFAULT_REDIS_URL": redis_server.url}).start()
    yield op
    op.stop()


@pytest.fixture
def s3_ns(cluster, namespace, s3_server):
    """The test namespace with the S3 credentials Secret the samples reference."""
    cluster.core.create_namespaced_secret(namespace, {
        "metadata": {"name": "s3-credentials"},
        "stringData": {"AWS_ACCESS_KEY_ID": s3_server.access_key, "AWS_SECRET_ACCESS_KEY": s3_server.secret_key,
                       "AWS_DEFAULT_REGION": s3_server.region}})
    return namespace


def sample(bucket: str, s3_server, name="smf", symbols=6, dates=6, shards=3, **spec_over) -> dict:
    doc = yaml.safe_load(SAMPLE.read_text())
    doc["metadata"] = {"name": name}
    spec = doc["spec"]
    spec["items"]["product"]["symbol"] = spec["items"]["product"]["symbol"][:symbols]
    spec["items"]["product"]["date"] = spec["items"]["product"]["date"][:dates]
    spec["shards"] = spec["parallelism"] = shards
    spec["generator"]["env"] = [{"name": "SMF_LATENCY_MS", "value": "1"}]
    spec["retries"] = {"perShard": 1, "maxFailedShards": 0}
    spec["output"] = {"uri": f"s3://{bucket}/{name}", "format": "csv", "endpointUrl": s3_server.endpoint_url,
                      "credentialsSecret": "s3-credentials"}
    spec.update(spec_over)
    return doc


def apply(cluster, namespace: str, doc: dict) -> None:
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(doc))


def get(cluster, namespace: str, name: str) -> dict:
    return cluster.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)


def wait_phase(cluster, operator, namespace: str, name: str, phases, timeout: float = 240) -> dict:
    phases = (phases,) if isinstance(phases, str) else tuple(phases)
    try:
        return cluster.wait_for(
            lambda: (lambda o: o if (o.get("status") or {}).get("phase") in phases else None)(get(cluster, namespace, name)),
            timeout=timeout, what=f"{name} in phase {phases}", namespace=namespace,
            objects=[f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"])
    except WaitTimeout as exc:
        raise WaitTimeout(f"{exc}\n--- operator log ---\n{operator.log_tail(80)}") from None


def jobs(cluster, namespace: str) -> list[str]:
    return sorted(j.metadata.name for j in cluster.batch.list_namespaced_job(namespace).items)


def s3_sha(s3_server, uri: str) -> str:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    return hashlib.sha256(s3_server.client().get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()


def test_sample_succeeds_with_the_local_runners_dataset(cluster, operator, s3_ns, s3_server, s3_bucket, tmp_path):
    doc = sample(s3_bucket, s3_server)
    apply(cluster, s3_ns, doc)
    obj = wait_phase(cluster, operator, s3_ns, "smf", "Succeeded")
    st = obj["status"]
    assert st["shards"]["progress"] == "3/3" and st["items"] == {"total": 36, "done": 36, "failed": 0,
                                                                  "progress": "36/36"}
    assert st["output"]["rows"] == 36 and st["cache"]["misses"] == 6 + 6 + 36

    local = copy.deepcopy(doc)
    local["spec"]["output"] = {"format": "csv"}
    proc = dsj("run", str(write_doc(local, tmp_path / "smf.yaml")), "--output", f"file://{tmp_path}/out",
               "--workdir", str(tmp_path), cwd=tmp_path, env={"DSJ_CACHE_DIR": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    dataset, _ = published(tmp_path / "out")
    assert s3_sha(s3_server, st["output"]["uri"]) == sha256(dataset) == st["output"]["sha256"]

    table = cluster.kubectl("get", "dsj", "-n", s3_ns).stdout
    header = table.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "SHARDS", "ITEMS", "ROWS", "AGE"], table
    assert table.splitlines()[1].split()[:5] == ["smf", "Succeeded", "3/3", "36/36", "36"], table
    reasons = [e.reason for e in cluster.core.list_namespaced_event(
        s3_ns, field_selector="involvedObject.name=smf").items]
    assert {"RunStarted", "CombineStarted", "Published"} <= set(reasons)
