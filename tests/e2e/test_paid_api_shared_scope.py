"""Two DatasetJobs of the LLM sample (manifests/samples/llm-labels.yaml, in its example image)
share one `spec.rateLimit.scope` with a tokensPerMinute limit, both calling one OpenAI-compatible
upstream that runs as a pod of the test's namespace (tests/fixtures/llm_upstream.py, standing in
for a remote paid API, with a token limit of its own). The upstream counts what it accepted:
every item answered exactly once, and its measured token rate, after the first seconds' burst,
within the shared limit. Its 429s and rate are printed.

The upstream's own limit is twice the scope's, so that what it accepts is what the scope let
through: two DatasetJobs each holding the limit on its own would reach twice it."""

from __future__ import annotations

import json
import random
import urllib.request
import uuid
from collections import Counter
from pathlib import Path

import yaml

from tests.e2e.harness.addons import image_ref
from tests.e2e.test_operator import apply, wait_phase
from tests.fixtures import llm_upstream

SAMPLE = Path(__file__).resolve().parents[2] / "manifests" / "samples" / "llm-labels.yaml"
UPSTREAM = "llm-upstream"
PORT = 8000
LIMIT = 18_000  # tokens per minute, the scope's: about 30 s for the two runs' ~8,800 tokens
SCOPE_BURST = LIMIT / 60  # the default tokenBurst: one second's
UPSTREAM_LIMIT = 2 * LIMIT
UPSTREAM_BURST = UPSTREAM_LIMIT / 12  # five seconds' worth: beyond it, 429s
SKIP_SECONDS = 5  # the measured rate leaves out the start: the bursts, pods starting apart
TOLERANCE = 1.10  # the least-squares slope of a few dozen calls wobbles; a limit not shared doubles it
ITEMS_PER_JOB = 50
WORDS = ("good", "bad", "fine", "slow", "fast", "broken", "great", "awful", "cheap", "solid", "late", "quiet")


def texts(prefix: str, count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"id": f"{prefix}-{i:03d}", "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(20, 60)))}
        for i in range(count)
    ]


def install_upstream(cluster, namespace: str) -> str:
    """The upstream as a Deployment of the worker image (its Python runs the fixture, mounted
    from a ConfigMap) and a Service; returns the Service's ClusterIP, routed from this host."""
    source = Path(llm_upstream.__file__).read_text()
    labels = {"app": UPSTREAM}
    docs = [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": UPSTREAM},
            "data": {"llm_upstream.py": source},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": UPSTREAM},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 65532, "runAsGroup": 65532},
                        "containers": [
                            {
                                "name": "upstream",
                                "image": image_ref(cluster.local.addons.images, "worker"),
                                "imagePullPolicy": "IfNotPresent",
                                "command": ["python", "-m", "llm_upstream"],
                                "args": [
                                    *("--host", "0.0.0.0", "--port", str(PORT)),
                                    *("--tokens-per-minute", str(UPSTREAM_LIMIT), "--burst", str(UPSTREAM_BURST)),
                                    *("--latency", "0.05"),
                                ],
                                "env": [
                                    {"name": "PYTHONPATH", "value": "/opt/upstream"},
                                    {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
                                ],
                                "ports": [{"containerPort": PORT}],
                                "readinessProbe": {"httpGet": {"path": "/stats", "port": PORT}, "periodSeconds": 1},
                                "volumeMounts": [{"name": "code", "mountPath": "/opt/upstream", "readOnly": True}],
                                "securityContext": {
                                    "readOnlyRootFilesystem": True,
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }
                        ],
                        "volumes": [{"name": "code", "configMap": {"name": UPSTREAM}}],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": UPSTREAM},
            "spec": {"selector": labels, "ports": [{"port": PORT, "targetPort": PORT}]},
        },
    ]
    for doc in docs:
        cluster.kubectl("apply", "-n", namespace, "-f", "-", input=json.dumps(doc))
    ip = cluster.core.read_namespaced_service(UPSTREAM, namespace).spec.cluster_ip
    cluster.wait_for(lambda: upstream_stats(ip), timeout=180, what="the LLM upstream's /stats", namespace=namespace)
    return ip


def upstream_stats(ip: str, skip_seconds: float = 0) -> dict:
    url = f"http://{ip}:{PORT}/stats?skip_seconds={skip_seconds}"
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def llm_labels(name: str, items: list[dict], image: str, scope: str, namespace: str, bucket: str, s3) -> dict:
    doc = yaml.safe_load(SAMPLE.read_text())
    doc["metadata"] = {"name": name}
    spec = doc["spec"]
    spec["items"]["values"] = items
    spec["generator"]["image"] = image
    for env in spec["generator"]["env"]:
        if env["name"] == "OPENAI_BASE_URL":
            env["value"] = f"http://{UPSTREAM}.{namespace}.svc:{PORT}/v1"
        elif env["name"] == "LLM_MODEL":
            env["value"] = "test-model"
    spec["rateLimit"] = {"scope": scope, "tokensPerMinute": LIMIT}
    spec["retries"] = {"perShard": 1, "maxFailedShards": 0}
    spec["cache"] = {"namespace": f"{name}-{uuid.uuid4().hex[:8]}"}  # nothing cached: every item goes upstream
    spec["output"] = {
        "uri": f"s3://{bucket}/{name}",
        "format": "jsonl",
        "endpointUrl": s3.endpoint_url,
        "credentialsSecret": "s3-credentials",
    }
    return doc


def dataset_rows(s3, uri: str) -> list[dict]:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    body = s3.client().get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    return [json.loads(line) for line in body.splitlines() if line.strip()]


def test_two_datasetjobs_share_one_token_limit_on_one_upstream(cluster, operator, s3_ns, s3, bucket):
    ip = install_upstream(cluster, s3_ns)
    image = image_ref(cluster.local.addons.images, "llm-labels-example")
    scope = f"llm-api-{s3_ns}"
    runs = {name: texts(name, ITEMS_PER_JOB, seed) for seed, name in enumerate(("llm-a", "llm-b"))}
    for name, items in runs.items():
        apply(cluster, s3_ns, llm_labels(name, items, image, scope, s3_ns, bucket, s3))

    status = {name: wait_phase(cluster, operator, s3_ns, name, "Succeeded", timeout=480)["status"] for name in runs}
    for name, items in runs.items():
        st = status[name]
        assert st["items"]["done"] == len(items) and st["items"]["failed"] == 0, st["items"]
        assert st["output"]["rows"] == len(items)
    stats = upstream_stats(ip, SKIP_SECONDS)

    rate = stats["token_rate"]
    per_call = Counter(stats["per_item"].values())
    print(
        f"\nupstream: {stats['calls']} calls, {stats['tokens']} tokens, {stats['throttled']} x 429;"
        f" measured {rate:.0f} tokens/min after the first {SKIP_SECONDS} s against the shared"
        f" limit of {LIMIT} ({rate / LIMIT:.3f} x); calls per item: {dict(sorted(per_call.items()))}"
    )
    # Every item answered once by the upstream: none lost, none twice (a 429 costs nothing there).
    every_id = sorted(item["id"] for items in runs.values() for item in items)
    assert sorted(stats["per_item"]) == every_id
    assert set(stats["per_item"].values()) == {1}, per_call
    # Both runs under one limit, as the upstream measured it; their tokens are many times the
    # scope's burst, so the limit governed most of the runs.
    assert stats["tokens"] >= 20 * SCOPE_BURST
    assert 0 < rate <= TOLERANCE * LIMIT, f"{rate:.0f} tokens/min against a shared limit of {LIMIT}"
    # Each dataset holds its items, with the tokens the upstream billed for each.
    for name, items in runs.items():
        rows = dataset_rows(s3, status[name]["output"]["uri"])
        assert sorted(r["id"] for r in rows) == sorted(item["id"] for item in items)
        assert {r["id"]: r["tokens"] for r in rows} == {i["id"]: stats["item_tokens"][i["id"]] for i in items}
