"""The DatasetJob CRD, generated from the data plane's spec schema (the one source). Pure."""

from __future__ import annotations

import copy

from datasetjob import API_GROUP, API_VERSION, KIND
from datasetjob.schema import spec_schema

PLURAL = "datasetjobs"
SINGULAR = "datasetjob"
SHORT_NAMES = ["dsj"]
CRD_NAME = f"{PLURAL}.{API_GROUP}"

PHASES = ["Pending", "Queued", "Generating", "Combining", "Succeeded", "Failed", "Suspended"]

_COUNT = {"type": "integer", "format": "int64"}

STATUS_SCHEMA = {
    "type": "object",
    "properties": {
        "phase": {"type": "string", "enum": PHASES},
        "reason": {"type": "string"},
        "message": {"type": "string"},
        "runId": {"type": "string"},
        "attempt": {"type": "string"},
        "observedGeneration": _COUNT,
        "startedAt": {"type": "string", "format": "date-time"},
        "finishedAt": {"type": "string", "format": "date-time"},
        "jobs": {"type": "object", "properties": {"generate": {"type": "string"}, "combine": {"type": "string"}}},
        "shards": {"type": "object", "properties": {
            "total": _COUNT, "active": _COUNT, "succeeded": _COUNT, "failed": _COUNT,
            "succeededIndexes": {"type": "string"}, "failedIndexes": {"type": "string"},
            "progress": {"type": "string", "description": "succeeded/total, for kubectl get"},
        }},
        "items": {"type": "object", "properties": {
            "total": _COUNT, "done": _COUNT, "failed": _COUNT,
            "generated": dict(_COUNT, description="items done by this run's generator calls"),
            "reused": dict(_COUNT, description="items done with rows an earlier run produced under the same "
                                               "generator fingerprint (spec.reuse); done = generated + reused"),
            "progress": {"type": "string", "description": "done/total, for kubectl get"},
        }},
        "cache": {"type": "object", "properties": {"hits": _COUNT, "misses": _COUNT}},
        "output": {"type": "object", "properties": {
            "uri": {"type": "string"}, "manifestUri": {"type": "string"}, "rows": _COUNT,
            "bytes": _COUNT, "sha256": {"type": "string"}, "missingShards": {"type": "string"},
        }},
        "failures": {"type": "array", "maxItems": 10, "description": "a few shard failures, for humans",
                     "items": {"type": "object", "properties": {
                         "shard": _COUNT, "exitCode": _COUNT, "message": {"type": "string"}}}},
        "retryToken": {"type": "string"},
        "appliedSuspend": {"type": "boolean",
                           "description": "spec.suspend as the operator last applied it to the run's Jobs"},
        "conditions": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"],
                       "items": {"type": "object", "required": ["type", "status"], "properties": {
                           "type": {"type": "string"}, "status": {"type": "string", "enum": ["True", "False", "Unknown"]},
                           "reason": {"type": "string"}, "message": {"type": "string"},
                           "lastTransitionTime": {"type": "string", "format": "date-time"},
                           "observedGeneration": _COUNT}}},
    },
}

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Shards", "type": "string", "jsonPath": ".status.shards.progress"},
    {"name": "Items", "type": "string", "jsonPath": ".status.items.progress"},
    {"name": "Rows", "type": "integer", "jsonPath": ".status.output.rows"},
    {"name": "Generated", "type": "integer", "jsonPath": ".status.items.generated", "priority": 1},
    {"name": "Reused", "type": "integer", "jsonPath": ".status.items.reused", "priority": 1},
    {"name": "Run", "type": "string", "jsonPath": ".status.runId", "priority": 1},
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_crd() -> dict:
    spec = copy.deepcopy(spec_schema())
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/name": "datasetjob"}},
        "spec": {
            "group": API_GROUP,
            "names": {"kind": KIND, "listKind": f"{KIND}List", "plural": PLURAL, "singular": SINGULAR,
                      "shortNames": SHORT_NAMES, "categories": ["all", "datagen"]},
            "scope": "Namespaced",
            "versions": [{
                "name": API_VERSION,
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": PRINTER_COLUMNS,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "description": "Parallel dataset generation: items split into shards, generated, combined.",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": spec,
                        "status": STATUS_SCHEMA,
                    },
                }},
            }],
        },
    }
