"""The spec's one source is its typed classes (datasetjob.spec.api): the schema is generated from
them and a validated spec is read back into them."""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import yaml

from datasetjob.spec.api import SpecFields
from datasetjob.spec.apitypes import (
    Schema,
    SchemaStyle,
    Shape,
    api_field,
    api_object,
    cel_rule,
    defaulted_field,
    from_api,
    required_field,
    schema_of,
    to_api,
)
from datasetjob.spec.model import spec_from_dict
from datasetjob.spec.schema import spec_schema, validate_spec

REPO = Path(__file__).resolve().parents[2]

FULL_SPEC = {
    "items": {"product": {"symbol": ["A", "B"], "date": ["d1"]}, "productOrder": ["date", "symbol"]},
    "shards": 2,
    "parallelism": 1,
    "queueName": "team-a",
    "workloadPriorityClassName": "batch-low",
    "generator": {
        "image": "img:1",
        "imagePullPolicy": "Never",
        "imagePullSecrets": [{"name": "regcred"}],
        "function": "m:f",
        "version": "2",
        "concurrency": 4,
        "startupStaggerSeconds": 1.5,
        "env": [{"name": "A", "value": "1"}, {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}],
        "resources": {"requests": {"cpu": "250m", "memory": 1024}},
        "nodeSelector": {"pool": "batch"},
        "tolerations": [{"key": "batch", "operator": "Exists"}],
        "affinity": {"nodeAffinity": {"x": 1}},
        "topologySpreadConstraints": [
            {"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "ScheduleAnyway", "matchLabelKeys": ["a"]}
        ],
        "priorityClassName": "low",
        "runtimeClassName": "gvisor",
        "serviceAccountName": "sa",
        "podLabels": {"team": "research"},
        "podAnnotations": {"a": "b"},
    },
    "cache": {"redisUrl": "", "ttlSeconds": 60, "namespace": "shared"},
    "rateLimit": {"requestsPerSecond": 2.5, "burst": 3, "scope": "api"},
    "output": {
        "uri": "file:///tmp/x",
        "format": "jsonl",
        "endpointUrl": "http://s3",
        "region": "r",
        "credentialsSecret": "c",
    },
    "retries": {"perShard": 1, "maxFailedShards": 1},
    "combine": {
        "dedupeBy": ["symbol"],
        "sortBy": ["date"],
        "minItemSuccessRatio": 0.5,
        "columns": {"symbol": "string", "date": "string"},
        "resources": {"limits": {"memory": "2Gi"}},
    },
    "reuse": {"enabled": False, "maxAgeSeconds": 10},
    "suspend": True,
    "ttlSecondsAfterFinished": 86400,
}


def _crd_spec_schema() -> dict:
    crd = yaml.safe_load((REPO / "manifests" / "crd.yaml").read_text())
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]


def test_the_generated_schema_is_the_one_the_crd_carries_key_order_included():
    assert json.dumps(spec_schema()) == json.dumps(_crd_spec_schema())


def test_a_fully_written_spec_round_trips_through_the_types():
    raw = validate_spec(FULL_SPEC)
    assert to_api(from_api(SpecFields, raw)) == raw


def test_a_parsed_spec_is_typed():
    s = spec_from_dict("demo", FULL_SPEC, "ml")
    assert s.items.product == (("date", ("d1",)), ("symbol", ("A", "B")))
    assert s.generator.command is None and s.generator.startup_stagger_seconds == 1.5
    assert s.generator.env[1] == FULL_SPEC["generator"]["env"][1]  # Kubernetes types stay dicts
    assert s.generator.tolerations == ({"key": "batch", "operator": "Exists"},)
    assert s.combine.dedupe_by == ("symbol",) and dict(s.combine.columns) == {"symbol": "string", "date": "string"}
    assert s.rate_limit is not None and (s.rate_limit.burst, s.rate_limit.scope) == (3, "api")
    assert (s.per_shard_retries, s.max_failed_shards, s.workload_priority_class) == (1, 1, "batch-low")
    assert s.reuse.enabled is False and s.reuse.max_age_seconds == 10 and s.cache.namespace == "shared"


def test_defaults_that_depend_on_the_datasetjob_are_filled_in():
    s = spec_from_dict(
        "demo",
        {"items": {"range": {"stop": 3}}, "generator": {"function": "m:f"}, "rateLimit": {"requestsPerSecond": 0.2}},
    )
    assert s.items.range == (0, 3, 1)
    assert s.rate_limit is not None and (s.rate_limit.burst, s.rate_limit.scope) == (1, "demo")
    assert s.cache.namespace == "demo" and s.parallelism == s.shards == 1
    assert isinstance(s.combine.min_item_success_ratio, float)


@dataclass(frozen=True, kw_only=True)
class _Part:
    name: str = required_field("Its name.", minLength=1)


@api_object({"x-kubernetes-validations": [cel_rule("self.size > 0", "must be positive", ".size")]})
@dataclass(frozen=True, kw_only=True)
class _Thing:
    size: int = defaulted_field("How big.", 1, minimum=1)
    tags: tuple[Annotated[str, Schema(minLength=1)], ...] = api_field("Tags.", ())
    part: _Part = required_field("A part.")
    extra: Annotated[dict[str, Any], Shape(_Part)] | None = api_field("Kept as a dict.")


def test_fields_and_classes_make_the_schema():
    schema = schema_of(_Thing)
    assert schema == {
        "type": "object",
        "required": ["part"],
        "x-kubernetes-validations": [{"rule": "self.size > 0", "message": "must be positive", "fieldPath": ".size"}],
        "properties": {
            "size": {"type": "integer", "minimum": 1, "default": 1, "description": "How big."},
            "tags": {"type": "array", "items": {"type": "string", "minLength": 1}, "description": "Tags."},
            "part": {
                "type": "object",
                "required": ["name"],
                "description": "A part.",
                "properties": {"name": {"type": "string", "minLength": 1, "description": "Its name."}},
            },
            "extra": {
                "type": "object",
                "required": ["name"],
                "description": "Kept as a dict.",
                "properties": {"name": {"type": "string", "minLength": 1, "description": "Its name."}},
            },
        },
    }
    # The other layout: nested schemas first, then keywords, then the description.
    described_last = schema_of(_Thing, SchemaStyle(integer_format="int64", description_last=True))
    assert list(described_last["properties"]["size"]) == ["type", "format", "minimum", "default", "description"]


def test_api_dicts_read_into_the_types_and_back():
    thing = from_api(_Thing, {"tags": ["a"], "part": {"name": "p"}, "extra": {"name": "e"}, "unknown": 1})
    assert thing == _Thing(tags=("a",), part=_Part(name="p"), extra={"name": "e"})
    assert to_api(thing) == {"size": 1, "tags": ["a"], "part": {"name": "p"}, "extra": {"name": "e"}}
