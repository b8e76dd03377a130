"""`kubectl explain datasetjob.spec...` answers for every field: each property of the spec
schema (the one source of the CRD) carries a description written for users."""

from datasetjob.spec.schema import spec_schema
from datasetjob_operator.crd import build_crd


def _undescribed(node: dict, path: str) -> list[str]:
    missing = []
    for name, child in (node.get("properties") or {}).items():
        child_path = f"{path}.{name}"
        if not (child.get("description") or "").strip():
            missing.append(child_path)
        missing += _undescribed(child, child_path)
    for key, suffix in (("items", "[]"), ("additionalProperties", ".<key>")):
        if isinstance(node.get(key), dict):
            missing += _undescribed(node[key], path + suffix)
    return missing


def test_every_spec_property_has_a_description():
    missing = _undescribed(spec_schema(), "spec")
    assert not missing, "add a description (what it does, units, default, an example) to:\n  " + "\n  ".join(missing)


def test_the_walk_finds_nested_properties():
    schema = {
        "properties": {
            "a": {"description": "x", "items": {"properties": {"b": {}}}},
            "c": {"additionalProperties": {"properties": {"d": {"description": "y"}}}},
        }
    }
    assert _undescribed(schema, "spec") == ["spec.a[].b", "spec.c"]


def test_the_crd_carries_the_descriptions():
    spec = build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert "LocalQueue" in spec["properties"]["queueName"]["description"]
    assert "7 days" in spec["properties"]["cache"]["properties"]["ttlSeconds"]["description"]
