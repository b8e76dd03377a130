"""The DatasetJob spec as typed, frozen values. Pure: parsing and validation only, no I/O."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from datasetjob.contract import API_GROUP, API_VERSION, KIND
from datasetjob.errors import SpecError
from datasetjob.spec.limits import MAX_INLINE_ITEMS, MAX_ITEMS
from datasetjob.spec.schema import validate_spec

# A Job name is "<name>-<runId>-gen"/"-combine" and must stay a valid label value (63).
MAX_NAME_LENGTH = 40
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# Fields that change what data a run produces; the rest (parallelism, retries, suspend,
# concurrency, rate limits, cache location, reuse) only change how it is produced.
_SEMANTIC_FIELDS = ("items", "shards", "generator", "output", "combine")
_OPERATIONAL_GENERATOR_FIELDS = (
    "concurrency",
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
    values: tuple | None = None
    product: tuple[tuple[str, tuple], ...] | None = None  # keys in the order written
    range: tuple[int, int, int] | None = None
    from_config_map: tuple[str, str] | None = None
    from_uri: str | None = None
    id_template: str | None = None


@dataclass(frozen=True)
class GeneratorSpec:
    image: str | None
    function: str | None
    command: tuple[str, ...] | None
    output_file: str | None
    working_dir: str | None
    concurrency: int
    startup_stagger_seconds: float
    env: tuple[dict, ...]
    raw: dict = field(compare=False, repr=False)
    version: str | None = None  # bumped by the user: part of the generator fingerprint


@dataclass(frozen=True)
class CacheSpec:
    redis_url: str | None  # None = the default cache of the mode; "" = no cache
    ttl_seconds: int
    namespace: str


def cache_namespace(cache: dict | None, name: str, namespace: str | None) -> str:
    """The cache key prefix of a DatasetJob: spec.cache.namespace, else <namespace>.<name>.

    The one place this is decided: workers write progress and cache entries under it and the
    operator reads live progress under it, so the two can never disagree."""
    # Per Kubernetes namespace by default: tenants never share cache entries by accident.
    return (cache or {}).get("namespace") or (f"{namespace}.{name}" if namespace else name)


@dataclass(frozen=True)
class RateLimitSpec:
    requests_per_second: float
    burst: int
    scope: str


@dataclass(frozen=True)
class OutputSpec:
    uri: str | None
    format: str
    endpoint_url: str | None
    region: str | None
    credentials_secret: str | None


@dataclass(frozen=True)
class ReuseSpec:
    enabled: bool = True
    max_age_seconds: int | None = None  # None: rows never go stale


@dataclass(frozen=True)
class CombineSpec:
    dedupe_by: tuple[str, ...]
    sort_by: tuple[str, ...]
    min_item_success_ratio: float
    columns: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class DatasetJobSpec:
    name: str
    namespace: str | None
    items: ItemsSpec
    shards: int
    parallelism: int
    generator: GeneratorSpec
    cache: CacheSpec
    rate_limit: RateLimitSpec | None
    output: OutputSpec
    per_shard_retries: int
    max_failed_shards: int
    combine: CombineSpec
    suspend: bool
    ttl_seconds_after_finished: int | None
    queue_name: str | None
    workload_priority_class: str | None
    raw_spec: dict = field(compare=False, repr=False)
    reuse: ReuseSpec = ReuseSpec()

    def with_output_uri(self, uri: str) -> DatasetJobSpec:
        raw = dict(self.raw_spec, output=dict(self.raw_spec.get("output") or {}, uri=uri))
        return spec_from_dict(self.name, raw, self.namespace)

    def to_document(self) -> dict:
        meta = {"name": self.name}
        if self.namespace:
            meta["namespace"] = self.namespace
        return {"apiVersion": f"{API_GROUP}/{API_VERSION}", "kind": KIND, "metadata": meta, "spec": self.raw_spec}


def _items(raw: dict) -> ItemsSpec:
    product = raw.get("product")
    order = raw.get("productOrder")
    if order is not None and not product:
        raise SpecError(["spec.items.productOrder: productOrder is only meaningful with product"])
    if product and order:
        if sorted(order) != sorted(product):
            raise SpecError(
                [f"spec.items.productOrder: must list the product keys {sorted(product)} once each, got {order}"]
            )
        product = {k: product[k] for k in order}
    rng = raw.get("range")
    cm = raw.get("fromConfigMap")
    return ItemsSpec(
        values=tuple(raw["values"]) if "values" in raw else None,
        product=tuple((k, tuple(v)) for k, v in product.items()) if product else None,
        range=(rng.get("start", 0), rng["stop"], rng.get("step", 1)) if rng else None,
        from_config_map=(cm["name"], cm["key"]) if cm else None,
        from_uri=raw.get("fromUri"),
        id_template=raw.get("idTemplate"),
    )


def _template_fields(template: str) -> list[str]:
    import string

    try:
        return [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:
        raise SpecError([f"spec.items.idTemplate: {exc}"]) from None


def _check_id_template(items: ItemsSpec) -> list[str]:
    if not items.id_template:
        return []
    names = _template_fields(items.id_template)
    if not names:
        return ["spec.items.idTemplate: has no {field} placeholder, so every id would be the same"]
    bad = [n for n in names if not n or not n.isidentifier()]
    if bad:
        return [f"spec.items.idTemplate: placeholders must be field names, got {bad!r}"]
    if items.product is not None:
        keys = [k for k, _ in items.product]
        missing = [n for n in names if n not in keys]
        if missing:
            return [f"spec.items.idTemplate: unknown field {missing[0]!r} (product keys: {', '.join(keys)})"]
    return []


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


def _check_combine_columns(combine: dict) -> list[str]:
    """sortBy/dedupeBy must name declared columns: otherwise the run would be refused after generating."""
    declared = combine.get("columns")
    if not declared:
        return []
    problems = []
    for field_name in ("sortBy", "dedupeBy"):
        for i, column in enumerate(combine.get(field_name) or ()):
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
        raise SpecError(problems + exc.problems) from None
    try:
        items = _items(raw["items"])
    except SpecError as exc:
        raise SpecError(problems + exc.problems) from None
    problems += _check_id_template(items)
    problems += _check_item_counts(items)
    if rules:
        problems += _check_combine_columns(raw["combine"])
    if problems:
        raise SpecError(problems)

    gen = raw["generator"]
    cache = raw.get("cache") or {}
    rl = raw.get("rateLimit")
    out = raw.get("output") or {}
    combine = raw["combine"]
    shards = raw["shards"]
    return DatasetJobSpec(
        name=name,
        namespace=namespace,
        items=items,
        shards=shards,
        parallelism=raw.get("parallelism", shards),
        generator=GeneratorSpec(
            image=gen.get("image"),
            function=gen.get("function"),
            command=tuple(gen["command"]) if "command" in gen else None,
            output_file=gen.get("outputFile"),
            working_dir=gen.get("workingDir"),
            concurrency=gen["concurrency"],
            startup_stagger_seconds=float(gen["startupStaggerSeconds"]),
            env=tuple(gen.get("env") or ()),
            raw=gen,
            version=gen.get("version"),
        ),
        cache=CacheSpec(
            redis_url=cache.get("redisUrl"),
            ttl_seconds=cache.get("ttlSeconds", 604800),
            namespace=cache_namespace(cache, name, namespace),
        ),
        rate_limit=RateLimitSpec(
            requests_per_second=float(rl["requestsPerSecond"]),
            burst=int(rl.get("burst") or max(1, round(rl["requestsPerSecond"]))),
            scope=rl.get("scope") or name,
        )
        if rl
        else None,
        output=OutputSpec(
            uri=out.get("uri"),
            format=out.get("format", "csv"),
            endpoint_url=out.get("endpointUrl"),
            region=out.get("region"),
            credentials_secret=out.get("credentialsSecret"),
        ),
        per_shard_retries=raw["retries"]["perShard"],
        max_failed_shards=raw["retries"]["maxFailedShards"],
        combine=CombineSpec(
            dedupe_by=tuple(combine.get("dedupeBy") or ()),
            sort_by=tuple(combine.get("sortBy") or ()),
            min_item_success_ratio=float(combine["minItemSuccessRatio"]),
            columns=tuple((combine.get("columns") or {}).items()),
        ),
        suspend=raw["suspend"],
        ttl_seconds_after_finished=raw.get("ttlSecondsAfterFinished"),
        queue_name=raw.get("queueName"),
        workload_priority_class=raw.get("workloadPriorityClassName"),
        raw_spec=raw,
        reuse=ReuseSpec(
            enabled=(raw.get("reuse") or {}).get("enabled", True),
            max_age_seconds=(raw.get("reuse") or {}).get("maxAgeSeconds"),
        ),
    )


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
    meta = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
    if "spec" not in doc:
        problems.append("spec: is required")
    if problems:
        raise SpecError(problems)
    return spec_from_dict(meta.get("name"), doc["spec"], meta.get("namespace"), rules=rules)


def semantic_spec(raw_spec: dict) -> dict:
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


def run_id(raw_spec: dict, regenerate_token: str | None = None) -> str:
    """8 hex digits: same semantic spec (and token) → same run; any change → a new run."""
    # canonical_json sorts keys, but the order of product keys decides the item order: keep it.
    items = raw_spec.get("items") or {}
    order = items.get("productOrder") or list(items.get("product") or {})
    payload = canonical_json(
        {"spec": semantic_spec(raw_spec), "regenerate": regenerate_token or "", "productOrder": order}
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:8]
