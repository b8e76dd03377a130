"""The DatasetJob CRD, generated from the typed spec (data plane) and status (operator). Pure."""

from __future__ import annotations

import copy
from typing import Any

from datasetjob import API_GROUP, API_VERSION, KIND
from datasetjob.spec.schema import spec_schema

from .status import status_schema

PLURAL = "datasetjobs"
SINGULAR = "datasetjob"
SHORT_NAMES = ["dsj"]
CRD_NAME = f"{PLURAL}.{API_GROUP}"

PRINTER_COLUMNS = [
    {"name": "Phase", "type": "string", "jsonPath": ".status.phase"},
    {"name": "Shards", "type": "string", "jsonPath": ".status.shards.progress"},
    {"name": "Items", "type": "string", "jsonPath": ".status.items.progress"},
    {"name": "Rows", "type": "integer", "jsonPath": ".status.output.rows"},
    {"name": "Generated", "type": "integer", "jsonPath": ".status.items.generated", "priority": 1},
    {"name": "Reused", "type": "integer", "jsonPath": ".status.items.reused", "priority": 1},
    {"name": "Rate", "type": "string", "jsonPath": ".status.throughput", "priority": 1},
    {"name": "ETA", "type": "string", "jsonPath": ".status.eta", "priority": 1},
    {"name": "Tokens", "type": "number", "jsonPath": ".status.usage.tokens", "priority": 1},
    {"name": "Cost", "type": "number", "jsonPath": ".status.usage.cost", "priority": 1},
    {"name": "Run", "type": "string", "jsonPath": ".status.runId", "priority": 1},
    {"name": "Reason", "type": "string", "jsonPath": ".status.reason", "priority": 1},
    {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
]


def build_crd() -> dict[str, Any]:
    spec = copy.deepcopy(spec_schema())
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": CRD_NAME, "labels": {"app.kubernetes.io/name": "datasetjob"}},
        "spec": {
            "group": API_GROUP,
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": SINGULAR,
                "shortNames": SHORT_NAMES,
                "categories": ["all", "datagen"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": API_VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "description": "Parallel dataset generation: items split into shards, generated, combined.",
                            "required": ["spec"],
                            "properties": {
                                "apiVersion": {"type": "string"},
                                "kind": {"type": "string"},
                                "metadata": {"type": "object"},
                                "spec": spec,
                                "status": status_schema(),
                            },
                        }
                    },
                }
            ],
        },
    }
