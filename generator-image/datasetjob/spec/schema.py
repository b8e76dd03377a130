"""The spec schema, generated from the typed spec (`spec.api`), and what it drives locally:
defaults, structure, CEL rules.

The CRD carries the same schema, so the API server and `dsj validate` agree.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator, Sequence
from typing import Any

from datasetjob.errors import SpecError
from datasetjob.spec.api import SPEC_DESCRIPTION, SpecFields
from datasetjob.spec.apitypes import schema_of


@functools.cache
def spec_schema() -> dict[str, Any]:
    """The OpenAPI v3 (structural) schema of `spec`, as the CRD carries it."""
    return {"type": "object", "description": SPEC_DESCRIPTION, **schema_of(SpecFields)}


@functools.cache
def _closed_spec_schema() -> dict[str, Any]:
    return _closed(spec_schema())


def _closed(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy that rejects unknown fields, like the API server's strict field validation."""
    out = copy.deepcopy(schema)

    def close(node: Any) -> None:
        if not isinstance(node, dict):
            return
        if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            node.setdefault("additionalProperties", False)
        for child in (node.get("properties") or {}).values():
            close(child)
        if isinstance(node.get("items"), dict):
            close(node["items"])
        if isinstance(node.get("additionalProperties"), dict):
            close(node["additionalProperties"])

    close(out)
    return out


def apply_defaults(value: Any, schema: dict[str, Any] | None = None) -> Any:
    """Fill in schema defaults the way the API server does (absent fields only, recursively)."""
    schema = spec_schema() if schema is None else schema
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        out = dict(value)
        for name, sub in props.items():
            if name not in out and "default" in sub:
                out[name] = copy.deepcopy(sub["default"])
            if name in out:
                out[name] = apply_defaults(out[name], sub)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for name in out:
                if name not in props:
                    out[name] = apply_defaults(out[name], extra)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(v, schema["items"]) for v in value]
    return value


def _path(base: str, parts: Sequence[str | int]) -> str:
    out = base
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _describe(error: Any) -> tuple[list[str | int], str]:
    """A jsonschema error as (path parts, human message)."""
    parts = list(error.absolute_path)
    v, arg = error.validator, error.validator_value
    if v == "required":
        missing = [p for p in arg if p not in (error.instance or {})]
        return parts + [missing[0] if missing else "?"], "is required"
    if v == "additionalProperties":
        known = set(error.schema.get("properties") or {})
        unknown = sorted(k for k in error.instance if k not in known)
        allowed = ", ".join(sorted(known))
        return parts + [unknown[0] if unknown else "?"], f"unknown field (known fields: {allowed})"
    if v == "minItems":
        return parts, "must be a non-empty list" if arg == 1 else f"must have at least {arg} entries"
    if v == "minProperties":
        return parts, "must not be empty"
    if v == "minLength":
        return parts, "must not be empty"
    if v == "type":
        kind = {"array": "list", "object": "mapping"}.get(arg, arg)
        article = "an" if kind[0] in "aeiou" else "a"
        return parts, f"must be {article} {kind}, got {type(error.instance).__name__} {error.instance!r:.60}"
    if v == "enum":
        return parts, f"must be one of {', '.join(map(str, arg))}, got {error.instance!r}"
    if v == "minimum":
        op = ">" if error.schema.get("exclusiveMinimum") else ">="
        return parts, f"must be {op} {arg}, got {error.instance!r}"
    if v == "maximum":
        return parts, f"must be <= {arg}, got {error.instance!r}"
    if v == "oneOf" and all(list(s) == ["required"] for s in arg):
        names = ", ".join(s["required"][0] for s in arg)
        return parts, f"exactly one of {names} must be set"
    if v == "pattern":
        return parts, f"{error.instance!r} does not match {arg}"
    return parts, error.message


def _structure_errors(spec: dict[str, Any], base: str) -> list[str]:
    import jsonschema  # the schema is OpenAPI 3.0, whose keywords follow JSON Schema draft 4

    validator = jsonschema.Draft4Validator(_closed_spec_schema())
    problems = []
    for err in sorted(validator.iter_errors(spec), key=lambda e: list(map(str, e.absolute_path))):
        parts, message = _describe(err)
        problems.append(f"{_path(base, parts)}: {message}")
    return problems


def _walk_rules(value: Any, schema: dict[str, Any], path: str) -> Iterator[tuple[str, dict[str, Any], Any]]:
    for rule in schema.get("x-kubernetes-validations") or []:
        yield path, rule, value
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for name, child in value.items():
            sub = props.get(name) or (extra if isinstance(extra, dict) else None)
            if sub:
                yield from _walk_rules(child, sub, f"{path}.{name}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, child in enumerate(value):
            yield from _walk_rules(child, schema["items"], f"{path}[{i}]")


@functools.cache
def _compiled(rule: str) -> Any:
    import celpy

    env = celpy.Environment()
    return env.program(env.compile(rule))


def _cel_errors(spec: dict[str, Any], base: str) -> list[str]:
    import celpy
    from celpy.adapter import json_to_cel

    problems = []
    for path, rule, value in _walk_rules(spec, spec_schema(), base):
        result = _compiled(rule["rule"]).evaluate({"self": json_to_cel(value)})
        if result is not True and not (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            problems.append(f"{path}{rule.get('fieldPath', '')}: {rule['message']}")
    return problems


def validate_spec(spec: Any, base: str = "spec", rules: bool = True) -> dict[str, Any]:
    """Defaulted copy of `spec`, or SpecError naming every bad field.

    `rules=False` only applies the defaults: for workers, whose document the API server or
    `dsj run` has already checked in full (checking again costs ~0.3 s of CPU per process,
    which on a small machine is time taken from the other workers)."""
    if not isinstance(spec, dict):
        raise SpecError([f"{base}: must be a mapping"])
    defaulted: dict[str, Any] = apply_defaults(spec)
    if not rules:
        return defaulted
    problems = _structure_errors(defaulted, base)
    if not problems:  # CEL rules assume the structure holds, as in the API server
        problems = _cel_errors(defaulted, base)
    if problems:
        raise SpecError(problems)
    return defaulted
