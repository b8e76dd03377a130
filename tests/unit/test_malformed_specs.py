"""Every malformed spec: exit code 2, a message naming the field, nothing written."""

import copy

import pytest
import yaml

from datasetjob.cli import main

GOOD = {
    "apiVersion": "datagen.dev/v1alpha1",
    "kind": "DatasetJob",
    "metadata": {"name": "bad-spec"},
    "spec": {
        "items": {"product": {"symbol": ["A", "B"], "date": ["d1", "d2"]}, "idTemplate": "{symbol}:{date}"},
        "shards": 2,
        "generator": {"function": "json:dumps"},
    },
}


def mutate(path, value):
    def apply(doc):
        node = doc
        for key in path[:-1]:
            node = node.setdefault(key, {})
        if value is DELETE:
            node.pop(path[-1])
        else:
            node[path[-1]] = value
        return doc

    return apply


DELETE = object()

CASES = {
    "missing items": (mutate(["spec", "items"], DELETE), "spec.items: is required"),
    "two sources": (
        mutate(["spec", "items", "values"], ["x"]),
        "spec.items: exactly one of values, product, range, fromConfigMap, fromUri",
    ),
    "shards 0": (mutate(["spec", "shards"], 0), "spec.shards: must be >= 1"),
    "non-unique ids": (
        mutate(["spec", "items"], {"values": ["a", "b", "a"]}),
        "spec.items: item ids must be unique; duplicated: 'a'",
    ),
    "unknown format": (
        mutate(["spec", "output"], {"format": "xlsx"}),
        "spec.output.format: must be one of csv, parquet, jsonl",
    ),
    "unknown field": (mutate(["spec", "shardz"], 3), "spec.shardz: unknown field"),
    "bad idTemplate placeholder": (
        mutate(["spec", "items", "idTemplate"], "{sym}:{date}"),
        "spec.items.idTemplate: unknown field 'sym'",
    ),
    "unimportable function": (
        mutate(["spec", "generator", "function"], "no_such_module_x:fn"),
        "spec.generator.function: cannot import module 'no_such_module_x'",
    ),
    "missing attribute": (
        mutate(["spec", "generator", "function"], "json:nope"),
        "spec.generator.function: module 'json' has no attribute 'nope'",
    ),
    "command without outputFile": (
        mutate(["spec", "generator"], {"command": ["true"]}),
        "spec.generator.outputFile: outputFile is required with command",
    ),
    "function and command": (
        mutate(["spec", "generator", "command"], ["true"]),
        "spec.generator: exactly one of function and command",
    ),
    "negative TTL": (mutate(["spec", "cache"], {"ttlSeconds": -5}), "spec.cache.ttlSeconds: must be >= 1"),
    "parallelism over shards": (mutate(["spec", "parallelism"], 5), "spec.parallelism: must be at most spec.shards"),
    "empty product list": (
        mutate(["spec", "items", "product", "date"], []),
        "spec.items.product.date: must be a non-empty list",
    ),
    "range stop before start": (
        mutate(["spec", "items"], {"range": {"start": 5, "stop": 2}}),
        "spec.items.range: stop must be greater than start",
    ),
    "maxFailedShards too high": (
        mutate(["spec", "retries"], {"maxFailedShards": 2}),
        "spec.retries.maxFailedShards: must be less than spec.shards",
    ),
    "http output": (mutate(["spec", "output"], {"uri": "http://x/y"}), "spec.output.uri: 'http://x/y' does not match"),
    "zero concurrency": (mutate(["spec", "generator", "concurrency"], 0), "spec.generator.concurrency: must be >= 1"),
    "zero rate": (
        mutate(["spec", "rateLimit"], {"requestsPerSecond": 0}),
        "spec.rateLimit.requestsPerSecond: must be > 0",
    ),
    "string shards": (mutate(["spec", "shards"], "ten"), "spec.shards: must be an integer"),
    "unknown column type": (
        mutate(["spec", "combine"], {"columns": {"a": "decimal"}}),
        "spec.combine.columns.a: must be one of string, int64, float64, bool",
    ),
    "ratio over one": (
        mutate(["spec", "combine"], {"minItemSuccessRatio": 1.5}),
        "spec.combine.minItemSuccessRatio: must be <= 1",
    ),
    "wrong kind": (mutate(["kind"], "Job"), "kind: must be DatasetJob"),
    "bad name": (mutate(["metadata", "name"], "Bad_Name"), "metadata.name: 'Bad_Name' must be a DNS label"),
    "productOrder not the keys": (
        mutate(["spec", "items", "productOrder"], ["symbol"]),
        "spec.items.productOrder: must list the product keys ['date', 'symbol'] once each",
    ),
    "productOrder without product": (
        mutate(["spec", "items"], {"values": ["a"], "productOrder": ["a"]}),
        "spec.items.productOrder: productOrder is only meaningful with product",
    ),
    "bad queue name": (mutate(["spec", "queueName"], "Team A"), "spec.queueName: 'Team A' does not match"),
    "bad resource quantity": (
        mutate(["spec", "combine"], {"resources": {"requests": {"memory": "lots"}}}),
        "spec.combine.resources.requests.memory: 'lots' does not match",
    ),
    "unknown resources key": (
        mutate(["spec", "generator", "resources"], {"request": {"cpu": "1"}}),
        "spec.generator.resources.request: unknown field",
    ),
    "bad spread rule": (
        mutate(
            ["spec", "generator", "topologySpreadConstraints"],
            [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "Maybe"}],
        ),
        "spec.generator.topologySpreadConstraints[0].whenUnsatisfiable: must be one of",
    ),
    "pull secret without name": (
        mutate(["spec", "generator", "imagePullSecrets"], [{}]),
        "spec.generator.imagePullSecrets[0].name: is required",
    ),
    "pod label value too long": (
        mutate(["spec", "generator", "podLabels"], {"team": "x" * 64}),
        "spec.generator.podLabels.team",
    ),
    "unknown affinity kind": (
        mutate(["spec", "generator", "affinity"], {"nodeAffinty": {}}),
        "spec.generator.affinity.nodeAffinty: unknown field",
    ),
    "fromConfigMap locally": (
        mutate(["spec", "items"], {"fromConfigMap": {"name": "u", "key": "k"}}),
        "spec.items.fromConfigMap: ConfigMap u/k can only be read in a cluster",
    ),
}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_malformed_spec_is_rejected_naming_the_field(case, command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    change, expected = CASES[case]
    doc = change(copy.deepcopy(GOOD))
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(doc))
    args = [command, str(path)] + (["--output", f"file://{tmp_path}/out", "--quiet"] if command == "run" else [])
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "datasets").exists()


def test_not_yaml(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text("spec: [unclosed")
    assert main(["validate", str(path)]) == 2
    assert "not valid YAML" in capsys.readouterr().err


def test_the_good_spec_is_valid(tmp_path, capsys):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(GOOD))
    assert main(["validate", str(path)]) == 0
    assert "4 items in 2 shards" in capsys.readouterr().out
