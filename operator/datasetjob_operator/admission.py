"""What Kueue says about the Jobs it has not admitted yet. Pure.

Kueue keeps one Workload per Job it manages (owned by the Job); while the Job waits, the
Workload's QuotaReserved (or Admitted) condition is False with Kueue's own reason, e.g.
"couldn't assign flavors to pod set main: insufficient unused quota for cpu in flavor
default, 100m more needed". The operator copies that into the DatasetJob's Queued condition,
so `kubectl get dsj -o yaml` answers "why is it waiting" without a second lookup.
"""

from __future__ import annotations

from typing import Any

KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_VERSION = "v1beta2"
WORKLOADS = "workloads"


def pending_reasons(workloads: list[dict[str, Any]]) -> dict[str, str]:
    """Job name -> Kueue's message for each workload that waits for admission."""
    out = {}
    for wl in workloads:
        owners = [
            o["name"]
            for o in (wl.get("metadata") or {}).get("ownerReferences") or []
            if o.get("kind") == "Job" and o.get("apiVersion", "").startswith("batch/")
        ]
        conditions = {c.get("type"): c for c in (wl.get("status") or {}).get("conditions") or []}
        waiting = next(
            (
                conditions[t]
                for t in ("QuotaReserved", "Admitted")
                if conditions.get(t, {}).get("status") == "False" and conditions[t].get("message")
            ),
            None,
        )
        if waiting is None or conditions.get("Admitted", {}).get("status") == "True":
            continue
        for job in owners:
            out[job] = waiting["message"]
    return out
