"""The live gauges of each DatasetJob (live_values.py) in the operator's Prometheus registry,
the one metrics.py serves. `update` after each reconcile, `forget` when a DatasetJob is
deleted: its series disappear with it."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Gauge

from .live_values import GAUGES, Values, live_values
from .status import DatasetJobStatus


class LiveGauges:
    """One Gauge per GaugeSpec, and the label sets each DatasetJob has set, so a series that is
    no longer known (an ETA after generation) and all of a deleted DatasetJob's are removed."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.gauges = {
            g.name: Gauge(g.name, g.help, ["namespace", "name", *([g.label] if g.label else [])], registry=registry)
            for g in GAUGES
        }
        self._set: dict[tuple[str, str], set[tuple[str, tuple[str, ...]]]] = {}
        self._lock = threading.Lock()

    def put(self, namespace: str, name: str, values: Values) -> None:
        now_set = {(gauge, labels) for gauge, series in values.items() for labels in series}
        with self._lock:
            for gauge, labels in self._set.get((namespace, name), set()) - now_set:
                self.gauges[gauge].remove(*labels)
            for gauge, series in values.items():
                for labels, value in series.items():
                    self.gauges[gauge].labels(*labels).set(value)
            self._set[(namespace, name)] = now_set

    def forget(self, namespace: str, name: str) -> None:
        with self._lock:
            for gauge, labels in self._set.pop((namespace, name), set()):
                self.gauges[gauge].remove(*labels)


LIVE = LiveGauges()


def min_item_success_ratio(spec: Mapping[str, Any]) -> float:
    """The spec's combine.minItemSuccessRatio (default 1), from the API's spec."""
    combine = spec.get("combine") or {}
    try:
        return float(combine.get("minItemSuccessRatio", 1))
    except (TypeError, ValueError):
        return 1.0


def update(
    namespace: str,
    name: str,
    status: DatasetJobStatus,
    spec: Mapping[str, Any],
    now: datetime | None = None,
    gauges: LiveGauges = LIVE,
) -> None:
    """Sets the DatasetJob's gauges to what `status` says (call after its status write)."""
    when = now or datetime.now(UTC)
    gauges.put(
        namespace, name, live_values(namespace, name, status, when, min_item_success_ratio=min_item_success_ratio(spec))
    )


def forget(namespace: str, name: str, gauges: LiveGauges = LIVE) -> None:
    """Removes every series of a deleted DatasetJob."""
    gauges.forget(namespace, name)
