"""A run that cannot start says so: on the real node, a DatasetJob whose output credentials
Secret does not exist is Stalled (condition and event naming the Secret) instead of waiting in
silence, and goes on once the Secret is created."""

from __future__ import annotations

from tests.e2e.harness.e2e import WaitTimeout
from tests.e2e.test_operator import GROUP, PLURAL, VERSION, apply, get, sample, wait_phase

MISSING = "late-s3-credentials"


def condition(obj: dict, type_: str) -> dict:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == type_), {})


def wait_condition(cluster, operator, namespace: str, name: str, type_: str, status: str, timeout: float) -> dict:
    def ready():
        obj = get(cluster, namespace, name)
        return obj if condition(obj, type_).get("status") == status else None

    try:
        return cluster.wait_for(
            ready,
            timeout=timeout,
            what=f"{name} with {type_}={status}",
            namespace=namespace,
            objects=[f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}"],
        )
    except WaitTimeout as exc:
        raise WaitTimeout(f"{exc}\n--- operator log ---\n{operator.log_tail(80)}") from None


def warnings_about(cluster, namespace: str, name: str, text: str) -> list:
    events = cluster.core.list_namespaced_event(namespace, field_selector=f"involvedObject.name={name}").items
    return [e for e in events if e.type == "Warning" and text in (e.message or "")]


def test_a_missing_credentials_secret_stalls_the_run_until_it_exists(cluster, operator, s3_ns, s3, bucket):
    doc = sample(bucket, s3)
    doc["spec"]["output"]["credentialsSecret"] = MISSING
    apply(cluster, s3_ns, doc)

    # Either the operator sees the Secret missing before it creates the Job (it may read
    # Secrets), or the pods cannot start for 30 s (CreateContainerConfigError).
    obj = wait_condition(cluster, operator, s3_ns, "smf", "Stalled", "True", timeout=150)
    stalled = condition(obj, "Stalled")
    assert stalled["reason"] in ("CredentialsSecretNotFound", "PodsCannotStart"), stalled
    assert MISSING in stalled["message"], stalled
    assert condition(obj, "Progressing").get("status") == "False", obj["status"]
    assert cluster.wait_for(
        lambda: warnings_about(cluster, s3_ns, "smf", MISSING),
        timeout=30,
        what=f"a Warning event naming Secret {MISSING}",
        namespace=s3_ns,
    )

    # The Secret appears: the run goes on, and Stalled clears.
    source = cluster.core.read_namespaced_secret("s3-credentials", s3_ns)
    cluster.core.create_namespaced_secret(
        s3_ns, {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": MISSING}, "data": source.data}
    )
    obj = wait_phase(cluster, operator, s3_ns, "smf", "Succeeded", timeout=300)
    assert condition(obj, "Stalled").get("status") == "False", obj["status"]
    assert obj["status"]["output"]["rows"] == 36
