"""High availability: several operator replicas, one acting, through Kopf peering. Pure.

Kopf peering is used rather than a Lease: it is Kopf's own mechanism, so the framework itself
pauses every watch, handler and timer of a standby replica, and a standby starts paused until
it has seen the peers. Kopf pauses every peer when two share a priority, so each replica gets
one of its own: the oldest replica acts, a restarted or newly rolled-out replica never takes
over from a healthy one, and the next oldest takes over once the active one's record expires.
"""

from __future__ import annotations

import random
import time
from typing import Any

PEERING_GROUP = "kopf.dev"
PEERING_VERSION = "v1"


def priority(started: float | None = None, rng: random.Random | None = None) -> int:
    """Higher for an older replica (start time in ms, negated); the last three digits are
    random so that two replicas started in the same millisecond still differ."""
    started = time.time() if started is None else started
    jitter = (rng or random.SystemRandom()).randrange(1000)
    return -(int(started * 1000) * 1000 + jitter)


def _crd(kind: str, plural: str, scope: str) -> dict[str, Any]:
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{PEERING_GROUP}", "labels": {"app.kubernetes.io/name": "datasetjob"}},
        "spec": {
            "group": PEERING_GROUP,
            "scope": scope,
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": PEERING_VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                # One entry per live replica: its priority and when it was last seen.
                                "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                            },
                        }
                    },
                }
            ],
        },
    }


def build_peering_crds() -> list[dict[str, Any]]:
    """Kopf's peering resources: cluster-wide for an operator of every namespace, namespaced
    for one that watches a list of namespaces."""
    return [
        _crd("ClusterKopfPeering", "clusterkopfpeerings", "Cluster"),
        _crd("KopfPeering", "kopfpeerings", "Namespaced"),
    ]
