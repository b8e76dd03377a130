"""The DatasetJob spec as typed, frozen values (`spec.api` defines its fields and so its schema),
validated, with the defaults that depend on the DatasetJob filled in, and its run id. Pure:
parsing and validation only, no I/O."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from datasetjob.contract import API_GROUP, API_VERSION, KIND
from datasetjob.errors import SpecError
from datasetjob.spec.api import (
    ID_TEMPLATE_FIELD,
    BudgetFields,
    CacheFields,
    CombineSpec,
    GeneratorSpec,
    ItemSource,
    OutputSpec,
    RateLimitFields,
    ReuseSpec,
    SpecFields,
)
from datasetjob.spec.apitypes import from_api
from datasetjob.spec.limits import MAX_ID_TEMPLATE_LENGTH, MAX_INLINE_ITEMS, MAX_ITEMS
from datasetjob.spec.schema import validate_spec

# Public names; the typed parts of a spec are defined in spec.api and re-exported here.
__all__ = [
    "CacheSpec",
    "CombineSpec",
    "DatasetJobSpec",
    "GeneratorSpec",
    "ItemsSpec",
    "OutputSpec",
    "RateLimitSpec",
    "ReuseSpec",
    "cache_namespace",
    "cache_spec",
    "canonical_json",
    "id_template_parts",
    "items_spec",
    "range_length",
    "redis_url_problem",
    "rate_limit_spec",
    "run_id",
    "semantic_spec",
    "spec_from_dict",
    "spec_from_document",
]

# A Job name is "<name>-<runId>-gen"/"-combine" and must stay a valid label value (63).
MAX_NAME_LENGTH = 40
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# Fields that change what data a run produces; the rest (parallelism, retries, suspend,
# concurrency, rate limits, cache location, reuse) only change how it is produced.
_SEMANTIC_FIELDS = ("items", "shards", "generator", "output", "combine")
_OPERATIONAL_GENERATOR_FIELDS = (
    "concurrency",
    "itemTimeoutSeconds",
    "startupStaggerSeconds",
    "resources",
    "nodeSelector",
    "tolerations",
    "serviceAccountName",
    "imagePullPolicy",
    "imagePullSecrets",
    "affinity",
    "topologySpreadConstraints",
    "priorityClassName",
    "runtimeClassName",
    "podLabels",
    "podAnnotations",
)
# Pod settings of the combine step: where and how it runs, not what it produces.
_OPERATIONAL_COMBINE_FIELDS = ("resources",)


@dataclass(frozen=True)
class ItemsSpec:
    """spec.items in the form the item expansion reads: product keys in their final order,
    range and fromConfigMap as tuples."""

    values: tuple[Any, ...] | None = None
    product: tuple[tuple[str, tuple[Any, ...]], ...] | None = None  # keys in the order written
    range: tuple[int, int, int] | None = None
    from_config_map: tuple[str, str] | None = None
    from_uri: str | None = None
    id_template: str | None = None


def items_spec(source: ItemSource) -> ItemsSpec:
    product, order = source.product, source.product_order
    if order is not None and not product:
        raise SpecError(["spec.items.productOrder: productOrder is only meaningful with product"])
    if product and order:
        if sorted(order) != sorted(product):
            raise SpecError(
                [f"spec.items.productOrder: must list the product keys {sorted(product)} once each, got {list(order)}"]
            )
        product = {k: product[k] for k in order}
    rng, cm = source.range, source.from_config_map
    return ItemsSpec(
        values=source.values,
        product=tuple(product.items()) if product else None,
        range=(rng.start, rng.stop, rng.step) if rng else None,
        from_config_map=(cm.name, cm.key) if cm else None,
        from_uri=source.from_uri,
        id_template=source.id_template,
    )


def _default_cache_namespace(name: str, namespace: str | None) -> str:
    # Per Kubernetes namespace by default: tenants never share cache entries by accident.
    return f"{namespace}.{name}" if namespace else name


def cache_namespace(cache: Mapping[str, Any] | None, name: str, namespace: str | None) -> str:
    """The cache key prefix of a DatasetJob: spec.cache.namespace, else <namespace>.<name>.

    The one rule for it: workers write progress and cache entries under it and the
    operator reads live progress under it, so the two can never disagree."""
    return (cache or {}).get("namespace") or _default_cache_namespace(name, namespace)


@dataclass(frozen=True)
class CacheSpec:
    """spec.cache with its key prefix decided (`cache_namespace`)."""

    redis_url: str | None  # None = the default cache of the mode; "" = no cache
    ttl_seconds: int
    namespace: str


@dataclass(frozen=True)
class RateLimitSpec:
    """spec.rateLimit with its bursts and scope decided."""

    requests_per_second: float | None
    burst: int  # of the request limits
    scope: str
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    token_burst: int = 1


def cache_spec(cache: CacheFields, name: str, namespace: str | None) -> CacheSpec:
    prefix = cache.namespace or _default_cache_namespace(name, namespace)
    return CacheSpec(redis_url=cache.redis_url, ttl_seconds=cache.ttl_seconds, namespace=prefix)


def rate_limit_spec(rate_limit: RateLimitFields, name: str) -> RateLimitSpec:
    """Bursts default to one second of their rate (at least 1): the requests burst to that of the
    faster request limit."""
    rps, rpm, tpm = rate_limit.requests_per_second, rate_limit.requests_per_minute, rate_limit.tokens_per_minute
    per_second = rps if rps is not None else (rpm or 0) / 60
    return RateLimitSpec(
        requests_per_second=rps,
        burst=rate_limit.burst or max(1, round(per_second)),
        scope=rate_limit.scope or name,
        requests_per_minute=rpm,
        tokens_per_minute=tpm,
        token_burst=rate_limit.token_burst or max(1, round((tpm or 0) / 60)),
    )


@dataclass(frozen=True)
class DatasetJobSpec:
    """A validated spec: its typed fields, its items ready to expand, and the DatasetJob's
    identity. `raw_spec` is the defaulted document, which run ids and fingerprints hash."""

    name: str
    namespace: str | None
    fields: SpecFields
    items: ItemsSpec
    cache: CacheSpec
    rate_limit: RateLimitSpec | None
    raw_spec: dict[str, Any] = field(compare=False, repr=False)

    @property
    def shards(self) -> int:
        return self.fields.shards

    @property
    def parallelism(self) -> int:
        given = self.fields.parallelism
        return self.fields.shards if given is None else given

    @property
    def generator(self) -> GeneratorSpec:
        return self.fields.generator

    @property
    def output(self) -> OutputSpec:
        return self.fields.output

    @property
    def combine(self) -> CombineSpec:
        return self.fields.combine

    @property
    def reuse(self) -> ReuseSpec:
        return self.fields.reuse

    @property
    def budget(self) -> BudgetFields | None:
        return self.fields.budget

    @property
    def per_shard_retries(self) -> int:
        return self.fields.retries.per_shard

    @property
    def max_failed_shards(self) -> int:
        return self.fields.retries.max_failed_shards

    @property
    def suspend(self) -> bool:
        return self.fields.suspend

    @property
    def ttl_seconds_after_finished(self) -> int | None:
        return self.fields.ttl_seconds_after_finished

    @property
    def queue_name(self) -> str | None:
        return self.fields.queue_name

    @property
    def workload_priority_class(self) -> str | None:
        return self.fields.workload_priority_class_name

    def with_output_uri(self, uri: str) -> DatasetJobSpec:
        raw = dict(self.raw_spec, output=dict(self.raw_spec.get("output") or {}, uri=uri))
        return spec_from_dict(self.name, raw, self.namespace)

    def to_document(self) -> dict[str, Any]:
        meta = {"name": self.name}
        if self.namespace:
            meta["namespace"] = self.namespace
        return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, "metadata": meta, "spec": self.raw_spec}


_TEMPLATE_PIECE = re.compile(r"[^{}]+|\{\{|\}\}|\{(" + ID_TEMPLATE_FIELD + r")\}")


def _template_refusal(template: str, at: int) -> str:
    """Why the template cannot go on at offset `at` (where no allowed piece starts)."""
    if template[at] == "}":
        return f"a single '}}' at offset {at}; write '}}}}' for a literal brace"
    end = template.find("}", at)
    if end < 0:
        return f"'{{' at offset {at} is never closed; write '{{{{' for a literal brace"
    inside = template[at + 1 : end]
    shown = f"{{{inside[:40]}{'…' if len(inside) > 40 else ''}}}"
    if not inside:
        return "'{}' names no field"
    for mark, what in (
        (":", "format specs are"),
        ("!", "conversions are"),
        (".", "attribute access is"),
        ("[", "indexing is"),
    ):
        if mark in inside:
            return f"{shown} uses {mark!r}: {what} not allowed"
    return f"{shown} is not a field name (letters, digits and '_')"


@functools.lru_cache(maxsize=64)
def id_template_parts(template: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(literals, fields) of an id template, one more literal than fields: the id is
    literals[0] + fields[0]'s value + literals[1] + ... Only literal text, {field} placeholders
    and {{ }} escapes are allowed (the schema's pattern says the same); SpecError otherwise."""
    prefix = "spec.items.idTemplate: "
    if len(template) > MAX_ID_TEMPLATE_LENGTH:
        raise SpecError([f"{prefix}longer than {MAX_ID_TEMPLATE_LENGTH} characters (the id template limit)"])
    literals: list[str] = []
    fields: list[str] = []
    text: list[str] = []  # the literal being read
    at = 0
    while at < len(template):
        piece = _TEMPLATE_PIECE.match(template, at)
        if piece is None:
            why = _template_refusal(template, at)
            raise SpecError([f"{prefix}only {{field}} placeholders and {{{{ }}}} escapes are allowed: {why}"])
        if piece.group(1) is not None:
            literals.append("".join(text))
            fields.append(piece.group(1))
            text = []
        else:
            text.append(piece.group(0)[0] if piece.group(0) in ("{{", "}}") else piece.group(0))
        at = piece.end()
    literals.append("".join(text))
    return tuple(literals), tuple(fields)


def _check_id_template(items: ItemsSpec) -> list[str]:
    if not items.id_template:
        return []
    try:
        names = id_template_parts(items.id_template)[1]
    except SpecError as exc:
        return exc.problems
    if not names:
        return ["spec.items.idTemplate: has no {field} placeholder, so every id would be the same"]
    if items.product is not None:
        keys = [k for k, _ in items.product]
        missing = [n for n in names if n not in keys]
        if missing:
            return [f"spec.items.idTemplate: unknown field {missing[0]!r} (product keys: {', '.join(keys)})"]
    return []


def _schema_problem(problem: str, raw: Any) -> str:
    """The schema's message for a bad idTemplate quotes its pattern; say what is wrong instead."""
    field_prefix = "spec.items.idTemplate: "
    items = raw.get("items") if isinstance(raw, dict) else None
    template = items.get("idTemplate") if isinstance(items, dict) else None
    if not problem.startswith(field_prefix) or not isinstance(template, str) or not template:
        return problem
    try:
        id_template_parts(template)
    except SpecError as exc:
        return exc.problems[0]
    return problem


_DB = re.compile(r"[0-9]+")


def redis_url_problem(url: str) -> str | None:
    """What keeps a Redis URL from working (None if nothing): the scheme, the host and a port
    from 1 to 65535, a numeric database. "" (no cache) is fine."""
    if not url:
        return None
    try:
        parts = urlsplit(url)
        query = parse_qs(parts.query, keep_blank_values=True)
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    if parts.scheme not in ("redis", "rediss", "unix"):
        return "must start with redis://, rediss:// or unix://"
    dbs = list(query.get("db") or [])
    if parts.scheme == "unix":
        if not parts.path:
            return "names no socket path (use unix:///path/to/redis.sock)"
    else:
        port_text = parts.netloc.rpartition("@")[2].rpartition("]")[2].partition(":")[2]
        try:
            port = parts.port
        except ValueError:
            port = None
        if port_text and (port is None or not 1 <= port <= 65535):
            return f"port {port_text!r} is not a number from 1 to 65535"
        if not parts.hostname:
            return "names no host (use redis://HOST:PORT/DB)"
        if parts.path.strip("/"):
            dbs.insert(0, parts.path[1:])
    for db in dbs:
        if not _DB.fullmatch(db):
            return f"database {db!r} is not a number (use e.g. /0)"
    return None


def range_length(start: int, stop: int, step: int) -> int:
    """len(range(start, stop, step)) for any size (len() of a range overflows past sys.maxsize)."""
    return max(0, (stop - start + step - 1) // step)


def _check_item_counts(items: ItemsSpec) -> list[str]:
    """Sources whose size is known from the spec alone, checked before anything is expanded."""
    if items.values is not None and len(items.values) > MAX_INLINE_ITEMS:
        return [
            f"spec.items.values: {len(items.values)} items exceed the inline limit of {MAX_INLINE_ITEMS}; "
            "put them in a file (one JSON item per line) and use spec.items.fromUri"
        ]
    if items.range is not None:
        n = range_length(*items.range)
        if n > MAX_ITEMS:
            return [f"spec.items.range: {n} items, over the limit of {MAX_ITEMS} items per run"]
    if items.product is not None:
        n = 1
        for _, values in items.product:
            n *= len(values)
        if n > MAX_ITEMS:
            sizes = " x ".join(str(len(v)) for _, v in items.product)
            return [f"spec.items.product: {sizes} = {n} items, over the limit of {MAX_ITEMS} items per run"]
    return []


def _check_combine_columns(combine: CombineSpec) -> list[str]:
    """sortBy/dedupeBy must name declared columns: otherwise the run would be refused after generating."""
    declared = combine.columns
    if not declared:
        return []
    problems = []
    for field_name, columns in (("sortBy", combine.sort_by), ("dedupeBy", combine.dedupe_by)):
        for i, column in enumerate(columns):
            if column not in declared:
                problems.append(
                    f"spec.combine.{field_name}[{i}]: column {column!r} is not in spec.combine.columns "
                    f"({', '.join(declared)})"
                )
    return problems


def spec_from_dict(name: str, spec: Any, namespace: str | None = None, rules: bool = True) -> DatasetJobSpec:
    """Validate and type a raw `spec` mapping (as stored in the API server or a YAML file)."""
    problems = []
    if not isinstance(name, str) or not _NAME_RE.match(name or "") or len(name) > MAX_NAME_LENGTH:
        problems.append(
            f"metadata.name: {name!r} must be a DNS label (lowercase letters, digits, '-') "
            f"of at most {MAX_NAME_LENGTH} characters"
        )
    try:
        raw = validate_spec(spec, rules=rules)
    except SpecError as exc:
        raise SpecError(problems + [_schema_problem(p, spec) for p in exc.problems]) from None
    fields: SpecFields = from_api(SpecFields, raw)
    try:
        items = items_spec(fields.items)
    except SpecError as exc:
        raise SpecError(problems + exc.problems) from None
    problems += _check_id_template(items)
    problems += _check_item_counts(items)
    if fields.cache.redis_url:
        bad_url = redis_url_problem(fields.cache.redis_url)
        if bad_url:
            problems.append(f"spec.cache.redisUrl: {bad_url}")
    if rules:
        problems += _check_combine_columns(fields.combine)
    if problems:
        raise SpecError(problems)
    rate_limit = rate_limit_spec(fields.rate_limit, name) if fields.rate_limit else None
    return DatasetJobSpec(name, namespace, fields, items, cache_spec(fields.cache, name, namespace), rate_limit, raw)


def spec_from_document(doc: Any, rules: bool = True) -> DatasetJobSpec:
    """Validate a whole DatasetJob object (apiVersion, kind, metadata, spec)."""
    if not isinstance(doc, dict):
        raise SpecError(["document: must be a DatasetJob mapping"])
    problems = []
    want_api = f"{API_GROUP}/{API_VERSION}"
    if doc.get("apiVersion") != want_api:
        problems.append(f"apiVersion: must be {want_api}, got {doc.get('apiVersion')!r}")
    if doc.get("kind") != KIND:
        problems.append(f"kind: must be {KIND}, got {doc.get('kind')!r}")
    unknown = sorted(set(doc) - {"apiVersion", "kind", "metadata", "spec", "status"})
    if unknown:
        problems.append(f"{unknown[0]}: unknown field")
    metadata = doc.get("metadata")
    meta: dict[str, Any] = metadata if isinstance(metadata, dict) else {}
    if "spec" not in doc:
        problems.append("spec: is required")
    if problems:
        raise SpecError(problems)
    name: Any = meta.get("name")  # spec_from_dict refuses what is not a DNS label
    return spec_from_dict(name, doc["spec"], meta.get("namespace"), rules=rules)


def semantic_spec(raw_spec: dict[str, Any]) -> dict[str, Any]:
    """The part of a spec that determines the data; its hash is the run id."""
    out = {k: raw_spec[k] for k in _SEMANTIC_FIELDS if k in raw_spec}
    gen = {k: v for k, v in out["generator"].items() if k not in _OPERATIONAL_GENERATOR_FIELDS}
    out["generator"] = gen
    if "combine" in out:
        out["combine"] = {k: v for k, v in out["combine"].items() if k not in _OPERATIONAL_COMBINE_FIELDS}
    # Where the data goes is not what the data is: only the format counts.
    out["output"] = {"format": (out.get("output") or {}).get("format", "csv")}
    return out


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def run_id(raw_spec: dict[str, Any], regenerate_token: str | None = None) -> str:
    """8 hex digits: same semantic spec (and token) → same run; any change → a new run."""
    # canonical_json sorts keys, but the order of product keys decides the item order: keep it.
    items = raw_spec.get("items") or {}
    order = items.get("productOrder") or list(items.get("product") or {})
    payload = canonical_json(
        {"spec": semantic_spec(raw_spec), "regenerate": regenerate_token or "", "productOrder": order}
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:8]
