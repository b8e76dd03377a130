"""Where a run's pods land and how they leave a lost node; the operator's replicas. Pure."""

import random

import pytest

from datasetjob.spec.model import run_id, spec_from_dict
from datasetjob_operator import naming, peering, planning
from datasetjob_operator.settings import Settings

SPEC = {
    "items": {"product": {"symbol": ["A", "B", "C"], "date": ["d1", "d2"]}, "idTemplate": "{symbol}:{date}"},
    "shards": 3,
    "generator": {"image": "acme/gen:1", "function": "smart_money.generate:example"},
    "output": {"uri": "s3://bucket/smf"},
}
RID = run_id(spec_from_dict("smf", SPEC).raw_spec)
UNREACHABLE, NOT_READY = planning.NODE_LOSS_TAINTS


def _pods(generator=None, settings=None):
    spec = dict(SPEC, generator=dict(SPEC["generator"], **(generator or {})))
    run = planning.Run("smf", "ml", "uid-1", RID, "0", spec_from_dict("smf", spec, "ml"))
    settings = settings or Settings()
    jobs = {
        "plan": planning.plan_job(run, settings),
        "generate": planning.generate_job(run, settings),
        "combine": planning.combine_job(run, settings),
    }
    return {role: j["spec"]["template"] for role, j in jobs.items()}


def _by_key(tolerations):
    return {t.get("key"): t for t in tolerations}


def test_every_pod_leaves_a_lost_node_after_the_installations_toleration():
    for role, template in _pods(settings=Settings.from_env({"DSJ_NODE_LOSS_TOLERATION_SECONDS": "45"})).items():
        tolerations = _by_key(template["spec"]["tolerations"])
        for key in (UNREACHABLE, NOT_READY):
            assert tolerations[key] == {
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 45,
            }, role


def test_the_default_toleration_is_short():
    assert Settings().node_loss_toleration_seconds == 30
    assert _by_key(_pods()["generate"]["spec"]["tolerations"])[UNREACHABLE]["tolerationSeconds"] == 30


def test_the_users_tolerations_stay_and_win_for_the_same_key():
    theirs = [
        {"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 600},
    ]
    for template in _pods({"tolerations": theirs}).values():
        tolerations = template["spec"]["tolerations"]
        assert tolerations[:2] == theirs
        assert [t for t in tolerations if t["key"] == UNREACHABLE] == [theirs[1]]  # not shortened by ours
        assert _by_key(tolerations)[NOT_READY]["tolerationSeconds"] == 30


def test_a_toleration_of_every_taint_replaces_ours():
    everything = [{"operator": "Exists"}]
    for template in _pods({"tolerations": everything}).values():
        assert template["spec"]["tolerations"] == everything


def test_a_toleration_of_another_effect_does_not_cover_node_loss():
    theirs = [{"key": UNREACHABLE, "operator": "Exists", "effect": "NoSchedule"}]
    tolerations = _pods({"tolerations": theirs})["generate"]["spec"]["tolerations"]
    assert tolerations[0] == theirs[0]
    assert {t["key"] for t in tolerations if t.get("effect") == "NoExecute"} == {UNREACHABLE, NOT_READY}


def test_generate_pods_of_a_run_spread_over_nodes_by_default():
    pods = _pods()
    template = pods["generate"]
    (spread,) = template["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["whenUnsatisfiable"] == "ScheduleAnyway" and spread["maxSkew"] == 1
    selector = spread["labelSelector"]["matchLabels"]
    assert selector == naming.labels("smf", RID, "0", naming.ROLE_GENERATE)
    assert selector.items() <= template["metadata"]["labels"].items()  # it selects the run's own pods
    # One pod each: nothing to spread.
    assert "topologySpreadConstraints" not in pods["plan"]["spec"]
    assert "topologySpreadConstraints" not in pods["combine"]["spec"]


@pytest.mark.parametrize(
    "theirs",
    [
        {"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": []}}}},
        {
            "topologySpreadConstraints": [
                {"maxSkew": 2, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "DoNotSchedule"}
            ]
        },
    ],
    ids=["affinity", "topologySpreadConstraints"],
)
def test_the_users_placement_wins_over_the_default_spread(theirs):
    spec = _pods(theirs)["generate"]["spec"]
    assert spec.get("topologySpreadConstraints") == theirs.get("topologySpreadConstraints")
    assert spec.get("affinity") == theirs.get("affinity")


def test_peering_settings_come_from_the_environment():
    assert Settings().peering == "" and Settings().peering_lifetime == 10
    s = Settings.from_env({"DSJ_PEERING": "datasetjob", "DSJ_PEERING_LIFETIME": "7"})
    assert s.peering == "datasetjob" and s.peering_lifetime == 7


def test_the_oldest_replica_has_the_highest_priority_and_no_two_share_one():
    rng = random.Random(1)
    older, newer = peering.priority(1_700_000_000.0, rng), peering.priority(1_700_000_000.001, rng)
    assert older > newer
    same_ms = {peering.priority(1_700_000_000.0, random.Random(seed)) for seed in range(50)}
    assert len(same_ms) > 1 and all(newer < p for p in same_ms)


def test_peering_crds_are_kopfs():
    crds = {c["spec"]["names"]["kind"]: c for c in peering.build_peering_crds()}
    assert crds["ClusterKopfPeering"]["spec"]["scope"] == "Cluster"
    assert crds["KopfPeering"]["spec"]["scope"] == "Namespaced"
    for crd in crds.values():
        assert crd["spec"]["group"] == "kopf.dev" and crd["spec"]["versions"][0]["name"] == "v1"
