"""A DatasetJob survives what a cluster goes through, on several real nodes: a node lost mid-run,
the chart's Redis deleted or unreachable for 60 s, the S3 server unreachable for 60 s, the API
server restarted, and `helm upgrade` to a new operator image (the active operator replica
killed is test_operator_ha.py).

Each test runs the fault run of faults.py and asserts its figures against an undisturbed run of
the same spec: Succeeded, the same sha256, no item lost, the same Jobs, and no more items
generated twice than were in flight at the fault. The time each run took is printed beside the
undisturbed one's, never asserted.
"""

from __future__ import annotations

import time
import uuid

import pytest

from tests.e2e import faults
from tests.e2e.faults import FaultRun, Figures, items_in_flight, job_roles
from tests.e2e.harness.addons import SYSTEM_NAMESPACE
from tests.e2e.harness.e2e import condition

OUTAGE_SECONDS = 60


@pytest.fixture(scope="module")
def undisturbed(cluster, operator, s3) -> Figures:
    """The fault run's spec with no fault, in a namespace and bucket of its own."""
    namespace = cluster.create_namespace(f"undisturbed-{uuid.uuid4().hex[:5]}")
    bucket = f"dsj-e2e-{uuid.uuid4().hex[:12]}"
    s3.client().create_bucket(Bucket=bucket)
    try:
        figures = FaultRun(cluster, namespace, s3, bucket).start().finish("none")
    finally:
        cluster.rest.delete(f"/api/v1/namespaces/{namespace}", ok_statuses=(404, 409))
    assert figures.phase == "Succeeded" and figures.items_lost == 0 and figures.items_twice == 0, figures
    return figures


def assert_survived(fig: Figures, undisturbed: Figures, in_flight: int) -> None:
    print(
        f"\n[fault] {fig.fault}: {fig.phase}; items lost {fig.items_lost}, generated twice {fig.items_twice} "
        f"(in flight at the fault: at most {in_flight}); run {fig.seconds:.0f}s vs {undisturbed.seconds:.0f}s "
        f"undisturbed; jobs {job_roles(fig.jobs)}{'; ' + fig.notes if fig.notes else ''}"
    )
    assert fig.phase == "Succeeded", fig
    assert fig.items_lost == 0, fig
    assert fig.sha256 == undisturbed.sha256
    assert job_roles(fig.jobs) == job_roles(undisturbed.jobs), fig.jobs
    assert set(fig.generated) == set(undisturbed.generated)  # every item generated, at least once
    assert fig.items_twice <= in_flight, (fig.items_twice, in_flight, fig.generated.most_common(10))


def survives(cluster, namespace: str, s3, bucket: str, undisturbed: Figures, fault: str, inject) -> Figures:
    """The fault run with inject() done once it generates; any of its generate pods may go with
    the fault, so the bound on items generated twice is what all of them have in flight. What
    inject() returns (if anything) is printed with the figures."""
    run = FaultRun(cluster, namespace, s3, bucket).start()
    run.wait_generating()
    in_flight = items_in_flight(len(run.generate_pods()))
    note = inject()
    fig = run.finish(fault)
    fig.notes = note or ""
    assert_survived(fig, undisturbed, in_flight)
    return fig


def test_the_chart_redis_pod_deleted_mid_run(cluster, operator, s3_ns, s3, bucket, undisturbed):
    def delete():
        faults.delete_pods(cluster, SYSTEM_NAMESPACE, faults.REDIS_SELECTOR)

    survives(cluster, s3_ns, s3, bucket, undisturbed, "Redis pod deleted", delete)


def test_redis_unreachable_for_a_minute(cluster, operator, s3_ns, s3, bucket, undisturbed):
    def outage():
        with faults.redis_cut(cluster):
            time.sleep(OUTAGE_SECONDS)

    survives(cluster, s3_ns, s3, bucket, undisturbed, f"Redis unreachable {OUTAGE_SECONDS}s", outage)


def test_s3_unreachable_for_a_minute(cluster, operator, s3_ns, s3, bucket, undisturbed):
    def outage():
        with faults.s3_cut(cluster):
            time.sleep(OUTAGE_SECONDS)

    survives(cluster, s3_ns, s3, bucket, undisturbed, f"S3 unreachable {OUTAGE_SECONDS}s", outage)
    # Nothing half-written: a PUT is whole or absent, and no multipart upload was left open.
    assert not s3.client().list_multipart_uploads(Bucket=bucket).get("Uploads")


def test_the_api_server_restarted_mid_run(cluster, operator, s3_ns, s3, bucket, undisturbed):
    def restart():
        return f"API server unavailable {faults.restart_apiserver(cluster, down_seconds=10):.1f}s"

    survives(cluster, s3_ns, s3, bucket, undisturbed, "kube-apiserver restarted", restart)


def test_helm_upgrade_to_a_new_operator_image_mid_run(cluster, operator, s3_ns, s3, bucket, undisturbed):
    upgraded = []

    def upgrade():
        upgraded.append(faults.upgrade_operator(cluster))
        faults.wait_rolled_out(cluster)

    try:
        survives(cluster, s3_ns, s3, bucket, undisturbed, "helm upgrade of the operator", upgrade)
        images = {c.image for p in operator.pods() for c in p.spec.containers if not p.metadata.deletion_timestamp}
        assert images == set(upgraded), images
    finally:  # the installation the other tests expect: the chart's own image
        faults.upgrade_operator(cluster, tag="")
        faults.wait_rolled_out(cluster)


def test_a_node_lost_mid_run(cluster, operator, s3_ns, s3, bucket, undisturbed):
    """Its kubelet, containerd and containers killed at once. Kubernetes marks the node NotReady
    after the node monitor's grace period and evicts its pods once their tolerationSeconds are
    over; they then stay Terminating (no kubelet confirms them gone), and the DatasetJob says so:
    Stalled, PodsOnLostNode, naming the node and what brings the run back. Deleting the Node (as a
    cloud does for a VM that is gone) or tainting it out-of-service (as an administrator does,
    here) has them failed and replaced."""
    run = FaultRun(cluster, s3_ns, s3, bucket).start()
    run.wait_generating()
    pods = run.generate_pods()
    spread = {p.spec.node_name for p in pods}
    assert len(spread) >= 2, f"the generate pods did not spread: {sorted(spread)}"
    victim, on_victim = faults.busiest_other_node(cluster, pods)
    victim_name = victim.node_name
    in_flight = items_in_flight(on_victim)
    killed = time.monotonic()
    victim.kill()
    try:
        not_ready = faults.wait_node_not_ready(cluster, victim_name)
        stall = cluster.wait_for(
            lambda: lost_node_stall(run.status(), victim_name), timeout=240, interval=1, what="the lost-node stall"
        )
        stalled = time.monotonic() - killed
        assert "node.kubernetes.io/out-of-service" in stall["message"], stall
        faults.taint_out_of_service(cluster, victim_name)
        fig = run.finish(f"node {victim_name} lost ({on_victim} of {len(pods)} generate pods)")
        fig.notes = (
            f"NotReady after {not_ready:.0f}s, Stalled ({stall['reason']}) after {stalled:.0f}s, tainted "
            f"out-of-service then; the run ended {time.monotonic() - killed:.0f}s after the loss"
        )
    finally:
        faults.bring_back(cluster, victim)
    replaced = [p for p in run.generate_pods(running=False) if p.spec.node_name == victim_name]
    assert not replaced, "pods of the lost node are left over"
    assert_survived(fig, undisturbed, in_flight)


def lost_node_stall(status: dict, node: str) -> dict | None:
    """The Stalled condition naming the lost node, if the status has it."""
    c = condition({"status": status}, "Stalled")
    if c and c.get("status") == "True" and c.get("reason") == "PodsOnLostNode" and node in (c.get("message") or ""):
        return c
    return None
