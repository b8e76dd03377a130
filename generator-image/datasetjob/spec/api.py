"""The DatasetJob spec (datagen.dev/v1alpha1) as typed API objects: the one source of its schema.

The CRD's spec schema is generated from these classes (`schema.spec_schema`), and a validated spec
is read into them (`from_api`), so the schema and the code that reads a spec cannot drift.
The local runner validates against the same schema (structure with jsonschema, the
x-kubernetes-validations CEL rules with a CEL evaluator), so a spec that `dsj validate`
accepts is one the API server accepts and vice versa. Every field has a description written
for users: `kubectl explain datasetjob.spec.<field>` prints it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from datasetjob.spec.apitypes import (
    Schema,
    Shape,
    api_field,
    api_object,
    cel_rule,
    defaulted_field,
    required_field,
)
from datasetjob.spec.limits import MAX_ID_LENGTH, MAX_ID_TEMPLATE_LENGTH

SPEC_DESCRIPTION = (
    "What to generate: an item universe split into shards, a generator run over every item, and "
    "where the combined, deduplicated dataset goes."
)

_DNS_NAME = "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
_LABEL_VALUE = "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$"
_QUANTITY = (
    "^(\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]"
    "|([eE](\\+|-)?(([0-9]+(\\.[0-9]*)?)|(\\.[0-9]+))))?$"
)

# A Kubernetes object (or part of one) passed on to the pods as written.
KubeObject = dict[str, Any]
Quantity = Annotated[int | str, Schema(pattern=_QUANTITY, **{"x-kubernetes-int-or-string": True})]
LabelValue = Annotated[str, Schema(maxLength=63, pattern=_LABEL_VALUE)]
# An id template is literal text, {field} placeholders and {{ }} for literal braces: no format
# specs, conversions, attribute or index access (a width like {k:>999999999} is a memory bomb).
ID_TEMPLATE_FIELD = "[A-Za-z_][A-Za-z0-9_]*"
ID_TEMPLATE_PATTERN = "^(?:[^{}]|\\{\\{|\\}\\}|\\{" + ID_TEMPLATE_FIELD + "\\})*$"
ColumnName = Annotated[str, Schema(minLength=1)]
ColumnType = Annotated[str, Schema(enum=["string", "int64", "float64", "bool"])]
ProductValues = Annotated[tuple[Any, ...], Schema(minItems=1, description="The values of one field of the product.")]


# -- items -----------------------------------------------------------------------------------


@api_object(
    {
        "x-kubernetes-validations": [
            cel_rule("(has(self.start) ? self.start : 0) < self.stop", "stop must be greater than start")
        ]
    }
)
@dataclass(frozen=True, kw_only=True)
class ItemRange:
    start: int = defaulted_field("First item (default 0).", 0)
    stop: int = required_field("Items stop before this value (exclusive).")
    step: int = defaulted_field("Distance between items (default 1).", 1, minimum=1)


@dataclass(frozen=True, kw_only=True)
class ConfigMapKey:
    name: str = required_field("The ConfigMap's name.", minLength=1)
    key: str = required_field("The key inside the ConfigMap, e.g. items.jsonl.", minLength=1)


# oneOf, not CEL: values and product hold untyped data, which CEL cannot see.
@api_object({"oneOf": [{"required": [name]} for name in ("values", "product", "range", "fromConfigMap", "fromUri")]})
@dataclass(frozen=True, kw_only=True)
class ItemSource:
    """spec.items as written; `model.ItemsSpec` is the form the item expansion reads."""

    values: tuple[Any, ...] | None = api_field(
        "Items as an inline list of strings or objects, e.g. [AAPL, MSFT] or "
        '[{symbol: AAPL, date: "2025-01-31"}]. The spec travels in a ConfigMap (1 MiB), so '
        "long lists belong in fromUri.",
        minItems=1,
    )
    product: dict[str, ProductValues] | None = api_field(
        "Cartesian product of lists; each key becomes a field of the object items, e.g. "
        '{symbol: [AAPL, MSFT], date: ["2025-01-31"]} gives {symbol: AAPL, date: 2025-01-31}, ... '
        "The first key varies slowest (see productOrder).",
        minProperties=1,
    )
    product_order: tuple[str, ...] | None = api_field(
        "The order of the product keys (the first varies slowest). Kubernetes stores objects "
        "as JSON maps and sorts their keys, so in a cluster the written order is lost: without "
        "this list product keys are taken in the order written locally and alphabetically in "
        "a cluster."
    )
    range: ItemRange | None = api_field("Integer items start, start+step, ... below stop, like Python's range().")
    from_config_map: ConfigMapKey | None = api_field(
        "A key of a ConfigMap in the DatasetJob's namespace holding JSON lines or one item per "
        "line, e.g. {name: universe, key: items.jsonl}. Mounted into the pods as a file."
    )
    from_uri: str | None = api_field(
        "s3:// or file:// URI of a JSON-lines file (or one item per line), e.g. "
        "s3://bucket/universe.jsonl. Read with the credentials of spec.output.",
        # s3:// needs a bucket and a key; s3:///key has none.
        pattern="^(s3://[^/]+/.+|file://.+)$",
    )
    id_template: str | None = api_field(
        "Template over an object item's fields that makes its id, e.g. "
        '"{symbol}:{date}": literal text and {field} placeholders ({{ and }} for literal braces; '
        f"no format specs). Ids must be unique and at most {MAX_ID_LENGTH} characters; default: the "
        "string itself, or the item's canonical JSON.",
        minLength=1,
        maxLength=MAX_ID_TEMPLATE_LENGTH,
        pattern=ID_TEMPLATE_PATTERN,
    )


# -- generator: the pod settings are Kubernetes types, described here and passed on as written --


@dataclass(frozen=True, kw_only=True)
class LocalObjectReference:
    name: str = required_field("The Secret's name, e.g. regcred.", minLength=1)


@dataclass(frozen=True, kw_only=True)
class EnvVar:
    name: str = required_field("Variable name, e.g. API_KEY.", minLength=1)
    value: str | None = api_field("Literal value.")
    value_from: KubeObject | None = api_field("A secretKeyRef, configMapKeyRef or fieldRef, as in a container's env.")


@dataclass(frozen=True, kw_only=True)
class ResourceRequirements:
    requests: dict[str, Quantity] | None = api_field(
        "Minimum resources the scheduler reserves, by name (cpu, memory, ...), e.g. {cpu: 250m}."
    )
    limits: dict[str, Quantity] | None = api_field(
        "Maximum resources by name, e.g. {memory: 1Gi}; a pod over its memory limit is killed."
    )


@dataclass(frozen=True, kw_only=True)
class Affinity:
    node_affinity: KubeObject | None = api_field(
        "Which nodes the pods may or prefer to run on (pod spec nodeAffinity)."
    )
    pod_affinity: KubeObject | None = api_field("Run near pods with these labels (pod spec podAffinity).")
    pod_anti_affinity: KubeObject | None = api_field(
        "Run away from pods with these labels, e.g. one shard per node (pod spec podAntiAffinity)."
    )


@dataclass(frozen=True, kw_only=True)
class TopologySpreadConstraint:
    max_skew: int = required_field("Largest allowed difference in pod count between domains.", minimum=1)
    topology_key: str = required_field(
        "Node label that defines a domain, e.g. topology.kubernetes.io/zone.", minLength=1
    )
    when_unsatisfiable: str = required_field(
        "DoNotSchedule (hard rule) or ScheduleAnyway (preference).", enum=["DoNotSchedule", "ScheduleAnyway"]
    )
    label_selector: KubeObject | None = api_field(
        "Pods counted for the skew, e.g. {matchLabels: {datagen.dev/datasetjob: smf}}."
    )
    min_domains: int | None = api_field("Minimum number of eligible domains (DoNotSchedule only).", minimum=1)
    match_label_keys: tuple[str, ...] | None = api_field(
        "Pod label keys whose values narrow the counted pods, e.g. [datagen.dev/run-id]."
    )
    node_affinity_policy: str | None = api_field(
        "Whether the pod's node affinity limits the domains (Honor, the default, or Ignore).", enum=["Honor", "Ignore"]
    )
    node_taints_policy: str | None = api_field(
        "Whether node taints limit the domains (Honor or Ignore, the default).", enum=["Honor", "Ignore"]
    )


Resources = Annotated[KubeObject, Shape(ResourceRequirements)]
ImagePullSecret = Annotated[
    KubeObject, Shape(LocalObjectReference), Schema(description="A reference to a docker-registry Secret.")
]
EnvEntry = Annotated[KubeObject, Shape(EnvVar), Schema(description="One variable: name with value or valueFrom.")]
SpreadConstraint = Annotated[KubeObject, Shape(TopologySpreadConstraint), Schema(description="One spread rule.")]

_RELATIVE_OUTPUT_FILE = (
    "!has(self.outputFile) || !(self.outputFile.startsWith('/') || self.outputFile == '..' "
    "|| self.outputFile.startsWith('../') || self.outputFile.endsWith('/..') "
    "|| self.outputFile.contains('/../'))"
)


@api_object(
    {
        "x-kubernetes-validations": [
            cel_rule("has(self.function) != has(self.command)", "exactly one of function and command must be set"),
            cel_rule(
                "!has(self.command) || has(self.outputFile)", "outputFile is required with command", ".outputFile"
            ),
            cel_rule(
                "!has(self.outputFile) || has(self.command)",
                "outputFile is only meaningful with command",
                ".outputFile",
            ),
            # The worker deletes and then reads this file: it must stay inside the working directory.
            # What CEL can see is refused here; paths built from items or symlinks, by the worker.
            cel_rule(
                _RELATIVE_OUTPUT_FILE,
                "must be a relative path inside the working directory (no leading '/', no '..' segment)",
                ".outputFile",
            ),
        ]
    }
)
@dataclass(frozen=True, kw_only=True)
class GeneratorSpec:
    image: str | None = api_field(
        "Container image with the generator code and the dsj runtime, e.g. "
        "registry.example/acme/smf-gen:1.2. Default: the worker image of the installation.",
        minLength=1,
    )
    image_pull_policy: str | None = api_field(
        "Always, IfNotPresent or Never. Default: Kubernetes' (Always for :latest, else IfNotPresent).",
        enum=["Always", "IfNotPresent", "Never"],
    )
    image_pull_secrets: tuple[ImagePullSecret, ...] | None = api_field(
        "Secrets in the DatasetJob's namespace for pulling the image from a private registry.", maxItems=16
    )
    function: str | None = api_field(
        "SDK mode: module:callable, called fn(item, ctx) once per item, returning a row, a "
        "list of rows or None, e.g. smart_money.generate:example.",
        pattern="^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$",
    )
    command: tuple[str, ...] | None = api_field(
        "Command mode: run once per shard with placeholders {items} {items_file} {shard} "
        '{index} substituted, e.g. [npx, tsx, generate.ts, --items, "{items}"].',
        minItems=1,
    )
    output_file: str | None = api_field(
        "Command mode: the file the command writes, e.g. out/{shard}.csv; placeholders as in command.",
        minLength=1,
        maxLength=4096,
    )
    working_dir: str | None = api_field("Working directory of the generator in its container. Default: the image's.")
    id_column: str | None = api_field(
        "Command mode: the output column that names each row's item (its id). Items with no row "
        "are recorded as failed, and a row naming an item of another shard fails the shard. "
        "Without it, rows cannot be told apart by item and every item of a shard with rows counts as done.",
        minLength=1,
    )
    allow_empty_output: bool | None = api_field(
        "Command mode: accept an output with no rows for a shard that has items. Default false: an "
        "empty output fails the shard, since it cannot account for any item."
    )
    version: str | None = api_field(
        "The generator's version, chosen by you. It is part of the generator fingerprint, so "
        "bumping it (after changing the generator's code or its upstream data) makes the next "
        "run regenerate every item instead of reusing earlier results.",
        minLength=1,
        maxLength=128,
    )
    concurrency: int = defaulted_field(
        "Items in flight inside one pod (threads), for I/O-bound generators. Default 1.", 1, minimum=1, maximum=1024
    )
    item_timeout_seconds: float | None = api_field(
        "Longest time one item may take, e.g. 120. An item still running then fails with an "
        "ItemTimeout error, recorded like any failed item, and the shard goes on. Function mode: "
        "a call cannot be stopped inside its thread, so it is abandoned and its late result "
        "ignored; a worker holding more abandoned calls than max(2, concurrency) saves its "
        "checkpoint and restarts in a fresh process that skips what is done or failed. Command "
        "mode: the shard's command gets this many seconds per item of the shard; past that its "
        "process group is killed and every item of the shard fails. Default: no limit.",
        minimum=0,
        exclusiveMinimum=True,
    )
    startup_stagger_seconds: float = defaulted_field(
        "Shard i starts i times this many seconds late, to spread the first API calls. Default 0.",
        0,
        minimum=0,
        maximum=3600,
    )
    env: tuple[EnvEntry, ...] = api_field(
        "Environment variables of the generator, as in a container spec; they override the operator's.", ()
    )
    resources: Resources | None = api_field(
        "CPU and memory of each generate pod, e.g. {requests: {cpu: 500m, memory: 512Mi}, "
        "limits: {memory: 1Gi}}. Replaces the installation's default (the chart's "
        "worker.resources.generate, requests cpu 100m and memory 256Mi unless changed). Kueue "
        "counts the requests against its quota."
    )
    node_selector: dict[str, str] | None = api_field(
        "Node labels the pods must match, e.g. {pool: batch}.",
        additionalProperties={"type": "string"},  # given, so that it is printed before the description
    )
    tolerations: tuple[KubeObject, ...] | None = api_field(
        "Taints the pods tolerate, as in a pod spec, e.g. [{key: batch, operator: Exists}]."
    )
    affinity: Annotated[KubeObject, Shape(Affinity)] | None = api_field(
        "Node and pod (anti-)affinity of the pods, as in a pod spec."
    )
    topology_spread_constraints: tuple[SpreadConstraint, ...] | None = api_field(
        "How to spread the pods over zones or nodes, as in a pod spec, e.g. [{maxSkew: 1, "
        "topologyKey: kubernetes.io/hostname, whenUnsatisfiable: ScheduleAnyway}]. Select "
        "the DatasetJob's pods with the label datagen.dev/datasetjob=<name>.",
        maxItems=8,
    )
    priority_class_name: str | None = api_field(
        "PriorityClass of the pods, e.g. batch-low: the scheduler's priority and preemption "
        "(Kueue also takes the workload's priority from it unless workloadPriorityClassName "
        "is set). The PriorityClass must exist.",
        maxLength=253,
        pattern=_DNS_NAME,
    )
    runtime_class_name: str | None = api_field(
        "RuntimeClass of the pods, e.g. gvisor for sandboxed generators. Default: the node's runtime.",
        maxLength=253,
        pattern=_DNS_NAME,
    )
    service_account_name: str | None = api_field(
        "ServiceAccount the pods run as (for workload identity to cloud APIs). Its token is not "
        "mounted unless the image asks for it. Default: the namespace's default account."
    )
    pod_labels: dict[str, LabelValue] | None = api_field(
        "Extra labels on the generate and combine pods, e.g. {team: research}. The operator's "
        "own labels (datagen.dev/*) win on a clash.",
        maxProperties=32,
    )
    pod_annotations: dict[str, str] | None = api_field(
        'Extra annotations on the generate and combine pods, e.g. {prometheus.io/scrape: "false"}.',
        maxProperties=32,
    )


# -- where and how: cache, rate limit, output, retries, combine, reuse ---------------------------


@dataclass(frozen=True, kw_only=True)
class CacheFields:
    redis_url: str | None = api_field(  # None: the default cache of the mode; "": no cache
        "Redis URL of the shared cache, e.g. redis://redis.cache:6379/0. Absent: the "
        "installation's default cache (the chart's Redis); \"\" (empty): no cache and no live "
        "progress.",
        pattern="^(|rediss?://.*|unix://.*)$",
    )
    ttl_seconds: int = defaulted_field(
        "How long a cached value lives, in seconds. Default 604800 (7 days).", 604800, minimum=1
    )
    namespace: str | None = api_field(
        "Cache key prefix: DatasetJobs with the same prefix share cached values. Default: "
        "<namespace>.<name> of the DatasetJob, so tenants never share entries by accident.",
        minLength=1,
    )


@api_object(
    {
        "x-kubernetes-validations": [
            cel_rule(
                "has(self.requestsPerSecond) || has(self.requestsPerMinute) || has(self.tokensPerMinute)",
                "set at least one limit: requestsPerSecond, requestsPerMinute or tokensPerMinute",
            ),
            cel_rule(
                "!has(self.tokenBurst) || has(self.tokensPerMinute)",
                "tokenBurst is only meaningful with tokensPerMinute",
                ".tokenBurst",
            ),
            cel_rule(
                "!has(self.burst) || has(self.requestsPerSecond) || has(self.requestsPerMinute)",
                "burst is only meaningful with requestsPerSecond or requestsPerMinute",
                ".burst",
            ),
        ]
    }
)
@dataclass(frozen=True, kw_only=True)
class RateLimitFields:
    requests_per_second: float | None = api_field(
        "Sustained rate of uncached generator calls (ctx.limit blocks), per second, e.g. 20.",
        minimum=0,
        exclusiveMinimum=True,
    )
    requests_per_minute: float | None = api_field(
        "Sustained rate of generator calls per minute, e.g. 500 (an API's RPM limit); may be set "
        "beside requestsPerSecond, and each call then counts against both.",
        minimum=0,
        exclusiveMinimum=True,
    )
    tokens_per_minute: float | None = api_field(
        "Sustained rate of tokens per minute, e.g. 20000 (an LLM API's TPM limit). Each call "
        "takes its estimate (ctx.limit(tokens=N)) before it starts, and the actual count the "
        "generator reports (ctx.usage(tokens=N)) corrects the bucket after it.",
        minimum=0,
        exclusiveMinimum=True,
    )
    burst: int | None = api_field(
        "Calls allowed at once after a quiet spell. Default: one second of the request rate, rounded, at least 1.",
        minimum=1,
    )
    token_burst: int | None = api_field(
        "Tokens allowed at once after a quiet spell. Default: one second of tokensPerMinute, "
        "at least 1. A call estimated above it still runs, after waiting for its tokens.",
        minimum=1,
    )
    scope: str | None = api_field(
        "Name of the shared limits; DatasetJobs naming the same scope share them, e.g. polygon-api. "
        "Default: the DatasetJob's name.",
        minLength=1,
    )


@dataclass(frozen=True, kw_only=True)
class OutputSpec:
    uri: str | None = api_field(
        "Prefix the runs, the dataset and latest.json go under, e.g. s3://ml-datasets/smf. "
        "Default in a cluster: the installation's output prefix plus /<namespace>/<name>.",
        # s3:// needs a bucket: s3:///prefix has none.
        pattern="^(s3://[^/]+|file://.+)",
    )
    format: str = defaulted_field(
        "File format of shards and the dataset: csv (default), parquet or jsonl.",
        "csv",
        enum=["csv", "parquet", "jsonl"],
    )
    endpoint_url: str | None = api_field(
        "An S3-compatible server, e.g. http://minio.storage:9000. Default: AWS S3.", pattern="^https?://.+"
    )
    region: str | None = api_field("S3 region, e.g. eu-west-1. Default: the SDK's.")
    credentials_secret: str | None = api_field(
        "Secret in the DatasetJob's namespace whose keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) "
        "become the pods' environment.",
        minLength=1,
    )


@dataclass(frozen=True, kw_only=True)
class Retries:
    per_shard: int = defaulted_field(
        "Retries of a failed shard pod (Job backoffLimitPerIndex). Default 2.", 2, minimum=0, maximum=10
    )
    max_failed_shards: int = defaulted_field(
        "Shards that may fail for good while the rest is still combined and published "
        "(Job maxFailedIndexes). Default 0.",
        0,
        minimum=0,
    )


@dataclass(frozen=True, kw_only=True)
class CombineSpec:
    dedupe_by: tuple[ColumnName, ...] = api_field(
        "Columns that identify a row; later duplicates are dropped, e.g. [symbol, date]. Default: no deduplication.",
        (),
    )
    sort_by: tuple[ColumnName, ...] = api_field(
        "Columns the dataset is sorted by, e.g. [symbol, date]. Default: item order.", ()
    )
    min_item_success_ratio: float = defaulted_field(
        "Publish only if this share of items produced rows, e.g. 0.98. Default 1 (every item).",
        1,
        minimum=0,
        maximum=1,
    )
    columns: dict[str, ColumnType] = api_field(
        "Expected columns and types, checked before publishing, e.g. {symbol: string, flow: float64}.",
        factory=dict,
    )
    resources: Resources | None = api_field(
        "CPU and memory of the combine pod, e.g. {requests: {memory: 1Gi}}; it sorts and "
        "deduplicates out of core (about 600 MB at 10^7 rows), spilling to its scratch disk. "
        "Replaces the installation's "
        "default (the chart's worker.resources.combine, requests cpu 100m and memory 512Mi "
        "unless changed); generator.resources does not apply to it."
    )


@dataclass(frozen=True, kw_only=True)
class ReuseSpec:
    enabled: bool = defaulted_field("false: generate every item, and record nothing for later runs.", True)
    max_age_seconds: int | None = api_field(  # None: rows never go stale
        "Rows generated longer ago than this are stale: their items are generated again.", minimum=1
    )


@api_object(
    {
        "x-kubernetes-validations": [
            cel_rule(
                "has(self.maxRequests) || has(self.maxTokens) || has(self.maxCost)",
                "set at least one of maxRequests, maxTokens and maxCost",
            )
        ]
    }
)
@dataclass(frozen=True, kw_only=True)
class BudgetFields:
    max_requests: int | None = api_field(
        "Stop once the run's generators have made this many upstream requests (ctx.limit takes, "
        "or ctx.usage(requests=...)), e.g. 100000.",
        minimum=1,
    )
    max_tokens: int | None = api_field(
        "Stop once the run's generators have reported this many tokens (ctx.usage(tokens=...)), e.g. 5000000.",
        minimum=1,
    )
    max_cost: float | None = api_field(
        "Stop once the cost the run's generators reported (ctx.usage(cost=...)) reaches this, in "
        "the unit they report it in (your currency), e.g. 20.",
        minimum=0,
        exclusiveMinimum=True,
    )


# -- the spec --------------------------------------------------------------------------------


@api_object(
    {
        "x-kubernetes-validations": [
            cel_rule(
                "!has(self.parallelism) || self.parallelism <= self.shards",
                "must be at most spec.shards",
                ".parallelism",
            ),
            cel_rule(
                "self.retries.maxFailedShards < self.shards",
                "must be less than spec.shards",
                ".retries.maxFailedShards",
            ),
        ]
    }
)
@dataclass(frozen=True, kw_only=True)
class SpecFields:
    """`spec` as written, with the API server's defaults; `model.DatasetJobSpec` adds the
    defaults that depend on the DatasetJob (cache namespace, rate limit scope) or on other fields."""

    items: ItemSource = required_field(
        "Where the item universe comes from: exactly one of values, product, range, fromConfigMap, "
        "fromUri. Every item lands in exactly one shard; shard sizes differ by at most one."
    )
    shards: int = defaulted_field(
        "Number of item slices, one pod each (Indexed Job completions). Default 1.", 1, minimum=1, maximum=100000
    )
    parallelism: int | None = api_field("Shards (pods) running at once; at most shards. Default: shards.", minimum=1)
    queue_name: str | None = api_field(
        "Kueue LocalQueue in the DatasetJob's namespace that admits its Jobs, e.g. team-a. Set as "
        "the kueue.x-k8s.io/queue-name label on the generate and combine Jobs; while Kueue holds "
        "a Job, the phase is Queued. Default: no queue (the Jobs start at once).",
        maxLength=63,
        pattern=_DNS_NAME,
    )
    workload_priority_class_name: str | None = api_field(
        "Kueue WorkloadPriorityClass of the Jobs (the kueue.x-k8s.io/priority-class label), e.g. "
        "batch-low: orders and preempts workloads in Kueue without changing pod priority. Use "
        "generator.priorityClassName for the pods' own PriorityClass.",
        maxLength=63,
        pattern=_DNS_NAME,
    )
    generator: GeneratorSpec = required_field(
        "What runs in each shard and how its pods look: the image, either a Python function "
        "(SDK mode) or a command (any language), and the pod settings of the generate pods "
        "(the combine pod takes the same pod settings, with combine.resources)."
    )
    cache: CacheFields = api_field(
        "The shared get-or-compute cache (ctx.cached) and live progress store.", factory=CacheFields
    )
    rate_limit: RateLimitFields | None = api_field(
        "Limits on upstream calls (requests, tokens) in the cache's Redis, shared by every pod of "
        "every DatasetJob of the same scope; a throttle (429/503) seen by any pod pauses and "
        "slows the whole scope. At least one limit."
    )
    budget: BudgetFields | None = api_field(
        "Spend limits of a run, counted across every pod. When one is reached no new item starts, "
        "items in flight finish and are kept, and the run stops with reason BudgetExhausted "
        "(the spend and the items left in its message); raising the budget continues the same "
        "run without generating any item again. Not part of the run id."
    )
    output: OutputSpec = api_field("Where and how the dataset is written.", factory=OutputSpec)
    retries: Retries = defaulted_field(
        "What a failure costs: retries per shard and how many shards may fail for the run to still publish.",
        factory=Retries,
    )
    combine: CombineSpec = defaulted_field(
        "The combine step: shard files in, one validated, deduplicated dataset out.", factory=CombineSpec
    )
    reuse: ReuseSpec = api_field(
        "Incremental regeneration. An item's rows are stored under (item id, generator "
        "fingerprint) at the output location; a new run takes the rows of items already produced "
        "there under the same fingerprint and generates only the rest (failed items are always "
        "generated again). The fingerprint covers generator.function/command, image, "
        "generator.version, generator.env and combine.columns, not shards, parallelism or the "
        "output location. On unless enabled is false.",
        factory=ReuseSpec,
    )
    suspend: bool = defaulted_field(
        "true: stop the pods of the current run (its Jobs are suspended) and start nothing new; "
        "false again resumes the same run. The operator changes a Job's suspension only when "
        "this field changes, so a Job suspended by someone else (e.g. Kueue) stays suspended.",
        False,
    )
    ttl_seconds_after_finished: int | None = api_field(
        "Seconds after a Job finishes before Kubernetes deletes it and its pods, e.g. 86400. Default: kept.",
        minimum=0,
    )
